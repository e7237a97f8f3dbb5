package ztoc

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/ztoc/internal/inflate"
)

// Build indexes an existing layer blob, gzip or uncompressed tar (told
// apart by the gzip magic), in a single read of r: checkpoints, TOC and span
// digests come from the same pass. For the same blob and span size the
// result is byte-identical to upstream SOCI's builder (with its build tool
// identifier and times in UTC).
//
// Gzip checkpoints are chosen as upstream chooses them: one after the gzip
// header, then at the first deflate block end (not of a final block) more
// than the span size after the previous checkpoint.
func Build(r io.Reader, opts ...Option) (*Ztoc, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read layer: %w", err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return buildGzip(br, o)
	}
	return buildTar(br, o)
}

// buildGzip indexes a gzip blob.
func buildGzip(r io.Reader, o options) (*Ztoc, error) {
	src := &hashingReader{r: r, h: newSpanHasher()}
	zr := inflate.NewGzipReader(src)

	cp := newCheckpointWriter(o.spanSize)
	var last int64
	var cbErr error
	zr.OnBoundary(func(b inflate.Boundary) {
		if b.Final {
			return
		}
		if len(cp.points) > 0 && !(b.Out == 0 || b.Out-last > o.spanSize) {
			src.h.advance(b.In - 1)
			return
		}
		if err := src.h.cut(b.In, b.Bits, len(cp.points) == 0); err != nil && cbErr == nil {
			cbErr = err
		}
		zr.Window(cp.add(b.In, b.Out, b.Bits))
		last = b.Out
	})

	t := newTOCReader(zr)
	usize, err := t.readAll()
	if err != nil {
		return nil, fmt.Errorf("build ztoc: %w", err)
	}
	// Read to the end of the gzip stream: trailers, further members and
	// padding after the tar archive are part of the blob.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, fmt.Errorf("build ztoc: %w", err)
	}
	if cbErr != nil {
		return nil, fmt.Errorf("build ztoc: %w", cbErr)
	}
	if len(cp.points) == 0 {
		return nil, &CorruptError{What: "gzip", Offset: 0, Msg: "no gzip member"}
	}
	digests, err := src.h.finish(src.n)
	if err != nil {
		return nil, fmt.Errorf("build ztoc: %w", err)
	}
	return &Ztoc{
		Version:                 Version09,
		BuildToolIdentifier:     o.buildTool,
		CompressedArchiveSize:   src.n,
		UncompressedArchiveSize: usize,
		Files:                   t.files,
		Compression:             Gzip,
		MaxSpanID:               int32(len(cp.points) - 1),
		SpanDigests:             digests,
		Checkpoints:             cp.bytes(),
	}, nil
}

// buildTar indexes an uncompressed tar blob: fixed spans of the span size.
func buildTar(r io.Reader, o options) (*Ztoc, error) {
	src := &hashingReader{r: r, h: newSpanHasher()}
	src.h.started = true
	src.fixed = o.spanSize
	t := newTOCReader(src)
	usize, err := t.readAll()
	if err != nil {
		return nil, fmt.Errorf("build ztoc: %w", err)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		return nil, fmt.Errorf("build ztoc: read layer: %w", err)
	}
	tc := &TarCheckpoints{SpanSize: o.spanSize, Size: src.n}
	if tc.MaxSpanID() < 0 {
		return nil, &CorruptError{What: "tar", Offset: 0, Msg: "empty layer"}
	}
	digests, err := src.h.finish(src.n)
	if err != nil {
		return nil, fmt.Errorf("build ztoc: %w", err)
	}
	blob, err := tc.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &Ztoc{
		Version:                 Version09,
		BuildToolIdentifier:     o.buildTool,
		CompressedArchiveSize:   src.n,
		UncompressedArchiveSize: usize,
		Files:                   t.files,
		Compression:             Uncompressed,
		MaxSpanID:               tc.MaxSpanID(),
		SpanDigests:             digests,
		Checkpoints:             blob,
	}, nil
}

// hashingReader passes the layer's bytes to a spanHasher as they are read.
// With fixed set, spans are cut every fixed bytes (uncompressed tar).
type hashingReader struct {
	r     io.Reader
	n     int64
	h     *spanHasher
	fixed int64
}

func (s *hashingReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		b := p[:n]
		// Cut before the first byte past the current span's end.
		for s.fixed > 0 && s.n+int64(len(b)) > s.h.spanEnd(s.fixed) && s.h.spanEnd(s.fixed) >= s.n {
			k := s.h.spanEnd(s.fixed) - s.n
			s.h.write(b[:k])
			s.n += k
			b = b[k:]
			s.h.advance(s.n)
			_ = s.h.cut(s.n, 0, false) // cannot fail: bits == 0 and s.n is buffered
		}
		s.h.write(b)
		s.n += int64(len(b))
	}
	return n, err
}

// spanHasher computes the digest of each span's compressed bytes while the
// stream is read once. Bytes are buffered from the point where it is not yet
// known which span they belong to: a span ends at a checkpoint chosen after
// the inflater has read past it, and with Bits != 0 the byte before a
// checkpoint belongs to both spans.
type spanHasher struct {
	buf     []byte // bytes from pos not yet hashed
	pos     int64
	h       hash.Hash
	started bool // the first span has begun; bytes before it (the gzip header) are not hashed
	digests []digest.Digest
}

func newSpanHasher() *spanHasher {
	return &spanHasher{h: sha256.New()}
}

func (s *spanHasher) spanEnd(fixed int64) int64 {
	return int64(len(s.digests)+1) * fixed
}

func (s *spanHasher) write(p []byte) { s.buf = append(s.buf, p...) }

// advance hashes (or, before the first span, drops) buffered bytes before
// offset to.
func (s *spanHasher) advance(to int64) {
	k := to - s.pos
	if k <= 0 {
		return
	}
	if k > int64(len(s.buf)) {
		k = int64(len(s.buf))
	}
	if s.started {
		s.h.Write(s.buf[:k])
	}
	s.pos += k
	n := copy(s.buf, s.buf[k:])
	s.buf = s.buf[:n]
}

// cut ends the current span at a checkpoint at (in, bits) and begins the
// next; first marks the first checkpoint, which only begins a span.
func (s *spanHasher) cut(in int64, bits uint8, first bool) error {
	start := in
	if bits != 0 {
		start--
	}
	if start < s.pos {
		return fmt.Errorf("checkpoint at %d is behind hashed data at %d", in, s.pos)
	}
	s.advance(start)
	if !first {
		if bits != 0 && len(s.buf) > 0 {
			s.h.Write(s.buf[:1])
		}
		if bits != 0 && len(s.buf) == 0 {
			return fmt.Errorf("checkpoint byte %d not buffered", start)
		}
		s.digests = append(s.digests, digest.NewDigest(digest.SHA256, s.h))
		s.h = sha256.New()
	}
	s.started = true
	return nil
}

// finish hashes what is left up to the end of the stream and returns the
// digests of all spans.
func (s *spanHasher) finish(end int64) ([]digest.Digest, error) {
	s.advance(end)
	if s.pos != end {
		return nil, fmt.Errorf("hashed %d bytes of %d", s.pos, end)
	}
	s.digests = append(s.digests, digest.NewDigest(digest.SHA256, s.h))
	return s.digests, nil
}

// checkpointWriter assembles a version 2 gzip checkpoint blob as
// checkpoints are chosen, the windows written in place.
type checkpointWriter struct {
	blob   []byte
	points []Checkpoint
}

func newCheckpointWriter(spanSize int64) *checkpointWriter {
	c := &checkpointWriter{blob: make([]byte, checkpointsHeaderSize, 1<<20)}
	binary.LittleEndian.PutUint64(c.blob[4:], uint64(spanSize))
	return c
}

// checkpointsHeaderSize and checkpointRecordSize give the layout of the
// checkpoint blob: int32 count, int64 span size, then per checkpoint int64
// in, int64 out, uint8 bits, window.
const (
	checkpointsHeaderSize = 4 + 8
	checkpointRecordSize  = 8 + 8 + 1 + WindowSize
)

// add appends a checkpoint and returns the slice its window must be
// written to.
func (c *checkpointWriter) add(in, out int64, bits uint8) []byte {
	var rec [17]byte
	binary.LittleEndian.PutUint64(rec[0:], uint64(in))
	binary.LittleEndian.PutUint64(rec[8:], uint64(out))
	rec[16] = bits
	c.blob = append(c.blob, rec[:]...)
	c.blob = append(c.blob, make([]byte, WindowSize)...)
	c.points = append(c.points, Checkpoint{In: in, Out: out, Bits: bits})
	return c.blob[len(c.blob)-WindowSize:]
}

func (c *checkpointWriter) bytes() []byte {
	binary.LittleEndian.PutUint32(c.blob[0:], uint32(len(c.points)))
	return c.blob
}
