package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/containerd/log"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/ztoc"
)

// A zTOC is mostly checkpoint windows (32 KiB per span), which a span
// needs only to be decompressed, and none of Compress's spans needs. So a
// zTOC the daemon has no copy of is read lazily (ztoc.ReadLazy): its TOC,
// span digests and checkpoint headers before the mount, each window when a
// span needs it, and the rest, to check the whole blob's digest, some
// time after the mount (docs/ztoc.md, "Reading a zTOC lazily").
//
// What is read is kept in the local store as the zTOC's part file,
// Root/artifacts/<alg>/<hex>.part: a file of the zTOC's size holding
// every byte read at its offset (the windows not yet fetched are holes).
// It is written to a temporary name, synced and renamed once the mount's
// part is in, so a restart mounts from it without the registry; once the
// whole blob is in and checks against its digest, it is renamed to the
// zTOC's own name in the store (persist.go), and read whole from then on.

// ztocMultiRange is the most ranges of a zTOC asked in one request: the
// record headers of 128 spans make a Range header of about 3 KB, within
// any server's header limits.
const ztocMultiRange = 128

// defaultZtocCompleteDelay is how long after a mount, and after the
// layer's reads went quiet, the rest of a lazily read zTOC is fetched by
// default (LayersZtoc; the config's background_delay).
const defaultZtocCompleteDelay = 5 * time.Second

// lazyZtoc is a zTOC mounted lazily: its index, window store and the
// fetch of the rest (complete).
type lazyZtoc struct {
	lz     *ztoc.Lazy
	w      *ztoc.LazyWindows
	ix     *ztoc.Index
	f      *os.File // the part file: the zTOC's bytes read so far
	part   string   // its name in the store
	whole  string   // the zTOC's name in the store, once complete
	cancel context.CancelFunc
	life   context.Context // the fetch of the rest's: cancelled by Close
	done   chan struct{}
	ls     *Layers
	// started: start was called (MountLayer, once the layer's metrics
	// exist).
	started bool
}

func (s *localStore) partPath(path string) string { return path + ".part" }

// readZtocLazily reads l's zTOC lazily: from its part file when an earlier
// mount left one, else from the registry. It returns (nil, z, nil) for a
// zTOC read whole (small, or not in upstream's layout): checked against
// its digest and kept in the store.
func (ls *Layers) readZtocLazily(ctx context.Context, reg *image.Registry, l Layer) (*lazyZtoc, *ztoc.Ztoc, error) {
	d := l.Ztoc
	if d.Size > image.MaxZtocSize {
		return nil, nil, fmt.Errorf("zTOC of %d bytes exceeds %d", d.Size, image.MaxZtocSize)
	}
	whole := ls.store.blobPath(d.Digest)
	part := ls.store.partPath(whole)
	remoteSrc := newZtocSource(l, ls.rt)
	var src ztoc.RangeSource
	f, err := os.OpenFile(part, os.O_RDWR, 0)
	restored := err == nil
	if restored {
		if st, err := f.Stat(); err != nil || st.Size() != d.Size {
			f.Close()
			restored = false
		} else {
			src = fileSource{f}
		}
	}
	if !restored {
		if err := os.MkdirAll(filepath.Dir(part), 0o700); err != nil {
			return nil, nil, fmt.Errorf("store zTOC: %w", err)
		}
		if f, err = os.CreateTemp(filepath.Dir(part), ".tmp-"); err != nil {
			return nil, nil, fmt.Errorf("store zTOC: %w", err)
		}
		if err := f.Truncate(d.Size); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, nil, fmt.Errorf("store zTOC: %w", err)
		}
		src = teeSource{remoteSrc, f}
	}
	var lz *ztoc.Lazy
	if !restored && l.LazyZtoc != nil {
		lz = ls.decodeLazyZtoc(ctx, reg, l, f)
	}
	if lz == nil {
		lz, err = ztoc.ReadLazy(ctx, src, d.Digest, d.Size)
		if err == nil {
			ls.metrics.artifactRead(source(restored), int(lz.Fetched))
		}
	}
	if err == nil && !restored {
		err = f.Sync()
		if err == nil && lz.IsLazy() {
			err = os.Rename(f.Name(), part)
		} else if err == nil {
			err = os.Rename(f.Name(), whole) // whole and checked
		}
	}
	if err != nil {
		f.Close()
		if restored {
			os.Remove(part)
		} else {
			os.Remove(f.Name())
		}
		return nil, nil, err
	}
	if !lz.IsLazy() {
		f.Close()
		return nil, lz.Ztoc, nil
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := lz.Windows(life, remoteSrc, f)
	ix, err := lz.NewIndex(w)
	if err != nil {
		cancel()
		f.Close()
		return nil, nil, err
	}
	z := &lazyZtoc{lz: lz, w: w, ix: ix, f: f, part: part, whole: whole, cancel: cancel, done: make(chan struct{}), ls: ls,
		life: log.WithLogger(life, log.G(ctx).WithField("ztoc", d.Digest))}
	log.G(ctx).WithField("ztoc", d.Digest).WithField("read", lz.Fetched).WithField("size", d.Size).
		WithField("from", source(restored).String()).WithField("checked", lz.Checked).Debug("zTOC read lazily")
	return z, lz.Ztoc, nil
}

// start starts the fetch of the rest (complete); activity counts the
// layer's reads (cache hits, misses, bytes fetched).
func (z *lazyZtoc) start(activity func() int64) {
	z.started = true
	go z.complete(z.life, z.ls.o.ztocDelay, activity)
}

// source is where readZtocLazily read a zTOC from.
func source(restored bool) artifactSource {
	if restored {
		return sourceDisk
	}
	return sourceRegistry
}

// maxLazyZtocOverhead is how much larger than its zTOC a lazy zTOC may be
// (gzip's framing of incompressible bytes); a larger one is not fetched.
const maxLazyZtocOverhead = 64 << 10

// decodeLazyZtoc reads l's lazy zTOC (readArtifact: the local store,
// containerd's, or one registry request; checked against the index's
// digest) and decodes it (ztoc.DecodeLazyBuffer: no more than the zTOC's
// size inflated) into the part file f. It returns nil, logged, when the
// lazy zTOC cannot be read or is not the zTOC's: then the zTOC is read
// as without one.
func (ls *Layers) decodeLazyZtoc(ctx context.Context, reg *image.Registry, l Layer, f *os.File) *ztoc.Lazy {
	ld := *l.LazyZtoc
	lg := log.G(ctx).WithField("ztoc", l.Ztoc.Digest).WithField("lazy ztoc", ld.Digest)
	if ld.Size > l.Ztoc.Size+maxLazyZtocOverhead {
		lg.WithField("size", ld.Size).Warn("lazy zTOC larger than its zTOC: the zTOC is read instead")
		return nil
	}
	gz, err := ls.readArtifact(ctx, reg, ld, l.Index, ld.Size)
	var lz *ztoc.Lazy
	var b []byte
	if err == nil {
		lz, b, err = ztoc.DecodeLazyBuffer(gz, l.Ztoc.Digest, l.Ztoc.Size)
	}
	if err == nil {
		_, err = f.WriteAt(b, 0)
	}
	if err != nil {
		lg.WithError(err).Warn("lazy zTOC not used: the zTOC is read instead")
		return nil
	}
	return lz
}

// ztocQuietMax bounds, in delays, how long complete waits for the layer's
// reads to quiet down.
const ztocQuietMax = 12

// complete fetches the rest of the zTOC and checks it (with retries on
// fetch errors); then the part file becomes the zTOC's copy in the
// store. It starts delay after the mount once the layer's reads have
// been quiet for delay (the container's start-up is over), or at the
// latest 12 delays after the mount, so that the start-up's reads do not
// share the link with it (at a fixed 5 s, the harness's python starts
// fetched the whole zTOCs before their ready line). A digest mismatch
// fails the layer's later decompressions (ztoc.LazyWindows.Complete) and
// is logged as an error.
func (z *lazyZtoc) complete(ctx context.Context, delay time.Duration, activity func() int64) {
	defer close(z.done)
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	if !wait(delay) {
		return
	}
	for until := time.Now().Add((ztocQuietMax - 1) * delay); time.Now().Before(until); {
		a := activity()
		if !wait(delay) {
			return
		}
		if activity() == a {
			break
		}
	}
	backoff := delay
	for {
		err := z.w.Complete(ctx)
		switch {
		case err == nil:
			if err := os.Rename(z.part, z.whole); err != nil {
				log.G(ctx).WithError(err).Warn("keep the checked zTOC")
			}
			log.G(ctx).WithField("windows", z.w.Fetched()).Debug("zTOC complete and checked")
			return
		case ctx.Err() != nil:
			return
		case z.w.Err() != nil:
			os.Remove(z.part)
			log.G(ctx).WithError(err).Error("lazily read zTOC failed its digest: the layer's reads fail from now on")
			return
		}
		backoff = min(2*max(backoff, time.Second), 5*time.Minute)
		log.G(ctx).WithError(err).WithField("retry in", backoff).Warn("fetch the rest of the zTOC")
		if !wait(backoff) {
			return
		}
	}
}

// Close stops the fetch of the rest and closes the part file.
func (z *lazyZtoc) Close() error {
	z.cancel()
	if z.started {
		<-z.done
	}
	z.ls.metrics.artifactBytes[sourceRegistry].Add(z.w.Fetched())
	return z.f.Close()
}

// ztocSingleRangeJobs is how many single-range requests are in flight
// for one zTOC read when the registry refuses multi-range requests (S3,
// which ECR and Docker Hub redirect to; go-containerregistry's registry).
const ztocSingleRangeJobs = 32

// ztocSource reads a zTOC from the registry (lazyBlobs: credentials and
// the token at the first read): several ranges in multi-range requests;
// once the registry refused one, range by range, ztocSingleRangeJobs at
// a time.
type ztocSource struct {
	multi, single *lazyBlob
	refused       atomic.Bool
}

func newZtocSource(l Layer, rt http.RoundTripper) *ztocSource {
	blob := func(opts ...httprange.Option) *lazyBlob {
		return &lazyBlob{repo: l.Repo, d: l.Ztoc.Digest, size: l.Ztoc.Size, opts: append([]httprange.Option{httprange.WithTransport(rt)}, opts...)}
	}
	return &ztocSource{
		multi:  blob(httprange.WithMultiRange(ztocMultiRange), httprange.WithoutRangeByRange()),
		single: blob(httprange.WithMultiRange(1), httprange.WithJobs(ztocSingleRangeJobs)),
	}
}

func (s *ztocSource) ReadRanges(ctx context.Context, rs []ztoc.ByteRange) error {
	hr := make([]httprange.Range, len(rs))
	for i, r := range rs {
		hr[i] = httprange.Range{Off: r.Off, Buf: r.Buf}
	}
	if len(hr) == 1 || !s.refused.Load() {
		err := s.multi.ReadRanges(ctx, hr)
		if !errors.Is(err, httprange.ErrMultiRangeRefused) {
			return err
		}
		s.refused.Store(true)
		log.G(ctx).WithField("ztoc", s.multi.d).Debug("the registry refuses multi-range requests: zTOC parts read range by range")
		for i, r := range rs {
			hr[i] = httprange.Range{Off: r.Off, Buf: r.Buf}
		}
	}
	return s.single.ReadRanges(ctx, hr)
}

// fileSource reads a zTOC's part file.
type fileSource struct{ f *os.File }

func (s fileSource) ReadRanges(_ context.Context, rs []ztoc.ByteRange) error {
	for _, r := range rs {
		if _, err := s.f.ReadAt(r.Buf, r.Off); err != nil {
			return fmt.Errorf("read zTOC part file: %w", err)
		}
	}
	return nil
}

// teeSource reads from src and writes what it read into the part file.
type teeSource struct {
	src ztoc.RangeSource
	f   *os.File
}

func (s teeSource) ReadRanges(ctx context.Context, rs []ztoc.ByteRange) error {
	if err := s.src.ReadRanges(ctx, rs); err != nil {
		return err
	}
	for _, r := range rs {
		if _, err := s.f.WriteAt(r.Buf, r.Off); err != nil {
			return fmt.Errorf("store zTOC: %w", err)
		}
	}
	return nil
}
