package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// unpackLocal fetches the layer the labels name through the FileSystem's
// LayerSource, checks it against its descriptor, unpacks it into the active
// snapshot sn (key) and commits that as target. done reports that target
// exists (committed here, or by someone else meanwhile): Prepare then
// answers ErrAlreadyExists and containerd neither fetches nor unpacks the
// layer. An error matching ErrNotIndexed means the layer is containerd's to
// unpack; after any error the active snapshot is empty again, as Prepare
// made it.
//
// The unpack is containerd's own applier (core/diff/apply) over the
// snapshot's mounts, i.e. the code containerd runs for a snapshot of its
// overlayfs snapshotter: a layer with parents is applied straight into the
// upper directory with overlayfs whiteouts (character devices 0/0 and
// trusted.overlay.opaque, archive.OverlayConvertWhiteout) and the parents
// as lower directories; a base layer through a bind mount of it. The diff
// ID is checked as containerd's unpacker does.
func (s *Snapshotter) unpackLocal(ctx context.Context, sn storage.Snapshot, key, target string, labels map[string]string, opts []snapshots.Opt) (done bool, err error) {
	src, ok := s.fs.(LayerSource)
	if !ok {
		return false, ErrNotIndexed
	}
	start := time.Now()
	l, err := src.OpenLayer(ctx, labels)
	if err != nil {
		return false, err
	}
	defer l.Body.Close()
	defer func() {
		if err != nil {
			if rerr := s.resetActive(sn); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	d, err := applyVerified(ctx, l, s.mounts(sn))
	if err != nil {
		return false, err
	}
	if l.DiffID != "" && d != l.DiffID {
		return false, fmt.Errorf("layer %s unpacks to diff ID %s, the image says %s", l.Desc.Digest, d, l.DiffID)
	}
	du, err := fs.DiskUsage(ctx, s.upperPath(sn.ID))
	if err != nil {
		return false, err
	}
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		_, err := storage.CommitActive(ctx, key, target, snapshots.Usage(du), opts...)
		return err
	})
	if errdefs.IsAlreadyExists(err) {
		// Someone committed the target meanwhile: our key is not needed.
		if rerr := s.Remove(ctx, key); rerr != nil {
			log.G(ctx).WithError(rerr).WithField("key", key).Warn("remove redundant snapshot")
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("commit unpacked snapshot %s: %w", target, err)
	}
	log.G(ctx).WithField("layer", l.Desc.Digest).WithField("size", l.Desc.Size).WithField("image", labels[LabelImageRef]).
		WithField("took", time.Since(start).Round(time.Millisecond)).
		Info("layer fetched and unpacked by the snapshotter")
	return true, nil
}

// resetActive empties the upper directory of the active snapshot sn again,
// with the mode and owner createSnapshot gave it.
func (s *Snapshotter) resetActive(sn storage.Snapshot) error {
	upper := s.upperPath(sn.ID)
	if err := os.RemoveAll(upper); err != nil {
		return fmt.Errorf("empty %s: %w", upper, err)
	}
	if err := os.Mkdir(upper, 0o755); err != nil {
		return err
	}
	if len(sn.ParentIDs) > 0 {
		var st syscall.Stat_t
		if err := syscall.Stat(s.upperPath(sn.ParentIDs[0]), &st); err != nil {
			return fmt.Errorf("stat parent: %w", err)
		}
		if err := os.Lchown(upper, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	return nil
}
