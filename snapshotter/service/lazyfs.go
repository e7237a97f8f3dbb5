package service

import (
	"context"
	"fmt"
	"net/http"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/snapshotter/snapshot"
)

// LayerMounter mounts one indexed layer lazily (FUSE over spans fetched from
// the registry) on an empty directory. The layer filesystem implements it;
// the daemon gets one through WithLayerMounter. Its lifecycle is that of
// snapshot.FileSystem, with the index already found: MountLayer must leave
// nothing mounted when it fails.
type LayerMounter interface {
	MountLayer(ctx context.Context, mountpoint string, l Layer) error
	Check(ctx context.Context, mountpoint string) error
	Unmount(ctx context.Context, mountpoint string) error
}

// NewLayerMounter builds the LayerMounter of a daemon from its
// configuration (Config.Root holds the daemon's state; a span cache belongs
// under Root/cache) and the base transport of its registry requests (the
// one carrying CRI credentials when [cri] is on; nil: the default). It is
// the boundary where Config becomes options (LayersFromConfig).
type NewLayerMounter func(ctx context.Context, c Config, rt http.RoundTripper) (LayerMounter, error)

// FileSystem is the snapshot.FileSystem of the daemon: it finds the SOCI
// index of a layer's image and hands the indexed layer to a LayerMounter.
// It is a snapshot.LayerSource too: a layer without a zTOC in an indexed
// image is fetched for the snapshotter to unpack (OpenLayer).
type FileSystem struct {
	d *Discoverer
	m LayerMounter
	// store keeps the Layer found for each snapshot's labels (nil: none).
	store *localStore
	// unpack: OpenLayer opens layers (Config.Lazy.UnpackUnindexed).
	unpack   bool
	unpacked unpackCounters
	// pull fetches the layers OpenLayer opens (pull.go, SetPull).
	pull puller
	// gate keeps the local store's collection (persistgc.go) and Mounts
	// apart.
	gate mountGate
}

var _ snapshot.FileSystem = (*FileSystem)(nil)

// NewFileSystem returns a FileSystem, which opens layers without a zTOC
// for the snapshotter to unpack unless SetUnpackUnindexed(false). With a nil
// LayerMounter every Mount and OpenLayer fails with snapshot.ErrNotIndexed
// before any registry traffic, so every layer is unpacked by containerd
// (the full-pull path).
//
// With the daemon's Layers, the Layer found for a snapshot's labels is kept
// on disk with its zTOC (persist.go), and the next Mount of those labels
// (the restore after a restart) needs no discovery.
func NewFileSystem(d *Discoverer, m LayerMounter) *FileSystem {
	f := &FileSystem{d: d, m: m, unpack: true}
	if ls, ok := m.(*Layers); ok {
		f.store = ls.store
	}
	return f
}

// SetUnpackUnindexed turns OpenLayer on or off (Config.Lazy.UnpackUnindexed).
func (f *FileSystem) SetUnpackUnindexed(on bool) { f.unpack = on }

// Mount finds the layer's index and mounts the layer lazily. A layer
// mounted before (this daemon or an earlier one: the restore after a
// restart) is mounted from what the local store kept, with no discovery.
func (f *FileSystem) Mount(ctx context.Context, mountpoint string, labels map[string]string) error {
	if f.m == nil {
		return fmt.Errorf("no lazy layer filesystem in this daemon: %w", snapshot.ErrNotIndexed)
	}
	f.gate.begin()
	defer f.gate.end()
	if l, ok := f.store.layer(labels); ok {
		l.Image = labels[snapshot.LabelImageRef]
		return f.m.MountLayer(ctx, mountpoint, l)
	}
	found, err := f.d.Find(ctx, labels)
	if err != nil {
		return err
	}
	l, err := found.Layer(digest.Digest(labels[snapshot.LabelLayerDigest]))
	if err != nil {
		return err
	}
	l.Image = labels[snapshot.LabelImageRef]
	if err := f.m.MountLayer(ctx, mountpoint, l); err != nil {
		return err
	}
	if err := f.store.putLayer(labels, l); err != nil {
		log.G(ctx).WithError(err).WithField("layer", l.Desc.Digest).Warn("keep the layer's index on disk: a restart will look it up again")
	}
	return nil
}

// Check asks the LayerMounter whether the mount is still served.
func (f *FileSystem) Check(ctx context.Context, mountpoint string, _ map[string]string) error {
	if f.m == nil {
		return snapshot.ErrNotIndexed
	}
	return f.m.Check(ctx, mountpoint)
}

// Unmount unmounts a layer.
func (f *FileSystem) Unmount(ctx context.Context, mountpoint string) error {
	if f.m == nil {
		return nil
	}
	return f.m.Unmount(ctx, mountpoint)
}
