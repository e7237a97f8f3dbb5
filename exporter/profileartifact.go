package exporter

import (
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/profile"
)

// Annotations of the profile artifact's entry in a v2 image index, as
// BuildKit marks its attestation manifests: containerd's platform matcher
// skips the unknown/unknown platform, and the reference digest names the
// image the profile was made for.
const (
	// AnnotationDockerReferenceDigest names the image manifest an
	// attestation (or profile) is attached to.
	AnnotationDockerReferenceDigest = "vnd.docker.reference.digest"
	// RefTypeProfile is the AnnotationDockerReferenceType value of a
	// start-up profile artifact.
	RefTypeProfile = "socikit-profile"
)

// profileArtifact returns the blob of p and an OCI artifact manifest
// (artifactType profile.MediaType, the profile as its one layer, subject
// the image manifest) with its descriptor.
func profileArtifact(p *profile.Profile, subject ocispec.Descriptor) (pb []byte, pdesc ocispec.Descriptor, mb []byte, mdesc ocispec.Descriptor, err error) {
	pb, err = profile.Marshal(p)
	if err != nil {
		return nil, pdesc, nil, mdesc, fmt.Errorf("profile artifact: %w", err)
	}
	pdesc = ocispec.Descriptor{MediaType: profile.MediaType, Digest: digest.FromBytes(pb), Size: int64(len(pb))}
	sub := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: profile.MediaType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{pdesc},
		Subject:      &sub,
	}
	mb, err = json.Marshal(m)
	if err != nil {
		return nil, pdesc, nil, mdesc, fmt.Errorf("profile artifact: %w", err)
	}
	mdesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: profile.MediaType,
		Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	return pb, pdesc, mb, mdesc, nil
}

// attachProfiles adds to the v2 image index ib a profile artifact entry
// for each indexed image and returns the new index with its descriptor.
func attachProfiles(ib []byte, out *Output, p *profile.Profile, addBlob func(ocispec.Descriptor, []byte)) ([]byte, ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(ib, &idx); err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("profile artifact: parse image index: %w", err)
	}
	addBlob(ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data)
	for _, im := range out.Indexed {
		pb, pdesc, mb, mdesc, err := profileArtifact(p, im.Manifest)
		if err != nil {
			return nil, ocispec.Descriptor{}, err
		}
		addBlob(pdesc, pb)
		out.Manifests = append(out.Manifests, Blob{Desc: mdesc, Body: mb})
		d := mdesc
		d.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
		d.Annotations = map[string]string{
			AnnotationDockerReferenceType:   RefTypeProfile,
			AnnotationDockerReferenceDigest: im.Manifest.Digest.String(),
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	nb, err := json.Marshal(idx)
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("profile artifact: %w", err)
	}
	return nb, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(nb), Size: int64(len(nb))}, nil
}

// FindProfile returns the descriptor of the profile artifact manifest
// attached in image index ib to the image manifest img, if any.
func FindProfile(ib []byte, img digest.Digest) (ocispec.Descriptor, bool, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(ib, &idx); err != nil {
		return ocispec.Descriptor{}, false, fmt.Errorf("parse image index: %w", err)
	}
	for _, d := range idx.Manifests {
		if d.Annotations[AnnotationDockerReferenceType] == RefTypeProfile && d.Annotations[AnnotationDockerReferenceDigest] == img.String() {
			return d, true, nil
		}
	}
	return ocispec.Descriptor{}, false, nil
}

// ProfileFromArtifact returns the profile blob's descriptor named by a
// profile artifact manifest.
func ProfileFromArtifact(mb []byte) (ocispec.Descriptor, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("parse profile artifact: %w", err)
	}
	if m.ArtifactType != profile.MediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != profile.MediaType {
		return ocispec.Descriptor{}, fmt.Errorf("not a socikit profile artifact (artifactType %q, %d layers)", m.ArtifactType, len(m.Layers))
	}
	if m.Layers[0].Size <= 0 || m.Layers[0].Size > profile.MaxEncodedSize {
		return ocispec.Descriptor{}, fmt.Errorf("profile artifact: profile size %d out of bounds", m.Layers[0].Size)
	}
	return m.Layers[0], nil
}
