package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/snapshotter/snapshot"
	"github.com/socikit/socikit/soci"
)

// Found is the SOCI index of one image manifest (or, with Index nil, the
// manifest of an image that has none).
type Found struct {
	// Repo is the image's repository (name.Insecure for plain-HTTP hosts).
	Repo name.Repository
	// Manifest is the image manifest's descriptor, Config its image config
	// and Layers its layers.
	Manifest ocispec.Descriptor
	Config   ocispec.Descriptor
	Layers   []ocispec.Descriptor
	// IndexDesc is the SOCI index manifest, Index its content, and How the
	// rule that found it ("label", "v2", "v1").
	IndexDesc ocispec.Descriptor
	Index     *soci.Index
	How       string
}

// Layer describes one indexed layer: what a LayerMounter needs.
type Layer struct {
	// Repo holds the layer blob, the zTOC and the prefetch blob.
	Repo name.Repository
	// Desc is the image layer (digest, size, media type from the manifest).
	Desc ocispec.Descriptor
	// Ztoc is the zTOC blob; SpanSize its span size (0 if not annotated).
	Ztoc     ocispec.Descriptor
	SpanSize int64
	// DisableXattrs: the index says the layer has no xattrs and no opaque
	// directories.
	DisableXattrs bool
	// Prefetch is the layer's prefetch blob, if the index has one.
	Prefetch *ocispec.Descriptor
	// LazyZtoc is the zTOC's lazy zTOC (soci.LazyZtoc), if the index has
	// one: read before the mount instead of the zTOC (lazyztoc.go).
	LazyZtoc *ocispec.Descriptor
	// Index is the SOCI index the layer comes from.
	Index ocispec.Descriptor
	// Manifest is the digest of the image manifest the layer was found
	// through.
	Manifest digest.Digest
	// Image is the reference containerd pulls the image as (the
	// cri.image-ref label; "" when not given). Only reported in Status.
	Image string
	// stored: read from the daemon's local store (a restart), not found
	// by discovery: the registry is not contacted to mount it.
	stored bool
}

// Layer returns the indexed layer d; the error matches
// snapshot.ErrNotIndexed when the index has no zTOC for it (layers under the
// index's min size).
func (f *Found) Layer(d digest.Digest) (Layer, error) {
	i := slices.IndexFunc(f.Layers, func(l ocispec.Descriptor) bool { return l.Digest == d })
	if i < 0 {
		return Layer{}, fmt.Errorf("layer %s is not in manifest %s", d, f.Manifest.Digest)
	}
	if f.Index == nil {
		return Layer{}, fmt.Errorf("image %s has no SOCI index: %w", f.Manifest.Digest, snapshot.ErrNotIndexed)
	}
	for _, z := range f.Index.Layers {
		if z.LayerDigest != d {
			continue
		}
		l := Layer{Repo: f.Repo, Desc: f.Layers[i], Ztoc: z.Ztoc, SpanSize: z.SpanSize, DisableXattrs: z.DisableXattrs, Index: f.IndexDesc,
			Manifest: f.Manifest.Digest}
		for _, p := range f.Index.Prefetches {
			if p.Layer == d {
				pd := p.Prefetch
				l.Prefetch = &pd
			}
		}
		for _, lz := range f.Index.LazyZtocs {
			if lz.Ztoc == z.Ztoc.Digest {
				ld := lz.Blob
				l.LazyZtoc = &ld
			}
		}
		return l, nil
	}
	return Layer{}, fmt.Errorf("layer %s has no zTOC in index %s: %w", d, f.IndexDesc.Digest, snapshot.ErrNotIndexed)
}

// Discoverer finds SOCI indexes in registries, caching the result per image
// manifest (and index label).
type Discoverer struct {
	plainHTTP []string
	enableV1  bool
	timeout   time.Duration
	rt        http.RoundTripper

	mu    sync.Mutex
	cache map[string]*discovery
}

type discovery struct {
	done  chan struct{}
	found *Found
	err   error
}

// DiscoverOption configures NewDiscoverer.
type DiscoverOption func(*Discoverer) error

// DiscoverPlainHTTP names the registry hosts (host or host:port) reached
// over plain HTTP. Default none.
func DiscoverPlainHTTP(hosts ...string) DiscoverOption {
	return func(d *Discoverer) error {
		d.plainHTTP = append(d.plainHTTP, hosts...)
		return nil
	}
}

// DiscoverV1 makes the Discoverer look for SOCI v1 indexes (referrers API,
// referrers tag) when an image has no v2 one. Default off.
func DiscoverV1(on bool) DiscoverOption {
	return func(d *Discoverer) error {
		d.enableV1 = on
		return nil
	}
}

// DiscoverTimeout bounds the registry round trips of one discovery.
// Default DefaultDiscoveryTimeout.
func DiscoverTimeout(t time.Duration) DiscoverOption {
	return func(d *Discoverer) error {
		if t <= 0 {
			return fmt.Errorf("discovery timeout %v is not positive", t)
		}
		d.timeout = t
		return nil
	}
}

// DiscoverTransport sets the base HTTP transport of the registry requests
// (an image.KeychainTransport also says where credentials come from).
// Default go-containerregistry's remote.DefaultTransport.
func DiscoverTransport(rt http.RoundTripper) DiscoverOption {
	return func(d *Discoverer) error {
		d.rt = rt
		return nil
	}
}

// NewDiscoverer returns a Discoverer. The daemon's options come from its
// Config (discoverConfigOptions, configopts.go).
func NewDiscoverer(opts ...DiscoverOption) (*Discoverer, error) {
	d := &Discoverer{timeout: time.Duration(DefaultDiscoveryTimeout), cache: map[string]*discovery{}}
	for _, o := range opts {
		if err := o(d); err != nil {
			return nil, fmt.Errorf("discoverer: %w", err)
		}
	}
	return d, nil
}

// Find returns the SOCI index of the image a layer's labels name. The error
// matches snapshot.ErrNotIndexed when the image has none; the Found is then
// the image manifest's alone (Index nil) when the manifest was read, nil
// otherwise. Other errors (registry unreachable, malformed index) are not
// cached.
func (d *Discoverer) Find(ctx context.Context, labels map[string]string) (*Found, error) {
	ref, mdg := labels[snapshot.LabelImageRef], labels[snapshot.LabelManifestDigest]
	if ref == "" || mdg == "" {
		return nil, fmt.Errorf("labels name no image reference and manifest: %w", snapshot.ErrNotIndexed)
	}
	key := ref + "@" + mdg + "#" + labels[snapshot.LabelIndexDigest]
	d.mu.Lock()
	if e, ok := d.cache[key]; ok {
		d.mu.Unlock()
		select {
		case <-e.done:
			return e.found, e.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e := &discovery{done: make(chan struct{})}
	d.cache[key] = e
	d.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, d.timeout)
	e.found, e.err = d.find(dctx, ref, mdg, labels[snapshot.LabelIndexDigest])
	cancel()
	if e.err != nil && !errors.Is(e.err, snapshot.ErrNotIndexed) {
		d.mu.Lock()
		delete(d.cache, key) // transient: try again next time
		d.mu.Unlock()
	}
	close(e.done)
	lg := log.G(ctx).WithField("image", ref).WithField("manifest", mdg)
	if e.err == nil {
		lg.WithField("index", e.found.IndexDesc.Digest).WithField("found_by", e.found.How).Info("SOCI index found")
	} else {
		lg.WithError(e.err).Info("no SOCI index")
	}
	return e.found, e.err
}

func (d *Discoverer) repository(ref string) (name.Repository, error) {
	var opts []name.Option
	r, err := name.ParseReference(ref)
	if err != nil {
		return name.Repository{}, fmt.Errorf("parse image reference %q: %w", ref, err)
	}
	host := r.Context().RegistryStr()
	if slices.Contains(d.plainHTTP, host) || slices.Contains(d.plainHTTP, strings.Split(host, ":")[0]) {
		opts = append(opts, name.Insecure)
	}
	r, err = name.ParseReference(ref, opts...)
	if err != nil {
		return name.Repository{}, err
	}
	return r.Context(), nil
}

func (d *Discoverer) find(ctx context.Context, ref, manifest, explicit string) (*Found, error) {
	mdg, err := digest.Parse(manifest)
	if err != nil {
		return nil, fmt.Errorf("manifest digest label: %w", err)
	}
	repo, err := d.repository(ref)
	if err != nil {
		return nil, err
	}
	reg, err := image.OpenRegistry(repo.Digest(mdg.String()), d.rt)
	if err != nil {
		return nil, err
	}
	mdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: mdg}
	body, err := reg.Manifest(ctx, mdesc)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("parse manifest %s: %w", mdg, err)
	}
	mdesc.Size = int64(len(body))
	f := &Found{Repo: repo, Manifest: mdesc, Config: m.Config, Layers: m.Layers}

	// 1. The explicit label.
	if explicit != "" {
		idg, err := digest.Parse(explicit)
		if err != nil {
			return nil, fmt.Errorf("label %s: %w", snapshot.LabelIndexDigest, err)
		}
		return f, d.fetchIndex(ctx, reg, f, idg, "label")
	}
	// 2. v2: the manifest's annotation.
	if idg, ok, err := soci.IndexDigestFromManifest(body); err != nil {
		return nil, err
	} else if ok {
		return f, d.fetchIndex(ctx, reg, f, idg, "v2")
	}
	// 3. v1: referrers (and the sha256-<hex> tag), when enabled.
	if !d.enableV1 {
		return f, fmt.Errorf("manifest %s has no v2 SOCI index (v1 discovery disabled): %w", mdg, snapshot.ErrNotIndexed)
	}
	refs, err := reg.Referrers(ctx, mdg, soci.MediaTypeIndexV1)
	if err != nil {
		if errors.Is(err, image.ErrNotFound) {
			return f, fmt.Errorf("manifest %s has no SOCI index: %w", mdg, snapshot.ErrNotIndexed)
		}
		return nil, err
	}
	// Several v1 indexes: take the smallest digest, so every daemon picks
	// the same one.
	slices.SortFunc(refs, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	for _, r := range refs {
		if err := d.fetchIndex(ctx, reg, f, r.Digest, "v1"); err != nil {
			log.G(ctx).WithError(err).WithField("index", r.Digest).Warn("skip v1 SOCI index")
			continue
		}
		return f, nil
	}
	return f, fmt.Errorf("manifest %s has no SOCI index: %w", mdg, snapshot.ErrNotIndexed)
}

func (d *Discoverer) fetchIndex(ctx context.Context, reg *image.Registry, f *Found, idg digest.Digest, how string) error {
	body, err := reg.Manifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: idg})
	if err != nil {
		return fmt.Errorf("fetch SOCI index: %w", err)
	}
	ix, err := soci.ParseIndex(body)
	if err != nil {
		return fmt.Errorf("SOCI index %s: %w", idg, err)
	}
	if ix.Version == soci.V1 && (ix.Subject == nil || ix.Subject.Digest != f.Manifest.Digest) {
		return fmt.Errorf("SOCI index %s does not index manifest %s", idg, f.Manifest.Digest)
	}
	f.IndexDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ix.Version.MediaType(), Digest: idg, Size: int64(len(body))}
	f.Index = ix
	f.How = how
	return nil
}
