// Package snapshot is socikit's containerd snapshotter: an overlayfs
// snapshotter (the layout and mounts of containerd's own overlay snapshotter,
// metadata in a bolt database through core/snapshots/storage) that can also
// present a layer as a remote snapshot, mounted lazily by a [FileSystem].
//
// Layout under the root directory:
//
//	metadata.db            bolt metadata (core/snapshots/storage)
//	snapshots/<id>/fs      the layer's tree: an unpacked directory, or the
//	                       mountpoint of a remote (lazily mounted) layer
//	snapshots/<id>/work    overlayfs workdir of active snapshots
//
// # Remote snapshots
//
// containerd (the CRI plugin, or the transfer service with an unpack_config
// naming this snapshotter and enable_remote_snapshot_annotations set on the
// proxy plugin) prepares each layer with labels naming the target snapshot
// ([snapshots.LabelSnapshotRef]) and the layer ([LabelLayerDigest], the image
// reference and manifest). For such a Prepare the snapshotter asks its
// FileSystem to mount the layer on the snapshot's fs directory. If that
// succeeds, the snapshot is committed under the target name and Prepare
// returns an error matching errdefs.ErrAlreadyExists, so containerd skips the
// download (the stargz and upstream SOCI protocol). If it fails (the image
// has no SOCI index, the layer has no zTOC, the registry is unreachable), the
// mount is undone and Prepare returns the ordinary active snapshot, which
// containerd fills by downloading and unpacking the layer: a layer is either
// fully mounted or fully unpacked, never half mounted.
//
// A layer the FileSystem has no zTOC for (its Mount fails with
// [ErrNotIndexed]) is fetched and unpacked by the snapshotter itself when the
// FileSystem is a [LayerSource] and opens it: decompressed and applied with
// containerd's own applier over the snapshot's mounts as its body arrives,
// every byte hashed on the way, and committed as the target only once the
// whole body matched its digest and the tar its diff ID, so Prepare returns ErrAlreadyExists as for a lazy
// layer. Left to containerd, such a layer would make containerd's unpacker
// fetch it and every layer above it whole, lazy ones included.
//
// Remote snapshots carry [LabelRemote]; on start the snapshotter mounts them
// again with the labels stored at commit, and before a snapshot is stacked on
// a remote parent the parent is checked (and remounted if it went away).
//
// A typical lifecycle, as containerd drives it:
//
//	sn, _ := snapshot.New(ctx, "/var/lib/socikit", lazyFS)
//	_, err := sn.Prepare(ctx, "extract-1 sha256:chain", "", snapshots.WithLabels(labels))
//	if errdefs.IsAlreadyExists(err) { /* lazily mounted and committed as "sha256:chain" */ }
//	mounts, _ := sn.Prepare(ctx, "container-rootfs", "sha256:chain") // overlay over the FUSE mount
package snapshot
