package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/fs"
	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/ztoc"
)

// Source is what a lazy layer is made from.
type Source struct {
	// Digest is the layer blob's digest: the cache key.
	Digest digest.Digest
	// Ztoc is the layer's zTOC (already fetched and decoded).
	Ztoc *ztoc.Ztoc
	// Blob reads the layer blob's compressed bytes (remote.HTTPBlob for a
	// registry).
	Blob remote.Blob
	// Index, when set, is the span index to use instead of one made from
	// Ztoc (which may then be nil): a lazily read zTOC's
	// (ztoc.Lazy.NewIndex), which fetches checkpoint windows when a span
	// needs one and keeps them where its caller said.
	Index *ztoc.Index
	// Closer, when set, is closed when the layer is unmounted or Mount
	// fails: what Index needs (its window store, the fetch of the rest
	// of its zTOC).
	Closer io.Closer
}

// Option configures Mount.
type Option func(*options) error

type options struct {
	prefetch     []ztoc.SpanID
	prefetchWait time.Duration
	background   *remote.BackgroundOptions
	fetch        []remote.Option
	fs           []fs.Option
	passthrough  bool
	ptMinSize    int64
	resume       *resumeFrom // WithResume
}

// WithPrefetch names spans whose fetches start before Mount returns, and
// how long Mount waits for them. With wait 0, Mount hands the mount over
// at once: reads of those spans wait for the fetches in flight, and the
// container's start overlaps them (on the benchmark's toolchain image
// this saved 0.6-0.8 s of a 3.1-3.4 s start, with the same bytes). A wait
// only helps a caller that must not see a read wait. Default: no
// prefetch.
func WithPrefetch(spans []ztoc.SpanID, wait time.Duration) Option {
	return func(o *options) error {
		if wait < 0 {
			return fmt.Errorf("prefetch wait %v is negative", wait)
		}
		o.prefetch, o.prefetchWait = spans, wait
		return nil
	}
}

// WithBackground fetches the rest of the layer in the background after
// the mount, as bo says. Default: no background fetch.
func WithBackground(bo remote.BackgroundOptions) Option {
	return func(o *options) error {
		if bo.Rate < 0 || bo.Delay < 0 {
			return fmt.Errorf("bad background options %+v", bo)
		}
		o.background = &bo
		return nil
	}
}

// WithFetchOptions passes options to remote.NewFetcher (metrics, jobs,
// coalescing). Default: none.
func WithFetchOptions(opts ...remote.Option) Option {
	return func(o *options) error {
		o.fetch = append(o.fetch, opts...)
		return nil
	}
}

// WithPassthrough serves regular files of at least minSize bytes (0:
// fs.DefaultPassthroughMinSize) through FUSE passthrough once all their
// spans are cached: the first open after that copies the file's bytes from
// the span files into a content file of the cache (DIR/<alg>/<hex>/files/
// <tar offset>), and the kernel reads that file itself. Where the kernel
// refuses passthrough, files read through FUSE. Default: off.
func WithPassthrough(minSize int64) Option {
	return func(o *options) error {
		if minSize < 0 {
			return fmt.Errorf("passthrough minimum size %d is negative", minSize)
		}
		o.passthrough, o.ptMinSize = true, minSize
		return nil
	}
}

// WithFSOptions passes options to fs.New. Default: none.
func WithFSOptions(opts ...fs.Option) Option {
	return func(o *options) error {
		o.fs = append(o.fs, opts...)
		return nil
	}
}

// Mounted is a mounted lazy layer.
type Mounted struct {
	dir     string
	fs      *fs.FS
	fetcher *remote.Fetcher
	mnt     *fs.Mount
	cl      *cache.Layer
	windows *os.File  // checkpoint windows (offloadWindows), or nil
	closer  io.Closer // Source.Closer, or nil

	bgCancel context.CancelFunc
	bgDone   chan struct{}
	bgErr    error

	once      sync.Once
	unmounted error
}

// Mount mounts the layer src at mountpoint (an existing empty directory),
// reading spans through c. It returns once the mount serves, after the
// prefetch (WithPrefetch) is done or its wait is over. Unmount undoes it.
// ctx gives values (logger) and bounds the set-up; the mount outlives it.
func Mount(ctx context.Context, mountpoint string, src Source, c *cache.Cache, opts ...Option) (_ *Mounted, retErr error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if src.Closer != nil {
		defer func() {
			if retErr != nil {
				src.Closer.Close()
			}
		}()
	}
	if (src.Ztoc == nil && src.Index == nil) || src.Blob == nil {
		return nil, errors.New("mount layer: source has no ztoc or blob")
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("layer", src.Digest.String()))
	ix := src.Index
	var windows *os.File
	if ix == nil {
		var err error
		if ix, err = ztoc.NewIndex(src.Ztoc); err != nil {
			return nil, fmt.Errorf("mount layer %s: %w", src.Digest, err)
		}
		ix, windows = offloadWindows(ctx, ix, c.Dir())
	}
	defer func() {
		if retErr != nil && windows != nil {
			windows.Close()
		}
	}()
	cl, err := c.Acquire(src.Digest)
	if err != nil {
		return nil, fmt.Errorf("mount layer %s: %w", src.Digest, err)
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, cl.Release())
		}
	}()
	f, err := remote.NewFetcher(ctx, ix, src.Blob, cl, o.fetch...)
	if err != nil {
		return nil, fmt.Errorf("mount layer %s: %w", src.Digest, err)
	}
	defer func() {
		if retErr != nil {
			f.Close()
		}
	}()
	fsOpts := o.fs
	if o.passthrough {
		fsOpts = append(fsOpts[:len(fsOpts):len(fsOpts)], fs.WithPassthrough(newContentSource(ix, cl), o.ptMinSize))
	}
	lfs, err := fs.New(ix.Ztoc(), f, fsOpts...)
	if err != nil {
		return nil, fmt.Errorf("mount layer %s: %w", src.Digest, err)
	}
	if len(o.prefetch) > 0 {
		// The fetches go on after the wait ends (Fetcher.Prefetch).
		pctx, cancel := context.WithTimeout(ctx, o.prefetchWait)
		err := f.Prefetch(pctx, o.prefetch)
		cancel()
		if err != nil && ctx.Err() == nil && o.prefetchWait > 0 {
			log.G(ctx).WithError(err).Warn("prefetch incomplete; spans will be fetched on demand")
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mount layer %s: %w", src.Digest, err)
	}
	mnt, err := mountOrResume(lfs, mountpoint, o.resume) // resume.go
	if err != nil {
		return nil, err
	}
	m := &Mounted{dir: mountpoint, fs: lfs, fetcher: f, mnt: mnt, cl: cl, windows: windows, closer: src.Closer, bgDone: make(chan struct{})}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.bgCancel = cancel
	if o.background != nil {
		bo := *o.background
		go func() {
			defer close(m.bgDone)
			m.bgErr = f.Background(bctx, bo)
			if m.bgErr != nil && bctx.Err() == nil {
				log.G(bctx).WithError(m.bgErr).Warn("background fetch incomplete")
			}
		}()
	} else {
		close(m.bgDone)
	}
	return m, nil
}

// offloadWindows moves the checkpoint windows of ix (32 KiB per span, most
// of a zTOC) out of memory into an unlinked file in dir, the span cache's
// directory, and returns the index reading them from there and the file
// (close it when the index is no longer used). The kernel's page cache
// keeps the windows of recently fetched spans; the daemon's heap keeps
// none. If the file cannot be made or written (a full disk, say), ix is
// returned as is, with its windows in memory, and the file is nil.
func offloadWindows(ctx context.Context, ix *ztoc.Index, dir string) (*ztoc.Index, *os.File) {
	if ix.Ztoc().Compression != ztoc.Gzip || windowsInMemory {
		return ix, nil
	}
	f, err := os.CreateTemp(dir, ".windows-*")
	if err == nil {
		err = os.Remove(f.Name())
	}
	var off *ztoc.Index
	if err == nil {
		off, err = ix.OffloadWindows(f)
	}
	if err != nil {
		if f != nil {
			os.Remove(f.Name())
			f.Close()
		}
		log.G(ctx).WithError(err).Warn("checkpoint windows kept in memory")
		return ix, nil
	}
	return off, f
}

// windowsInMemory turns offloadWindows off (tests measure the difference).
var windowsInMemory = false

// Dir returns the mountpoint.
func (m *Mounted) Dir() string { return m.dir }

// Fetcher returns the layer's fetcher (Prefetch, Progress).
func (m *Mounted) Fetcher() *remote.Fetcher { return m.fetcher }

// Err returns the last error the filesystem returned to a reader, or nil.
func (m *Mounted) Err() error { return m.fs.Err() }

// fuseSuperMagic is statfs' f_type of a FUSE mount.
const fuseSuperMagic = 0x65735546

// Check reports whether the mount still serves: a statfs of the
// mountpoint, bounded by ctx, must answer and show a FUSE filesystem.
func (m *Mounted) Check(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		var st syscall.Statfs_t
		err := syscall.Statfs(m.dir, &st)
		if err == nil && st.Type != fuseSuperMagic {
			err = fmt.Errorf("%s is not a FUSE mount (type %#x)", m.dir, st.Type)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("check layer mount: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("check layer mount %s: %w", m.dir, ctx.Err())
	}
}

// Unmount stops the background fetch, unmounts the layer (detaching it if
// it is busy), stops the fetcher and releases the cache layer. Calling it
// again returns the first result.
func (m *Mounted) Unmount() error {
	m.once.Do(func() {
		m.bgCancel()
		uerr := m.mnt.Unmount()
		<-m.bgDone
		m.fetcher.Close()
		var werr, cerr error
		if m.windows != nil {
			werr = m.windows.Close()
		}
		if m.closer != nil {
			cerr = m.closer.Close()
		}
		m.unmounted = errors.Join(uerr, m.cl.Release(), werr, cerr)
		returnMemory()
	})
	return m.unmounted
}

// returnMemoryDelay is how long after an unmount the daemon's free heap is
// given back to the kernel: unmounts come in bursts (an image's layers),
// one return covers the burst.
const returnMemoryDelay = time.Second

var returnPending atomic.Bool

// returnMemory gives the heap freed by unmounts back to the kernel soon
// (debug.FreeOSMemory: a GC, then the free pages returned), once per
// burst. Without it an idle daemon kept the resident size of its busiest
// moment: the Go runtime returns freed pages only gradually, and an idle
// process runs no GC to free them (the 430 MB of docs/reliability.md).
func returnMemory() {
	if returnPending.Swap(true) {
		return
	}
	time.AfterFunc(returnMemoryDelay, func() {
		returnPending.Store(false)
		debug.FreeOSMemory()
	})
}

// Stats returns the filesystem's counters (reads, passthrough opens).
func (m *Mounted) Stats() fs.Stats { return m.fs.Stats() }

// PassthroughErr returns why the kernel refused passthrough for this
// mount, or nil.
func (m *Mounted) PassthroughErr() error { return m.fs.PassthroughErr() }

// Progress returns the cached and total spans of the layer.
func (m *Mounted) Progress() (cached, total int) { return m.fetcher.Progress() }
