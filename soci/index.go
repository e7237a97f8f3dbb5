package soci

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// LayerZtoc binds one image layer to its zTOC.
type LayerZtoc struct {
	// LayerDigest is the digest of the image layer (required).
	LayerDigest digest.Digest
	// LayerMediaType is the media type of the image layer. Upstream always
	// writes it; it is omitted when empty.
	LayerMediaType string
	// Ztoc is the zTOC blob. Only Digest and Size are written; ParseIndex
	// returns MediaType MediaTypeZtoc, Digest and Size, ready to fetch.
	Ztoc ocispec.Descriptor
	// SpanSize is the span size the zTOC was built with. 0 means unknown and
	// omits the annotation (soci before v0.4 did not write it).
	SpanSize int64
	// DisableXattrs tells the runtime the layer has no xattrs and no opaque
	// directories, so xattr lookups can be skipped.
	DisableXattrs bool
}

// LayerPrefetch binds one image layer to its prefetch blob (see [Prefetch]).
type LayerPrefetch struct {
	// Layer is the digest of the image layer; it must be one of the index's
	// LayerZtoc.LayerDigest.
	Layer digest.Digest
	// Prefetch is the prefetch blob. Only Digest and Size are written;
	// ParseIndex returns MediaType MediaTypePrefetch, Digest and Size.
	Prefetch ocispec.Descriptor
}

// LazyZtoc binds a zTOC to its lazy zTOC: the gzip of the zTOC blob with
// every checkpoint window's bytes zeroed (ztoc.EncodeLazy), which a
// runtime decodes before the mount instead of reading the zTOC, verified
// by the index's digest of it; the windows come from the zTOC when a span
// needs one. A socikit extension: upstream ignores the descriptor.
type LazyZtoc struct {
	// Ztoc is the zTOC's digest; it must be one of the index's zTOCs.
	Ztoc digest.Digest
	// Blob is the lazy zTOC. Only Digest and Size are written; ParseIndex
	// returns MediaType MediaTypeLazyZtoc, Digest and Size.
	Blob ocispec.Descriptor
}

// Index is a SOCI index. See [Index.Marshal] for the wire form.
type Index struct {
	// Version is V1 or V2.
	Version Version
	// Layers lists the indexed layers in image-layer order. Layers without a
	// zTOC (upstream skips those under 10 MiB) are simply absent. At least
	// one is required.
	Layers []LayerZtoc
	// Prefetches are written after the zTOCs, in this order (upstream uses
	// image-layer order).
	Prefetches []LayerPrefetch
	// LazyZtocs are written after the prefetch blobs, in this order.
	LazyZtocs []LazyZtoc
	// Subject is the platform image manifest, required for V1 and forbidden
	// for V2. Only MediaType, Digest and Size are written.
	Subject *ocispec.Descriptor
	// BuildTool is the AnnotationBuildToolIdentifier value, omitted when
	// empty. Upstream's CLI writes "AWS SOCI CLI v0.2".
	BuildTool string
	// Annotations are any other manifest annotations. They must not contain
	// AnnotationBuildToolIdentifier.
	Annotations map[string]string
}

// Marshal returns the index manifest and its descriptor (media type OCI image
// manifest, ArtifactType = Version.MediaType(), digest, size). The bytes are
// deterministic and shaped as upstream's: encoding/json of an
// ocispec.Manifest with schemaVersion 2, mediaType
// application/vnd.oci.image.manifest.v1+json, no artifactType, config =
// Version.ConfigDescriptor(), layers = the zTOC descriptors then the prefetch
// descriptors then the lazy zTOC descriptors, subject (V1 only), annotations. The config blob
// (EmptyConfigJSON) must be pushed as well.
//
// Marshal validates its output with [ParseIndex], so whatever it writes parses.
func (ix *Index) Marshal() ([]byte, ocispec.Descriptor, error) {
	if ix.Version.MediaType() == "" {
		return nil, ocispec.Descriptor{}, fmt.Errorf("marshal SOCI index: version %v: %w", ix.Version, ErrUnsupportedVersion)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ix.Version.ConfigDescriptor(),
		Layers:    make([]ocispec.Descriptor, 0, len(ix.Layers)+len(ix.Prefetches)+len(ix.LazyZtocs)),
	}
	for _, l := range ix.Layers {
		a := map[string]string{AnnotationImageLayerDigest: l.LayerDigest.String()}
		if l.LayerMediaType != "" {
			a[AnnotationImageLayerMediaType] = l.LayerMediaType
		}
		if l.SpanSize != 0 {
			a[AnnotationSpanSize] = strconv.FormatInt(l.SpanSize, 10)
		}
		if l.DisableXattrs {
			a[AnnotationDisableXattrs] = "true"
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: MediaTypeZtoc, Digest: l.Ztoc.Digest, Size: l.Ztoc.Size, Annotations: a})
	}
	for _, p := range ix.Prefetches {
		m.Layers = append(m.Layers, ocispec.Descriptor{
			MediaType:   MediaTypePrefetch,
			Digest:      p.Prefetch.Digest,
			Size:        p.Prefetch.Size,
			Annotations: map[string]string{AnnotationImageLayerDigest: p.Layer.String()},
		})
	}
	for _, lz := range ix.LazyZtocs {
		m.Layers = append(m.Layers, ocispec.Descriptor{
			MediaType:   MediaTypeLazyZtoc,
			Digest:      lz.Blob.Digest,
			Size:        lz.Blob.Size,
			Annotations: map[string]string{AnnotationZtocDigest: lz.Ztoc.String()},
		})
	}
	if ix.Subject != nil {
		m.Subject = &ocispec.Descriptor{MediaType: ix.Subject.MediaType, Digest: ix.Subject.Digest, Size: ix.Subject.Size}
	}
	if _, ok := ix.Annotations[AnnotationBuildToolIdentifier]; ok {
		return nil, ocispec.Descriptor{}, fmt.Errorf("marshal SOCI index: %w",
			fieldErr("annotations", "%s must be set through BuildTool", AnnotationBuildToolIdentifier))
	}
	m.Annotations = cloneMap(ix.Annotations)
	if ix.BuildTool != "" {
		if m.Annotations == nil {
			m.Annotations = make(map[string]string, 1)
		}
		m.Annotations[AnnotationBuildToolIdentifier] = ix.BuildTool
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("marshal SOCI index: %w", err)
	}
	if _, err := ParseIndex(b); err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("marshal SOCI index: %w", err)
	}
	return b, ocispec.Descriptor{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ix.Version.MediaType(),
		Digest:       digest.FromBytes(b),
		Size:         int64(len(b)),
	}, nil
}

// ParseIndex parses and validates a SOCI index manifest. It checks:
//
//   - size <= MaxDocumentSize (ErrTooLarge), valid JSON;
//   - schemaVersion 2; mediaType empty or the OCI image manifest type;
//     artifactType empty or equal to the config media type;
//   - config: media type MediaTypeIndexV1 or MediaTypeIndexV2 (else
//     ErrUnsupportedVersion), digest EmptyConfigDigest, size 2;
//   - at least one zTOC; digests parse; sizes > 0; a layer descriptor
//     that is not a zTOC, a prefetch blob or a lazy zTOC is skipped,
//     so that blobs a newer builder adds do not make
//     an older reader refuse the index;
//   - AnnotationImageLayerDigest present and a valid digest on each zTOC
//     and prefetch blob; AnnotationZtocDigest on each lazy zTOC, naming a
//     zTOC of the index, at most one lazy zTOC per zTOC (except as an exact
//     repeat);
//     AnnotationSpanSize, when present, a canonical decimal > 0;
//     AnnotationDisableXattrs, when present, a strconv.ParseBool value;
//   - a layer digest appears at most once among the zTOCs (and among the
//     prefetches), except as an exact repeat, which upstream writes for
//     images that repeat a layer; every prefetch names an indexed layer;
//   - V1 has a valid subject; V2 has none (a subject would make a v2 index
//     a referrer too, bringing back the mutable binding v2 exists to avoid).
//
// Unknown descriptor annotations and the body's artifactType are dropped.
// Errors match ErrInvalid and are *FieldError values naming the field.
func ParseIndex(b []byte) (*Index, error) {
	ix, err := parseIndex(b)
	if err != nil {
		return nil, fmt.Errorf("parse SOCI index: %w", err)
	}
	return ix, nil
}

func parseIndex(b []byte) (*Index, error) {
	if len(b) > MaxDocumentSize {
		return nil, fmt.Errorf("%d bytes: %w", len(b), ErrTooLarge)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &FieldError{Field: "manifest", Err: err}
	}
	if m.SchemaVersion != 2 {
		return nil, fieldErr("schemaVersion", "%d (want 2)", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fieldErr("mediaType", "%q (want %q)", m.MediaType, ocispec.MediaTypeImageManifest)
	}
	v, ok := versionFromMediaType(m.Config.MediaType)
	if !ok {
		return nil, &FieldError{Field: "config.mediaType", Err: fmt.Errorf("%q: %w", m.Config.MediaType, ErrUnsupportedVersion)}
	}
	if m.ArtifactType != "" && m.ArtifactType != m.Config.MediaType {
		return nil, fieldErr("artifactType", "%q does not match config media type %q", m.ArtifactType, m.Config.MediaType)
	}
	if m.Config.Digest != EmptyConfigDigest {
		return nil, fieldErr("config.digest", "%q (want %s)", m.Config.Digest, EmptyConfigDigest)
	}
	if m.Config.Size != EmptyConfigSize {
		return nil, fieldErr("config.size", "%d (want %d)", m.Config.Size, EmptyConfigSize)
	}

	ix := &Index{Version: v}
	ztocs := make(map[digest.Digest]LayerZtoc)
	prefetches := make(map[digest.Digest]LayerPrefetch)
	lazies := make(map[digest.Digest]LazyZtoc)
	for i, d := range m.Layers {
		field := fmt.Sprintf("layers[%d]", i)
		dg, err := parseDigest(field+".digest", string(d.Digest))
		if err != nil {
			return nil, err
		}
		if d.Size <= 0 {
			return nil, fieldErr(field+".size", "%d (want > 0)", d.Size)
		}
		switch d.MediaType {
		case MediaTypeZtoc, MediaTypePrefetch, MediaTypeLazyZtoc:
		default:
			// A blob a newer builder added: skipped, as upstream skips
			// what it does not know, so that an index with it still
			// mounts lazily here.
			continue
		}
		if d.MediaType == MediaTypeLazyZtoc {
			key := annotationField(field, AnnotationZtocDigest)
			if _, ok := d.Annotations[AnnotationZtocDigest]; !ok {
				return nil, fieldErr(key, "missing")
			}
			zd, err := parseDigest(key, d.Annotations[AnnotationZtocDigest])
			if err != nil {
				return nil, err
			}
			lz := LazyZtoc{Ztoc: zd, Blob: ocispec.Descriptor{MediaType: MediaTypeLazyZtoc, Digest: dg, Size: d.Size}}
			if prev, ok := lazies[zd]; ok && !sameDescriptor(prev.Blob, lz.Blob) {
				return nil, fieldErr(key, "zTOC %s has two different lazy zTOCs", zd)
			}
			lazies[zd] = lz
			ix.LazyZtocs = append(ix.LazyZtocs, lz)
			continue
		}
		layer, err := parseDigest(annotationField(field, AnnotationImageLayerDigest), d.Annotations[AnnotationImageLayerDigest])
		if err != nil {
			if _, ok := d.Annotations[AnnotationImageLayerDigest]; !ok {
				return nil, fieldErr(annotationField(field, AnnotationImageLayerDigest), "missing")
			}
			return nil, err
		}
		switch d.MediaType {
		case MediaTypeZtoc:
			lz := LayerZtoc{
				LayerDigest:    layer,
				LayerMediaType: d.Annotations[AnnotationImageLayerMediaType],
				Ztoc:           ocispec.Descriptor{MediaType: MediaTypeZtoc, Digest: dg, Size: d.Size},
			}
			if s, ok := d.Annotations[AnnotationSpanSize]; ok {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n <= 0 || strconv.FormatInt(n, 10) != s {
					return nil, fieldErr(annotationField(field, AnnotationSpanSize), "%q is not a decimal > 0", s)
				}
				lz.SpanSize = n
			}
			if s, ok := d.Annotations[AnnotationDisableXattrs]; ok {
				x, err := strconv.ParseBool(s)
				if err != nil {
					return nil, fieldErr(annotationField(field, AnnotationDisableXattrs), "%q is not a bool", s)
				}
				lz.DisableXattrs = x
			}
			if prev, ok := ztocs[layer]; ok && !sameLayerZtoc(prev, lz) {
				return nil, fieldErr(annotationField(field, AnnotationImageLayerDigest), "layer %s indexed twice with different zTOCs", layer)
			}
			ztocs[layer] = lz
			ix.Layers = append(ix.Layers, lz)
		case MediaTypePrefetch:
			lp := LayerPrefetch{Layer: layer, Prefetch: ocispec.Descriptor{MediaType: MediaTypePrefetch, Digest: dg, Size: d.Size}}
			if prev, ok := prefetches[layer]; ok && !sameDescriptor(prev.Prefetch, lp.Prefetch) {
				return nil, fieldErr(annotationField(field, AnnotationImageLayerDigest), "layer %s has two different prefetch blobs", layer)
			}
			prefetches[layer] = lp
			ix.Prefetches = append(ix.Prefetches, lp)
		}
	}
	if len(ix.Layers) == 0 {
		return nil, fieldErr("layers", "no zTOC")
	}
	for i, p := range ix.Prefetches {
		if _, ok := ztocs[p.Layer]; !ok {
			return nil, fieldErr(fmt.Sprintf("prefetch for layer %s (descriptor %d)", p.Layer, i), "layer has no zTOC in the index")
		}
	}
	for i, lz := range ix.LazyZtocs {
		if !slices.ContainsFunc(ix.Layers, func(l LayerZtoc) bool { return l.Ztoc.Digest == lz.Ztoc }) {
			return nil, fieldErr(fmt.Sprintf("lazy zTOC of zTOC %s (descriptor %d)", lz.Ztoc, i), "not a zTOC of the index")
		}
	}

	switch {
	case v == V1 && m.Subject == nil:
		return nil, fieldErr("subject", "missing (required for %v)", v)
	case v == V2 && m.Subject != nil:
		return nil, fieldErr("subject", "present (forbidden for %v)", v)
	case m.Subject != nil:
		dg, err := parseDigest("subject.digest", string(m.Subject.Digest))
		if err != nil {
			return nil, err
		}
		if m.Subject.Size <= 0 {
			return nil, fieldErr("subject.size", "%d (want > 0)", m.Subject.Size)
		}
		ix.Subject = &ocispec.Descriptor{MediaType: m.Subject.MediaType, Digest: dg, Size: m.Subject.Size}
	}

	ix.BuildTool = m.Annotations[AnnotationBuildToolIdentifier]
	ix.Annotations = cloneMap(m.Annotations)
	delete(ix.Annotations, AnnotationBuildToolIdentifier)
	if len(ix.Annotations) == 0 {
		ix.Annotations = nil
	}
	return ix, nil
}

func annotationField(field, key string) string { return field + ".annotations[" + key + "]" }

func sameDescriptor(a, b ocispec.Descriptor) bool {
	return a.MediaType == b.MediaType && a.Digest == b.Digest && a.Size == b.Size
}

func sameLayerZtoc(a, b LayerZtoc) bool {
	return a.LayerDigest == b.LayerDigest && a.LayerMediaType == b.LayerMediaType && sameDescriptor(a.Ztoc, b.Ztoc) &&
		a.SpanSize == b.SpanSize && a.DisableXattrs == b.DisableXattrs
}
