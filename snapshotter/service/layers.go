package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/fdstore"
	"github.com/socikit/socikit/snapshotter/fs"
	"github.com/socikit/socikit/snapshotter/layer"
	"github.com/socikit/socikit/snapshotter/record"
	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/snapshotter/snapshot"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// Layers is the LayerMounter of the daemon: FUSE mounts of indexed layers
// (snapshotter/layer) sharing one span cache under Root/cache and one set
// of fetch metrics (and per-layer counters for Status).
type Layers struct {
	o       layersOptions
	cache   *cache.Cache
	budget  *remote.Budget    // shared by every layer's fetches (remote.DefaultBudget)
	rt      http.RoundTripper // o.transport: registry requests, span fetches included
	metrics *Metrics
	// local reads SOCI artifacts containerd already has (nil: never).
	local *containerdContent
	// rec records start-up profiles (nil: [profile] record = false).
	rec *record.Recorder
	// store keeps zTOCs and prefetch lists on disk (persist.go).
	store *localStore
	// keep keeps the mounts' FUSE descriptors outside the daemon
	// (keep.go; nil: not kept).
	keep *keeper

	mu        sync.Mutex
	mounts    map[string]*mountedLayer
	platforms map[digest.Digest]string // image platform by manifest, for /profile
}

// mountedLayer is a layer this daemon mounted.
type mountedLayer struct {
	m       *layer.Mounted
	l       Layer
	metrics *layerMetrics
	at      time.Time
	obs     *record.Layer // nil: not recording
}

var _ LayerMounter = (*Layers)(nil)

// LayersOption configures NewLayers.
type LayersOption func(*layersOptions) error

type layersOptions struct {
	cacheMaxSize       int64
	transport          http.RoundTripper
	containerd         string
	record             *record.Options
	readAhead          int64
	prefetchWait       time.Duration
	background         *remote.BackgroundOptions
	passthrough        bool
	passthroughMinSize int64
	wholeZtoc          bool
	ztocDelay          time.Duration
	keep               fdstore.Store // keep.go
}

// LayersCacheMaxSize caps the span cache (see cache.WithMaxSize). Default
// the cache's: the smaller of 10 GiB and half the filesystem holding it.
func LayersCacheMaxSize(n int64) LayersOption {
	return func(o *layersOptions) error {
		if n < 0 {
			return fmt.Errorf("cache max size %d is negative", n)
		}
		o.cacheMaxSize = n
		return nil
	}
}

// LayersTransport sets the base HTTP transport of every registry request of
// the layers (zTOCs, prefetch lists, span fetches); an
// image.KeychainTransport also says where credentials come from. Default
// the HTTP clients' own (go-containerregistry's remote.DefaultTransport,
// httprange's clone of http.DefaultTransport).
func LayersTransport(rt http.RoundTripper) LayersOption {
	return func(o *layersOptions) error {
		o.transport = rt
		return nil
	}
}

// LayersContainerd names the containerd socket whose content store is read
// for SOCI artifacts containerd already has. Default none.
func LayersContainerd(address string) LayersOption {
	return func(o *layersOptions) error {
		o.containerd = address
		return nil
	}
}

// LayersRecord records start-up profiles with these limits (/profile).
// Default no recording.
func LayersRecord(ro record.Options) LayersOption {
	return func(o *layersOptions) error {
		o.record = &ro
		return nil
	}
}

// LayersReadAhead caps the compressed bytes fetched ahead of sequential
// reads (remote.WithReadAhead); 0 turns read-ahead off. Default
// remote.DefaultReadAhead.
func LayersReadAhead(n int64) LayersOption {
	return func(o *layersOptions) error {
		if n < 0 {
			return fmt.Errorf("read-ahead %d is negative", n)
		}
		o.readAhead = n
		return nil
	}
}

// LayersPrefetchWait is how long a mount waits for the spans of the
// layer's prefetch list (layer.WithPrefetch). Default 0.
func LayersPrefetchWait(d time.Duration) LayersOption {
	return func(o *layersOptions) error {
		if d < 0 {
			return fmt.Errorf("prefetch wait %v is negative", d)
		}
		o.prefetchWait = d
		return nil
	}
}

// LayersBackground fetches the rest of each layer in the background at rate
// compressed bytes per second, from delay after its mount. Default no
// background fetching.
func LayersBackground(rate int64, delay time.Duration) LayersOption {
	return func(o *layersOptions) error {
		if rate <= 0 || delay < 0 {
			return fmt.Errorf("background fetch rate %d, delay %v: want a positive rate", rate, delay)
		}
		o.background = &remote.BackgroundOptions{Rate: rate, Delay: delay}
		return nil
	}
}

// LayersPassthrough turns FUSE passthrough of fully cached files of at
// least minSize bytes on or off (minSize 0: DefaultPassthroughMinSize).
// Default on, DefaultPassthroughMinSize.
func LayersPassthrough(on bool, minSize int64) LayersOption {
	return func(o *layersOptions) error {
		if minSize < 0 {
			return fmt.Errorf("passthrough min size %d is negative", minSize)
		}
		if minSize == 0 {
			minSize = DefaultPassthroughMinSize
		}
		o.passthrough, o.passthroughMinSize = on, minSize
		return nil
	}
}

// LayersZtoc says how zTOCs are read: whole, their digest checked before
// the mount, or lazily, the rest fetched and the whole checked
// completeDelay after the mount (lazyztoc.go). Default lazily, 5 s.
func LayersZtoc(whole bool, completeDelay time.Duration) LayersOption {
	return func(o *layersOptions) error {
		if completeDelay < 0 {
			return fmt.Errorf("zTOC completion delay %v is negative", completeDelay)
		}
		o.wholeZtoc, o.ztocDelay = whole, completeDelay
		return nil
	}
}

// NewLayers opens the span cache under root/cache and returns the lazy
// layer filesystem, keeping what it needs across restarts under root. The
// daemon's options come from its Config (LayersFromConfig, configopts.go).
func NewLayers(ctx context.Context, root string, opts ...LayersOption) (*Layers, error) {
	o := layersOptions{readAhead: remote.DefaultReadAhead, passthrough: true, passthroughMinSize: DefaultPassthroughMinSize,
		ztocDelay: defaultZtocCompleteDelay}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("layer filesystem: %w", err)
		}
	}
	var copts []cache.Option
	if o.cacheMaxSize > 0 {
		copts = append(copts, cache.WithMaxSize(o.cacheMaxSize))
	}
	ca, err := cache.Open(root+"/cache", copts...)
	if err != nil {
		return nil, fmt.Errorf("open span cache: %w", err)
	}
	budget, err := remote.NewBudget(remote.DefaultBudget)
	if err != nil {
		return nil, err
	}
	ls := &Layers{budget: budget, o: o, cache: ca, rt: o.transport, metrics: &Metrics{}, local: newContainerdContent(o.containerd),
		mounts: map[string]*mountedLayer{}, store: newLocalStore(root)}
	if o.record != nil {
		ls.rec = record.New(*o.record)
	}
	if o.keep != nil {
		ls.keep = newKeeper(ctx, o.keep)
	}
	return ls, nil
}

// MountLayer fetches the layer's zTOC (and prefetch list) and mounts it.
func (ls *Layers) MountLayer(ctx context.Context, mountpoint string, l Layer) error {
	return ls.mountLayer(ctx, mountpoint, l, nil)
}

// mountLayer is MountLayer with extra layer options (keep.go: resume),
// and keeps the mount's FUSE descriptor (LayersKeep).
func (ls *Layers) mountLayer(ctx context.Context, mountpoint string, l Layer, extra []layer.Option) error {
	reg, err := image.OpenRegistry(l.Repo.Digest(l.Desc.Digest.String()), ls.rt)
	if err != nil {
		return err
	}
	src, err := ls.readZtoc(ctx, reg, l)
	if err != nil {
		return err
	}
	z := src.Ztoc
	if z.CompressedArchiveSize != l.Desc.Size {
		if src.Closer != nil {
			src.Closer.Close()
		}
		return fmt.Errorf("zTOC %s describes %d compressed bytes, layer %s has %d", l.Ztoc.Digest, z.CompressedArchiveSize, l.Desc.Digest, l.Desc.Size)
	}
	src.Digest = l.Desc.Digest
	lm := &layerMetrics{parent: ls.metrics}
	if lz, ok := src.Closer.(*lazyZtoc); ok {
		lz.start(func() int64 { return lm.FetchedBytes.Load() + lm.Hits.Load() + lm.Misses.Load() })
	}
	if src.Blob, err = ls.spanBlob(ctx, l, lm); err != nil {
		if src.Closer != nil {
			src.Closer.Close()
		}
		return err
	}
	opts := []layer.Option{layer.WithFetchOptions(remote.WithMetrics(lm), remote.WithReadAhead(ls.o.readAhead), remote.WithBudget(ls.budget)),
		layer.WithFSOptions(fs.WithOpCounters(&ls.metrics.FUSE))}
	if l.Prefetch != nil {
		spans, err := ls.prefetchSpans(ctx, reg, *l.Prefetch, l.Index)
		if err != nil {
			log.G(ctx).WithError(err).Warn("ignore prefetch list")
		} else {
			opts = append(opts, layer.WithPrefetch(spans, ls.o.prefetchWait))
		}
	}
	if ls.o.background != nil {
		opts = append(opts, layer.WithBackground(*ls.o.background))
	}
	if ls.o.passthrough && ls.keep == nil {
		// Not with kept mounts (keep.go): a file a container holds open
		// in passthrough mode keeps the dead daemon's backing file in the
		// kernel, and an open of it through the resumed server, with a
		// backing file of its own, fails with EIO.
		opts = append(opts, layer.WithPassthrough(ls.o.passthroughMinSize))
	}
	var obs *record.Layer
	if ls.rec != nil {
		obs = ls.rec.Layer(l.Desc.Digest.String())
		opts = append(opts, layer.WithFSOptions(fs.WithReadObserver(obs)))
	}
	m, err := layer.Mount(ctx, mountpoint, src, ls.cache, append(opts, extra...)...)
	if err != nil {
		if obs != nil {
			obs.Close()
		}
		return fmt.Errorf("mount layer %s: %w", l.Desc.Digest, err)
	}
	ls.mu.Lock()
	ls.mounts[mountpoint] = &mountedLayer{m: m, l: l, metrics: lm, at: time.Now(), obs: obs}
	ls.mu.Unlock()
	if ls.keep != nil {
		ls.keep.keep(ctx, mountpoint, m)
	}
	log.G(ctx).WithField("layer", l.Desc.Digest).WithField("mountpoint", mountpoint).WithField("index", l.Index.Digest).Info("layer mounted lazily")
	return nil
}

// readZtoc returns l's zTOC (Source.Ztoc) and, when it was read lazily,
// its index and what to close with the mount: the daemon's copy of the
// zTOC if it has one whole, else containerd's if containerd has it or is
// fetching it, else the registry's, read lazily (lazyztoc.go; read whole
// when the config says so or the lazy read fails).
func (ls *Layers) readZtoc(ctx context.Context, reg *image.Registry, l Layer) (layer.Source, error) {
	var zb []byte
	if b, ok := ls.store.blob(l.Ztoc, image.MaxZtocSize); ok {
		ls.metrics.artifactRead(sourceDisk, len(b))
		zb = b
	} else if b, ok := ls.local.read(ctx, l.Ztoc, l.Index.Digest, image.MaxZtocSize); ok {
		ls.metrics.artifactRead(sourceContainerd, len(b))
		if err := ls.store.putBlob(l.Ztoc, b); err != nil {
			log.G(ctx).WithError(err).WithField("blob", l.Ztoc.Digest).Warn("keep SOCI artifact on disk: a restart will fetch it again")
		}
		zb = b
	} else if !ls.o.wholeZtoc {
		lz, z, err := ls.readZtocLazily(ctx, reg, l)
		switch {
		case err == nil && lz != nil:
			return layer.Source{Ztoc: z, Index: lz.ix, Closer: lz}, nil
		case err == nil:
			return layer.Source{Ztoc: z}, nil
		}
		log.G(ctx).WithError(err).WithField("ztoc", l.Ztoc.Digest).Warn("read the zTOC whole")
	}
	if zb == nil {
		var err error
		if zb, err = ls.readArtifact(ctx, reg, l.Ztoc, l.Index, image.MaxZtocSize); err != nil {
			return layer.Source{}, fmt.Errorf("fetch zTOC %s: %w", l.Ztoc.Digest, err)
		}
	}
	z, err := ztoc.Unmarshal(zb)
	if err != nil {
		return layer.Source{}, fmt.Errorf("zTOC %s: %w", l.Ztoc.Digest, err)
	}
	return layer.Source{Ztoc: z}, nil
}

// spanBlob returns the layer blob spans are fetched from: through the
// daemon's transport (LayersTransport), reporting faults to lm.
func (ls *Layers) spanBlob(ctx context.Context, l Layer, lm *layerMetrics) (remote.Blob, error) {
	blobOpts := []httprange.Option{httprange.WithTransport(ls.rt), httprange.WithMetrics(lm)}
	if l.stored {
		// A restore: no registry round trip until a span is missing.
		return &lazyBlob{repo: l.Repo, d: l.Desc.Digest, size: l.Desc.Size, opts: blobOpts}, nil
	}
	b, err := httprange.NewRegistryBlob(ctx, l.Repo, l.Desc.Digest, l.Desc.Size, blobOpts...)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// readArtifact reads a blob of the SOCI index: from the daemon's local
// store if an earlier mount kept it, else from containerd's content store if
// containerd has it or is fetching it, else from the registry; what is read
// is kept in the local store for the next start.
func (ls *Layers) readArtifact(ctx context.Context, reg *image.Registry, d, index ocispec.Descriptor, limit int64) ([]byte, error) {
	if b, ok := ls.store.blob(d, limit); ok {
		ls.metrics.artifactRead(sourceDisk, len(b))
		return b, nil
	}
	b, ok := ls.local.read(ctx, d, index.Digest, limit)
	if ok {
		ls.metrics.artifactRead(sourceContainerd, len(b))
	} else {
		var err error
		if b, err = image.ReadBlob(ctx, reg, d, limit); err != nil {
			return nil, err
		}
		ls.metrics.artifactRead(sourceRegistry, len(b))
	}
	if err := ls.store.putBlob(d, b); err != nil {
		log.G(ctx).WithError(err).WithField("blob", d.Digest).Warn("keep SOCI artifact on disk: a restart will fetch it again")
	}
	return b, nil
}

func (ls *Layers) prefetchSpans(ctx context.Context, reg *image.Registry, d, index ocispec.Descriptor) ([]ztoc.SpanID, error) {
	b, err := ls.readArtifact(ctx, reg, d, index, soci.MaxDocumentSize)
	if err != nil {
		return nil, err
	}
	p, err := soci.ParsePrefetch(b)
	if err != nil {
		return nil, err
	}
	var spans []ztoc.SpanID
	for _, s := range p.Spans {
		for id := s.StartSpan; id <= s.EndSpan; id++ {
			spans = append(spans, id)
		}
	}
	return spans, nil
}

// Check reports whether the layer at mountpoint is still served.
func (ls *Layers) Check(ctx context.Context, mountpoint string) error {
	ls.mu.Lock()
	m := ls.mounts[mountpoint]
	ls.mu.Unlock()
	if m == nil {
		return errors.New("not mounted by this process")
	}
	return m.m.Check(ctx)
}

// Unmount unmounts the layer at mountpoint.
// When the snapshot is being removed (snapshot.IsRemoval), the layer's
// cached spans go too, unless another mount still uses them.
func (ls *Layers) Unmount(ctx context.Context, mountpoint string) error {
	ls.mu.Lock()
	m := ls.mounts[mountpoint]
	delete(ls.mounts, mountpoint)
	ls.mu.Unlock()
	if m == nil {
		return nil
	}
	if m.obs != nil {
		m.obs.Close()
	}
	err := m.m.Unmount()
	if ls.keep != nil {
		ls.keep.forget(ctx, mountpoint)
	}
	if err == nil && snapshot.IsRemoval(ctx) {
		// Remove refuses a layer another mount has acquired.
		if rerr := ls.cache.Remove(m.l.Desc.Digest); rerr != nil {
			log.G(ctx).WithError(rerr).WithField("layer", m.l.Desc.Digest).Debug("keep cached spans")
		}
	}
	return err
}
