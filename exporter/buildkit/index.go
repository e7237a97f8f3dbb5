package buildkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/moby/buildkit/util/bklog"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// BuildTool is the build tool identifier written into zTOCs and indexes.
const BuildTool = "socikit"

// maxDocument bounds the manifests and configs read from the content store.
const maxDocument = 8 << 20

// annotationReferenceType marks BuildKit attestation manifests in an index.
const annotationReferenceType = "vnd.docker.reference.type"

type indexResult struct {
	// root is the descriptor to push: the v2 image index, or the original
	// root for v1 (or when nothing was indexed).
	root ocispecs.Descriptor
	// indexes are the SOCI index manifests written.
	indexes []ocispecs.Descriptor
	// v1 are the v1 indexes, pushed after the image.
	v1 []ocispecs.Descriptor
}

// addIndexes builds a SOCI index for every platform image under root and, for
// v2, binds them into a new image index written to cs.
func addIndexes(ctx context.Context, cs content.Store, root ocispecs.Descriptor, o Options) (*indexResult, error) {
	res := &indexResult{root: root}
	var base []byte
	type target struct {
		desc     ocispecs.Descriptor
		platform *ocispecs.Platform
	}
	var targets []target
	switch root.MediaType {
	case ocispecs.MediaTypeImageIndex, images.MediaTypeDockerSchema2ManifestList:
		b, err := readBlob(ctx, cs, root)
		if err != nil {
			return nil, err
		}
		base = b
		var idx ocispecs.Index
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("parse image index %s: %w", root.Digest, err)
		}
		for _, m := range idx.Manifests {
			if m.Annotations[annotationReferenceType] != "" || !images.IsManifestType(m.MediaType) {
				continue // attestation manifests stay as they are
			}
			targets = append(targets, target{desc: m, platform: m.Platform})
		}
	case ocispecs.MediaTypeImageManifest, images.MediaTypeDockerSchema2Manifest:
		targets = append(targets, target{desc: root})
	default:
		return nil, fmt.Errorf("unexpected root media type %q", root.MediaType)
	}

	var bound []soci.BoundImage
	prefetchFound := map[string]bool{}
	for _, t := range targets {
		mb, err := readBlob(ctx, cs, t.desc)
		if err != nil {
			return nil, err
		}
		var m ocispecs.Manifest
		if err := json.Unmarshal(mb, &m); err != nil {
			return nil, fmt.Errorf("parse manifest %s: %w", t.desc.Digest, err)
		}
		platform := t.platform
		if platform == nil {
			if platform, err = configPlatform(ctx, cs, m.Config); err != nil {
				return nil, err
			}
		}
		ix := &soci.Index{Version: o.Version, BuildTool: BuildTool}
		for _, l := range m.Layers {
			lz, z, ok, err := layerZtoc(ctx, cs, l, o)
			if err != nil {
				return nil, fmt.Errorf("index layer %s: %w", l.Digest, err)
			}
			if !ok {
				continue
			}
			ix.Layers = append(ix.Layers, lz)
			if len(o.Prefetch) > 0 {
				pf, found, err := prefetchOf(ctx, cs, l.Digest, z, o.Prefetch)
				if err != nil {
					return nil, err
				}
				for _, p := range found {
					prefetchFound[p] = true
				}
				if pf != nil {
					ix.Prefetches = append(ix.Prefetches, *pf)
				}
			}
		}
		if len(ix.Layers) == 0 {
			bklog.G(ctx).Warnf("soci exporter: no layer of %s is over %d bytes; it gets no SOCI index", t.desc.Digest, o.MinLayerSize)
			continue
		}
		if o.Version == soci.V1 {
			ix.Subject = &ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageManifest, Digest: t.desc.Digest, Size: t.desc.Size}
			if t.desc.MediaType != "" {
				ix.Subject.MediaType = t.desc.MediaType
			}
		}
		body, idesc, err := ix.Marshal()
		if err != nil {
			return nil, fmt.Errorf("marshal SOCI index: %w", err)
		}
		cfg := o.Version.ConfigDescriptor()
		if err := writeBlob(ctx, cs, cfg, []byte(soci.EmptyConfigJSON)); err != nil {
			return nil, err
		}
		if err := writeBlob(ctx, cs, idesc, body); err != nil {
			return nil, err
		}
		res.indexes = append(res.indexes, idesc)
		if o.Version == soci.V1 {
			res.v1 = append(res.v1, idesc)
			continue
		}
		nm, ndesc, err := soci.BindV2(mb, platform, idesc)
		if err != nil {
			return nil, fmt.Errorf("bind SOCI index to %s: %w", t.desc.Digest, err)
		}
		if err := writeBlob(ctx, cs, ndesc, nm); err != nil {
			return nil, err
		}
		bound = append(bound, soci.BoundImage{Original: t.desc.Digest, Manifest: ndesc, Index: idesc})
	}
	for _, p := range o.Prefetch {
		if !prefetchFound[p] {
			return nil, fmt.Errorf("%s: %q is not a regular file in any indexed layer", AttrPrefetch, p)
		}
	}
	if len(bound) == 0 {
		return res, nil
	}
	ib, idesc, err := soci.BuildImageIndex(base, bound)
	if err != nil {
		return nil, fmt.Errorf("build image index: %w", err)
	}
	if err := writeBlob(ctx, cs, idesc, ib); err != nil {
		return nil, err
	}
	res.root = ocispecs.Descriptor{MediaType: idesc.MediaType, Digest: idesc.Digest, Size: idesc.Size}
	return res, nil
}

// layerZtoc returns the zTOC of a layer: the one stored when our compressor
// wrote it, else one built from the blob (base layers, cached layers).
func layerZtoc(ctx context.Context, cs content.Store, l ocispecs.Descriptor, o Options) (soci.LayerZtoc, *ztoc.Ztoc, bool, error) {
	if l.Size < o.MinLayerSize || !indexable(l.MediaType) {
		return soci.LayerZtoc{}, nil, false, nil
	}
	lz := soci.LayerZtoc{LayerDigest: l.Digest, LayerMediaType: l.MediaType}
	info, err := cs.Info(ctx, l.Digest)
	if err != nil {
		return lz, nil, false, fmt.Errorf("stat layer: %w", err)
	}
	var z *ztoc.Ztoc
	var zdesc ocispecs.Descriptor
	if zd, ok := info.Labels[LabelZtoc]; ok {
		d, err := digest.Parse(zd)
		if err != nil {
			return lz, nil, false, fmt.Errorf("label %s: %w", LabelZtoc, err)
		}
		zi, err := cs.Info(ctx, d)
		if err != nil {
			return lz, nil, false, fmt.Errorf("stat ztoc %s: %w", d, err)
		}
		zdesc = ocispecs.Descriptor{MediaType: soci.MediaTypeZtoc, Digest: d, Size: zi.Size}
		b, err := readBlob(ctx, cs, zdesc)
		if err != nil {
			return lz, nil, false, err
		}
		if z, err = ztoc.Unmarshal(b); err != nil {
			return lz, nil, false, fmt.Errorf("read ztoc %s: %w", d, err)
		}
		lz.SpanSize, _ = strconv.ParseInt(info.Labels[LabelZtocSpanSize], 10, 64)
	} else {
		ra, err := cs.ReaderAt(ctx, l)
		if err != nil {
			return lz, nil, false, fmt.Errorf("open layer: %w", err)
		}
		defer ra.Close()
		spanSize := o.EffectiveSpanSize()
		z, err = ztoc.Build(io.NewSectionReader(ra, 0, ra.Size()), ztoc.WithSpanSize(spanSize), ztoc.WithBuildToolIdentifier(BuildTool))
		if err != nil {
			return lz, nil, false, err
		}
		if zdesc, err = writeZtoc(ctx, cs, z); err != nil {
			return lz, nil, false, err
		}
		lz.SpanSize = spanSize
	}
	lz.Ztoc = zdesc
	lz.DisableXattrs = noXattrs(z)
	return lz, z, true, nil
}

func indexable(mt string) bool {
	switch mt {
	case ocispecs.MediaTypeImageLayerGzip, images.MediaTypeDockerSchema2LayerGzip,
		ocispecs.MediaTypeImageLayer, images.MediaTypeDockerSchema2Layer:
		return true
	}
	return false
}

// noXattrs tells whether the layer has no extended attributes and no opaque
// directories (which the runtime turns into an xattr).
func noXattrs(z *ztoc.Ztoc) bool {
	for k := range z.Files {
		f := &z.Files[k]
		if len(f.Xattrs()) > 0 || path.Base(f.Name) == ".wh..wh..opq" {
			return false
		}
	}
	return true
}

// prefetchOf returns the prefetch blob of a layer for the listed paths found
// in it as regular files, and those paths.
func prefetchOf(ctx context.Context, cs content.Store, layer digest.Digest, z *ztoc.Ztoc, paths []string) (*soci.LayerPrefetch, []string, error) {
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		return nil, nil, fmt.Errorf("index ztoc of %s: %w", layer, err)
	}
	var found []string
	var spans []soci.PrefetchSpan
	for _, p := range paths {
		e := z.Lookup(strings.TrimPrefix(p, "/"))
		if e == nil || e.Type != ztoc.TypeReg {
			continue
		}
		found = append(found, p)
		first, last := ix.SpansOf(e.UncompressedOffset, e.UncompressedSize)
		spans = append(spans, soci.PrefetchSpan{StartSpan: first, EndSpan: last})
	}
	if len(spans) == 0 {
		return nil, nil, nil
	}
	b, desc, err := soci.Prefetch{Layer: layer, Spans: spans}.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("marshal prefetch of %s: %w", layer, err)
	}
	if err := writeBlob(ctx, cs, desc, b); err != nil {
		return nil, nil, err
	}
	return &soci.LayerPrefetch{Layer: layer, Prefetch: desc}, found, nil
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
