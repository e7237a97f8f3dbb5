package ztoc

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
)

// Compress gzips the tar stream read from src into dst and returns the
// zTOC of the blob it wrote, from that single pass: no layer is
// decompressed again to index it.
//
// Spans end where Compress chooses: before a tar entry's header once the
// span has reached the span size, and inside a file's data every span-size
// bytes, so small files are never split and large files are cut into
// span-size chunks. At each span end the deflate stream is flushed (a sync
// flush: the block ends on a byte boundary), so every checkpoint has
// Bits == 0 and its window is the last 32 KiB of input. The result is a
// standard gzip stream, and the zTOC is in upstream SOCI's format.
func Compress(dst io.Writer, src io.Reader, opts ...Option) (*Ztoc, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	out := &spanWriter{w: dst, h: sha256.New()}
	gz, err := gzip.NewWriterLevel(out, o.level)
	if err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	c := &compressor{gz: gz, out: out, span: o.spanSize, cp: newCheckpointWriter(o.spanSize)}
	// The gzip header is written with the first data; a header without
	// name, comment or extra field is 10 bytes, where the first span starts.
	c.cp.add(gzipHeaderSize, 0, 0)
	out.skip = gzipHeaderSize

	t := newTOCReader(&c.in)
	c.in.r = src
	for {
		e, err := t.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("compress layer: %w", err)
		}
		if err := c.entry(t, e); err != nil {
			return nil, fmt.Errorf("compress layer: %w", err)
		}
	}
	usize := t.pos.pos
	// Whatever follows the end of the archive (padding) is part of the blob.
	if _, err := io.Copy(io.Discard, &c.in); err != nil {
		return nil, fmt.Errorf("compress layer: read tar: %w", err)
	}
	if err := c.emit(c.in.pos); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	if out.err != nil {
		return nil, fmt.Errorf("compress layer: write: %w", out.err)
	}
	if out.n < gzipHeaderSize {
		return nil, fmt.Errorf("compress layer: gzip header is %d bytes", out.n)
	}
	out.digests = append(out.digests, digest.NewDigest(digest.SHA256, out.h))
	return &Ztoc{
		Version:                 Version09,
		BuildToolIdentifier:     o.buildTool,
		CompressedArchiveSize:   out.n,
		UncompressedArchiveSize: usize,
		Files:                   t.files,
		Compression:             Gzip,
		MaxSpanID:               int32(len(c.cp.points) - 1),
		SpanDigests:             out.digests,
		Checkpoints:             c.cp.bytes(),
	}, nil
}

// gzipHeaderSize is the size of a gzip member header with no optional
// fields, as klauspost's and Go's writers emit it.
const gzipHeaderSize = 10

// compressor feeds the tar stream to the gzip writer, holding back the
// bytes archive/tar has read but that may still lie after a span end.
type compressor struct {
	gz      *gzip.Writer
	out     *spanWriter
	in      pendingReader
	span    int64
	lastCut int64 // uncompressed offset where the current span began
	cuts    []int64
	cp      *checkpointWriter
	window  [WindowSize]byte // ring of the last WindowSize input bytes
	emitted int64            // input bytes handed to the gzip writer
	buf     [256 << 10]byte  // entry data is read through this
}

// entry plans the span ends for one tar entry (before its headers, inside
// its data) and streams its data through.
func (c *compressor) entry(t *tocReader, e *FileEntry) error {
	hdrStart := alignTar(c.prevEnd(t))
	large := e.Type == TypeReg && e.UncompressedSize >= c.span
	if hdrStart > c.lastCut && (hdrStart-c.lastCut >= c.span || large) {
		c.cut(hdrStart)
	}
	if large {
		// Large files start a span and are cut into span-size chunks.
		dataEnd := e.UncompressedOffset + e.UncompressedSize
		for off := e.UncompressedOffset + c.span; off < dataEnd; off += c.span {
			c.cut(off)
		}
	}
	if err := c.emit(c.in.pos); err != nil {
		return err
	}
	for {
		_, err := t.tr.Read(c.buf[:])
		if err := c.emit(c.in.pos); err != nil {
			return err
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &CorruptError{What: "tar", Offset: c.in.pos, Msg: err.Error()}
		}
	}
}

// cut plans a span end at uncompressed offset off.
func (c *compressor) cut(off int64) {
	c.cuts = append(c.cuts, off)
	c.lastCut = off
}

// prevEnd is the end of the previous entry's data (0 for the first entry).
func (c *compressor) prevEnd(t *tocReader) int64 {
	if len(t.files) < 2 {
		return 0
	}
	p := t.files[len(t.files)-2]
	return p.UncompressedOffset + p.UncompressedSize
}

// emit compresses the pending input up to offset to, ending a span at each
// planned cut on the way.
func (c *compressor) emit(to int64) error {
	for c.emitted < to {
		end := to
		if len(c.cuts) > 0 && c.cuts[0] < end {
			end = c.cuts[0]
		}
		if end > c.emitted {
			if err := c.write(c.in.take(end - c.emitted)); err != nil {
				return err
			}
		}
		if len(c.cuts) > 0 && c.cuts[0] == c.emitted {
			c.cuts = c.cuts[1:]
			if err := c.checkpoint(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *compressor) write(p []byte) error {
	if _, err := c.gz.Write(p); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	if len(p) >= WindowSize {
		// Keep the ring layout: input offset x sits at index x%WindowSize.
		c.emitted += int64(len(p))
		last := p[len(p)-WindowSize:]
		s := int(c.emitted % WindowSize)
		copy(c.window[s:], last)
		copy(c.window[:s], last[WindowSize-s:])
		return nil
	}
	for len(p) > 0 {
		i := int(c.emitted % WindowSize)
		n := copy(c.window[i:], p)
		p = p[n:]
		c.emitted += int64(n)
	}
	return nil
}

// checkpoint flushes the deflate stream and records a checkpoint there.
func (c *compressor) checkpoint() error {
	if err := c.gz.Flush(); err != nil {
		return fmt.Errorf("compress: flush: %w", err)
	}
	if c.out.err != nil {
		return fmt.Errorf("compress: write: %w", c.out.err)
	}
	w := c.cp.add(c.out.n, c.emitted, 0)
	start := int(c.emitted % WindowSize)
	if c.emitted < WindowSize {
		// Zeros, then all input so far.
		copy(w[WindowSize-int(c.emitted):], c.window[:c.emitted])
	} else {
		n := copy(w, c.window[start:])
		copy(w[n:], c.window[:start])
	}
	c.out.cut()
	return nil
}

// pendingReader reads the tar stream for archive/tar and keeps what was
// read until the compressor takes it.
type pendingReader struct {
	r       io.Reader
	pos     int64
	pending []byte // pending[head:] is read but not taken
	head    int
}

func (p *pendingReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if p.head > 0 && p.head == len(p.pending) {
		p.pending, p.head = p.pending[:0], 0
	}
	p.pending = append(p.pending, b[:n]...)
	p.pos += int64(n)
	return n, err
}

// take removes and returns the first n pending bytes. The slice is valid
// until the next Read.
func (p *pendingReader) take(n int64) []byte {
	b := p.pending[p.head : p.head+int(n)]
	p.head += int(n)
	return b
}

// spanWriter counts and hashes the compressed output per span.
type spanWriter struct {
	w       io.Writer
	n       int64
	skip    int64 // leading bytes (the gzip header) that belong to no span
	h       hash.Hash
	digests []digest.Digest
	err     error
}

func (s *spanWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	q := p[:n]
	if s.skip > 0 {
		k := min(int64(len(q)), s.skip)
		q = q[k:]
		s.skip -= k
	}
	s.h.Write(q)
	s.n += int64(n)
	if err != nil {
		s.err = err
	}
	return n, err
}

func (s *spanWriter) cut() {
	s.digests = append(s.digests, digest.NewDigest(digest.SHA256, s.h))
	s.h = sha256.New()
}
