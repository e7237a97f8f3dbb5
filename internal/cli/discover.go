package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/soci"
)

// foundIndex is a SOCI index found for an image.
type foundIndex struct {
	desc     ocispec.Descriptor
	index    *soci.Index
	manifest digest.Digest // the image manifest it indexes ("" if unknown)
	platform *ocispec.Platform
}

// findIndexes finds the SOCI indexes of the image the source resolves to:
// v2 through the image index or the manifest annotation, v1 through
// referrers (and the referrers tag). A reference to a SOCI index itself is
// accepted too.
func findIndexes(ctx context.Context, src image.Source) ([]foundIndex, error) {
	root, body, err := src.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case image.IsManifest(root.MediaType):
		var m ocispec.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("parse manifest %s: %w", root.Digest, err)
		}
		switch m.Config.MediaType {
		case soci.MediaTypeIndexV1, soci.MediaTypeIndexV2:
			ix, err := soci.ParseIndex(body)
			if err != nil {
				return nil, err
			}
			f := foundIndex{desc: root, index: ix}
			if ix.Subject != nil {
				f.manifest = ix.Subject.Digest
			}
			return []foundIndex{f}, nil
		}
		return indexesOfManifest(ctx, src, root, body, nil)
	case image.IsIndex(root.MediaType):
		var idx ocispec.Index
		if err := json.Unmarshal(body, &idx); err != nil {
			return nil, fmt.Errorf("parse image index %s: %w", root.Digest, err)
		}
		var out []foundIndex
		for _, d := range idx.Manifests {
			if d.ArtifactType == soci.MediaTypeIndexV1 {
				// A referrers list (the OCI referrers tag) names v1 indexes.
				f, err := fetchIndex(ctx, src, d, "", d.Platform)
				if err != nil {
					return nil, err
				}
				out = append(out, f)
				continue
			}
			if !isImageEntry(d) {
				continue
			}
			if sd, ok, err := soci.FindIndexInImageIndex(body, d.Digest); err != nil {
				return nil, err
			} else if ok {
				f, err := fetchIndex(ctx, src, sd, d.Digest, d.Platform)
				if err != nil {
					return nil, err
				}
				out = append(out, f)
				continue
			}
			mb, err := src.Manifest(ctx, d)
			if err != nil {
				return nil, err
			}
			fs, err := indexesOfManifest(ctx, src, d, mb, d.Platform)
			if err != nil {
				return nil, err
			}
			out = append(out, fs...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: media type %q is neither a manifest nor an index", root.Digest, root.MediaType)
}

// indexesOfManifest finds the SOCI indexes of one image manifest.
func indexesOfManifest(ctx context.Context, src image.Source, d ocispec.Descriptor, body []byte, platform *ocispec.Platform) ([]foundIndex, error) {
	if dg, ok, err := soci.IndexDigestFromManifest(body); err != nil {
		return nil, err
	} else if ok {
		f, err := fetchIndex(ctx, src, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dg}, d.Digest, platform)
		if err != nil {
			return nil, err
		}
		return []foundIndex{f}, nil
	}
	rs, ok := src.(image.ReferrerSource)
	if !ok {
		return nil, nil
	}
	refs, err := rs.Referrers(ctx, d.Digest, soci.MediaTypeIndexV1)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(refs, func(a, b ocispec.Descriptor) int {
		if a.Digest < b.Digest {
			return -1
		}
		if a.Digest > b.Digest {
			return 1
		}
		return 0
	})
	var out []foundIndex
	for _, r := range refs {
		if len(out) > 0 && out[len(out)-1].desc.Digest == r.Digest {
			continue
		}
		f, err := fetchIndex(ctx, src, r, d.Digest, platform)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func fetchIndex(ctx context.Context, src image.Source, d ocispec.Descriptor, manifest digest.Digest, platform *ocispec.Platform) (foundIndex, error) {
	b, err := src.Manifest(ctx, d)
	if err != nil {
		return foundIndex{}, fmt.Errorf("fetch SOCI index: %w", err)
	}
	ix, err := soci.ParseIndex(b)
	if err != nil {
		return foundIndex{}, fmt.Errorf("SOCI index %s: %w", d.Digest, err)
	}
	if ix.Version == soci.V1 && ix.Subject != nil {
		if manifest == "" {
			manifest = ix.Subject.Digest
		} else if ix.Subject.Digest != manifest {
			return foundIndex{}, fmt.Errorf("SOCI index %s: subject %s is not manifest %s", d.Digest, ix.Subject.Digest, manifest)
		}
	}
	return foundIndex{desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ix.Version.MediaType(),
		Digest: d.Digest, Size: int64(len(b))}, index: ix, manifest: manifest, platform: platform}, nil
}

var errNoIndex = errors.New("no SOCI index found")
