package snapshot

import (
	"context"
	"errors"
	"io"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FileSystem mounts image layers lazily. It is the seam between the
// snapshotter and the layer filesystem (FUSE over spans fetched from the
// registry): the snapshotter owns the mountpoints and the metadata, the
// FileSystem owns what is mounted on them.
//
// Lifecycle: Mount is called once per remote snapshot, on an empty
// directory, with the labels containerd passed to Prepare (after a restart,
// with the labels stored at commit). Check is called before the layer is
// used as a parent; an error there makes the snapshotter call Mount again.
// Unmount is called before the snapshot's directory is removed, and on Close.
//
// Mount must leave nothing mounted when it fails. A FileSystem that cannot
// mount a layer lazily (no index, layer too small) returns an error matching
// [ErrNotIndexed] so the snapshotter falls back to a normal unpack quietly;
// other errors fall back too but are logged as warnings.
//
// Optional capabilities are separate interfaces found by type assertion
// ([StartObserver], [LayerSource], [Resumer]), so this one stays at three
// methods.
type FileSystem interface {
	Mount(ctx context.Context, mountpoint string, labels map[string]string) error
	Check(ctx context.Context, mountpoint string, labels map[string]string) error
	Unmount(ctx context.Context, mountpoint string) error
}

// StartObserver is an optional capability of a FileSystem: it is told when
// a container starts over remote layers. containerd prepares a container's
// root filesystem (an active snapshot that is not a layer being unpacked)
// when it creates the container, and asks for its mounts when it creates the
// task; views (an image's tree mounted read-only) count too.
type StartObserver interface {
	// Started is called after such a Prepare, View or Mounts succeeded, with
	// the mountpoints of the snapshot's remote parents, topmost first. It
	// runs on the request's path: it must return quickly.
	Started(ctx context.Context, key string, mountpoints []string)
}

// Resumer is an optional capability of a FileSystem: it serves again the
// mounts an earlier process of the daemon left mounted and kept alive (a
// FUSE mount whose /dev/fuse descriptor was kept outside the process, so
// that the containers reading it wait instead of failing), rather than the
// restore clearing them and mounting anew.
type Resumer interface {
	// Resume is called by the restore before anything touches mountpoint.
	// It reports false when it has nothing kept for mountpoint (the
	// restore clears and mounts as usual). An error with true means it had
	// a kept mount but could not serve it: it has given it up, and the
	// restore clears it and mounts again.
	Resume(ctx context.Context, mountpoint string, labels map[string]string) (bool, error)
	// RestoreDone is called once the restore is over: kept mounts no
	// snapshot resumed are given up.
	RestoreDone(ctx context.Context)
}

// LayerSource is an optional capability of a FileSystem: it opens the blob
// of a layer it cannot mount lazily although it serves the image (the image
// has a SOCI index, the layer no zTOC: layers under the index's minimum
// size, such as a small base layer), so that the snapshotter fetches and
// unpacks that layer itself and commits it as the target, as for a lazy
// layer. containerd then never fetches it, nor the layers above it: its
// unpacker, once it has to unpack a layer, fetches that layer and every
// one above it whole (containerd's core/unpack, startFetch), lazy ones
// included.
type LayerSource interface {
	// OpenLayer opens the layer the Prepare labels name. An error matching
	// ErrNotIndexed leaves the layer to containerd quietly (the image has
	// no index, the layer is indexed, unpacking is turned off); other
	// errors leave it to containerd with a warning. The snapshotter closes
	// the body.
	OpenLayer(ctx context.Context, labels map[string]string) (LayerBlob, error)
}

// LayerBlob is a layer opened by a LayerSource.
type LayerBlob struct {
	// Desc is the layer's descriptor in the image manifest: digest, size
	// and media type (a tar, gzip or zstd layer). The body is unpacked as
	// it is read, and hashed: the snapshot is committed only if it had
	// exactly this digest and size (otherwise it is emptied again).
	Desc ocispec.Descriptor
	// DiffID is the digest of the uncompressed layer (the image config's
	// diff ID), checked after the unpack; "" skips that check.
	DiffID digest.Digest
	// Body is the compressed blob.
	Body io.ReadCloser
}

// Collector is an optional capability of a FileSystem that keeps things on
// disk for layers beyond their mounts (their index, so that a restart
// mounts them again without a registry): it drops what no snapshot uses
// any more. The snapshotter calls Collect after each Cleanup (a
// snapshot's removal, containerd's garbage collection) and once the
// restore at start is over. labels lists the labels of every snapshot in
// the metadata that names a layer (those being prepared included); the
// Collector calls it when no Mount is in flight, so that what a Mount
// writes is either named by a snapshot it lists or written after.
type Collector interface {
	Collect(ctx context.Context, labels func(context.Context) ([]map[string]string, error)) error
}

// ErrNotIndexed reports that a layer cannot be mounted lazily and must be
// unpacked: the image has no SOCI index, or the index has no zTOC for it.
var ErrNotIndexed = errors.New("layer is not indexed")

// NoFileSystem mounts nothing: every Mount fails with ErrNotIndexed, so every
// layer takes containerd's normal download-and-unpack path.
type NoFileSystem struct{}

var _ FileSystem = NoFileSystem{}

// Mount returns ErrNotIndexed.
func (NoFileSystem) Mount(context.Context, string, map[string]string) error { return ErrNotIndexed }

// Check returns ErrNotIndexed.
func (NoFileSystem) Check(context.Context, string, map[string]string) error { return ErrNotIndexed }

// Unmount does nothing.
func (NoFileSystem) Unmount(context.Context, string) error { return nil }

// Labels containerd sets on the Prepare of an image layer (its own
// constants: core/snapshots and pkg/snapshotters), and ours.
const (
	// LabelTargetRef (snapshot name) is the name under which a prepared
	// layer will be committed (snapshots.LabelSnapshotRef).
	LabelTargetRef = snapshots.LabelSnapshotRef
	// LabelImageRef (image reference) names the image being pulled
	// (snapshotters.TargetRefLabel).
	LabelImageRef = snapshotters.TargetRefLabel
	// LabelManifestDigest (digest) is the platform image manifest
	// (snapshotters.TargetManifestDigestLabel).
	LabelManifestDigest = snapshotters.TargetManifestDigestLabel
	// LabelLayerDigest (digest) is the compressed layer being prepared
	// (snapshotters.TargetLayerDigestLabel).
	LabelLayerDigest = snapshotters.TargetLayerDigestLabel
	// LabelDiffID (digest) is the uncompressed layer's digest, from the
	// image config (snapshots.LabelSnapshotDiffID; containerd 2.x's
	// unpacker sets it).
	LabelDiffID = snapshots.LabelSnapshotDiffID
	// LabelImageLayers (comma-separated digests) lists the image's layers
	// from this one up, as far as the label size limit allows
	// (snapshotters.TargetImageLayersLabel).
	LabelImageLayers = snapshotters.TargetImageLayersLabel
	// LabelIndexDigest (digest) names the SOCI index explicitly, skipping
	// discovery (upstream SOCI's label).
	LabelIndexDigest = "containerd.io/snapshot/remote/soci.index.digest"
	// LabelRemote (any value) marks a committed snapshot whose fs directory
	// is a FileSystem mount; stargz uses the same key.
	LabelRemote = "containerd.io/snapshot/remote"
)
