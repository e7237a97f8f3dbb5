package buildkit

import (
	"context"
	"encoding/json"

	"github.com/moby/buildkit/cache"
	"github.com/moby/buildkit/exporter"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/util/bklog"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Keys of BuildKit's cache record metadata (cache/metadata.go, v0.34.2),
// read with the generic getters of cache.RefMetadata.
const (
	// mdBlob is the digest of the record's blob: the first one made or
	// received for it (variants are linked to it).
	mdBlob = "cache.blob"
	// mdDiffID is the digest of the record's uncompressed layer.
	mdDiffID = "cache.diffID"
	// mdBlobOnly is written only by cacheManager.GetByBlob
	// (cache/manager.go), true until the blob is extracted, then false: a
	// record that has it was made from a blob received from elsewhere (an
	// image pull, an OCI layout, a remote cache import), never from a
	// snapshot this builder produced.
	mdBlobOnly = "cache.blobonly"
)

// baseLayerBlobs returns the blobs of src's layers that are kept as they
// are: layers whose cache record was made from a blob received from
// elsewhere (image pulls, OCI layouts, remote cache imports), and the
// layers of the base image the frontend names (the image config under
// exptypes.ExporterImageBaseConfigKey: the chain's first layers while their
// diffIDs are the base image's; BuildKit's own rule for layers
// rewrite-timestamp must not touch). The second rule covers a base image
// built earlier by this builder, whose pulled layers BuildKit maps to the
// builder's own cache records (same blob and diffID). Every other layer was
// produced by this builder (exec, file, diff and merge results) and is
// written with soci-gzip.
func baseLayerBlobs(ctx context.Context, src *exporter.Source) map[digest.Digest]struct{} {
	keep := map[digest.Digest]struct{}{}
	add := func(ref cache.ImmutableRef, baseConfig []byte) {
		if ref == nil {
			return
		}
		var base []digest.Digest
		if len(baseConfig) > 0 {
			var img ocispecs.Image
			if err := json.Unmarshal(baseConfig, &img); err != nil {
				bklog.G(ctx).Warnf("soci exporter: base image config: %v", err)
			} else {
				base = img.RootFS.DiffIDs
			}
		}
		chain := ref.LayerChain()
		defer func() {
			if err := chain.Release(context.WithoutCancel(ctx)); err != nil {
				bklog.G(ctx).Warnf("soci exporter: releasing the layer chain: %v", err)
			}
		}()
		inBase := true
		for k, l := range chain {
			inBase = inBase && k < len(base) && digest.Digest(l.GetString(mdDiffID)) == base[k]
			blob := digest.Digest(l.GetString(mdBlob))
			if blob == "" || !inBase && l.Get(mdBlobOnly) == nil {
				continue
			}
			keep[blob] = struct{}{}
		}
	}
	add(src.Ref, exptypes.ParseKey(src.Metadata, exptypes.ExporterImageBaseConfigKey, nil))
	for id, ref := range src.Refs {
		add(ref, exptypes.ParseKey(src.Metadata, exptypes.ExporterImageBaseConfigKey, &exptypes.Platform{ID: id}))
	}
	return keep
}
