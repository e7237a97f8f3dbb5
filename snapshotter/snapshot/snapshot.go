package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay/overlayutils"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sync/errgroup"
)

// DefaultNamespace is given to requests that arrive without a containerd
// namespace: containerd 1.6 drops it on some proxy snapshotter calls
// (containerd#6061), and a FileSystem may want one for its logs and caches.
const DefaultNamespace = namespaces.Default

// remoteValue is the value of LabelRemote.
const remoteValue = "remote snapshot"

// Snapshotter is an overlayfs snapshotter with remote (lazily mounted)
// snapshots. It implements snapshots.Snapshotter and snapshots.Cleaner.
type Snapshotter struct {
	root    string
	ms      *storage.MetaStore
	fs      FileSystem
	options []string

	mu      sync.Mutex
	mounted map[string]bool // FileSystem mountpoints we mounted
	// restoring holds the remote snapshots New found in the metadata and
	// is mounting again in the background, by mountpoint: the channel is
	// closed once that mount is done (or failed).
	restoring map[string]chan struct{}

	restoreCancel context.CancelFunc
	restoreDone   chan struct{} // closed when every restore is done
}

var (
	_ snapshots.Snapshotter = (*Snapshotter)(nil)
	_ snapshots.Cleaner     = (*Snapshotter)(nil)
)

// Option configures New.
type Option func(*options) error

type options struct {
	mountOptions []string
	restoreJobs  int
}

// DefaultRestoreJobs is how many remote snapshots New mounts again at once:
// a mount is mostly waiting (reading the layer's zTOC from disk, the
// kernel's FUSE handshake), so more than the cores help.
const DefaultRestoreJobs = 8

// WithRestoreJobs sets how many remote snapshots are mounted again at once
// after a restart (default DefaultRestoreJobs).
func WithRestoreJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("restore jobs %d: must be at least 1", n)
		}
		o.restoreJobs = n
		return nil
	}
}

// WithMountOptions adds overlayfs mount options to every overlay mount
// (default: none besides "index=off" where the kernel supports it and
// "userxattr" where the root needs it, as containerd's overlay snapshotter).
func WithMountOptions(opts ...string) Option {
	return func(o *options) error {
		for _, s := range opts {
			if s == "" || strings.ContainsAny(s, ",") {
				return fmt.Errorf("overlay mount option %q: must be one non-empty option", s)
			}
		}
		o.mountOptions = append(o.mountOptions, opts...)
		return nil
	}
}

// New opens (or creates) a snapshotter rooted at root. fsys mounts remote
// layers; nil means none (every layer is unpacked). Remote snapshots found in
// the metadata are mounted again in the background, WithRestoreJobs at a
// time, so New returns before they are: a call that needs one of them (a
// snapshot stacked on it, its Mounts, its removal) waits for that one only
// (WaitRestore waits for all). A failure there is logged and retried when
// the snapshot is next used as a parent. ctx gives the restore its values
// (logger); Close stops it.
func New(ctx context.Context, root string, fsys FileSystem, opts ...Option) (*Snapshotter, error) {
	o := options{restoreJobs: DefaultRestoreJobs}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if fsys == nil {
		fsys = NoFileSystem{}
	}
	if err := os.MkdirAll(filepath.Join(root, "snapshots"), 0o700); err != nil {
		return nil, fmt.Errorf("create snapshotter root: %w", err)
	}
	supportsDType, err := fs.SupportsDType(root)
	if err != nil {
		return nil, fmt.Errorf("check d_type support of %s: %w", root, err)
	}
	if !supportsDType {
		return nil, fmt.Errorf("%s does not support d_type, which overlayfs needs", root)
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, fmt.Errorf("open metadata: %w", err)
	}
	mountOpts := o.mountOptions
	if !hasOption(mountOpts, "userxattr") {
		userxattr, err := overlayutils.NeedsUserXAttr(root)
		if err != nil {
			log.G(ctx).WithError(err).Warnf("cannot detect whether overlay needs userxattr, assuming %v", userxattr)
		}
		if userxattr {
			mountOpts = append(mountOpts, "userxattr")
		}
	}
	if !hasOption(mountOpts, "index") {
		if _, err := os.Stat("/sys/module/overlay/parameters/index"); err == nil {
			mountOpts = append(mountOpts, "index=off")
		}
	}
	s := &Snapshotter{root: root, ms: ms, fs: fsys, options: mountOpts, mounted: map[string]bool{},
		restoring: map[string]chan struct{}{}, restoreDone: make(chan struct{})}
	rctx, cancel := context.WithCancel(withNamespace(context.WithoutCancel(ctx)))
	s.restoreCancel = cancel
	s.restore(rctx, o.restoreJobs)
	return s, nil
}

func hasOption(options []string, key string) bool {
	for _, o := range options {
		if k, _, _ := strings.Cut(o, "="); k == key {
			return true
		}
	}
	return false
}

// withNamespace gives ctx DefaultNamespace unless it has one.
func withNamespace(ctx context.Context) context.Context {
	if _, ok := namespaces.Namespace(ctx); ok {
		return ctx
	}
	return namespaces.WithNamespace(ctx, DefaultNamespace)
}

// restore mounts the remote snapshots of the metadata again, jobs at a
// time, in the background; restoreDone is closed when it is over.
func (s *Snapshotter) restore(ctx context.Context, jobs int) {
	type remote struct {
		mp     string
		labels map[string]string
	}
	var rs []remote
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, func(ctx context.Context, info snapshots.Info) error {
			if info.Kind != snapshots.KindCommitted || info.Labels[LabelRemote] == "" {
				return nil
			}
			id, _, _, err := storage.GetInfo(ctx, info.Name)
			if err != nil {
				return err
			}
			rs = append(rs, remote{s.upperPath(id), info.Labels})
			return nil
		})
	})
	if err != nil && !errdefs.IsNotFound(err) { // a new metadata store has no buckets yet
		log.G(ctx).WithError(err).Error("list remote snapshots to restore")
	}
	resumer, _ := s.fs.(Resumer)
	if err != nil || len(rs) == 0 {
		if err == nil || errdefs.IsNotFound(err) {
			if resumer != nil {
				resumer.RestoreDone(ctx)
			}
			s.collect(ctx)
		}
		close(s.restoreDone)
		return
	}
	// Sorted, so that the restore order does not depend on bolt's.
	slices.SortFunc(rs, func(a, b remote) int { return strings.Compare(a.mp, b.mp) })
	s.mu.Lock()
	for _, r := range rs {
		s.restoring[r.mp] = make(chan struct{})
	}
	s.mu.Unlock()
	start := time.Now()
	go func() {
		defer close(s.restoreDone)
		var resumed atomic.Int32
		var g errgroup.Group
		g.SetLimit(jobs)
		var failed atomic.Int32
		for _, r := range rs {
			g.Go(func() error {
				defer s.restored(r.mp)
				lg := log.G(ctx).WithField("mountpoint", r.mp)
				if ctx.Err() != nil {
					failed.Add(1)
					return nil
				}
				if resumer != nil {
					ok, err := resumer.Resume(ctx, r.mp, r.labels)
					if err != nil {
						lg.WithError(err).Warn("kept mount not resumed; mounting again")
					} else if ok {
						s.mu.Lock()
						s.mounted[r.mp] = true
						s.mu.Unlock()
						resumed.Add(1)
						lg.Info("resumed remote snapshot")
						return nil
					}
				}
				if err := s.mountRemote(ctx, r.mp, r.labels); err != nil {
					failed.Add(1)
					lg.WithError(err).Warn("restore remote snapshot")
					return nil
				}
				lg.Info("restored remote snapshot")
				return nil
			})
		}
		_ = g.Wait()
		if resumer != nil && ctx.Err() == nil {
			resumer.RestoreDone(ctx)
		}
		log.G(ctx).WithField("snapshots", len(rs)).WithField("failed", failed.Load()).WithField("resumed", resumed.Load()).
			WithField("took", time.Since(start).Round(time.Millisecond)).Info("remote snapshots restored")
		if ctx.Err() == nil {
			s.collect(ctx)
		}
	}()
}

// restored marks the restore of mp as over.
func (s *Snapshotter) restored(mp string) {
	s.mu.Lock()
	ch := s.restoring[mp]
	delete(s.restoring, mp)
	s.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// waitRestored waits until mp is no longer being restored.
func (s *Snapshotter) waitRestored(ctx context.Context, mp string) error {
	s.mu.Lock()
	ch := s.restoring[mp]
	s.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the restore of %s: %w", mp, ctx.Err())
	}
}

// WaitRestore waits until the remote snapshots New found are mounted again
// (or failed to be).
func (s *Snapshotter) WaitRestore(ctx context.Context) error {
	select {
	case <-s.restoreDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// mountRemote mounts a layer on mp, clearing a stale mount first (left by a
// daemon that died: "transport endpoint is not connected").
func (s *Snapshotter) mountRemote(ctx context.Context, mp string, labels map[string]string) error {
	if isMountpoint(mp) {
		_ = s.fs.Unmount(ctx, mp)
		if isMountpoint(mp) {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				return fmt.Errorf("clear stale mount %s: %w", mp, err)
			}
		}
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return err
	}
	if err := s.fs.Mount(ctx, mp, labels); err != nil {
		if isMountpoint(mp) { // never leave half a mount behind
			_ = s.fs.Unmount(ctx, mp)
		}
		return err
	}
	s.mu.Lock()
	s.mounted[mp] = true
	s.mu.Unlock()
	return nil
}

// unmountRemote unmounts mp if we (or an earlier run) mounted it.
func (s *Snapshotter) unmountRemote(ctx context.Context, mp string) error {
	if err := s.waitRestored(ctx, mp); err != nil {
		return err
	}
	s.mu.Lock()
	ours := s.mounted[mp]
	s.mu.Unlock()
	if !ours && !isMountpoint(mp) {
		return nil
	}
	if err := s.fs.Unmount(ctx, mp); err != nil {
		return fmt.Errorf("unmount %s: %w", mp, err)
	}
	s.mu.Lock()
	delete(s.mounted, mp)
	s.mu.Unlock()
	return nil
}

// isMountpoint reports whether p is on another device than its parent; a
// stale FUSE mount (ENOTCONN) counts as one.
func isMountpoint(p string) bool {
	var st, pst syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return errors.Is(err, syscall.ENOTCONN)
	}
	if err := syscall.Lstat(filepath.Dir(p), &pst); err != nil {
		return false
	}
	return st.Dev != pst.Dev
}

// Stat returns the info of the snapshot key.
func (s *Snapshotter) Stat(ctx context.Context, key string) (info snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, info, _, err = storage.GetInfo(ctx, key)
		return err
	})
	return info, err
}

// Update updates the labels of a snapshot.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (newInfo snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		newInfo, err = storage.UpdateInfo(ctx, info, fieldpaths...)
		return err
	})
	return newInfo, err
}

// Usage returns the disk usage of a snapshot: measured for active ones, as
// recorded at commit for committed ones (zero for remote snapshots, whose
// data lives in the FileSystem's cache).
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	var (
		usage snapshots.Usage
		info  snapshots.Info
		id    string
	)
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) (err error) {
		id, info, usage, err = storage.GetInfo(ctx, key)
		return err
	})
	if err != nil {
		return usage, err
	}
	if info.Kind == snapshots.KindActive {
		du, err := fs.DiskUsage(ctx, s.upperPath(id))
		if err != nil {
			return snapshots.Usage{}, err
		}
		usage = snapshots.Usage(du)
	}
	return usage, nil
}

// Prepare creates an active snapshot. When the labels name a target
// snapshot and a layer, it first tries to mount the layer lazily: on success
// the layer is committed as the target and the error matches
// errdefs.ErrAlreadyExists. A layer the FileSystem has no zTOC for is
// fetched and unpacked here instead when the FileSystem is a LayerSource
// (committed the same way). Otherwise, or on failure, the active snapshot
// is returned for containerd to unpack into.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	ctx = withNamespace(ctx)
	sn, info, err := s.createSnapshot(ctx, snapshots.KindActive, key, parent, opts)
	if err != nil {
		return nil, err
	}
	target, ok := info.Labels[LabelTargetRef]
	if !ok || info.Labels[LabelLayerDigest] == "" {
		if !ok && !isExtractKey(key) {
			s.started(ctx, key, sn.ParentIDs)
		}
		return s.mounts(sn), nil
	}
	lg := log.G(ctx).WithField("key", key).WithField("layer", info.Labels[LabelLayerDigest])
	if err := s.prepareRemote(ctx, sn.ID, key, target, info.Labels, opts); err != nil {
		if errors.Is(err, errdefs.ErrAlreadyExists) {
			lg.Debug("remote snapshot ready")
			return nil, err
		}
		if errors.Is(err, ErrNotIndexed) {
			// No zTOC: unpack it here if the FileSystem can fetch it, so
			// that containerd fetches neither it nor the layers above.
			done, uerr := s.unpackLocal(ctx, sn, key, target, info.Labels, opts)
			switch {
			case done:
				return nil, fmt.Errorf("target snapshot %q: %w", target, errdefs.ErrAlreadyExists)
			case errors.Is(uerr, ErrNotIndexed):
				lg.WithError(err).WithField("unpack", uerr).Debug("layer not mounted lazily; containerd unpacks it")
			default:
				lg.WithError(uerr).Warn("unpack by the snapshotter failed; containerd unpacks the layer")
			}
		} else {
			lg.WithError(err).Warn("lazy mount failed; unpacking the layer")
		}
	}
	return s.mounts(sn), nil
}

// prepareRemote mounts the layer on the active snapshot id and commits it
// as target. Any error other than ErrAlreadyExists leaves the active
// snapshot as it was (empty, unmounted).
func (s *Snapshotter) prepareRemote(ctx context.Context, id, key, target string, labels map[string]string, opts []snapshots.Opt) error {
	mp := s.upperPath(id)
	if err := s.mountRemote(ctx, mp, labels); err != nil {
		return err
	}
	copts := append(append([]snapshots.Opt{}, opts...), snapshots.WithLabels(map[string]string{LabelRemote: remoteValue}))
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		_, err := storage.CommitActive(ctx, key, target, snapshots.Usage{}, copts...)
		return err
	})
	if err == nil {
		return fmt.Errorf("target snapshot %q: %w", target, errdefs.ErrAlreadyExists)
	}
	// Not committed: undo the mount so the active snapshot is plain again.
	if uerr := s.unmountRemote(ctx, mp); uerr != nil {
		return errors.Join(err, uerr)
	}
	if errdefs.IsAlreadyExists(err) {
		// Someone committed the target meanwhile: our key is not needed.
		if rerr := s.Remove(ctx, key); rerr != nil {
			log.G(ctx).WithError(rerr).WithField("key", key).Warn("remove redundant snapshot")
		}
		return fmt.Errorf("target snapshot %q: %w", target, errdefs.ErrAlreadyExists)
	}
	return fmt.Errorf("commit remote snapshot %s: %w", target, err)
}

// View creates a read-only snapshot of parent.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	ctx = withNamespace(ctx)
	sn, _, err := s.createSnapshot(ctx, snapshots.KindView, key, parent, opts)
	if err != nil {
		return nil, err
	}
	s.started(ctx, key, sn.ParentIDs)
	return s.mounts(sn), nil
}

// Mounts returns the mounts of an active or view snapshot.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	ctx = withNamespace(ctx)
	var sn storage.Snapshot
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) (err error) {
		sn, err = storage.GetSnapshot(ctx, key)
		if err != nil {
			return fmt.Errorf("get active mount: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.checkParents(ctx, sn.ParentIDs); err != nil {
		return nil, err
	}
	if !isExtractKey(key) {
		s.started(ctx, key, sn.ParentIDs)
	}
	return s.mounts(sn), nil
}

// Commit commits the active snapshot key as name.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		id, _, _, err := storage.GetInfo(ctx, key)
		if err != nil {
			return err
		}
		usage, err := fs.DiskUsage(ctx, s.upperPath(id))
		if err != nil {
			return err
		}
		if _, err := storage.CommitActive(ctx, key, name, snapshots.Usage(usage), opts...); err != nil {
			return fmt.Errorf("commit snapshot %s: %w", key, err)
		}
		return nil
	})
}

// Remove removes a snapshot and, with it, its directory (unmounting a
// remote layer first).
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	ctx = withNamespace(ctx)
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		if _, _, err := storage.Remove(ctx, key); err != nil {
			return fmt.Errorf("remove snapshot %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.Cleanup(ctx)
}

// Walk calls fn for each snapshot matching the filters.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, fn, filters...)
	})
}

// Cleanup removes the directories of snapshots no longer in the metadata,
// unmounting remote layers first. A directory whose mount cannot be undone
// is kept (and logged), never removed through the mount.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	ctx = withNamespace(ctx)
	dir := filepath.Join(s.root, "snapshots")
	// The directories are listed inside a write transaction, as
	// containerd's overlay snapshotter does: createSnapshot makes its
	// "new-" directory and renames it to the snapshot's ID inside one, so
	// a directory being created is never taken for an orphan (a read
	// transaction let Cleanup remove one between its MkdirTemp and Mkdir:
	// "create snapshot directory: mkdir .../new-N/fs: no such file or
	// directory", TestCacheFull).
	var orphans []string
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		ids, err := storage.IDMap(ctx)
		if err != nil {
			return err
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if _, ok := ids[e.Name()]; !ok {
				orphans = append(orphans, e.Name())
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range orphans {
		p := filepath.Join(dir, name)
		if err := s.unmountRemote(WithRemoval(ctx), filepath.Join(p, "fs")); err != nil {
			log.G(ctx).WithError(err).WithField("path", p).Warn("keep snapshot directory: unmount failed")
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			log.G(ctx).WithError(err).WithField("path", p).Warn("remove snapshot directory")
		}
	}
	s.collect(ctx)
	return nil
}

// collect lets a Collector FileSystem drop what it keeps for layers no
// snapshot names any more. Failures are logged: what is left is collected
// next time.
func (s *Snapshotter) collect(ctx context.Context) {
	c, ok := s.fs.(Collector)
	if !ok {
		return
	}
	if err := c.Collect(ctx, s.layerLabels); err != nil {
		log.G(ctx).WithError(err).Warn("collect what the layer filesystem keeps for removed snapshots")
	}
}

// layerLabels returns the labels of the snapshots that name a layer, of
// any kind (a layer being prepared is an active snapshot).
func (s *Snapshotter) layerLabels(ctx context.Context) ([]map[string]string, error) {
	var ls []map[string]string
	err := s.ms.WithTransaction(withNamespace(ctx), false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, func(_ context.Context, info snapshots.Info) error {
			if info.Labels[LabelLayerDigest] != "" {
				ls = append(ls, info.Labels)
			}
			return nil
		})
	})
	if errdefs.IsNotFound(err) { // a new metadata store has no buckets yet
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return ls, nil
}

// Close unmounts the remote layers (they are mounted again on the next
// New) and closes the metadata.
func (s *Snapshotter) Close() error {
	ctx := namespaces.WithNamespace(context.Background(), DefaultNamespace)
	s.restoreCancel()
	<-s.restoreDone
	s.mu.Lock()
	mps := make([]string, 0, len(s.mounted))
	for mp := range s.mounted {
		mps = append(mps, mp)
	}
	s.mu.Unlock()
	var errs []error
	for _, mp := range mps {
		if err := s.unmountRemote(ctx, mp); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.ms.Close())
	return errors.Join(errs...)
}

// createSnapshot creates the directory and metadata of a new snapshot,
// returning it and its info (labels included).
func (s *Snapshotter) createSnapshot(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) (_ storage.Snapshot, _ snapshots.Info, err error) {
	var (
		sn   storage.Snapshot
		info snapshots.Info
		td   string
		path string
	)
	dir := filepath.Join(s.root, "snapshots")
	defer func() {
		if err == nil {
			return
		}
		if td != "" {
			_ = os.RemoveAll(td)
		}
		if path != "" {
			if err1 := os.RemoveAll(path); err1 != nil {
				err = errors.Join(err, fmt.Errorf("remove %s: %w", path, err1))
			}
		}
	}()
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) (err error) {
		td, err = prepareDirectory(dir, kind)
		if err != nil {
			return fmt.Errorf("create snapshot directory: %w", err)
		}
		sn, err = storage.CreateSnapshot(ctx, kind, key, parent, opts...)
		if err != nil {
			return fmt.Errorf("create snapshot: %w", err)
		}
		if _, info, _, err = storage.GetInfo(ctx, key); err != nil {
			return fmt.Errorf("get snapshot info: %w", err)
		}
		if len(sn.ParentIDs) > 0 {
			// The new layer's root takes the owner of its parent's root.
			var st syscall.Stat_t
			if err := syscall.Stat(s.upperPath(sn.ParentIDs[0]), &st); err != nil {
				return fmt.Errorf("stat parent: %w", err)
			}
			if err := os.Lchown(filepath.Join(td, "fs"), int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("chown: %w", err)
			}
		}
		path = filepath.Join(dir, sn.ID)
		if err := os.Rename(td, path); err != nil {
			return fmt.Errorf("rename snapshot directory: %w", err)
		}
		td = ""
		return nil
	})
	if err != nil {
		return sn, info, err
	}
	if err := s.checkParents(ctx, sn.ParentIDs); err != nil {
		_ = s.Remove(ctx, key)
		path = ""
		return sn, info, err
	}
	return sn, info, nil
}

// isExtractKey reports whether key is one containerd prepares to unpack a
// layer into (snapshots.UnpackKeyFormat, "extract-%s %s").
func isExtractKey(key string) bool { return strings.HasPrefix(key, "extract-") }

// started tells a StartObserver FileSystem that key, a snapshot over
// parents ids, is a container's root filesystem or a view, if any of its
// parents is remote.
func (s *Snapshotter) started(ctx context.Context, key string, ids []string) {
	so, ok := s.fs.(StartObserver)
	if !ok || len(ids) == 0 {
		return
	}
	remote, remoteIDs, err := s.remoteParents(ctx, ids)
	if err != nil || len(remote) == 0 {
		return
	}
	mps := make([]string, len(remote))
	for i, info := range remote {
		mps[i] = s.upperPath(remoteIDs[info.Name])
	}
	so.Started(ctx, key, mps)
}

// checkParents makes sure every remote parent is mounted, mounting it
// again if its FileSystem lost it.
func (s *Snapshotter) checkParents(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	remote, remoteIDs, err := s.remoteParents(ctx, ids)
	if err != nil {
		return err
	}
	for _, info := range remote {
		mp := s.upperPath(remoteIDs[info.Name])
		if err := s.waitRestored(ctx, mp); err != nil {
			return err
		}
		if err := s.fs.Check(ctx, mp, info.Labels); err == nil {
			continue
		}
		if err := s.mountRemote(ctx, mp, info.Labels); err != nil {
			return fmt.Errorf("remote layer %s is unavailable: %w", info.Name, errors.Join(err, errdefs.ErrUnavailable))
		}
	}
	return nil
}

// remoteParents returns the infos of the remote snapshots among ids, in the
// order of ids (the immediate parent first), and their ids by name.
func (s *Snapshotter) remoteParents(ctx context.Context, ids []string) ([]snapshots.Info, map[string]string, error) {
	var remote []snapshots.Info
	remoteIDs := map[string]string{} // name -> id
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		names, err := storage.IDMap(ctx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			_, info, _, err := storage.GetInfo(ctx, names[id])
			if err != nil {
				return err
			}
			if info.Labels[LabelRemote] != "" {
				remote = append(remote, info)
				remoteIDs[info.Name] = id
			}
		}
		return nil
	})
	return remote, remoteIDs, err
}

func prepareDirectory(dir string, kind snapshots.Kind) (string, error) {
	td, err := os.MkdirTemp(dir, "new-")
	if err != nil {
		return "", err
	}
	if err := os.Mkdir(filepath.Join(td, "fs"), 0o755); err != nil {
		return td, err
	}
	if kind == snapshots.KindActive {
		if err := os.Mkdir(filepath.Join(td, "work"), 0o711); err != nil {
			return td, err
		}
	}
	return td, nil
}

// mounts returns the mounts of snapshot sn, as containerd's overlay
// snapshotter does: a bind mount without parents, else an overlay whose
// lowerdirs are the parents' fs directories (unpacked trees or FUSE mounts).
func (s *Snapshotter) mounts(sn storage.Snapshot) []mount.Mount {
	if len(sn.ParentIDs) == 0 {
		ro := "rw"
		if sn.Kind == snapshots.KindView {
			ro = "ro"
		}
		return []mount.Mount{{Source: s.upperPath(sn.ID), Type: "bind", Options: []string{ro, "rbind"}}}
	}
	var options []string
	if sn.Kind == snapshots.KindActive {
		options = append(options, "workdir="+s.workPath(sn.ID), "upperdir="+s.upperPath(sn.ID))
	} else if len(sn.ParentIDs) == 1 {
		return []mount.Mount{{Source: s.upperPath(sn.ParentIDs[0]), Type: "bind", Options: []string{"ro", "rbind"}}}
	}
	lower := make([]string, len(sn.ParentIDs))
	for i, id := range sn.ParentIDs {
		lower[i] = s.upperPath(id)
	}
	options = append(options, "lowerdir="+strings.Join(lower, ":"))
	options = append(options, s.options...)
	return []mount.Mount{{Type: "overlay", Source: "overlay", Options: options}}
}

func (s *Snapshotter) upperPath(id string) string {
	return filepath.Join(s.root, "snapshots", id, "fs")
}

func (s *Snapshotter) workPath(id string) string {
	return filepath.Join(s.root, "snapshots", id, "work")
}
