package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
)

// checkIndexLayers reports a SOCI index that does not fit its image: a
// zTOC for a layer the image manifest does not list (a blob lookup would
// only say "not found"). An index whose image is not known or not there (a
// SOCI index given by digest, v2 without its image index) is not checked.
func checkIndexLayers(ctx context.Context, src image.Source, f foundIndex) error {
	if f.manifest == "" || f.index == nil {
		return nil
	}
	b, err := src.Manifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: f.manifest})
	if errors.Is(err, image.ErrNotFound) {
		// A SOCI index named by digest whose image is elsewhere: its
		// layers are looked up as they are read.
		return nil
	}
	if err != nil {
		return fmt.Errorf("image manifest %s of SOCI index %s: %w", f.manifest, f.desc.Digest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("parse image manifest %s of SOCI index %s: %w", f.manifest, f.desc.Digest, err)
	}
	has := make(map[digest.Digest]bool, len(m.Layers))
	for _, l := range m.Layers {
		has[l.Digest] = true
	}
	for _, l := range f.index.Layers {
		if has[l.LayerDigest] {
			continue
		}
		layers := make([]string, len(m.Layers))
		for i, l := range m.Layers {
			layers[i] = l.Digest.String()
		}
		return fmt.Errorf("SOCI index %s is inconsistent with its image: it indexes layer %s, which image manifest %s does not have (its layers: %s)",
			f.desc.Digest, l.LayerDigest, f.manifest, strings.Join(layers, ", "))
	}
	return nil
}
