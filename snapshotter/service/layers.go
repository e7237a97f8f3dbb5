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

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/snapshotter/cache"
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
	c       Config
	cache   *cache.Cache
	budget  *remote.Budget // shared by every layer's fetches (remote.DefaultBudget)
	rt      http.RoundTripper
	metrics *Metrics
	// local reads SOCI artifacts containerd already has (nil: never).
	local *containerdContent
	// rec records start-up profiles (nil: [profile] record = false).
	rec *record.Recorder

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

// NewLayers opens the span cache and returns the lazy layer filesystem. It
// is the default NewLayerMounter of the daemon.
func NewLayers(_ context.Context, c Config) (LayerMounter, error) {
	var opts []cache.Option
	if c.Lazy.CacheMaxSize > 0 {
		opts = append(opts, cache.WithMaxSize(c.Lazy.CacheMaxSize))
	}
	ca, err := cache.Open(c.Root+"/cache", opts...)
	if err != nil {
		return nil, fmt.Errorf("open span cache: %w", err)
	}
	budget, err := remote.NewBudget(remote.DefaultBudget)
	if err != nil {
		return nil, err
	}
	ls := &Layers{budget: budget, c: c, cache: ca, metrics: &Metrics{}, local: newContainerdContent(c.Containerd.Address),
		mounts: map[string]*mountedLayer{}}
	if c.Profile.Record {
		ls.rec = newRecorder(c.Profile)
	}
	return ls, nil
}

// MountLayer fetches the layer's zTOC (and prefetch list) and mounts it.
func (ls *Layers) MountLayer(ctx context.Context, mountpoint string, l Layer) error {
	reg, err := image.OpenRegistry(l.Repo.Digest(l.Desc.Digest.String()), ls.rt)
	if err != nil {
		return err
	}
	zb, err := ls.readArtifact(ctx, reg, l.Ztoc, l.Index, image.MaxZtocSize)
	if err != nil {
		return fmt.Errorf("fetch zTOC %s: %w", l.Ztoc.Digest, err)
	}
	z, err := ztoc.Unmarshal(zb)
	if err != nil {
		return fmt.Errorf("zTOC %s: %w", l.Ztoc.Digest, err)
	}
	if z.CompressedArchiveSize != l.Desc.Size {
		return fmt.Errorf("zTOC %s describes %d compressed bytes, layer %s has %d", l.Ztoc.Digest, z.CompressedArchiveSize, l.Desc.Digest, l.Desc.Size)
	}
	blob, err := remote.NewRegistryBlob(ctx, l.Repo, l.Desc.Digest, l.Desc.Size, remote.WithTransport(ls.rt))
	if err != nil {
		return err
	}
	lm := &layerMetrics{parent: ls.metrics}
	opts := []layer.Option{layer.WithFetchOptions(remote.WithMetrics(lm), remote.WithReadAhead(ls.c.Lazy.ReadAhead), remote.WithBudget(ls.budget))}
	if l.Prefetch != nil {
		spans, err := ls.prefetchSpans(ctx, reg, *l.Prefetch, l.Index)
		if err != nil {
			log.G(ctx).WithError(err).Warn("ignore prefetch list")
		} else {
			opts = append(opts, layer.WithPrefetch(spans, time.Duration(ls.c.Lazy.PrefetchWait)))
		}
	}
	if ls.c.Lazy.BackgroundRate > 0 {
		opts = append(opts, layer.WithBackground(remote.BackgroundOptions{Rate: ls.c.Lazy.BackgroundRate, Delay: time.Duration(ls.c.Lazy.BackgroundDelay)}))
	}
	if !ls.c.Lazy.DisablePassthrough {
		minSize := ls.c.Lazy.PassthroughMinSize
		if minSize == 0 {
			minSize = DefaultPassthroughMinSize
		}
		opts = append(opts, layer.WithPassthrough(minSize))
	}
	var obs *record.Layer
	if ls.rec != nil {
		obs = ls.rec.Layer(l.Desc.Digest.String())
		opts = append(opts, layer.WithFSOptions(fs.WithReadObserver(obs)))
	}
	m, err := layer.Mount(ctx, mountpoint, layer.Source{Digest: l.Desc.Digest, Ztoc: z, Blob: blob}, ls.cache, opts...)
	if err != nil {
		if obs != nil {
			obs.Close()
		}
		return fmt.Errorf("mount layer %s: %w", l.Desc.Digest, err)
	}
	ls.mu.Lock()
	ls.mounts[mountpoint] = &mountedLayer{m: m, l: l, metrics: lm, at: time.Now(), obs: obs}
	ls.mu.Unlock()
	log.G(ctx).WithField("layer", l.Desc.Digest).WithField("mountpoint", mountpoint).WithField("index", l.Index.Digest).Info("layer mounted lazily")
	return nil
}

// readArtifact reads a blob of the SOCI index: from containerd's content
// store if containerd has it or is fetching it, else from the registry.
func (ls *Layers) readArtifact(ctx context.Context, reg *image.Registry, d, index ocispec.Descriptor, limit int64) ([]byte, error) {
	if b, ok := ls.local.read(ctx, d, index.Digest, limit); ok {
		ls.metrics.artifactRead(sourceContainerd, len(b))
		return b, nil
	}
	b, err := image.ReadBlob(ctx, reg, d, limit)
	if err == nil {
		ls.metrics.artifactRead(sourceRegistry, len(b))
	}
	return b, err
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
	if err == nil && snapshot.IsRemoval(ctx) {
		// Remove refuses a layer another mount has acquired.
		if rerr := ls.cache.Remove(m.l.Desc.Digest); rerr != nil {
			log.G(ctx).WithError(rerr).WithField("layer", m.l.Desc.Digest).Debug("keep cached spans")
		}
	}
	return err
}
