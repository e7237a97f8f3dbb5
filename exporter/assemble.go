package exporter

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// AnnotationDockerReferenceType marks BuildKit's attestation manifests in
// an image index (value "attestation-manifest"); they are kept, not
// indexed.
const AnnotationDockerReferenceType = "vnd.docker.reference.type"

// ErrNoLayers is returned by Assemble when no selected image has a layer
// with a zTOC, so there is no SOCI index to make.
var ErrNoLayers = errors.New("no layer with a zTOC")

// ImageManifest is one platform image manifest of the image being made
// SOCI-enabled.
type ImageManifest struct {
	// Desc is the manifest's descriptor as the root lists it (or the root
	// itself for a single-manifest image); Body its bytes.
	Desc ocispec.Descriptor
	Body []byte
	// Platform is the image's platform (from the index entry or its
	// config); required for v2.
	Platform *ocispec.Platform
	// Skip leaves the image without a SOCI index: a v2 image index still
	// lists it, its manifest only normalized to OCI media types.
	Skip bool
}

// LayerIndex is the zTOC of one image layer.
type LayerIndex struct {
	// Ztoc is the parsed zTOC and Blob its bytes, as pushed.
	Ztoc *ztoc.Ztoc
	Blob []byte
	// SpanSize is the span size annotation (0: read from the checkpoint
	// blob's header).
	SpanSize int64
	// Prefetch lists span ranges to prefetch besides those of
	// Request.Prefetch (e.g. LayerResult.Prefetch).
	Prefetch []soci.PrefetchSpan

	ix *ztoc.Index
	zl *zLayer
}

// NewLayerIndex parses a serialized zTOC (as BuildLayer's ZtocBlob, or one
// from ztoc.Build and ztoc.Marshal).
func NewLayerIndex(blob []byte) (*LayerIndex, error) {
	z, err := ztoc.Unmarshal(blob)
	if err != nil {
		return nil, err
	}
	return &LayerIndex{Ztoc: z, Blob: blob}, nil
}

func (l *LayerIndex) index() (*ztoc.Index, error) {
	if l.ix == nil {
		ix, err := ztoc.NewIndex(l.Ztoc)
		if err != nil {
			return nil, err
		}
		l.ix = ix
	}
	return l.ix, nil
}

// names returns the layer's name lookup (built once).
func (l *LayerIndex) names() (*zLayer, error) {
	if l.zl == nil {
		ix, err := l.index()
		if err != nil {
			return nil, err
		}
		l.zl = newZLayer(ix)
	}
	return l.zl, nil
}

// Request is what Assemble makes SOCI-enabled.
type Request struct {
	// Version is the SOCI index version: soci.V2 (binding in the image
	// index) or soci.V1 (referrer).
	Version soci.Version
	// BuildTool is written as the index's build tool identifier.
	BuildTool string
	// Root is the image's root: an image index (or Docker manifest list)
	// or a single image manifest, and RootBody its bytes.
	Root     ocispec.Descriptor
	RootBody []byte
	// Images are the platform images of Root, in its order (for a
	// single-manifest root, that manifest). Index entries that are not
	// listed (attestations, other artifacts) are kept as they are.
	Images []ImageManifest
	// Layers holds the zTOCs by image layer digest. Layers without one
	// are not indexed (under the minimum size, not tar, ...).
	Layers map[digest.Digest]*LayerIndex
	// Prefetch lists files whose spans go in the prefetch blobs of every
	// indexed layer holding them. Each must be held by an indexed layer
	// of every indexed image (else a *PrefetchNotFoundError).
	Prefetch []string
	// Profile is a start-up profile: the spans holding its hot byte
	// ranges go in the prefetch blobs (ImagePrefetchRanges, per image);
	// paths no indexed layer holds are listed in Output.ProfileMissing,
	// not an error.
	Profile *profile.Profile
	// StoreProfile (v2 only) attaches Profile to each indexed image as an
	// OCI artifact listed in the image index (artifactType
	// profile.MediaType, platform unknown/unknown, annotated like BuildKit's
	// attestations with the image manifest's digest; FindProfile), so
	// later builds and tools find it.
	StoreProfile bool
	// NoLazyZtoc leaves out the lazy zTOCs (soci.LazyZtoc), which by
	// default go in the index beside every zTOC in upstream's layout: a
	// runtime reads one before the mount instead of the zTOC, its TOC
	// checked by the index's digest (ztoc.EncodeLazy).
	NoLazyZtoc bool
}

// PrefetchNotFoundError reports a prefetch path that no indexed layer of
// an image holds.
type PrefetchNotFoundError struct {
	Path     string
	Image    digest.Digest
	Platform string
}

func (e *PrefetchNotFoundError) Error() string {
	return fmt.Sprintf("prefetch %s: no indexed layer of image %s (%s) holds it", e.Path, e.Image, e.Platform)
}

// Blob is content to store by descriptor.
type Blob struct {
	Desc ocispec.Descriptor
	Body []byte
}

// Referrer is a v1 SOCI index, stored as a referrer of Subject.
type Referrer struct {
	Subject digest.Digest
	Desc    ocispec.Descriptor
	Body    []byte
}

// IndexedImage is an image that got a SOCI index.
type IndexedImage struct {
	// Original is the manifest digest before binding; Manifest the
	// descriptor of the manifest the index goes with (v2: the rewritten
	// one; v1: the original).
	Original digest.Digest
	Manifest ocispec.Descriptor
	// Index is the SOCI index descriptor, IndexBody its bytes.
	Index     ocispec.Descriptor
	IndexBody []byte
}

// Output is everything a SOCI-enabled image adds or rewrites. Write stores
// it; callers with their own store may walk the fields in order instead:
// Blobs, then Manifests, then Root, then Referrers.
type Output struct {
	// Blobs: the SOCI config ("{}"), zTOCs and prefetch blobs, each once.
	Blobs []Blob
	// Manifests to store before Root: v2, the SOCI indexes and then every
	// image manifest rewritten by soci.BindV2; v1, the image manifests
	// unchanged.
	Manifests []Blob
	// Root is the image's new root (v2: an OCI image index listing the
	// rewritten manifests, kept entries and SOCI indexes) or its unchanged
	// root (v1), to tag.
	Root Blob
	// Referrers are the v1 SOCI indexes.
	Referrers []Referrer
	// Indexed lists the images that got an index; Unindexed the images
	// not skipped that have no layer with a zTOC, and so got none.
	Indexed   []IndexedImage
	Unindexed []ImageManifest
	// ProfileMissing lists Request.Profile's paths that no indexed layer
	// of an image holds (once per image), to warn about.
	ProfileMissing []string
}

// Assemble builds the SOCI indexes, prefetch blobs and, for v2, the
// rewritten manifests and image index of an image, in memory. Nothing of
// the image's own content (configs, layers, attestation manifests) is in
// the Output: the caller copies it to the target first. The output is
// deterministic: it depends only on the request.
func Assemble(req *Request) (*Output, error) {
	if req.Version != soci.V1 && req.Version != soci.V2 {
		return nil, fmt.Errorf("assemble: SOCI index version %v: %w", req.Version, soci.ErrUnsupportedVersion)
	}
	out := &Output{}
	seen := map[digest.Digest]bool{}
	addBlob := func(d ocispec.Descriptor, b []byte) {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			out.Blobs = append(out.Blobs, Blob{Desc: d, Body: b})
		}
	}
	addBlob(soci.V1.ConfigDescriptor(), []byte(soci.EmptyConfigJSON))
	index := make([]*IndexedImage, len(req.Images))
	for i := range req.Images {
		im := &req.Images[i]
		if im.Skip {
			continue
		}
		desc, body, err := buildIndex(req, im, addBlob, &out.ProfileMissing)
		if err != nil {
			return nil, err
		}
		if body == nil {
			out.Unindexed = append(out.Unindexed, *im)
			continue
		}
		index[i] = &IndexedImage{Original: im.Desc.Digest, Manifest: im.Desc, Index: desc, IndexBody: body}
	}
	for _, ix := range index {
		if ix != nil {
			out.Indexed = append(out.Indexed, *ix)
		}
	}
	if len(out.Indexed) == 0 {
		return nil, fmt.Errorf("assemble: %w", ErrNoLayers)
	}

	if req.Version == soci.V1 {
		for _, im := range req.Images {
			out.Manifests = append(out.Manifests, Blob{Desc: im.Desc, Body: im.Body})
		}
		if image.IsManifest(req.Root.MediaType) {
			out.Manifests = nil // the root is the only manifest
		}
		out.Root = Blob{Desc: req.Root, Body: req.RootBody}
		for _, ix := range out.Indexed {
			out.Referrers = append(out.Referrers, Referrer{Subject: ix.Original, Desc: ix.Index, Body: ix.IndexBody})
		}
		return out, nil
	}

	// v2: SOCI indexes, then the bound manifests, then the image index.
	for _, ix := range out.Indexed {
		out.Manifests = append(out.Manifests, Blob{Desc: ix.Index, Body: ix.IndexBody})
	}
	bound := make([]soci.BoundImage, 0, len(req.Images))
	k := 0
	for i, im := range req.Images {
		var idx ocispec.Descriptor
		if index[i] != nil {
			idx = index[i].Index
		}
		body, mdesc, err := soci.BindV2(im.Body, im.Platform, idx)
		if err != nil {
			return nil, fmt.Errorf("assemble: bind image %s: %w", im.Desc.Digest, err)
		}
		out.Manifests = append(out.Manifests, Blob{Desc: mdesc, Body: body})
		bound = append(bound, soci.BoundImage{Original: im.Desc.Digest, Manifest: mdesc, Index: idx})
		if index[i] != nil {
			out.Indexed[k].Manifest = mdesc
			k++
		}
	}
	var base []byte
	if image.IsIndex(req.Root.MediaType) {
		base = req.RootBody
	}
	ib, idesc, err := soci.BuildImageIndex(base, bound)
	if err != nil {
		return nil, fmt.Errorf("assemble: %w", err)
	}
	if req.Profile != nil && req.StoreProfile {
		if ib, idesc, err = attachProfiles(ib, out, req.Profile, addBlob); err != nil {
			return nil, fmt.Errorf("assemble: %w", err)
		}
	}
	out.Root = Blob{Desc: idesc, Body: ib}
	return out, nil
}

// buildIndex returns the SOCI index of image im (nil body if none of its
// layers has a zTOC), adding its zTOCs and prefetch blobs.
func buildIndex(req *Request, im *ImageManifest, addBlob func(ocispec.Descriptor, []byte), profileMissing *[]string) (ocispec.Descriptor, []byte, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(im.Body, &m); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("assemble: parse image manifest %s: %w", im.Desc.Digest, err)
	}
	ix := &soci.Index{Version: req.Version, BuildTool: req.BuildTool}
	type indexed struct {
		layer ocispec.Descriptor
		li    *LayerIndex
	}
	var layers []indexed
	for _, l := range m.Layers {
		li := req.Layers[l.Digest]
		if li == nil {
			continue
		}
		span := li.SpanSize
		if span == 0 {
			var err error
			if span, err = spanSizeOf(li.Ztoc); err != nil {
				return ocispec.Descriptor{}, nil, fmt.Errorf("assemble: zTOC of layer %s: %w", l.Digest, err)
			}
		}
		zdesc := ocispec.Descriptor{MediaType: soci.MediaTypeZtoc, Digest: digest.FromBytes(li.Blob), Size: int64(len(li.Blob))}
		addBlob(zdesc, li.Blob)
		ix.Layers = append(ix.Layers, soci.LayerZtoc{LayerDigest: l.Digest, LayerMediaType: l.MediaType,
			Ztoc: zdesc, SpanSize: span, DisableXattrs: NoXattrs(li.Ztoc)})
		if !req.NoLazyZtoc && !slices.ContainsFunc(ix.LazyZtocs, func(z soci.LazyZtoc) bool { return z.Ztoc == zdesc.Digest }) {
			gz, err := ztoc.EncodeLazy(li.Blob)
			switch {
			case err == nil:
				ldesc := ocispec.Descriptor{MediaType: soci.MediaTypeLazyZtoc, Digest: digest.FromBytes(gz), Size: int64(len(gz))}
				addBlob(ldesc, gz)
				ix.LazyZtocs = append(ix.LazyZtocs, soci.LazyZtoc{Ztoc: zdesc.Digest, Blob: ldesc})
			case !errors.Is(err, ztoc.ErrNotLazy):
				return ocispec.Descriptor{}, nil, fmt.Errorf("assemble: lazy zTOC of layer %s: %w", l.Digest, err)
			}
		}
		layers = append(layers, indexed{layer: l, li: li})
	}
	if len(ix.Layers) == 0 {
		return ocispec.Descriptor{}, nil, nil
	}
	spans := map[digest.Digest][]soci.PrefetchSpan{}
	for _, l := range layers {
		spans[l.layer.Digest] = append(spans[l.layer.Digest], l.li.Prefetch...)
	}
	if req.Profile != nil {
		zs := make([]*ztoc.Ztoc, len(m.Layers))
		for i, l := range m.Layers {
			if li := req.Layers[l.Digest]; li != nil {
				zs[i] = li.Ztoc
			}
		}
		hot, missing, err := ImagePrefetchRanges(zs, req.Profile)
		if err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("assemble: profile of image %s: %w", im.Desc.Digest, err)
		}
		for i, l := range m.Layers {
			spans[l.Digest] = append(spans[l.Digest], hot[i]...)
		}
		*profileMissing = append(*profileMissing, missing...)
	}
	for _, p := range req.Prefetch {
		found := false
		for _, l := range layers {
			zl, err := l.li.names()
			if err != nil {
				return ocispec.Descriptor{}, nil, fmt.Errorf("assemble: zTOC of layer %s: %w", l.layer.Digest, err)
			}
			s, missing := zl.prefetch(wholeFiles([]string{p}))
			if len(missing) > 0 {
				continue
			}
			found = true
			spans[l.layer.Digest] = append(spans[l.layer.Digest], s...)
		}
		if !found {
			return ocispec.Descriptor{}, nil, &PrefetchNotFoundError{Path: p, Image: im.Desc.Digest, Platform: platformString(im.Platform)}
		}
	}
	done := map[digest.Digest]bool{}
	for _, l := range layers {
		s := spans[l.layer.Digest]
		if len(s) == 0 || done[l.layer.Digest] {
			continue
		}
		done[l.layer.Digest] = true
		body, desc, err := soci.Prefetch{Layer: l.layer.Digest, Spans: MergeSpans(s)}.Marshal()
		if err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("assemble: %w", err)
		}
		addBlob(desc, body)
		ix.Prefetches = append(ix.Prefetches, soci.LayerPrefetch{Layer: l.layer.Digest, Prefetch: desc})
	}
	if req.Version == soci.V1 {
		ix.Subject = &ocispec.Descriptor{MediaType: im.Desc.MediaType, Digest: im.Desc.Digest, Size: int64(len(im.Body))}
	}
	body, desc, err := ix.Marshal()
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("assemble: image %s: %w", im.Desc.Digest, err)
	}
	return desc, body, nil
}

// Write stores o in dst: blobs, manifests, the root and the referrers, in
// that order, so that everything a manifest references is there before it;
// the root is tagged tag (unless "") last, so a failure before leaves the
// tag as it was (a refused v1 index does not leave the image tagged).
func (o *Output) Write(ctx context.Context, dst image.Target, tag string) error {
	for _, b := range o.Blobs {
		if err := dst.WriteBlob(ctx, b.Desc, bytesOpener(b.Body)); err != nil {
			return err
		}
	}
	for _, m := range o.Manifests {
		if err := dst.PutManifest(ctx, m.Desc, m.Body, ""); err != nil {
			return err
		}
	}
	rootTag := tag
	if len(o.Referrers) > 0 {
		rootTag = ""
	}
	if err := dst.PutManifest(ctx, o.Root.Desc, o.Root.Body, rootTag); err != nil {
		return err
	}
	for _, r := range o.Referrers {
		if err := dst.PutReferrer(ctx, r.Subject, r.Desc, r.Body); err != nil {
			return err
		}
	}
	if rootTag != tag {
		return dst.PutManifest(ctx, o.Root.Desc, o.Root.Body, tag)
	}
	return nil
}

func bytesOpener(b []byte) image.Opener {
	return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// IsPlatformImage reports whether an image index entry is a platform image
// to index: an image manifest that is not an attestation (BuildKit marks
// them with AnnotationDockerReferenceType and platform unknown/unknown)
// nor a SOCI index.
func IsPlatformImage(d ocispec.Descriptor) bool {
	if !image.IsManifest(d.MediaType) {
		return false
	}
	if d.ArtifactType == soci.MediaTypeIndexV2 || d.ArtifactType == soci.MediaTypeIndexV1 {
		return false
	}
	if _, ok := d.Annotations[soci.AnnotationImageManifestDigest]; ok {
		return false
	}
	if _, ok := d.Annotations[AnnotationDockerReferenceType]; ok {
		return false
	}
	return d.Platform == nil || d.Platform.OS != "unknown"
}

// NoXattrs reports whether a layer has no extended attributes and no
// opaque directories, so the runtime may skip xattr lookups (upstream's
// disable-xattrs rule).
func NoXattrs(z *ztoc.Ztoc) bool {
	for i := range z.Files {
		f := &z.Files[i]
		if len(f.Xattrs()) > 0 {
			return false
		}
		if path.Base(cleanName(f.Name)) == ".wh..wh..opq" {
			return false
		}
	}
	return true
}

// spanSizeOf reads the span size from a zTOC's checkpoint blob header.
func spanSizeOf(z *ztoc.Ztoc) (int64, error) {
	if z.Compression == ztoc.Uncompressed {
		t, err := ztoc.ParseTarCheckpoints(z.Checkpoints)
		if err != nil {
			return 0, err
		}
		return t.SpanSize, nil
	}
	if len(z.Checkpoints) < 12 {
		return 0, fmt.Errorf("checkpoint blob of %d bytes", len(z.Checkpoints))
	}
	return int64(binary.LittleEndian.Uint64(z.Checkpoints[4:12])), nil
}

// platformString formats p for messages (platforms.Format).
func platformString(p *ocispec.Platform) string {
	if p == nil {
		return "unknown platform"
	}
	return platforms.Format(*p)
}
