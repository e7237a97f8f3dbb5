package service

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/snapshotter/snapshot"
)

// TestPullUnindexedImage: with the pull of images without an index on,
// every layer of such an image is opened, fetched by small range requests;
// once the first is fetched the next one is fetched ahead, and the next
// OpenLayer takes that download over; no file is left in the pull
// directory.
func TestPullUnindexedImage(t *testing.T) {
	ti := pushTestImage(t)
	ctx := context.Background()
	dir := t.TempDir()
	fsys := NewFileSystem(testDiscoverer(t, DefaultConfig(), nil), nopMounter{})
	if err := fsys.SetPull(PullOptions{Dir: dir, Unindexed: true, Ahead: 1, Download: remote.DownloadConfig{Jobs: 3, Chunk: 100}}); err != nil {
		t.Fatal(err)
	}
	labels := func(layer digest.Digest) map[string]string {
		return map[string]string{snapshot.LabelImageRef: ti.ref, snapshot.LabelManifestDigest: ti.plain.Digest.String(),
			snapshot.LabelLayerDigest: layer.String()}
	}
	var total int64
	for i, layer := range []digest.Digest{ti.layer, ti.unlisted} {
		lb, err := fsys.OpenLayer(ctx, labels(layer))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		blob, err := io.ReadAll(lb.Body)
		lb.Body.Close()
		if err != nil || digest.FromBytes(blob) != layer || lb.Desc.Digest != layer || lb.DiffID == "" {
			t.Fatalf("layer %d: read %d bytes (%s), %v; desc %+v", i, len(blob), digest.FromBytes(blob), err, lb.Desc)
		}
		if i == 0 { // the next layer is fetched once this one is
			deadline := time.Now().Add(10 * time.Second)
			for !fetchedAhead(fsys, ti.unlisted) {
				if time.Now().After(deadline) {
					t.Fatal("the next layer was not fetched ahead")
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		total += int64(len(blob))
	}
	if n, b := fsys.unpacked.layers.Load(), fsys.unpacked.bytes.Load(); n != 2 || b != total {
		t.Errorf("counters: %d layers, %d bytes; want 2, %d", n, b, total)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("files left in the pull directory: %v", left)
	}

	// Off (pull.disable_unindexed): containerd's.
	off := NewFileSystem(testDiscoverer(t, DefaultConfig(), nil), nopMounter{})
	if err := off.SetPull(pullConfigOptions(Config{Root: t.TempDir(), Pull: PullConfig{DisableUnindexed: true}})); err != nil {
		t.Fatal(err)
	}
	if _, err := off.OpenLayer(ctx, labels(ti.layer)); !errors.Is(err, snapshot.ErrNotIndexed) {
		t.Errorf("pull.disable_unindexed: OpenLayer error %v, want ErrNotIndexed", err)
	}
}

// fetchedAhead reports whether layer d is being fetched ahead, not opened.
func fetchedAhead(f *FileSystem, d digest.Digest) bool {
	f.pull.mu.Lock()
	defer f.pull.mu.Unlock()
	return f.pull.pending[d] != nil
}

func TestLoadConfigPull(t *testing.T) {
	c := DefaultConfig()
	if c.Pull.DisableUnindexed || c.Pull.Jobs != remote.DefaultDownloadJobs || c.Pull.ChunkSize != remote.DefaultDownloadChunk ||
		c.Pull.LayersAhead != DefaultPullAhead {
		t.Errorf("default [pull] %+v", c.Pull)
	}
	for _, bad := range []PullConfig{{Jobs: 0, ChunkSize: 1}, {Jobs: 1, ChunkSize: 0}, {Jobs: 1, ChunkSize: 1, LayersAhead: -1}} {
		c.Pull = bad
		if err := c.Validate(); err == nil {
			t.Errorf("[pull] %+v validated", bad)
		}
	}
}
