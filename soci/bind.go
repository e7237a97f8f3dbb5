package soci

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BindV2 rewrites a platform image manifest (OCI or Docker schema 2) the way
// upstream's `soci convert` does:
//
//   - mediaType is forced to the OCI image manifest type and config.mediaType
//     to the OCI image config type (registries reject OCI indexes that mix in
//     Docker manifests). Layer media types are left as they are;
//   - the annotation AnnotationIndexDigest = index.Digest is added (replacing
//     any previous one). With a zero index (empty Digest) only the media types
//     are normalized, as upstream does for platforms it did not index;
//   - the result is re-encoded through ocispec.Manifest, so, as upstream,
//     fields the OCI type does not know are dropped.
//
// index is the SOCI index descriptor from [Index.Marshal]; its ArtifactType,
// if set, must be MediaTypeIndexV2. The returned descriptor (OCI manifest media
// type, digest, size, the manifest's annotations, platform) is what
// [BuildImageIndex] expects in [BoundImage.Manifest].
func BindV2(manifest []byte, platform *ocispec.Platform, index ocispec.Descriptor) ([]byte, ocispec.Descriptor, error) {
	b, desc, err := bindV2(manifest, platform, index)
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("bind SOCI index %s: %w", index.Digest, err)
	}
	return b, desc, nil
}

func bindV2(manifest []byte, platform *ocispec.Platform, index ocispec.Descriptor) ([]byte, ocispec.Descriptor, error) {
	if index.Digest != "" {
		if err := index.Digest.Validate(); err != nil {
			return nil, ocispec.Descriptor{}, &FieldError{Field: "index.digest", Err: err}
		}
		if index.ArtifactType != "" && index.ArtifactType != MediaTypeIndexV2 {
			return nil, ocispec.Descriptor{}, fieldErr("index.artifactType", "%q (want %q)", index.ArtifactType, MediaTypeIndexV2)
		}
	}
	if len(manifest) > MaxDocumentSize {
		return nil, ocispec.Descriptor{}, fmt.Errorf("image manifest: %d bytes: %w", len(manifest), ErrTooLarge)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, ocispec.Descriptor{}, &FieldError{Field: "manifest", Err: err}
	}
	if m.SchemaVersion != 2 {
		return nil, ocispec.Descriptor{}, fieldErr("manifest.schemaVersion", "%d (want 2)", m.SchemaVersion)
	}
	switch m.MediaType {
	case "", ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
	default:
		return nil, ocispec.Descriptor{}, fieldErr("manifest.mediaType", "%q is not an image manifest", m.MediaType)
	}
	switch m.Config.MediaType {
	case ocispec.MediaTypeImageConfig, mediaTypeDockerConfig:
	default:
		return nil, ocispec.Descriptor{}, fieldErr("manifest.config.mediaType", "%q is not an image config", m.Config.MediaType)
	}
	m.MediaType = ocispec.MediaTypeImageManifest
	m.Config.MediaType = ocispec.MediaTypeImageConfig
	if index.Digest != "" {
		if m.Annotations == nil {
			m.Annotations = make(map[string]string, 1)
		}
		m.Annotations[AnnotationIndexDigest] = index.Digest.String()
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return b, ocispec.Descriptor{
		MediaType:   ocispec.MediaTypeImageManifest,
		Digest:      digest.FromBytes(b),
		Size:        int64(len(b)),
		Annotations: cloneMap(m.Annotations),
		Platform:    clonePlatform(platform),
	}, nil
}

// BoundImage is one image manifest rewritten by [BindV2].
type BoundImage struct {
	// Original is the digest of the manifest before BindV2: the entry it
	// replaces in the base image index. Unused without a base.
	Original digest.Digest
	// Manifest is the descriptor BindV2 returned. Its Platform (or the
	// platform of the entry it replaces) is required when Index is set.
	Manifest ocispec.Descriptor
	// Index is the SOCI index descriptor passed to BindV2 (digest and size
	// are used), or zero for a manifest that was only normalized.
	Index ocispec.Descriptor
}

// BuildImageIndex returns the OCI image index of a v2 SOCI-enabled image, as
// upstream's `soci convert` lays it out, and its descriptor.
//
// base is the original image index (OCI index or Docker manifest list), or
// nil for a single-platform image. With a base, each image's Original entry is
// replaced in place: media type OCI manifest, the new digest and size, the
// new manifest's annotations (so AnnotationIndexDigest is visible without
// fetching it), platform kept (Manifest.Platform if the entry had none). All
// other entries, such as BuildKit attestation manifests, stay where they
// are; a vnd.docker.reference.digest annotation naming an Original is
// updated to the new digest so the attestation stays attached. Without a
// base, the index lists the images' Manifest descriptors in order.
//
// Then, for each image with an Index, a SOCI index descriptor follows:
// media type OCI manifest, artifactType MediaTypeIndexV2, annotation
// AnnotationImageManifestDigest = the new manifest digest, and the manifest's
// platform. An existing SOCI v2 descriptor (artifactType MediaTypeIndexV2 or
// annotated with AnnotationImageManifestDigest) for the same platform is
// replaced in place, so converting a converted image does not pile up
// indexes. The index mediaType is forced to the OCI type; as upstream, the
// base is re-encoded through ocispec.Index, so unknown fields are dropped.
func BuildImageIndex(base []byte, images []BoundImage) ([]byte, ocispec.Descriptor, error) {
	b, err := buildImageIndex(base, images)
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("build SOCI image index: %w", err)
	}
	return b, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(b), Size: int64(len(b))}, nil
}

func buildImageIndex(base []byte, images []BoundImage) ([]byte, error) {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}}
	if base != nil {
		var err error
		if idx, err = parseImageIndex(base); err != nil {
			return nil, err
		}
	}
	idx.MediaType = ocispec.MediaTypeImageIndex

	for i, im := range images {
		field := fmt.Sprintf("images[%d]", i)
		if err := im.Manifest.Digest.Validate(); err != nil {
			return nil, &FieldError{Field: field + ".manifest.digest", Err: err}
		}
		if im.Manifest.Size <= 0 {
			return nil, fieldErr(field+".manifest.size", "%d (want > 0)", im.Manifest.Size)
		}
		if im.Index.Digest != "" {
			if err := im.Index.Digest.Validate(); err != nil {
				return nil, &FieldError{Field: field + ".index.digest", Err: err}
			}
			if im.Index.Size <= 0 {
				return nil, fieldErr(field+".index.size", "%d (want > 0)", im.Index.Size)
			}
			if got := im.Manifest.Annotations[AnnotationIndexDigest]; got != im.Index.Digest.String() {
				return nil, fieldErr(annotationField(field+".manifest", AnnotationIndexDigest), "%q does not name the index %s (was the manifest bound with BindV2?)", got, im.Index.Digest)
			}
		}
		if base == nil {
			d := im.Manifest
			d.MediaType = ocispec.MediaTypeImageManifest
			d.Annotations = cloneMap(d.Annotations)
			d.Platform = clonePlatform(d.Platform)
			idx.Manifests = append(idx.Manifests, d)
			continue
		}
		if err := im.Original.Validate(); err != nil {
			return nil, &FieldError{Field: field + ".original", Err: err}
		}
		n := 0
		for j := range idx.Manifests {
			d := &idx.Manifests[j]
			if d.Digest == im.Original {
				n++
				d.MediaType = ocispec.MediaTypeImageManifest
				d.Digest = im.Manifest.Digest
				d.Size = im.Manifest.Size
				d.Annotations = cloneMap(im.Manifest.Annotations)
				d.Data = nil
				if d.Platform == nil {
					d.Platform = clonePlatform(im.Manifest.Platform)
				}
			} else if d.Annotations[annotationDockerReferenceDigest] == im.Original.String() {
				d.Annotations = cloneMap(d.Annotations)
				d.Annotations[annotationDockerReferenceDigest] = im.Manifest.Digest.String()
			}
		}
		if n == 0 {
			return nil, fieldErr(field+".original", "%s is not in the base image index", im.Original)
		}
	}

	for i, im := range images {
		if im.Index.Digest == "" {
			continue
		}
		j := slices.IndexFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Digest == im.Manifest.Digest })
		platform := idx.Manifests[j].Platform
		if platform == nil {
			return nil, fieldErr(fmt.Sprintf("images[%d].manifest.platform", i), "missing (a SOCI index descriptor needs one)")
		}
		sd := ocispec.Descriptor{
			MediaType:    ocispec.MediaTypeImageManifest,
			Digest:       im.Index.Digest,
			Size:         im.Index.Size,
			Annotations:  map[string]string{AnnotationImageManifestDigest: im.Manifest.Digest.String()},
			Platform:     clonePlatform(platform),
			ArtifactType: MediaTypeIndexV2,
		}
		k := slices.IndexFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			return isSociV2Descriptor(d) && d.Platform != nil && samePlatform(*d.Platform, *platform)
		})
		if k >= 0 {
			idx.Manifests[k] = sd
		} else {
			idx.Manifests = append(idx.Manifests, sd)
		}
	}
	return json.Marshal(idx)
}

func parseImageIndex(b []byte) (ocispec.Index, error) {
	if len(b) > MaxDocumentSize {
		return ocispec.Index{}, fmt.Errorf("image index: %d bytes: %w", len(b), ErrTooLarge)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Index{}, &FieldError{Field: "image index", Err: err}
	}
	if idx.SchemaVersion != 2 {
		return ocispec.Index{}, fieldErr("image index.schemaVersion", "%d (want 2)", idx.SchemaVersion)
	}
	switch idx.MediaType {
	case "", ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
	default:
		return ocispec.Index{}, fieldErr("image index.mediaType", "%q is not an image index", idx.MediaType)
	}
	return idx, nil
}

func isSociV2Descriptor(d ocispec.Descriptor) bool {
	if d.ArtifactType == MediaTypeIndexV2 {
		return true
	}
	_, ok := d.Annotations[AnnotationImageManifestDigest]
	return ok && (d.ArtifactType == "" || d.ArtifactType == MediaTypeIndexV2)
}

func samePlatform(a, b ocispec.Platform) bool {
	return a.OS == b.OS && a.Architecture == b.Architecture && a.Variant == b.Variant &&
		a.OSVersion == b.OSVersion && slices.Equal(a.OSFeatures, b.OSFeatures)
}

// IndexDigestFromManifest returns the v2 SOCI index digest an image manifest
// names in AnnotationIndexDigest. ok is false when the annotation is absent;
// a present but malformed digest is an error.
func IndexDigestFromManifest(manifest []byte) (d digest.Digest, ok bool, err error) {
	if len(manifest) > MaxDocumentSize {
		return "", false, fmt.Errorf("read SOCI index digest: image manifest: %d bytes: %w", len(manifest), ErrTooLarge)
	}
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return "", false, fmt.Errorf("read SOCI index digest: %w", &FieldError{Field: "manifest", Err: err})
	}
	s, ok := m.Annotations[AnnotationIndexDigest]
	if !ok {
		return "", false, nil
	}
	d, err = parseDigest(annotationField("manifest", AnnotationIndexDigest), s)
	if err != nil {
		return "", false, fmt.Errorf("read SOCI index digest: %w", err)
	}
	return d, true, nil
}

// FindIndexInImageIndex finds the v2 SOCI index descriptor for the image
// manifest manifestDigest in an image index. It does not rely on
// artifactType, which some copy tools (skopeo) drop: a candidate is any entry
// annotated AnnotationImageManifestDigest = manifestDigest whose artifactType
// is empty or MediaTypeIndexV2, and, if the manifest's own entry carries
// AnnotationIndexDigest, the entry with that digest. ok is false when there is
// none; disagreeing candidates are an error. The index manifest itself
// (config media type) is checked by ParseIndex after fetching it.
func FindIndexInImageIndex(imageIndex []byte, manifestDigest digest.Digest) (desc ocispec.Descriptor, ok bool, err error) {
	desc, ok, err = findIndex(imageIndex, manifestDigest)
	if err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("find SOCI index for %s: %w", manifestDigest, err)
	}
	return desc, ok, nil
}

func findIndex(imageIndex []byte, manifestDigest digest.Digest) (ocispec.Descriptor, bool, error) {
	if err := manifestDigest.Validate(); err != nil {
		return ocispec.Descriptor{}, false, &FieldError{Field: "manifest digest", Err: err}
	}
	idx, err := parseImageIndex(imageIndex)
	if err != nil {
		return ocispec.Descriptor{}, false, err
	}
	var want digest.Digest
	for i, d := range idx.Manifests {
		if d.Digest != manifestDigest {
			continue
		}
		if s, ok := d.Annotations[AnnotationIndexDigest]; ok {
			dg, err := parseDigest(annotationField(fmt.Sprintf("manifests[%d]", i), AnnotationIndexDigest), s)
			if err != nil {
				return ocispec.Descriptor{}, false, err
			}
			if want != "" && want != dg {
				return ocispec.Descriptor{}, false, fieldErr("manifests", "entries for %s name two SOCI indexes", manifestDigest)
			}
			want = dg
		}
	}
	var found *ocispec.Descriptor
	for i := range idx.Manifests {
		d := &idx.Manifests[i]
		if d.Digest == manifestDigest {
			continue
		}
		byAnnotation := d.Annotations[AnnotationImageManifestDigest] == manifestDigest.String() &&
			(d.ArtifactType == "" || d.ArtifactType == MediaTypeIndexV2)
		if !byAnnotation && (want == "" || d.Digest != want) {
			continue
		}
		if d.MediaType != "" && d.MediaType != ocispec.MediaTypeImageManifest {
			return ocispec.Descriptor{}, false, fieldErr(fmt.Sprintf("manifests[%d].mediaType", i), "%q is not an image manifest", d.MediaType)
		}
		if err := d.Digest.Validate(); err != nil {
			return ocispec.Descriptor{}, false, &FieldError{Field: fmt.Sprintf("manifests[%d].digest", i), Err: err}
		}
		if found != nil && found.Digest != d.Digest {
			return ocispec.Descriptor{}, false, fieldErr("manifests", "two SOCI indexes (%s, %s) for one manifest", found.Digest, d.Digest)
		}
		if want != "" && d.Digest != want {
			return ocispec.Descriptor{}, false, fieldErr(fmt.Sprintf("manifests[%d]", i), "SOCI index %s disagrees with the manifest's %s = %s", d.Digest, AnnotationIndexDigest, want)
		}
		if found == nil {
			found = d
		}
	}
	if found == nil {
		return ocispec.Descriptor{}, false, nil
	}
	out := *found
	out.Annotations = cloneMap(out.Annotations)
	out.Platform = clonePlatform(out.Platform)
	out.URLs = slices.Clone(out.URLs)
	out.Data = slices.Clone(out.Data)
	return out, true, nil
}

// ReferrersTag returns the OCI referrers tag-schema fallback tag for the
// referrers of d, "<alg>-<encoded>" (e.g. "sha256-<hex>"), under which a
// registry without the referrers API keeps the index listing v1 SOCI
// indexes of the manifest d. It returns "" for a digest without ':'.
func ReferrersTag(d digest.Digest) string {
	alg, enc, ok := strings.Cut(string(d), ":")
	if !ok {
		return ""
	}
	return alg + "-" + enc
}
