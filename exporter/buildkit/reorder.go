package buildkit

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/labels"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/buildkit/cache"
	"github.com/moby/buildkit/cache/config"
	"github.com/moby/buildkit/exporter"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/compression"
	"github.com/moby/buildkit/util/contentutil"
	"github.com/moby/buildkit/util/converter"
	"github.com/moby/buildkit/util/leaseutil"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"
)

// Reordered layers (soci-reorder=true) are kept out of BuildKit's cache.
//
// A reordered blob is not the layer its cache record describes: the same
// files in another order, so another diffID. BuildKit hands a record's
// blobs to exports that know nothing of reordering:
//   - the record's main blob (cache.blob, the first blob made for it) goes to
//     every export that does not force its compression (cache/remote.go
//     getRemote: ref.ociDesc), type=image and type=oci among them. Had the
//     first export been a reordering one, BuildKit would have made the main
//     blob with the reordering compressor, and every later plain export
//     would have exported the reordered layers;
//   - every blob linked to the record as a compression variant
//     (containerd.io/gc.ref.content.blob-* labels, cache/refs.go linkBlob)
//     goes to cache exports, which offer all variants of the lower layers
//     (cache/remote.go getAvailableBlobs), and to forced exports whose type
//     accepts it (getBlobWithCompression: a reordered blob is plain gzip to
//     compression.Gzip).
//
// So reordering never runs inside BuildKit's blob machinery. The soci
// exporter wraps the exported refs (withReorderedLayers): asked for the
// remotes of a reordering Compression, a wrapped ref asks BuildKit for those
// of the same Compression without reordering and unforced (unreordered), so
// that a record without a blob gets its main blob from the non-reordering
// compressor (the real diff, valid gzip), and a record with one keeps it;
// then it replaces each layer that is not kept (base layers are not
// reordered) by its reordered blob (reorderedBlob): converted from the main
// blob with BuildKit's converter and this package's compressor, and
// remembered by labels on the main blob (LabelReordered and a gc.ref label,
// which is not a variant link), so the next export with the same
// parameters converts nothing.
const (
	// LabelReordered + "." + hex of the parameters digest (Compression.Params)
	// on a layer's main blob: the digest of its reordered blob for those
	// parameters.
	LabelReordered = "dev.socikit.reordered"
	// labelGCRefReordered + "." + hex of the parameters digest keeps the
	// reordered blob while the main blob lives.
	labelGCRefReordered = "containerd.io/gc.ref.content.socikit.reordered"
)

// unreordered returns comp as BuildKit may see it: a reordering Compression
// becomes the same Compression without reordering, unforced. Other
// compressions are returned as they are.
func unreordered(comp compression.Config) compression.Config {
	if ct, ok := comp.Type.(Compression); ok && ct.Reorder {
		ct.Reorder = false
		comp.Type = ct
		comp.Force = false
	}
	return comp
}

// withReorderedLayers wraps the refs of src (a clone: its Refs map is
// replaced, not changed) so that GetRemotes with a reordering Compression
// returns reordered layers that BuildKit never holds as a blob of the
// refs' cache records. src is returned as it is unless comp is a reordering
// Compression.
func withReorderedLayers(src *exporter.Source, comp compression.Config, opt Opt) *exporter.Source {
	if ct, ok := comp.Type.(Compression); !ok || !ct.Reorder {
		return src
	}
	wrap := func(r cache.ImmutableRef) cache.ImmutableRef {
		if r == nil {
			return nil
		}
		return &reorderRef{ImmutableRef: r, cs: opt.ContentStore, lm: opt.LeaseManager}
	}
	src.Ref = wrap(src.Ref)
	if src.Refs != nil {
		refs := make(map[string]cache.ImmutableRef, len(src.Refs))
		for k, r := range src.Refs {
			refs[k] = wrap(r)
		}
		src.Refs = refs
	}
	return src
}

// reorderRef is a ref whose GetRemotes, for a reordering Compression, gives
// the reordered blobs of its layers (see above). Everything else is the
// wrapped ref's.
type reorderRef struct {
	cache.ImmutableRef
	cs content.Store
	lm leases.Manager
}

func (r *reorderRef) Clone() cache.ImmutableRef {
	return &reorderRef{ImmutableRef: r.ImmutableRef.Clone(), cs: r.cs, lm: r.lm}
}

// GetRemotes returns the wrapped ref's remote for cfg without reordering,
// with every layer that cfg's Compression does not keep replaced by its
// reordered blob. With all, only that one remote is returned.
func (r *reorderRef) GetRemotes(ctx context.Context, createIfNeeded bool, cfg config.RefConfig, all bool, s session.Group) ([]*solver.Remote, error) {
	ct, ok := cfg.Compression.Type.(Compression)
	if !ok || !ct.Reorder {
		return r.ImmutableRef.GetRemotes(ctx, createIfNeeded, cfg, all, s)
	}
	inner := cfg
	inner.Compression = unreordered(cfg.Compression)
	remotes, err := r.ImmutableRef.GetRemotes(ctx, createIfNeeded, inner, false, s)
	if err != nil {
		return nil, err
	}
	src := remotes[0]
	mp := contentutil.NewMultiProvider(src.Provider)
	out := &solver.Remote{Descriptors: make([]ocispecs.Descriptor, 0, len(src.Descriptors)), Provider: &reorderProvider{MultiProvider: mp, inner: src.Provider}}
	for _, d := range src.Descriptors {
		if _, keep := ct.Keep[d.Digest]; keep || !images.IsLayerType(d.MediaType) {
			out.Descriptors = append(out.Descriptors, d)
			continue
		}
		if _, err := r.cs.Info(ctx, d.Digest); cerrdefs.IsNotFound(err) {
			// A lazy layer (force-compression=true on a pulled base layer):
			// fetch it to read it.
			if u, ok := src.Provider.(cache.Unlazier); ok {
				if err := u.Unlazy(ctx); err != nil {
					return nil, err
				}
			}
		}
		rd, err := reorderedBlob(ctx, r.cs, r.lm, d, cfg.Compression)
		if err != nil {
			return nil, err
		}
		out.Descriptors = append(out.Descriptors, rd)
		mp.Add(rd.Digest, r.cs)
	}
	return []*solver.Remote{out}, nil
}

// reorderProvider serves the reordered blobs from the content store and
// the others from the wrapped ref's provider, which also unlazies.
type reorderProvider struct {
	*contentutil.MultiProvider
	inner content.InfoReaderProvider
}

func (p *reorderProvider) Unlazy(ctx context.Context) error {
	if u, ok := p.inner.(cache.Unlazier); ok {
		return u.Unlazy(ctx)
	}
	return nil
}

var reorderFlight singleflight.Group

// reorderedBlob returns the reordered blob of layer blob src for comp (a
// reordering Compression): the one labelled on src (LabelReordered) if it
// is still there and was written with the same parameters, else a new one,
// converted from src by BuildKit's converter with comp's compressor and
// then labelled on src. The descriptor has src's createdat annotation and
// the reordered tar's digest as its uncompressed annotation.
func reorderedBlob(ctx context.Context, cs content.Store, lm leases.Manager, src ocispecs.Descriptor, comp compression.Config) (ocispecs.Descriptor, error) {
	ct := comp.Type.(Compression)
	written := ct
	written.Level = ct.level(&comp)
	params := written.Params()
	key := LabelReordered + "." + params.Encoded()
	gcKey := labelGCRefReordered + "." + params.Encoded()
	desc := func(d digest.Digest, size int64, diffID string) ocispecs.Descriptor {
		a := map[string]string{labels.LabelUncompressed: diffID}
		if v, ok := src.Annotations["buildkit/createdat"]; ok {
			a["buildkit/createdat"] = v
		}
		return ocispecs.Descriptor{MediaType: ct.MediaType(), Digest: d, Size: size, Annotations: a}
	}
	cached := func() (ocispecs.Descriptor, bool) {
		info, err := cs.Info(ctx, src.Digest)
		if err != nil {
			return ocispecs.Descriptor{}, false
		}
		d, err := digest.Parse(info.Labels[key])
		if err != nil {
			return ocispecs.Descriptor{}, false
		}
		rinfo, err := cs.Info(ctx, d)
		if err != nil || !written.wrote(rinfo.Labels) || rinfo.Labels[labels.LabelUncompressed] == "" {
			return ocispecs.Descriptor{}, false
		}
		return desc(d, rinfo.Size, rinfo.Labels[labels.LabelUncompressed]), true
	}
	if d, ok := cached(); ok {
		return d, nil
	}
	v, err, _ := reorderFlight.Do(src.Digest.String()+" "+params.String(), func() (any, error) {
		if d, ok := cached(); ok {
			return d, nil
		}
		ctx := ctx
		if lm != nil {
			// Keep the new blob until the label on src references it.
			lctx, done, err := leaseutil.WithLease(ctx, lm, leaseutil.MakeTemporary)
			if err != nil {
				return nil, err
			}
			defer func() {
				if err := done(context.WithoutCancel(lctx)); err != nil {
					bklog.G(ctx).Warnf("soci exporter: releasing the temporary lease: %v", err)
				}
			}()
			ctx = lctx
		}
		conv, err := converter.New(ctx, cs, src, comp)
		if err != nil {
			return nil, err
		}
		if conv == nil {
			// src itself was written with these parameters (a main blob
			// made by a reordering export before reordered blobs were kept
			// out of BuildKit's cache): it is the reordered blob.
			info, err := cs.Info(ctx, src.Digest)
			if err != nil {
				return nil, err
			}
			return desc(src.Digest, info.Size, info.Labels[labels.LabelUncompressed]), nil
		}
		nd, err := conv(ctx, cs, src)
		if err != nil {
			return nil, fmt.Errorf("reorder layer %s: %w", src.Digest, err)
		}
		diffID := nd.Annotations[labels.LabelUncompressed]
		if diffID == "" {
			return nil, fmt.Errorf("reorder layer %s: no diffID for %s", src.Digest, nd.Digest)
		}
		info := content.Info{Digest: src.Digest, Labels: map[string]string{key: nd.Digest.String(), gcKey: nd.Digest.String()}}
		if _, err := cs.Update(ctx, info, "labels."+key, "labels."+gcKey); err != nil {
			return nil, fmt.Errorf("label layer %s with its reordered blob: %w", src.Digest, err)
		}
		return desc(nd.Digest, nd.Size, diffID), nil
	})
	if err != nil {
		return ocispecs.Descriptor{}, err
	}
	d, ok := v.(ocispecs.Descriptor)
	if !ok {
		return ocispecs.Descriptor{}, errors.New("reorder layer: no descriptor")
	}
	return d, nil
}
