package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff/apply"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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
	blob, err := fetchBlob(filepath.Dir(s.upperPath(sn.ID)), l)
	if err != nil {
		return false, err
	}
	defer blob.remove()
	fetched := time.Now()
	d, err := apply.NewFileSystemApplier(blob).Apply(ctx, l.Desc, s.mounts(sn))
	if err != nil {
		return false, fmt.Errorf("unpack layer %s: %w", l.Desc.Digest, err)
	}
	if l.DiffID != "" && d.Digest != l.DiffID {
		return false, fmt.Errorf("layer %s unpacks to diff ID %s, the image says %s", l.Desc.Digest, d.Digest, l.DiffID)
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
		WithField("fetch", fetched.Sub(start).Round(time.Millisecond)).WithField("unpack", time.Since(fetched).Round(time.Millisecond)).
		Info("layer without zTOC fetched and unpacked by the snapshotter")
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

// blobFile is a layer blob in a temporary file, checked against its
// descriptor: the content.Provider containerd's applier reads it from.
type blobFile struct {
	path string
	desc ocispec.Descriptor
}

var _ content.Provider = (*blobFile)(nil)

// fetchBlob copies the layer's body into a temporary file in dir, checking
// its size and digest.
func fetchBlob(dir string, l LayerBlob) (_ *blobFile, err error) {
	d := l.Desc
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("layer digest %q: %w", d.Digest, err)
	}
	if d.Size <= 0 {
		return nil, fmt.Errorf("layer %s: size %d", d.Digest, d.Size)
	}
	f, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	v := d.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(f, v), io.LimitReader(l.Body, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("fetch layer %s: %w", d.Digest, err)
	}
	if n != d.Size {
		return nil, fmt.Errorf("fetch layer %s: got %d bytes or more, want %d", d.Digest, n, d.Size)
	}
	if !v.Verified() {
		return nil, fmt.Errorf("fetch layer %s: content does not match the digest", d.Digest)
	}
	return &blobFile{path: f.Name(), desc: d}, nil
}

// ReaderAt opens the blob.
func (b *blobFile) ReaderAt(_ context.Context, d ocispec.Descriptor) (content.ReaderAt, error) {
	if d.Digest != b.desc.Digest {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, errdefs.ErrNotFound)
	}
	f, err := os.Open(b.path)
	if err != nil {
		return nil, err
	}
	return sizedFile{f, b.desc.Size}, nil
}

func (b *blobFile) remove() { os.Remove(b.path) }

type sizedFile struct {
	*os.File
	size int64
}

func (f sizedFile) Size() int64 { return f.size }
