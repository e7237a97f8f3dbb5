//go:build integration

package runtime

import (
	"context"
	"os"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"

	"github.com/socikit/socikit/snapshotter/snapshot"
)

// TestSnapshotterConformance runs containerd's snapshotter suite against our
// snapshotter with no lazy filesystem: the overlayfs half must behave as
// containerd's own overlay snapshotter does.
func TestSnapshotterConformance(t *testing.T) {
	requireRoot(t)
	// The suite knows overlay-based snapshotters by name: with neither
	// redirect_dir nor CONFIG_OVERLAY_FS_REDIRECT_DIR a directory of a
	// lower layer cannot be renamed (EXDEV), which its Rename case allows
	// only for "overlayfs" (and fuse-overlayfs, erofs).
	testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		s, err := snapshot.New(ctx, root, nil)
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	})
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay mounts)")
	}
}
