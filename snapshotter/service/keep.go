package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/log"

	"github.com/socikit/socikit/snapshotter/fdstore"
	"github.com/socikit/socikit/snapshotter/layer"
	"github.com/socikit/socikit/snapshotter/snapshot"
)

// Running containers through a crash of the daemon: the /dev/fuse
// descriptor of every lazy mount is kept in an fd store outside the daemon
// (a holder process or systemd's), with the mountpoint and the connection's
// state. While it is kept, a daemon that dies (kill -9) does not end the
// mount: the kernel queues the reads of the containers until a new daemon
// serves them. The restarted daemon takes the kept descriptors, and the
// restore (snapshot.Resumer) serves each mount again on its descriptor
// (layer.WithResume) instead of clearing it and mounting anew; a kept
// mount it cannot serve is given up (its descriptor closed: the kernel
// ends the connection, as before) and mounted again. An unmount removes
// the descriptor from the store.

// The values of [lazy] fd_store.
const (
	FDStoreAuto    = "auto"
	FDStoreHolder  = "holder"
	FDStoreSystemd = "systemd"
	FDStoreOff     = "off"
)

// FDHolderCommand is the command line of the fd holder process (the
// socket's path is appended), which the daemon starts when none serves
// Root/fdstore.sock; socikit-snapshotter sets it to itself with the
// fdstore subcommand. nil: no holder ([lazy] fd_store = "holder" then
// fails, "auto" keeps nothing without systemd).
var FDHolderCommand []string

// keptPrefix starts the names of the descriptors the daemon keeps.
const keptPrefix = "socikit-"

// keptName is the name a mount's descriptor is kept under.
func keptName(mountpoint string) string {
	h := sha256.Sum256([]byte(mountpoint))
	return keptPrefix + hex.EncodeToString(h[:16])
}

// keptRecord is kept with a mount's descriptor.
type keptRecord struct {
	Mountpoint string `json:"mountpoint"`
	// State is layer.Mounted.Keep's.
	State []byte `json:"state"`
}

// keeper keeps the descriptors of the daemon's mounts in an fd store.
type keeper struct {
	store fdstore.Store

	mu sync.Mutex
	// prev are the descriptors an earlier daemon kept, by mountpoint,
	// until they are resumed or given up.
	prev map[string]keptConn
}

type keptConn struct {
	name  string
	f     *os.File
	state []byte
}

// openFDStore opens the fd store [lazy] fd_store names (nil: none).
func openFDStore(ctx context.Context, c Config) (fdstore.Store, error) {
	mode := c.Lazy.FDStore
	if mode == "" || mode == FDStoreAuto {
		mode = FDStoreHolder
		if os.Getenv("NOTIFY_SOCKET") != "" {
			mode = FDStoreSystemd
		} else if FDHolderCommand == nil {
			return nil, nil
		}
	}
	switch mode {
	case FDStoreOff:
		return nil, nil
	case FDStoreSystemd:
		return fdstore.Systemd(filepath.Join(c.Root, "fdstore"), keptPrefix)
	case FDStoreHolder:
		if FDHolderCommand == nil {
			return nil, errors.New("no fd holder command in this daemon")
		}
		sock := filepath.Join(c.Root, "fdstore.sock")
		argv := append(append([]string(nil), FDHolderCommand...), sock)
		return fdstore.Holder(sock, func() error {
			log.G(ctx).WithField("socket", sock).Info("starting the fd holder")
			return fdstore.StartHolder(argv, filepath.Join(c.Root, "fdstore.log"))
		})
	}
	return nil, fmt.Errorf("fd store %q", mode)
}

// LayersKeep keeps the FUSE descriptor of every mount in s, so that
// mounts outlive the daemon, and resumes the mounts s kept for an earlier
// daemon (ResumeLayer). Default: nothing kept.
func LayersKeep(s fdstore.Store) LayersOption {
	return func(o *layersOptions) error {
		o.keep = s
		return nil
	}
}

// newKeeper takes what s kept for an earlier daemon.
func newKeeper(ctx context.Context, s fdstore.Store) *keeper {
	k := &keeper{store: s, prev: map[string]keptConn{}}
	kept, err := s.Take()
	if err != nil {
		log.G(ctx).WithError(err).Warn("fd store: take the kept mounts")
	}
	for _, e := range kept {
		var r keptRecord
		if err := json.Unmarshal(e.Meta, &r); err != nil || r.Mountpoint == "" || keptName(r.Mountpoint) != e.Name {
			log.G(ctx).WithField("name", e.Name).Warn("fd store: a kept descriptor without a valid record, given up")
			k.drop(ctx, e.Name, e.File)
			continue
		}
		k.prev[r.Mountpoint] = keptConn{name: e.Name, f: e.File, state: r.State}
	}
	log.G(ctx).Info("fd store: lazy mounts are kept across a crash of the daemon; FUSE passthrough is off for them")
	if len(k.prev) > 0 {
		log.G(ctx).WithField("mounts", len(k.prev)).Info("fd store: mounts kept by the previous daemon")
	}
	return k
}

// keep puts m's descriptor in the store.
func (k *keeper) keep(ctx context.Context, mountpoint string, m *layer.Mounted) {
	f, state, err := m.Keep()
	if err == nil {
		var rec []byte
		if rec, err = json.Marshal(keptRecord{Mountpoint: mountpoint, State: state}); err == nil {
			err = k.store.Put(keptName(mountpoint), rec, f)
		}
		f.Close()
	}
	if err != nil {
		log.G(ctx).WithError(err).WithField("mountpoint", mountpoint).Warn("fd store: mount not kept; it will not survive a crash of the daemon")
	}
}

// forget removes mountpoint's descriptor from the store.
func (k *keeper) forget(ctx context.Context, mountpoint string) {
	if err := k.store.Remove(keptName(mountpoint)); err != nil {
		log.G(ctx).WithError(err).WithField("mountpoint", mountpoint).Warn("fd store: remove")
	}
}

// take returns (and forgets) the descriptor kept for mountpoint by an
// earlier daemon.
func (k *keeper) take(mountpoint string) (keptConn, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.prev[mountpoint]
	delete(k.prev, mountpoint)
	return c, ok
}

// drop gives a kept descriptor up: out of the store, closed. Once no
// descriptor of a connection is open, the kernel ends it.
func (k *keeper) drop(ctx context.Context, name string, f *os.File) {
	if err := k.store.Remove(name); err != nil {
		log.G(ctx).WithError(err).WithField("name", name).Warn("fd store: remove")
	}
	f.Close()
}

// dropUnclaimed gives up the kept descriptors no restore resumed.
func (k *keeper) dropUnclaimed(ctx context.Context) {
	k.mu.Lock()
	prev := k.prev
	k.prev = map[string]keptConn{}
	k.mu.Unlock()
	for mp, c := range prev {
		log.G(ctx).WithField("mountpoint", mp).Info("fd store: a kept mount no snapshot uses, given up")
		k.drop(ctx, c.name, c.f)
	}
}

// ResumeLayer serves the mount at mountpoint that an earlier daemon kept
// in the fd store, with the layer l. It reports false when nothing was
// kept for mountpoint. When it fails, the kept mount is given up (the
// kernel ends it; the caller clears it and mounts the layer again).
func (ls *Layers) ResumeLayer(ctx context.Context, mountpoint string, l Layer) (bool, error) {
	if ls.keep == nil {
		return false, nil
	}
	c, ok := ls.keep.take(mountpoint)
	if !ok {
		return false, nil
	}
	err := ls.mountLayer(ctx, mountpoint, l, []layer.Option{layer.WithResume(c.f, c.state)})
	if err != nil {
		ls.keep.drop(ctx, c.name, c.f)
		return true, fmt.Errorf("resume the kept mount: %w", err)
	}
	c.f.Close() // the server has its own; mountLayer kept a new one
	log.G(ctx).WithField("layer", l.Desc.Digest).WithField("mountpoint", mountpoint).Info("kept mount resumed")
	return true, nil
}

// RestoreDone gives up the mounts kept by an earlier daemon that the
// restore did not resume (their snapshots are gone).
func (ls *Layers) RestoreDone(ctx context.Context) {
	if ls.keep != nil {
		ls.keep.dropUnclaimed(ctx)
	}
}

// Resume implements snapshot.Resumer: it serves the mount an earlier
// daemon kept at mountpoint, with the layer its labels name (from the
// local store: a kept mount was mounted, so its layer was stored).
func (f *FileSystem) Resume(ctx context.Context, mountpoint string, labels map[string]string) (bool, error) {
	ls, ok := f.m.(*Layers)
	if !ok || ls.keep == nil {
		return false, nil
	}
	l, ok := f.store.layer(labels)
	if !ok {
		if c, kept := ls.keep.take(mountpoint); kept {
			ls.keep.drop(ctx, c.name, c.f)
			return true, errors.New("resume the kept mount: the layer's index is not on disk")
		}
		return false, nil
	}
	l.Image = labels[snapshot.LabelImageRef]
	return ls.ResumeLayer(ctx, mountpoint, l)
}

// RestoreDone implements snapshot.Resumer.
func (f *FileSystem) RestoreDone(ctx context.Context) {
	if ls, ok := f.m.(*Layers); ok {
		ls.RestoreDone(ctx)
	}
}
