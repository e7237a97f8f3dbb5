package ztoc

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/ztoc/internal/inflate"
)

// SpanID identifies a span: 0 to MaxSpanID.
type SpanID = int32

// Span is one independently decompressible piece of a layer.
type Span struct {
	ID SpanID
	// CompressedStart and CompressedEnd bound the span's bytes in the blob
	// (the byte before a checkpoint with Bits != 0 belongs to both spans).
	CompressedStart, CompressedEnd int64
	// UncompressedStart and UncompressedEnd bound its bytes in the tar.
	UncompressedStart, UncompressedEnd int64
}

// Index gives the spans of a zTOC and what is needed to decompress them. It
// is derived from a Ztoc by NewIndex and is safe for concurrent use.
type Index struct {
	z      *Ztoc
	spans  []Span
	points []Checkpoint // gzip only
	// windows holds the checkpoint windows when they are not in points
	// (OffloadWindows): span i's at i*WindowSize.
	windows io.ReaderAt
	// lazy is set when windows are fetched on demand (Lazy.NewIndex).
	lazy *LazyWindows
}

// WindowFile is where OffloadWindows keeps checkpoint windows: an open
// file, typically one already unlinked.
type WindowFile interface {
	io.ReaderAt
	io.WriterAt
}

// OffloadWindows writes the checkpoint windows of a gzip index to w (span
// i's WindowSize bytes at offset i*WindowSize) and returns an Index that
// reads each window back from w when a span is decompressed, and whose
// Ztoc is a shallow copy of ix's without the raw Checkpoints blob. The
// windows are most of a zTOC's size (32 KiB per span: 8.6 MB for a layer
// of 273 spans), needed only to decompress a span, so a long-lived reader
// such as a mounted layer need not hold them in memory. An index of an
// uncompressed layer has no windows and is returned as is. ix stays
// valid; w must outlive the returned Index.
func (ix *Index) OffloadWindows(w WindowFile) (*Index, error) {
	if ix.z.Compression != Gzip || ix.windows != nil {
		return ix, nil
	}
	for i, p := range ix.points {
		win := p.Window
		if win == nil {
			win = make([]byte, WindowSize)
		}
		if len(win) != WindowSize {
			return nil, fmt.Errorf("checkpoint %d: window of %d bytes", i, len(win))
		}
		if _, err := w.WriteAt(win, int64(i)*WindowSize); err != nil {
			return nil, fmt.Errorf("write checkpoint window %d: %w", i, err)
		}
	}
	z := *ix.z
	z.Checkpoints = nil
	points := make([]Checkpoint, len(ix.points))
	for i, p := range ix.points {
		points[i] = Checkpoint{In: p.In, Out: p.Out, Bits: p.Bits}
	}
	return &Index{z: &z, spans: ix.spans, points: points, windows: w}, nil
}

// window returns the window of checkpoint i.
func (ix *Index) window(i SpanID) ([]byte, error) {
	if ix.windows == nil {
		return ix.points[i].Window, nil
	}
	win := make([]byte, WindowSize)
	if _, err := ix.windows.ReadAt(win, int64(i)*WindowSize); err != nil {
		return nil, fmt.Errorf("read checkpoint window %d: %w", i, err)
	}
	return win, nil
}

// NewIndex validates the checkpoints of z against its sizes and span
// digests and computes its spans.
func NewIndex(z *Ztoc) (*Index, error) {
	n := int(z.MaxSpanID) + 1
	if z.MaxSpanID < 0 || len(z.SpanDigests) != n {
		return nil, corrupt("ztoc", -1, "%d span digests for max span id %d", len(z.SpanDigests), z.MaxSpanID)
	}
	var points []Checkpoint
	if z.Compression == Gzip {
		g, err := ParseGzipCheckpoints(z.Checkpoints)
		if err != nil {
			return nil, err
		}
		points = g.Points
	}
	return newIndex(z, points)
}

// newIndex computes the spans of z; points are its gzip checkpoints
// (ignored for an uncompressed layer).
func newIndex(z *Ztoc, points []Checkpoint) (*Index, error) {
	n := int(z.MaxSpanID) + 1
	if z.MaxSpanID < 0 || len(z.SpanDigests) != n {
		return nil, corrupt("ztoc", -1, "%d span digests for max span id %d", len(z.SpanDigests), z.MaxSpanID)
	}
	ix := &Index{z: z, spans: make([]Span, n)}
	switch z.Compression {
	case Gzip:
		if len(points) != n {
			return nil, corrupt("ztoc", -1, "%d checkpoints for %d spans", len(points), n)
		}
		ix.points = points
		for i, p := range points {
			s := Span{ID: SpanID(i), CompressedStart: p.In, UncompressedStart: p.Out,
				CompressedEnd: z.CompressedArchiveSize, UncompressedEnd: z.UncompressedArchiveSize}
			if p.Bits != 0 {
				s.CompressedStart--
			}
			if i+1 < n {
				s.CompressedEnd = points[i+1].In
				s.UncompressedEnd = points[i+1].Out
			}
			// Checkpoints may lie in padding after the end of the archive
			// (upstream places them there too): such spans hold no entry.
			s.UncompressedEnd = max(s.UncompressedEnd, s.UncompressedStart)
			ix.spans[i] = s
		}
	case Uncompressed:
		t, err := ParseTarCheckpoints(z.Checkpoints)
		if err != nil {
			return nil, err
		}
		if t.MaxSpanID() != z.MaxSpanID {
			return nil, corrupt("ztoc", -1, "tar checkpoints give max span id %d, ztoc says %d", t.MaxSpanID(), z.MaxSpanID)
		}
		for i := range ix.spans {
			start := int64(i) * t.SpanSize
			end := min(start+t.SpanSize, t.Size)
			ix.spans[i] = Span{ID: SpanID(i), CompressedStart: start, CompressedEnd: end, UncompressedStart: start, UncompressedEnd: end}
		}
	default:
		return nil, corrupt("ztoc", -1, "unknown compression %v", z.Compression)
	}
	for i, s := range ix.spans {
		if s.CompressedStart < 0 || s.CompressedEnd < s.CompressedStart || s.CompressedEnd > z.CompressedArchiveSize ||
			s.UncompressedStart < 0 || s.UncompressedEnd < s.UncompressedStart {
			return nil, corrupt("ztoc", -1, "span %d has bad bounds %+v", i, s)
		}
		// A span decompresses into a buffer of its uncompressed size:
		// checkpoints (or an archive size) claiming more than its
		// compressed bytes can inflate to would make a reader allocate
		// without bound.
		if c := s.CompressedEnd - s.CompressedStart; s.UncompressedEnd-s.UncompressedStart > (c+1)*maxInflateRatio {
			return nil, corrupt("ztoc", -1, "span %d claims %d uncompressed bytes from %d compressed bytes (deflate gives at most %d per byte)",
				i, s.UncompressedEnd-s.UncompressedStart, c, maxInflateRatio)
		}
	}
	if z.Compression == Uncompressed && len(ix.spans) > 0 && z.UncompressedArchiveSize > ix.spans[len(ix.spans)-1].UncompressedEnd {
		return nil, corrupt("ztoc", -1, "uncompressed_archive_size %d lies beyond the spans' end %d",
			z.UncompressedArchiveSize, ix.spans[len(ix.spans)-1].UncompressedEnd)
	}
	return ix, nil
}

// maxInflateRatio bounds what one compressed byte inflates to: a deflate
// match of 258 bytes takes at least two bits (a one-bit length code and a
// one-bit distance code), so 4 × 258 bytes per byte.
const maxInflateRatio = 1032

// Ztoc returns the zTOC the index was made from.
func (ix *Index) Ztoc() *Ztoc { return ix.z }

// Spans returns all spans in order. The slice must not be modified.
func (ix *Index) Spans() []Span { return ix.spans }

// SpanAt returns the span holding uncompressed offset off.
func (ix *Index) SpanAt(off int64) SpanID {
	i := sort.Search(len(ix.spans), func(i int) bool { return ix.spans[i].UncompressedEnd > off })
	if i == len(ix.spans) {
		i--
	}
	// Skip empty spans (two checkpoints at one offset).
	for i+1 < len(ix.spans) && ix.spans[i].UncompressedEnd <= off {
		i++
	}
	return SpanID(i)
}

// SpansOf returns the first and last span holding bytes of the range [off,
// off+size). For an empty range both are the span at off.
func (ix *Index) SpansOf(off, size int64) (first, last SpanID) {
	first = ix.SpanAt(off)
	if size <= 0 {
		return first, first
	}
	return first, ix.SpanAt(off + size - 1)
}

// Verify checks that compressed holds exactly span id's bytes.
func (ix *Index) Verify(id SpanID, compressed []byte) error {
	want := ix.z.SpanDigests[id]
	if want.Algorithm() != digest.SHA256 {
		if err := want.Validate(); err != nil {
			return fmt.Errorf("span %d: %w", id, err)
		}
		if got := want.Algorithm().FromBytes(compressed); got != want {
			return fmt.Errorf("span %d: got %s, want %s: %w", id, got, want, ErrDigestMismatch)
		}
		return nil
	}
	sum := sha256.Sum256(compressed)
	if got := digest.NewDigestFromBytes(digest.SHA256, sum[:]); got != want {
		return fmt.Errorf("span %d: got %s, want %s: %w", id, got, want, ErrDigestMismatch)
	}
	return nil
}

// Decompress returns the uncompressed bytes of spans first..last from their
// compressed bytes (the blob's range CompressedStart of first to
// CompressedEnd of last). Each span is verified against its digest before
// any byte of it is used.
func (ix *Index) Decompress(first, last SpanID, compressed []byte) ([]byte, error) {
	if first < 0 || last < first || int(last) >= len(ix.spans) {
		return nil, fmt.Errorf("span range %d-%d out of 0-%d", first, last, len(ix.spans)-1)
	}
	base := ix.spans[first].CompressedStart
	if want := ix.spans[last].CompressedEnd - base; int64(len(compressed)) != want {
		return nil, fmt.Errorf("spans %d-%d: got %d compressed bytes, want %d", first, last, len(compressed), want)
	}
	for id := first; id <= last; id++ {
		s := ix.spans[id]
		if err := ix.Verify(id, compressed[s.CompressedStart-base:s.CompressedEnd-base]); err != nil {
			return nil, err
		}
	}
	size := ix.spans[last].UncompressedEnd - ix.spans[first].UncompressedStart
	if ix.z.Compression == Uncompressed {
		return compressed, nil
	}
	p := ix.points[first]
	if lw := ix.lazy; lw != nil {
		if err := lw.failed(); err != nil {
			return nil, err
		}
		// A window costs a fetch: first inflate without one. The
		// inflater refuses any back-reference before the span's start,
		// so success means the span did not need it (Compress makes
		// every span so) and the output is exact.
		if !lw.needs(first) {
			if out, err := inflateSpan(compressed, p.Bits, nil, size); err == nil {
				return out, nil
			}
			lw.setNeeds(first)
		}
	}
	win, err := ix.window(first)
	if err != nil {
		return nil, fmt.Errorf("span %d: %w", first, err)
	}
	out, err := inflateSpan(compressed, p.Bits, win, size)
	if err != nil {
		return nil, fmt.Errorf("decompress spans %d-%d: %w", first, last, err)
	}
	return out, nil
}

// inflateSpan inflates size bytes from compressed, resumed at a
// checkpoint with bits and window.
func inflateSpan(compressed []byte, bits uint8, window []byte, size int64) ([]byte, error) {
	r, err := inflate.NewResumeReader(bytes.NewReader(compressed), bits, window)
	if err != nil {
		return nil, err
	}
	out := make([]byte, size)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Reader reads files of a layer through its zTOC from random access to the
// layer blob: only the spans that hold a file are read and decompressed.
type Reader struct {
	ix   *Index
	blob io.ReaderAt
}

// NewReader returns a Reader of the layer blob indexed by z.
func NewReader(z *Ztoc, blob io.ReaderAt) (*Reader, error) {
	ix, err := NewIndex(z)
	if err != nil {
		return nil, err
	}
	return &Reader{ix: ix, blob: blob}, nil
}

// Reader returns a Reader of the layer blob through ix.
func (ix *Index) Reader(blob io.ReaderAt) *Reader { return &Reader{ix: ix, blob: blob} }

// Index returns the reader's span index.
func (r *Reader) Index() *Index { return r.ix }

// ReadRange returns the uncompressed bytes [off, off+size) of the tar
// stream.
func (r *Reader) ReadRange(off, size int64) ([]byte, error) {
	if off < 0 || size < 0 || off+size > r.ix.z.UncompressedArchiveSize {
		return nil, fmt.Errorf("range %d+%d outside the layer (%d bytes)", off, size, r.ix.z.UncompressedArchiveSize)
	}
	if size == 0 {
		return []byte{}, nil
	}
	first, last := r.ix.SpansOf(off, size)
	start, end := r.ix.spans[first].CompressedStart, r.ix.spans[last].CompressedEnd
	compressed := make([]byte, end-start)
	if _, err := r.blob.ReadAt(compressed, start); err != nil && !(errors.Is(err, io.EOF) && len(compressed) == 0) {
		return nil, fmt.Errorf("read blob [%d, %d): %w", start, end, err)
	}
	data, err := r.ix.Decompress(first, last, compressed)
	if err != nil {
		return nil, err
	}
	skip := off - r.ix.spans[first].UncompressedStart
	return data[skip : skip+size], nil
}

// ReadFile returns the content of a regular file entry.
func (r *Reader) ReadFile(e *FileEntry) ([]byte, error) {
	if e.Type != TypeReg {
		return nil, fmt.Errorf("%s is a %s, not a regular file", e.Name, e.Type)
	}
	b, err := r.ReadRange(e.UncompressedOffset, e.UncompressedSize)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.Name, err)
	}
	return b, nil
}

// Lookup returns the last entry named name (later entries of a tar replace
// earlier ones), or nil. A leading "./" or "/" is ignored on both sides.
func (z *Ztoc) Lookup(name string) *FileEntry {
	want := cleanName(name)
	for i := len(z.Files) - 1; i >= 0; i-- {
		if cleanName(z.Files[i].Name) == want {
			return &z.Files[i]
		}
	}
	return nil
}

func cleanName(s string) string {
	for {
		switch {
		case len(s) >= 2 && s[:2] == "./":
			s = s[2:]
		case len(s) >= 1 && s[0] == '/':
			s = s[1:]
		default:
			if len(s) > 1 && s[len(s)-1] == '/' {
				return s[:len(s)-1]
			}
			return s
		}
	}
}
