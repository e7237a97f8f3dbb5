package ztoc

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
)

// ByteRange is a range of a blob and the buffer it is read into: Buf
// receives bytes [Off, Off+len(Buf)).
type ByteRange struct {
	Off int64
	Buf []byte
}

// RangeSource reads byte ranges of a zTOC blob: a registry through HTTP
// range requests (several ranges in one multi-range request where the
// registry answers them), or a file. Ranges are sorted and do not overlap.
type RangeSource interface {
	ReadRanges(ctx context.Context, ranges []ByteRange) error
}

// LazyHeadSize is the most ReadLazy reads first: it reads the root table,
// compression_info and the span digests, which upstream's builder puts
// before the checkpoint blob, estimated from the zTOC's size (about 80
// bytes of digest per 32 KiB window); where the estimate is short, a
// second read fetches the rest.
const LazyHeadSize = 64 << 10

// headSize estimates the bytes before the checkpoint blob of a zTOC of
// size bytes: 96 per span, 1 KiB of tables.
func headSize(size int64) int64 {
	return min(lazyHeadSize, 1<<10+96*(size/zinfoRecordSize+1), size)
}

// lazyHeadSize and lazyMinSize are LazyHeadSize and the size under which
// a zTOC is read whole (in one read: a lazy read would save less than a
// request costs); variables for the fuzz target.
var (
	lazyHeadSize int64 = LazyHeadSize
	lazyMinSize  int64 = 4 * LazyHeadSize
)

// Lazy is a zTOC read by ReadLazy. When read lazily (IsLazy), Ztoc has no
// Checkpoints blob: its checkpoints are known (in, out, bits) but not
// their windows, which a LazyWindows fetches when a span needs one.
type Lazy struct {
	// Ztoc is the decoded zTOC, validated as Unmarshal validates.
	Ztoc *Ztoc
	// Digest and Size are the zTOC blob's.
	Digest digest.Digest
	Size   int64
	// Fetched is the number of bytes ReadLazy read from its source, in
	// Reads calls of ReadRanges.
	Fetched int64
	Reads   int
	// Checked is true when the decoded zTOC was checked against a digest
	// before use: read whole (against Digest), or decoded from a lazy zTOC
	// the SOCI index names by digest (DecodeLazy). Else its TOC and span
	// digests are the registry's unchecked bytes until
	// LazyWindows.Complete checks the whole blob.
	Checked bool

	lazy   bool
	index  *Index // spans, checkpoints without windows (lazy only)
	recs   int64  // blob offset of the checkpoint blob's first record
	nrecs  int64  // records stored (count, or count-1 for a v1 blob)
	first  int64  // 1 for a v1 blob: checkpoint 0 is implied, zero window
	blobAt int64  // blob offset of the checkpoint blob
}

// IsLazy reports whether the checkpoint windows were left out. A zTOC that
// is small, not gzip or not laid out as upstream's builder lays it out is
// read whole, and then checked against its digest at once.
func (l *Lazy) IsLazy() bool { return l.lazy }

// ReadLazy reads the zTOC blob d of size bytes from src without its
// checkpoint windows (32 KiB per span, most of a zTOC): first LazyHeadSize
// bytes, to find the checkpoint blob from the root table and
// compression_info; then, in one ReadRanges call, every other byte but
// the windows: each checkpoint's 17-byte record header and the TOC. The
// result is validated exactly as Unmarshal and NewIndex validate the
// whole blob, and no structure may lie inside the checkpoint blob.
//
// A lazily read zTOC cannot be checked against d until its windows are
// fetched too (LazyWindows.Complete); a zTOC read whole is checked here.
func ReadLazy(ctx context.Context, src RangeSource, d digest.Digest, size int64) (*Lazy, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("ztoc digest: %w", err)
	}
	if size <= 0 || size > MaxZtocSize {
		return nil, fmt.Errorf("%w: ztoc of %d bytes (max %d)", ErrTooLarge, size, MaxZtocSize)
	}
	l := &Lazy{Digest: d, Size: size}
	if size < lazyMinSize {
		return l.readWhole(ctx, src, nil)
	}
	b := make([]byte, size)
	head := b[:headSize(size)]
	if err := l.read(ctx, src, []ByteRange{{Buf: head}}); err != nil {
		return nil, err
	}
	cp, ok := locateCheckpoints(head, size)
	if ok && cp.pos+4 > int64(len(head)) {
		// The estimate was short (long digests, say): read up to the
		// vector, and the first record's header with it.
		end := min(cp.pos+4+zinfoHeaderSize+zinfoRecordSize-WindowSize, size)
		if err := l.read(ctx, src, []ByteRange{{Off: int64(len(head)), Buf: b[len(head):end]}}); err != nil {
			return nil, err
		}
		head = b[:end]
		cp, ok = locateCheckpoints(head, size)
	}
	if !ok {
		return l.readWhole(ctx, src, b)
	}
	recs, nrecs := cp.pos+4+zinfoHeaderSize, (cp.n-zinfoHeaderSize)/zinfoRecordSize
	var ranges []ByteRange
	cursor := int64(len(head))
	add := func(end int64) {
		if end > cursor {
			ranges = append(ranges, ByteRange{Off: cursor, Buf: b[cursor:end]})
		}
	}
	for k := range nrecs {
		w := recs + k*zinfoRecordSize + zinfoRecordSize - WindowSize
		add(w)
		cursor = max(cursor, w+WindowSize)
	}
	add(size)
	if err := l.read(ctx, src, ranges); err != nil {
		return nil, err
	}
	return l.decode(b, cp)
}

// decode decodes the lazy buffer b (the zTOC's bytes but its checkpoint
// windows, which may hold anything) whose checkpoint blob is at cp,
// validating it as Unmarshal and NewIndex validate a whole blob.
func (l *Lazy) decode(b []byte, cp cpVector) (*Lazy, error) {
	l.lazy, l.blobAt, l.recs = true, cp.pos+4, cp.pos+4+zinfoHeaderSize
	l.nrecs = (cp.n - zinfoHeaderSize) / zinfoRecordSize
	hole := [2]int64{l.blobAt, l.blobAt + cp.n}
	z, err := unmarshal(b, &hole)
	if err != nil {
		return nil, err
	}
	if z.Compression != Gzip {
		return nil, corrupt("ztoc", -1, "compression changed between reads")
	}
	g, err := ParseGzipCheckpoints(b[hole[0]:hole[1]])
	if err != nil {
		return nil, err
	}
	l.first = int64(2 - g.Version)
	points := make([]Checkpoint, len(g.Points))
	for i, p := range g.Points {
		points[i] = Checkpoint{In: p.In, Out: p.Out, Bits: p.Bits}
	}
	if l.index, err = newIndex(z, points); err != nil {
		return nil, err
	}
	l.Ztoc = z
	return l, nil
}

// read reads ranges from src, counting them.
func (l *Lazy) read(ctx context.Context, src RangeSource, ranges []ByteRange) error {
	if len(ranges) == 0 {
		return nil
	}
	if err := src.ReadRanges(ctx, ranges); err != nil {
		return fmt.Errorf("read ztoc %s: %w", l.Digest, err)
	}
	l.Reads++
	for _, r := range ranges {
		l.Fetched += int64(len(r.Buf))
	}
	return nil
}

// readWhole reads the whole blob into b (nil: a new buffer; its first
// LazyHeadSize bytes are already read when b is given), checks it against
// the digest and decodes it.
func (l *Lazy) readWhole(ctx context.Context, src RangeSource, b []byte) (*Lazy, error) {
	from := int64(0)
	if b == nil {
		b = make([]byte, l.Size)
	} else {
		from = headSize(l.Size)
	}
	if err := l.read(ctx, src, []ByteRange{{Off: from, Buf: b[from:]}}); err != nil {
		return nil, err
	}
	if got := l.Digest.Algorithm().FromBytes(b); got != l.Digest {
		return nil, fmt.Errorf("ztoc %s: content has digest %s", l.Digest, got)
	}
	z, err := Unmarshal(b)
	if err != nil {
		return nil, err
	}
	l.Ztoc, l.Checked = z, true
	return l, nil
}

// cpVector is where the checkpoint blob lies: its length field at pos,
// n bytes after it.
type cpVector struct{ pos, n int64 }

// locateCheckpoints finds the checkpoint vector of a gzip zTOC of size
// bytes from its first bytes head. ok is false when the root table or
// compression_info lies outside head, the layer is not gzip, or the blob
// is not records of 32,785 bytes after a 12-byte header: then the zTOC is
// read whole. Nothing found here is trusted: ReadLazy validates the whole
// once read.
func locateCheckpoints(head []byte, size int64) (cpVector, bool) {
	r := &fbReader{b: head, what: "ztoc"}
	root, err := r.root()
	if err != nil {
		return cpVector{}, false
	}
	ci, ok, err := root.table(ztocSlotCompressionInfo)
	if !ok || err != nil {
		return cpVector{}, false
	}
	if algo, err := ci.int8(ciSlotAlgorithm, int8(Gzip)); err != nil || Compression(algo) != Gzip {
		return cpVector{}, false
	}
	p, ok, err := ci.field(ciSlotCheckpoints, 4)
	if !ok || err != nil {
		return cpVector{}, false
	}
	pos := p + int64(r.u32(p))
	if pos+4 > size {
		return cpVector{}, false
	}
	if pos+4 > int64(len(head)) {
		return cpVector{pos: pos}, true // read up to pos+4, then again
	}
	n := int64(r.u32(pos))
	if n < zinfoHeaderSize+zinfoRecordSize || (n-zinfoHeaderSize)%zinfoRecordSize != 0 || n > size-pos-4 {
		return cpVector{}, false
	}
	return cpVector{pos: pos, n: n}, true
}

// NewIndex returns the span index of the zTOC. Windows of a lazily read
// zTOC come from w (which must be l's); a zTOC read whole holds its own,
// and w is ignored.
func (l *Lazy) NewIndex(w *LazyWindows) (*Index, error) {
	if !l.lazy {
		return NewIndex(l.Ztoc)
	}
	if w == nil || w.l != l {
		return nil, errors.New("ztoc: a lazily read zTOC needs its LazyWindows")
	}
	ix := *l.index
	ix.windows, ix.lazy = w, w
	return &ix, nil
}

// WindowOffset returns the offset in the zTOC blob of checkpoint i's
// window, or ok=false when it is not stored (a v1 blob's checkpoint 0,
// whose window is zeros).
func (l *Lazy) WindowOffset(i SpanID) (off int64, ok bool) {
	rec := int64(i) - l.first
	if rec < 0 || rec >= l.nrecs {
		return 0, false
	}
	return l.recs + rec*zinfoRecordSize + zinfoRecordSize - WindowSize, true
}

// LazyWindows fetches the checkpoint windows of a lazily read zTOC when a
// span needs one, and keeps them in store: a file of the zTOC blob's size
// holding its bytes at their offsets (the caller writes what ReadLazy
// read there too, so that Complete can check the whole blob). A window
// fetch is one range read of 32 KiB; concurrent reads of one window share
// it. It is an io.ReaderAt of windows as Index reads them (window i at
// i*WindowSize).
type LazyWindows struct {
	l     *Lazy
	src   RangeSource
	store WindowFile
	life  context.Context

	mu   sync.Mutex
	have []bool                  // by checkpoint
	wait map[int64]chan struct{} // fetches in flight

	needWin []atomic.Bool // spans that failed to inflate without their window
	fetched atomic.Int64
	bad     atomic.Pointer[error]
	done    atomic.Bool
}

// Windows returns the window source of a lazily read zTOC: windows are
// fetched from src (bounded by life: cancel it when the index is no
// longer used) into store.
func (l *Lazy) Windows(life context.Context, src RangeSource, store WindowFile) *LazyWindows {
	n := int64(l.Ztoc.MaxSpanID) + 1
	return &LazyWindows{l: l, src: src, store: store, life: life, have: make([]bool, n),
		wait: map[int64]chan struct{}{}, needWin: make([]atomic.Bool, n)}
}

// ReadAt implements io.ReaderAt for Index: p is window off/WindowSize.
func (w *LazyWindows) ReadAt(p []byte, off int64) (int, error) {
	i := off / WindowSize
	if off < 0 || off%WindowSize != 0 || len(p) != WindowSize || i >= int64(len(w.have)) {
		return 0, fmt.Errorf("ztoc: window read %d+%d", off, len(p))
	}
	if err := w.failed(); err != nil {
		return 0, err
	}
	woff, ok := w.l.WindowOffset(SpanID(i))
	if !ok {
		clear(p)
		return len(p), nil
	}
	for {
		w.mu.Lock()
		if w.have[i] {
			w.mu.Unlock()
			return w.store.ReadAt(p, woff)
		}
		if ch := w.wait[i]; ch != nil {
			w.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-w.life.Done():
				return 0, fmt.Errorf("ztoc: checkpoint window %d: %w", i, w.life.Err())
			}
		}
		ch := make(chan struct{})
		w.wait[i] = ch
		w.mu.Unlock()
		err := w.src.ReadRanges(w.life, []ByteRange{{Off: woff, Buf: p}})
		if err == nil {
			w.fetched.Add(int64(len(p)))
			_, err = w.store.WriteAt(p, woff)
		}
		w.mu.Lock()
		delete(w.wait, i)
		w.have[i] = err == nil
		close(ch)
		w.mu.Unlock()
		if err != nil {
			return 0, fmt.Errorf("ztoc: fetch checkpoint window %d: %w", i, err)
		}
		return len(p), nil
	}
}

// Fetched returns the window bytes fetched so far.
func (w *LazyWindows) Fetched() int64 { return w.fetched.Load() }

// Verified reports whether Complete checked the whole blob.
func (w *LazyWindows) Verified() bool { return w.done.Load() }

// Err returns the error of a failed Complete that found the blob not to
// be the zTOC, or nil.
func (w *LazyWindows) Err() error { return w.failed() }

func (w *LazyWindows) failed() error {
	if p := w.bad.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *LazyWindows) needs(span SpanID) bool { return w.needWin[span].Load() }
func (w *LazyWindows) setNeeds(span SpanID)   { w.needWin[span].Store(true) }

// completeChunk is the most Complete reads in one range.
const completeChunk = 4 << 20

// Complete fetches every window not fetched yet (in ranges of up to 4
// MiB; the record headers among them again) and checks the whole blob,
// read back from store, against the zTOC's digest. On a mismatch every
// later decompression through the index fails with the error: the TOC and
// span digests the mount was made from were not the zTOC's.
func (w *LazyWindows) Complete(ctx context.Context) error {
	if w.done.Load() {
		return nil
	}
	if err := w.failed(); err != nil {
		return err
	}
	l := w.l
	end := l.recs + l.nrecs*zinfoRecordSize
	buf := make([]byte, min(completeChunk, end-l.recs))
	for off := l.recs; off < end; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), end-off)]
		if err := w.src.ReadRanges(ctx, []ByteRange{{Off: off, Buf: b}}); err != nil {
			return fmt.Errorf("ztoc %s: fetch windows: %w", l.Digest, err)
		}
		w.fetched.Add(int64(len(b)))
		if _, err := w.store.WriteAt(b, off); err != nil {
			return fmt.Errorf("ztoc %s: keep windows: %w", l.Digest, err)
		}
	}
	w.mu.Lock()
	for i := range w.have {
		w.have[i] = true
	}
	w.mu.Unlock()
	h := l.Digest.Algorithm().Hash()
	if err := hashRange(h, w.store, l.Size, buf); err != nil {
		return fmt.Errorf("ztoc %s: %w", l.Digest, err)
	}
	if got := digest.NewDigest(l.Digest.Algorithm(), h); got != l.Digest {
		err := fmt.Errorf("ztoc %s: content has digest %s: the mount's TOC and span digests are not the index's", l.Digest, got)
		w.bad.Store(&err)
		return err
	}
	w.done.Store(true)
	return nil
}

// hashRange hashes bytes [0, size) of r through buf.
func hashRange(h hash.Hash, r interface {
	ReadAt([]byte, int64) (int, error)
}, size int64, buf []byte) error {
	for off := int64(0); off < size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), size-off)]
		if _, err := r.ReadAt(b, off); err != nil {
			return fmt.Errorf("read back: %w", err)
		}
		h.Write(b)
	}
	return nil
}
