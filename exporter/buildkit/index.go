package buildkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/progress"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// BuildTool is the build tool identifier written into zTOCs and indexes.
const BuildTool = "socikit"

// maxDocument bounds the manifests and configs read from the content store.
const maxDocument = 8 << 20

type indexResult struct {
	// root is the descriptor to push: the v2 image index, or the original
	// root for v1 (or when nothing was indexed).
	root ocispecs.Descriptor
	// indexes are the SOCI index manifests written.
	indexes []ocispecs.Descriptor
	// v1 are the v1 indexes, pushed after the image.
	v1 []ocispecs.Descriptor
}

// addIndexes builds a SOCI index for every platform image under root with
// exporter.Assemble and writes what it adds to cs: zTOCs, prefetch blobs,
// SOCI indexes and, for v2, the bound manifests and the new image index.
// An image with no layer over the minimum size gets no index (a warning);
// when no image has one, the root is returned unchanged.
func addIndexes(ctx context.Context, cs content.Store, root ocispecs.Descriptor, o Options) (*indexResult, error) {
	res := &indexResult{root: root}
	rootBody, err := readBlob(ctx, cs, root)
	if err != nil {
		return nil, err
	}
	req := &exporter.Request{Version: o.Version, BuildTool: BuildTool, Root: root, RootBody: rootBody,
		Layers: map[digest.Digest]*exporter.LayerIndex{}, Prefetch: o.Prefetch, Profile: o.Profile, StoreProfile: true,
		NoLazyZtoc: o.NoLazyZtoc}
	switch root.MediaType {
	case ocispecs.MediaTypeImageIndex, images.MediaTypeDockerSchema2ManifestList:
		var idx ocispecs.Index
		if err := json.Unmarshal(rootBody, &idx); err != nil {
			return nil, fmt.Errorf("parse image index %s: %w", root.Digest, err)
		}
		for _, m := range idx.Manifests {
			if !exporter.IsPlatformImage(m) {
				continue // attestation manifests stay as they are
			}
			req.Images = append(req.Images, exporter.ImageManifest{Desc: m, Platform: m.Platform})
		}
	case ocispecs.MediaTypeImageManifest, images.MediaTypeDockerSchema2Manifest:
		req.Images = append(req.Images, exporter.ImageManifest{Desc: root, Body: rootBody})
	default:
		return nil, fmt.Errorf("unexpected root media type %q", root.MediaType)
	}

	for k := range req.Images {
		im := &req.Images[k]
		if im.Body == nil {
			if im.Body, err = readBlob(ctx, cs, im.Desc); err != nil {
				return nil, err
			}
		}
		var m ocispecs.Manifest
		if err := json.Unmarshal(im.Body, &m); err != nil {
			return nil, fmt.Errorf("parse manifest %s: %w", im.Desc.Digest, err)
		}
		if im.Platform == nil {
			if im.Platform, err = configPlatform(ctx, cs, m.Config); err != nil {
				return nil, err
			}
		}
		for _, l := range m.Layers {
			if _, done := req.Layers[l.Digest]; done {
				continue
			}
			li, err := layerZtoc(ctx, cs, l, o)
			if err != nil {
				return nil, fmt.Errorf("index layer %s: %w", l.Digest, err)
			}
			if li != nil {
				req.Layers[l.Digest] = li
			}
		}
	}

	out, err := exporter.Assemble(req)
	if errors.Is(err, exporter.ErrNoLayers) {
		bklog.G(ctx).Warnf("soci exporter: no layer of %s is over %d bytes; it gets no SOCI index", root.Digest, o.MinLayerSize)
		return res, nil
	}
	if err != nil {
		var pe *exporter.PrefetchNotFoundError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %q is not a regular file in any indexed layer of image %s (%s)", AttrPrefetch, pe.Path, pe.Image, pe.Platform)
		}
		return nil, err
	}
	if n := len(out.ProfileMissing); n > 0 {
		shown := out.ProfileMissing[:min(n, 10)]
		msg := fmt.Sprintf("socikit: %d start-up profile paths are in no indexed layer (written at start-up, or in a layer without a zTOC): %s", n, strings.Join(shown, ", "))
		bklog.G(ctx).Warn(msg)
		// A step of its own, so that the build's output shows it.
		_ = progress.OneOff(ctx, msg)(nil)
	}
	for _, im := range out.Unindexed {
		bklog.G(ctx).Warnf("soci exporter: no layer of %s is over %d bytes; it gets no SOCI index", im.Desc.Digest, o.MinLayerSize)
	}
	for _, b := range out.Blobs {
		if err := writeBlob(ctx, cs, b.Desc, b.Body); err != nil {
			return nil, err
		}
	}
	for _, b := range out.Manifests {
		if err := writeBlob(ctx, cs, b.Desc, b.Body); err != nil {
			return nil, err
		}
	}
	for _, ix := range out.Indexed {
		res.indexes = append(res.indexes, ix.Index)
	}
	if o.Version == soci.V1 {
		for _, r := range out.Referrers {
			if err := writeBlob(ctx, cs, r.Desc, r.Body); err != nil {
				return nil, err
			}
			res.v1 = append(res.v1, r.Desc)
		}
		return res, nil
	}
	if err := writeBlob(ctx, cs, out.Root.Desc, out.Root.Body); err != nil {
		return nil, err
	}
	res.root = ocispecs.Descriptor{MediaType: out.Root.Desc.MediaType, Digest: out.Root.Desc.Digest, Size: out.Root.Desc.Size}
	return res, nil
}

// layerZtoc returns the zTOC of a layer: the one labelled on the blob for
// the same span setting (stored by our compressor when it wrote the blob, or
// by an earlier export that indexed it), else one built from the blob with
// ztoc.Build (base layers), which is then stored and labelled for the next
// export. It returns nil for a layer that gets no zTOC (under the minimum
// size, not a tar layer).
func layerZtoc(ctx context.Context, cs content.Store, l ocispecs.Descriptor, o Options) (*exporter.LayerIndex, error) {
	if l.Size < o.MinLayerSize || !indexable(l.MediaType) {
		return nil, nil
	}
	info, err := cs.Info(ctx, l.Digest)
	if err != nil {
		return nil, fmt.Errorf("stat layer: %w", err)
	}
	zk, sk, _ := ztocLabels(o.SpanSize)
	if zd, ok := info.Labels[zk]; ok {
		d, err := digest.Parse(zd)
		if err != nil {
			return nil, fmt.Errorf("label %s: %w", zk, err)
		}
		zi, err := cs.Info(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("stat ztoc %s: %w", d, err)
		}
		b, err := readZtocBlob(ctx, cs, ocispecs.Descriptor{MediaType: soci.MediaTypeZtoc, Digest: d, Size: zi.Size})
		if err != nil {
			return nil, err
		}
		li, err := exporter.NewLayerIndex(b)
		if err != nil {
			return nil, fmt.Errorf("read ztoc %s: %w", d, err)
		}
		li.SpanSize, _ = strconv.ParseInt(info.Labels[sk], 10, 64)
		return li, nil
	}
	// A base layer: index the blob as it is.
	ra, err := cs.ReaderAt(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("open layer: %w", err)
	}
	defer ra.Close()
	spanSize := o.EffectiveSpanSize()
	z, err := ztoc.Build(io.NewSectionReader(ra, 0, ra.Size()), ztoc.WithSpanSize(spanSize), ztoc.WithBuildToolIdentifier(BuildTool))
	if err != nil {
		return nil, err
	}
	b, err := ztoc.Marshal(z)
	if err != nil {
		return nil, fmt.Errorf("marshal ztoc: %w", err)
	}
	// The same blob and span size give the same zTOC: keep it for the next
	// export (without LabelCompressed: soci-gzip did not write the blob).
	if err := storeZtoc(ctx, cs, l.Digest, b, o.SpanSize, spanSize, ""); err != nil {
		bklog.G(ctx).Warnf("soci exporter: keep the zTOC of layer %s: %v", l.Digest, err)
	}
	return &exporter.LayerIndex{Ztoc: z, Blob: b, SpanSize: spanSize}, nil
}

func indexable(mt string) bool {
	switch mt {
	case ocispecs.MediaTypeImageLayerGzip, images.MediaTypeDockerSchema2LayerGzip,
		ocispecs.MediaTypeImageLayer, images.MediaTypeDockerSchema2Layer:
		return true
	}
	return false
}

func configPlatform(ctx context.Context, cs content.Store, cfg ocispecs.Descriptor) (*ocispecs.Platform, error) {
	b, err := readBlob(ctx, cs, cfg)
	if err != nil {
		return nil, err
	}
	var img ocispecs.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("parse image config %s: %w", cfg.Digest, err)
	}
	p := img.Platform
	return &p, nil
}

func readBlob(ctx context.Context, cs content.Store, d ocispecs.Descriptor) ([]byte, error) {
	if d.Size > maxDocument {
		return nil, fmt.Errorf("blob %s: %d bytes is over %d", d.Digest, d.Size, maxDocument)
	}
	b, err := content.ReadBlob(ctx, cs, d)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d.Digest, err)
	}
	return b, nil
}

// readZtocBlob reads a zTOC blob, up to ztoc.MaxZtocSize.
func readZtocBlob(ctx context.Context, cs content.Store, d ocispecs.Descriptor) ([]byte, error) {
	if d.Size > ztoc.MaxZtocSize {
		return nil, fmt.Errorf("ztoc %s: %d bytes is over %d", d.Digest, d.Size, ztoc.MaxZtocSize)
	}
	b, err := content.ReadBlob(ctx, cs, d)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d.Digest, err)
	}
	return b, nil
}
