package ztoc

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/opencontainers/go-digest"
)

// Compress gzips the tar stream read from src into dst and returns the
// zTOC of the blob it wrote, from that single pass: no layer is
// decompressed again to index it.
//
// Spans end where the SpanPlanner says (WithSpanPlanner); by default the
// SizePlanner for the span size: before a tar entry's header once the span
// has reached the span size, and inside a large file's data every span-size
// bytes, so small files are never split. Each span is compressed on its own (no back-reference
// crosses a span end) and ends with a sync flush, so every checkpoint has
// Bits == 0, and spans are compressed in parallel (WithJobs). The output
// is one standard gzip member whatever the parallelism, the same bytes for
// the same input and options; the zTOC is in upstream SOCI's format, each
// window holding the 32 KiB of input before its checkpoint.
func Compress(dst io.Writer, src io.Reader, opts ...Option) (*Ztoc, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	planner := o.planner
	if planner == nil {
		planner = SizePlanner{Size: o.spanSize}
	}
	c := &compressor{planner: planner, level: o.level, dst: dst, cp: newCheckpointWriter(o.spanSize),
		sem: make(chan struct{}, o.jobs), maxQueue: 2 * o.jobs}
	c.in.r = src
	z, err := c.run()
	if err != nil {
		// Let running workers finish before returning their buffers.
		for _, j := range c.queue {
			<-j.done
		}
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	z.BuildToolIdentifier = o.buildTool
	return z, nil
}

// gzipHeaderSize is the size of the gzip member header Compress writes (no
// optional fields).
const gzipHeaderSize = 10

// gzipHeader returns the header Go's compress/gzip writes for a level with
// no name, comment, extra field or modification time.
func gzipHeader(level int) []byte {
	h := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
	switch level {
	case flate.BestCompression:
		h[8] = 2
	case flate.BestSpeed:
		h[8] = 4
	}
	return h
}

// compressor cuts the tar stream into spans and compresses them in
// parallel, writing them out in order.
type compressor struct {
	planner  SpanPlanner
	lastCut  int64 // where the current span began
	level    int
	dst      io.Writer
	in       pendingReader // archive/tar reads through this
	cuts     []int64       // planned span ends not yet reached
	cp       *checkpointWriter
	window   [WindowSize]byte // ring: input offset x at index x%WindowSize
	emitted  int64            // input bytes put into spans
	crc      uint32
	cur      *spanJob // the span being filled
	queue    []*spanJob
	maxQueue int
	sem      chan struct{} // limits running compressions
	written  int64         // bytes written to dst
	digests  []digest.Digest
	buf      [256 << 10]byte // entry data is read through this
}

func (c *compressor) run() (*Ztoc, error) {
	if _, err := c.dst.Write(gzipHeader(c.level)); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	c.written = gzipHeaderSize
	c.cur = newSpanJob(0, c.window[:], 0)

	t := newTOCReader(&c.in)
	for {
		e, err := t.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := c.entry(t, e); err != nil {
			return nil, err
		}
	}
	usize := t.pos.pos
	// Whatever follows the end of the archive (padding) is part of the blob.
	if _, err := io.Copy(io.Discard, &c.in); err != nil {
		return nil, fmt.Errorf("read tar: %w", err)
	}
	if err := c.emit(c.in.pos); err != nil {
		return nil, err
	}
	c.cur.final = true
	if err := c.submit(); err != nil {
		return nil, err
	}
	for len(c.queue) > 0 {
		if err := c.writeOldest(); err != nil {
			return nil, err
		}
	}
	return &Ztoc{
		Version:                 Version09,
		CompressedArchiveSize:   c.written,
		UncompressedArchiveSize: usize,
		Files:                   t.files,
		Compression:             Gzip,
		MaxSpanID:               int32(len(c.cp.points) - 1),
		SpanDigests:             c.digests,
		Checkpoints:             c.cp.bytes(),
	}, nil
}

// entry plans the span ends for one tar entry (before its headers, inside
// its data) and streams its data through.
func (c *compressor) entry(t *tocReader, e *FileEntry) error {
	hdrStart := alignTar(c.prevEnd(t))
	dataEnd := e.UncompressedOffset + e.UncompressedSize
	for _, off := range c.planner.Plan(c.lastCut, hdrStart, e) {
		if off <= c.lastCut || off != hdrStart && (off < e.UncompressedOffset || off >= dataEnd) {
			return fmt.Errorf("span planner: cut at %d for entry %q is not after %d and within [%d, %d)", off, e.Name, c.lastCut, hdrStart, dataEnd)
		}
		c.cut(off)
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

// A SpanPlanner chooses where Compress ends spans. Spans end only where a
// planner says: before an entry's first header block, or inside its data.
type SpanPlanner interface {
	// Plan is called once per tar entry, in archive order, before any of
	// the entry's bytes are compressed. spanStart is where the current span
	// began, hdrStart the offset of the entry's first header block (PAX and
	// long-name headers included), e the entry (UncompressedOffset is where
	// its data begins). It returns the offsets at which to end spans, in
	// increasing order: hdrStart itself, or offsets inside the entry's data
	// [UncompressedOffset, UncompressedOffset+UncompressedSize).
	Plan(spanStart, hdrStart int64, e *FileEntry) []int64
}

// SizePlanner is the default SpanPlanner: it ends a span before an entry's
// header once the span has reached Size bytes, starts a span at every
// regular file of at least Size bytes and cuts its data into Size-byte
// chunks. Small files are never split.
type SizePlanner struct{ Size int64 }

// Plan implements SpanPlanner.
func (p SizePlanner) Plan(spanStart, hdrStart int64, e *FileEntry) []int64 {
	var cuts []int64
	large := e.Type == TypeReg && e.UncompressedSize >= p.Size
	if hdrStart > spanStart && (hdrStart-spanStart >= p.Size || large) {
		cuts = append(cuts, hdrStart)
	}
	if large {
		dataEnd := e.UncompressedOffset + e.UncompressedSize
		for off := e.UncompressedOffset + p.Size; off < dataEnd; off += p.Size {
			cuts = append(cuts, off)
		}
	}
	return cuts
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

// emit moves the pending input up to offset to into spans, ending a span
// at each planned cut on the way.
func (c *compressor) emit(to int64) error {
	for c.emitted < to {
		end := to
		if len(c.cuts) > 0 && c.cuts[0] < end {
			end = c.cuts[0]
		}
		if end > c.emitted {
			c.add(c.in.take(end - c.emitted))
		}
		if len(c.cuts) > 0 && c.cuts[0] == c.emitted {
			c.cuts = c.cuts[1:]
			if err := c.submit(); err != nil {
				return err
			}
			c.cur = newSpanJob(c.emitted, c.window[:], c.emitted)
		}
	}
	return nil
}

// add appends input to the current span.
func (c *compressor) add(p []byte) {
	c.cur.in = append(c.cur.in, p...)
	c.crc = crc32.Update(c.crc, crc32.IEEETable, p)
	c.emitted += int64(len(p))
	if len(p) >= WindowSize {
		last := p[len(p)-WindowSize:]
		s := int(c.emitted % WindowSize)
		copy(c.window[s:], last)
		copy(c.window[:s], last[WindowSize-s:])
		return
	}
	start := c.emitted - int64(len(p))
	for len(p) > 0 {
		n := copy(c.window[int(start%WindowSize):], p)
		p = p[n:]
		start += int64(n)
	}
}

// spanJob is one span: its input, and once done, its compressed bytes.
type spanJob struct {
	out    int64  // uncompressed offset where the span starts
	window []byte // the WindowSize input bytes before out, zero-padded
	in     []byte
	final  bool
	done   chan struct{}
	z      []byte
	sum    [sha256.Size]byte
	err    error
}

var spanBufs sync.Pool // *[]byte, input buffers of finished spans

func newSpanJob(out int64, ring []byte, emitted int64) *spanJob {
	j := &spanJob{out: out, window: make([]byte, WindowSize), done: make(chan struct{})}
	if b, ok := spanBufs.Get().(*[]byte); ok {
		j.in = (*b)[:0]
	}
	// Linearise the ring: oldest byte first, zeros before the start.
	if emitted < WindowSize {
		copy(j.window[WindowSize-int(emitted):], ring[:emitted])
	} else {
		s := int(emitted % WindowSize)
		n := copy(j.window, ring[s:])
		copy(j.window[n:], ring[:s])
	}
	return j
}

// submit starts compressing the current span, first writing out the oldest
// spans while too many are in flight.
func (c *compressor) submit() error {
	for len(c.queue) >= c.maxQueue {
		if err := c.writeOldest(); err != nil {
			return err
		}
	}
	j := c.cur
	c.queue = append(c.queue, j)
	c.sem <- struct{}{}
	go func() {
		defer func() { <-c.sem; close(j.done) }()
		j.compress(c.level)
	}()
	return nil
}

// compress deflates the span with a fresh compressor (no dictionary) and
// ends it with a sync flush, or as the final block of the stream.
func (j *spanJob) compress(level int) {
	out := &sliceWriter{b: make([]byte, 0, len(j.in)/2+1024)}
	fw, err := getFlateWriter(out, level)
	if err == nil {
		defer flateWriters.Put(fw)
		_, err = fw.Write(j.in)
	}
	if err == nil {
		if j.final {
			err = fw.Close()
		} else {
			err = fw.Flush()
		}
	}
	j.z, j.err = out.b, err
	if !j.final {
		j.sum = sha256.Sum256(j.z)
	}
}

// flateWriters keeps compressors for reuse: a level 6 compressor holds
// about a megabyte of tables.
var flateWriters sync.Pool // *pooledFlate

type pooledFlate struct {
	*flate.Writer
	level int
}

func getFlateWriter(w io.Writer, level int) (*pooledFlate, error) {
	if fw, ok := flateWriters.Get().(*pooledFlate); ok && fw.level == level {
		fw.Reset(w)
		return fw, nil
	}
	fw, err := flate.NewWriter(w, level)
	if err != nil {
		return nil, err
	}
	return &pooledFlate{Writer: fw, level: level}, nil
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// writeOldest waits for the oldest span in flight, writes it and records
// its checkpoint and digest.
func (c *compressor) writeOldest() error {
	j := c.queue[0]
	<-j.done
	c.queue = c.queue[1:]
	if j.err != nil {
		return fmt.Errorf("deflate span at %d: %w", j.out, j.err)
	}
	copy(c.cp.add(c.written, j.out, 0), j.window)
	if j.final {
		var trailer [8]byte
		binary.LittleEndian.PutUint32(trailer[:4], c.crc)
		binary.LittleEndian.PutUint32(trailer[4:], uint32(c.emitted))
		j.z = append(j.z, trailer[:]...)
		j.sum = sha256.Sum256(j.z) // the last span runs to the end of the blob
	}
	if _, err := c.dst.Write(j.z); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	c.written += int64(len(j.z))
	c.digests = append(c.digests, digest.NewDigestFromBytes(digest.SHA256, j.sum[:]))
	in := j.in
	spanBufs.Put(&in)
	j.in, j.z = nil, nil
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
