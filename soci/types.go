package soci

import (
	// go-digest only hashes and validates digests whose algorithm is linked in.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types. They are plain strings, not a named type, because every place
// they go (ocispec.Descriptor.MediaType, ArtifactType) is a plain string.
const (
	// MediaTypeIndexV1 is the config media type (and artifact type) of a v1
	// SOCI index, which has a subject and is found through the referrers API.
	MediaTypeIndexV1 = "application/vnd.amazon.soci.index.v1+json"
	// MediaTypeIndexV2 is the config media type (and artifact type) of a v2
	// SOCI index, which has no subject and is bound into the image by
	// [AnnotationIndexDigest].
	MediaTypeIndexV2 = "application/vnd.amazon.soci.index.v2+json"
	// MediaTypeZtoc is the media type of a zTOC descriptor in a SOCI index.
	MediaTypeZtoc = "application/octet-stream"
	// MediaTypePrefetch is the media type of a prefetch blob descriptor in a
	// SOCI index.
	MediaTypePrefetch = "application/vnd.amazon.soci.prefetch.v1+json"
	// MediaTypeLazyZtoc is the media type of a lazy zTOC descriptor in a
	// SOCI index (socikit's, see [LazyZtoc]): gzip of a zTOC blob with its
	// checkpoint windows zeroed. Upstream takes only descriptors of
	// MediaTypeZtoc and MediaTypePrefetch, so it fetches this blob with the
	// index's others and ignores it.
	MediaTypeLazyZtoc = "application/vnd.socikit.ztoc.lazy.v1+gzip"

	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// Annotation keys. Plain strings for the same reason as the media types:
// ocispec annotations are map[string]string.
const (
	// AnnotationImageLayerDigest (digest string, required) is set on every zTOC
	// and prefetch descriptor in a SOCI index: the image layer it describes.
	AnnotationImageLayerDigest = "com.amazon.soci.image-layer-digest"
	// AnnotationImageLayerMediaType (media type string) is set on zTOC
	// descriptors: the media type of the image layer. Note the capital T.
	AnnotationImageLayerMediaType = "com.amazon.soci.image-layer-mediaType"
	// AnnotationSpanSize (decimal int64 > 0) is set on zTOC descriptors: the
	// span size the zTOC was built with. Indexes from soci before v0.4 omit it.
	AnnotationSpanSize = "com.amazon.soci.span-size"
	// AnnotationDisableXattrs (bool, only ever "true") is set on zTOC
	// descriptors whose layer has no xattrs and no opaque directories.
	AnnotationDisableXattrs = "com.amazon.soci.disable-xattrs"
	// AnnotationZtocDigest (digest string, required) is set on every lazy
	// zTOC descriptor: the zTOC it is made from, which must be in the
	// index. Lazy zTOC descriptors carry no AnnotationImageLayerDigest, so
	// that nothing takes them for a zTOC.
	AnnotationZtocDigest = "dev.socikit.ztoc-digest"
	// AnnotationBuildToolIdentifier (free text) is set on the SOCI index
	// manifest: the tool that built it.
	AnnotationBuildToolIdentifier = "com.amazon.soci.build-tool-identifier"
	// AnnotationIndexDigest (digest string) is set by [BindV2] on an image
	// manifest (and its descriptor in the image index): its v2 SOCI index.
	AnnotationIndexDigest = "com.amazon.soci.index-digest"
	// AnnotationImageManifestDigest (digest string) is set on a v2 SOCI index
	// descriptor in an image index: the image manifest it indexes.
	AnnotationImageManifestDigest = "com.amazon.soci.image-manifest-digest"

	// annotationDockerReferenceDigest links BuildKit attestation manifests to
	// the image manifest they describe.
	annotationDockerReferenceDigest = "vnd.docker.reference.digest"
)

// The SOCI index config is the empty JSON object, which must be pushed too.
const (
	// EmptyConfigJSON is the content of every SOCI index config blob.
	EmptyConfigJSON = "{}"
	// EmptyConfigDigest is the digest of [EmptyConfigJSON].
	EmptyConfigDigest digest.Digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	// EmptyConfigSize is the size of [EmptyConfigJSON].
	EmptyConfigSize = int64(len(EmptyConfigJSON))
)

// MaxDocumentSize bounds every JSON document this package parses. It is the
// manifest size limit of the common registries (distribution, ECR), so nothing
// larger can come from one.
const MaxDocumentSize = 4 << 20

// Version is the version of a SOCI index.
type Version int

const (
	// V1 indexes carry a subject and are discovered via the referrers API.
	V1 Version = 1
	// V2 indexes have no subject; the image manifest names them through
	// [AnnotationIndexDigest]. Upstream's default since v0.10.0.
	V2 Version = 2
)

// String returns "v1" or "v2".
func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return fmt.Sprintf("Version(%d)", int(v))
}

// ParseVersion parses "v1" or "v2".
func ParseVersion(s string) (Version, error) {
	switch s {
	case "v1":
		return V1, nil
	case "v2":
		return V2, nil
	}
	return 0, fmt.Errorf("parse SOCI index version %q: %w", s, ErrUnsupportedVersion)
}

// MediaType returns the config media type (= artifact type) of version v, or
// "" for an unknown version.
func (v Version) MediaType() string {
	switch v {
	case V1:
		return MediaTypeIndexV1
	case V2:
		return MediaTypeIndexV2
	}
	return ""
}

// ConfigDescriptor returns the config descriptor of a version v index: the
// empty JSON object with media type v.MediaType().
func (v Version) ConfigDescriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: v.MediaType(), Digest: EmptyConfigDigest, Size: EmptyConfigSize}
}

func versionFromMediaType(mt string) (Version, bool) {
	switch mt {
	case MediaTypeIndexV1:
		return V1, true
	case MediaTypeIndexV2:
		return V2, true
	}
	return 0, false
}

var (
	// ErrInvalid is matched (errors.Is) by every *FieldError: the document or
	// value is malformed.
	ErrInvalid = errors.New("invalid SOCI document")
	// ErrTooLarge is returned for documents over MaxDocumentSize.
	ErrTooLarge = errors.New("document exceeds MaxDocumentSize")
	// ErrUnsupportedVersion is returned for an index config media type (or
	// version string, or prefetch version) this package does not know.
	ErrUnsupportedVersion = errors.New("unsupported version")
)

// FieldError reports an invalid field. Field is a JSON path such as
// "layers[2].annotations[com.amazon.soci.span-size]". errors.Is(err,
// ErrInvalid) holds for every FieldError; Unwrap returns the cause.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("soci: invalid %s: %v", e.Field, e.Err) }

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func fieldErr(field string, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

func checkSize(what string, b []byte) error {
	if len(b) > MaxDocumentSize {
		return fmt.Errorf("parse %s: %d bytes: %w", what, len(b), ErrTooLarge)
	}
	return nil
}

// parseDigest parses and validates a digest (known algorithm, well-formed hex).
func parseDigest(field, s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", &FieldError{Field: field, Err: err}
	}
	return d, nil
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func clonePlatform(p *ocispec.Platform) *ocispec.Platform {
	if p == nil {
		return nil
	}
	c := *p
	c.OSFeatures = append([]string(nil), p.OSFeatures...)
	if len(c.OSFeatures) == 0 {
		c.OSFeatures = nil
	}
	return &c
}
