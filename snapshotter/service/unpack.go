package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/snapshotter/snapshot"
)

// Layers without a zTOC.
//
// containerd's unpacker (core/unpack, startFetch) fetches, once it has to
// unpack one layer of an image, that layer and every layer above it whole,
// whether or not the snapshotter then mounts them lazily. An image whose
// base layer is too small to be indexed (alpine, distroless, busybox under
// the index's min layer size) thus had every lazy layer downloaded whole
// during the pull, and their spans fetched again at run time. OpenLayer
// lets the snapshotter fetch and unpack such a layer itself (snapshot.
// LayerSource), so that containerd unpacks nothing and fetches no layer, as
// upstream SOCI's "local" snapshots do (Config.Lazy.UnpackUnindexed). The
// layers of images without a SOCI index take the same path
// (Config.Pull.DisableUnindexed); pull.go fetches them.

var _ snapshot.LayerSource = (*FileSystem)(nil)

// unpackMediaTypes are the layer media types the snapshotter unpacks
// itself; others (encrypted, foreign) are left to containerd and its stream
// processors.
var unpackMediaTypes = []string{
	ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
	images.MediaTypeDockerSchema2Layer, images.MediaTypeDockerSchema2LayerGzip, images.MediaTypeDockerSchema2LayerZstd,
}

// unpackCounters count the layers the snapshotter fetched to unpack itself.
type unpackCounters struct {
	layers atomic.Int64 // blobs read to their end
	bytes  atomic.Int64 // compressed bytes fetched
}

// OpenLayer implements snapshot.LayerSource: it opens the blob of a layer
// that has no zTOC in an image that has a SOCI index, or of any layer of
// an image that has none, fetched by the pipelined pull (pull.go). The
// error matches snapshot.ErrNotIndexed when containerd is to unpack the
// layer: the layer has a zTOC (its lazy mount failed), its media type is
// not a plain tar, gzip or zstd layer, or unpacking is off
// (Config.Lazy.UnpackUnindexed for indexed images,
// Config.Pull.DisableUnindexed for the others, or no lazy layers at all).
func (f *FileSystem) OpenLayer(ctx context.Context, labels map[string]string) (snapshot.LayerBlob, error) {
	if f.m == nil {
		return snapshot.LayerBlob{}, fmt.Errorf("the snapshotter unpacks no layer itself (lazy.disable): %w", snapshot.ErrNotIndexed)
	}
	found, err := f.d.Find(ctx, labels)
	switch {
	case err == nil && !f.unpack:
		return snapshot.LayerBlob{}, fmt.Errorf("layers without a zTOC are containerd's (lazy.unpack_unindexed = false): %w", snapshot.ErrNotIndexed)
	case err == nil:
	case errors.Is(err, snapshot.ErrNotIndexed) && found != nil && f.pull.o.Unindexed:
		// An image without a SOCI index: pulled here all the same.
	default:
		return snapshot.LayerBlob{}, err
	}
	dg := digest.Digest(labels[snapshot.LabelLayerDigest])
	desc, err := found.unindexed(dg)
	if err != nil {
		return snapshot.LayerBlob{}, err
	}
	diffID := digest.Digest(labels[snapshot.LabelDiffID])
	if diffID == "" { // a client older than containerd 2.0
		if diffID, err = f.diffID(ctx, found, dg); err != nil {
			return snapshot.LayerBlob{}, err
		}
	} else if err := diffID.Validate(); err != nil {
		return snapshot.LayerBlob{}, fmt.Errorf("label %s: %w", snapshot.LabelDiffID, err)
	}
	body, err := f.open(ctx, found, desc)
	if err != nil {
		return snapshot.LayerBlob{}, err
	}
	log.G(ctx).WithField("layer", dg).WithField("size", desc.Size).WithField("index", found.IndexDesc.Digest).
		Debug("layer not mounted lazily: fetching it to unpack it here")
	return snapshot.LayerBlob{Desc: desc, DiffID: diffID, Body: body}, nil
}

// unindexed returns the descriptor of layer d, which must have no zTOC in
// the index and a media type the snapshotter unpacks; otherwise the error
// matches snapshot.ErrNotIndexed.
func (f *Found) unindexed(d digest.Digest) (ocispec.Descriptor, error) {
	_, err := f.Layer(d)
	switch {
	case err == nil:
		return ocispec.Descriptor{}, fmt.Errorf("layer %s has a zTOC: %w", d, snapshot.ErrNotIndexed)
	case !errors.Is(err, snapshot.ErrNotIndexed):
		return ocispec.Descriptor{}, err
	}
	i := slices.IndexFunc(f.Layers, func(l ocispec.Descriptor) bool { return l.Digest == d })
	desc := f.Layers[i] // f.Layer found it
	if !slices.Contains(unpackMediaTypes, desc.MediaType) {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s has media type %s: %w", d, desc.MediaType, snapshot.ErrNotIndexed)
	}
	return desc, nil
}

// diffID reads the diff ID of layer d from the image config in the
// registry.
func (f *FileSystem) diffID(ctx context.Context, found *Found, d digest.Digest) (digest.Digest, error) {
	reg, err := image.OpenRegistry(found.Repo.Digest(found.Config.Digest.String()), f.d.rt)
	if err != nil {
		return "", err
	}
	b, err := image.ReadBlob(ctx, reg, found.Config, image.MaxManifestSize)
	if err != nil {
		return "", fmt.Errorf("image config: %w", err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("image config %s: %w", found.Config.Digest, err)
	}
	ids := cfg.RootFS.DiffIDs
	if len(ids) != len(found.Layers) {
		return "", fmt.Errorf("image config %s has %d diff IDs for %d layers", found.Config.Digest, len(ids), len(found.Layers))
	}
	i := slices.IndexFunc(found.Layers, func(l ocispec.Descriptor) bool { return l.Digest == d })
	if i < 0 {
		return "", fmt.Errorf("layer %s is not in manifest %s", d, found.Manifest.Digest)
	}
	return ids[i], nil
}
