package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Defaults of DownloadConfig: four range requests of 4 MiB in flight per
// blob, 16 MiB of compressed bytes at most. The reader waits for whole
// chunks, in order: the smaller they are, the sooner the unpack starts
// and the less of it is left after the last byte; the larger, the fewer
// round trips.
const (
	DefaultDownloadJobs  = 4
	DefaultDownloadChunk = 4 << 20
)

// DownloadConfig says how a Download fetches its blob.
type DownloadConfig struct {
	// Jobs is the number of range requests in flight (default
	// DefaultDownloadJobs).
	Jobs int
	// Chunk is the size of each range request in bytes (default
	// DefaultDownloadChunk).
	Chunk int64
	// Budget, if not nil, bounds the bytes in flight together with every
	// other fetch sharing it; a chunk holds its share from its request
	// until it is written to the file, never while waiting for a reader,
	// so a download nobody reads yet cannot starve one being read.
	Budget *Budget
	// Fetched, if not nil, is called with the size of each chunk fetched.
	Fetched func(n int64)
}

// File is where a Download keeps the blob: written at chunk offsets as
// chunks arrive, read back in order (an *os.File).
type File interface {
	io.ReaderAt
	io.WriterAt
}

// Download fetches a whole blob with several range requests in flight,
// chunk after chunk in blob order (the first few smaller), into a File, and reads it back in order
// as soon as each prefix has arrived: the reader of a layer unpacks while
// the rest of the layer is still being fetched. It does not check what it
// fetched against the blob's digest: its reader does that (the snapshotter
// hashes every byte before it commits a layer).
type Download struct {
	blob   Blob
	f      File
	cfg    DownloadConfig
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ends []int64 // chunk i is bytes [ends[i-1], ends[i])

	mu     sync.Mutex
	done   []bool // chunk i written
	next   int    // the first chunk not written
	contig int64  // bytes [0, contig) written
	err    error  // the first failure (or cancellation)
	wake   chan struct{}
}

// StartDownload starts fetching blob into f; ctx bounds the whole
// download. Cancel stops it.
func StartDownload(ctx context.Context, blob Blob, f File, cfg DownloadConfig) (*Download, error) {
	if cfg.Jobs <= 0 {
		cfg.Jobs = DefaultDownloadJobs
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = DefaultDownloadChunk
	}
	size := blob.Size()
	if size < 0 {
		return nil, fmt.Errorf("download: blob size %d is negative", size)
	}
	ends := chunkEnds(size, cfg.Chunk)
	n := int64(len(ends))
	ctx, cancel := context.WithCancel(ctx)
	d := &Download{blob: blob, f: f, cfg: cfg, cancel: cancel, ends: ends, done: make([]bool, n), wake: make(chan struct{})}
	next := make(chan int64)
	d.wg.Add(1)
	go func() { // hands out chunks in blob order
		defer d.wg.Done()
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range min(int64(cfg.Jobs), n) {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			buf := make([]byte, min(cfg.Chunk, size))
			for i := range next {
				if err := d.fetch(ctx, i, buf); err != nil {
					d.fail(err)
					cancel()
					return
				}
			}
		}()
	}
	return d, nil
}

// rampChunks is how many chunks at the start of a blob are smaller than
// Chunk: halving towards the start (Chunk/8, /4, /2), so that the reader
// has its first bytes after a small request rather than after Jobs full
// ones sharing the link, and the unpack starts at once.
const rampChunks = 3

// minChunk is the smallest chunk of the ramp.
const minChunk = 64 << 10

// chunkEnds returns the end offsets of the chunks of a blob of size bytes.
func chunkEnds(size, chunk int64) []int64 {
	var ends []int64
	for off, i := int64(0), 0; off < size; i++ {
		n := chunk
		if i < rampChunks {
			n = min(chunk, max(minChunk, chunk>>(rampChunks-i)))
		}
		off = min(off+n, size)
		ends = append(ends, off)
	}
	return ends
}

// start returns the offset of chunk i.
func (d *Download) start(i int64) int64 {
	if i == 0 {
		return 0
	}
	return d.ends[i-1]
}

// fetch reads chunk i into buf and writes it to the file.
func (d *Download) fetch(ctx context.Context, i int64, buf []byte) error {
	off := d.start(i)
	buf = buf[:d.ends[i]-off]
	release, err := d.cfg.Budget.acquire(ctx, int64(len(buf)))
	if err != nil {
		return err
	}
	defer release()
	if err := d.blob.ReadRanges(ctx, []Range{{Off: off, Buf: buf}}); err != nil {
		return fmt.Errorf("fetch bytes %d-%d: %w", off, off+int64(len(buf))-1, err)
	}
	if _, err := d.f.WriteAt(buf, off); err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if d.cfg.Fetched != nil {
		d.cfg.Fetched(int64(len(buf)))
	}
	d.mu.Lock()
	d.done[i] = true
	for j := d.next; j < len(d.done) && d.done[j]; j++ {
		d.contig, d.next = d.ends[j], j+1
	}
	d.broadcast()
	d.mu.Unlock()
	return nil
}

// fail records the download's first error.
func (d *Download) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
		d.broadcast()
	}
	d.mu.Unlock()
}

// broadcast wakes the reader; d.mu is held.
func (d *Download) broadcast() {
	close(d.wake)
	d.wake = make(chan struct{})
}

// errCanceled is what a reader gets after Cancel.
var errCanceled = errors.New("download canceled")

// Cancel stops the download and waits for its requests to end; reads
// then fail. Safe to call more than once.
func (d *Download) Cancel() {
	d.fail(errCanceled)
	d.cancel()
	d.wg.Wait()
}

// Wait waits until the blob is fetched whole (nil) or the download failed.
func (d *Download) Wait(ctx context.Context) error {
	_, err := d.available(ctx, d.blob.Size())
	return err
}

// available waits until byte off-1 is in the file (off > 0) and returns
// how many bytes from the start are; at the end of the blob it returns
// the blob's size.
func (d *Download) available(ctx context.Context, off int64) (int64, error) {
	for {
		d.mu.Lock()
		contig, err, wake := d.contig, d.err, d.wake
		d.mu.Unlock()
		switch {
		case contig >= off:
			return contig, nil
		case err != nil:
			return 0, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Reader returns a reader of the blob from its start, in order: each Read
// waits for the bytes it returns. ctx bounds its waits.
func (d *Download) Reader(ctx context.Context) io.Reader {
	return &downloadReader{ctx: ctx, d: d}
}

type downloadReader struct {
	ctx context.Context
	d   *Download
	off int64
}

func (r *downloadReader) Read(p []byte) (int, error) {
	size := r.d.blob.Size()
	if r.off >= size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	contig, err := r.d.available(r.ctx, r.off+1)
	if err != nil {
		return 0, err
	}
	n, err := r.d.f.ReadAt(p[:min(int64(len(p)), contig-r.off)], r.off)
	r.off += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("download: read back: %w", err)
	}
	return n, nil
}
