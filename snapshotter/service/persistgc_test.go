package service

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/snapshot"
)

// storeFixture is a local store with the records of two layers (a and b,
// each with its zTOC, sharing a prefetch list) and what a crash or an
// earlier daemon leaves beside them.
type storeFixture struct {
	s      *localStore
	la, lb map[string]string // the labels of a and b
}

func labelsOf(layer string) map[string]string {
	return map[string]string{
		snapshot.LabelImageRef:       "registry.test/img:" + layer,
		snapshot.LabelManifestDigest: digest.FromString("manifest " + layer).String(),
		snapshot.LabelLayerDigest:    digest.FromString("layer " + layer).String(),
	}
}

func artifactDesc(s string) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: digest.FromString(s), Size: int64(len(s))}
}

func newStoreFixture(t *testing.T) *storeFixture {
	t.Helper()
	fx := &storeFixture{s: newLocalStore(t.TempDir()), la: labelsOf("a"), lb: labelsOf("b")}
	repo, err := name.NewRepository("registry.test/img")
	if err != nil {
		t.Fatal(err)
	}
	prefetch := artifactDesc("prefetch shared")
	for _, l := range []struct {
		labels map[string]string
		ztoc   string
	}{{fx.la, "ztoc a"}, {fx.lb, "ztoc b"}} {
		z := artifactDesc(l.ztoc)
		if err := fx.s.putBlob(z, []byte(l.ztoc)); err != nil {
			t.Fatal(err)
		}
		layer := ocispec.Descriptor{Digest: digest.Digest(l.labels[snapshot.LabelLayerDigest]), Size: 1}
		if err := fx.s.putLayer(l.labels, Layer{Repo: repo, Desc: layer, Ztoc: z, Prefetch: &prefetch}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fx.s.putBlob(prefetch, []byte("prefetch shared")); err != nil {
		t.Fatal(err)
	}
	// Left by an earlier daemon: an artifact no record names, the part
	// file of a zTOC nobody mounts, temporary files.
	if err := fx.s.putBlob(artifactDesc("orphan"), []byte("orphan")); err != nil {
		t.Fatal(err)
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fx.s.partPath(fx.s.blobPath(digest.FromString("lost part"))))
	write(filepath.Join(filepath.Dir(fx.s.blobPath(digest.FromString("x"))), ".tmp-123"))
	write(filepath.Join(fx.s.root, "layers", ".tmp-456"))
	return fx
}

// files lists the files under the store's root, relative to it.
func (fx *storeFixture) files(t *testing.T) []string {
	t.Helper()
	var out []string
	filepath.Walk(fx.s.root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(fx.s.root, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func (fx *storeFixture) has(t *testing.T, d digest.Digest) bool {
	_, err := os.Stat(fx.s.blobPath(d))
	return err == nil
}

func keys(labels ...map[string]string) map[string]bool {
	live := map[string]bool{}
	for _, l := range labels {
		k, _ := layerKey(l)
		live[k] = true
	}
	return live
}

// TestCollectStore: a collection keeps the records of the layers snapshots
// name and what they name, and removes the rest: records of removed
// snapshots, the artifacts only they named, orphans and temporary files;
// with no snapshot left the store is empty.
func TestCollectStore(t *testing.T) {
	fx := newStoreFixture(t)
	// The zTOC of b is being read lazily: its part file is kept.
	zb := artifactDesc("ztoc b").Digest
	if err := os.WriteFile(fx.s.partPath(fx.s.blobPath(zb)), []byte("part"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := fx.s.collect(keys(fx.la, fx.lb), 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.records != 0 || st.artifacts != 2 {
		t.Errorf("both layers live: removed %d records, %d artifacts; want the orphan and the lost part (and the temporary files)", st.records, st.artifacts)
	}
	for _, s := range []string{"ztoc a", "ztoc b", "prefetch shared"} {
		if !fx.has(t, artifactDesc(s).Digest) {
			t.Errorf("%s removed while its layer is live", s)
		}
	}
	if _, ok := fx.s.layer(fx.la); !ok {
		t.Error("record of a removed while live")
	}
	if fx.has(t, artifactDesc("orphan").Digest) {
		t.Error("orphan artifact kept")
	}
	if len(fx.files(t)) != 6 {
		t.Errorf("files after the first collection: %v; want 2 records, 3 artifacts, b's part", fx.files(t))
	}

	// b's snapshot is removed: its record, zTOC and part go; the shared
	// prefetch list stays for a.
	if _, err := fx.s.collect(keys(fx.la), 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := fx.s.layer(fx.lb); ok {
		t.Error("record of b kept after its snapshot went")
	}
	if fx.has(t, zb) || !fx.has(t, artifactDesc("ztoc a").Digest) || !fx.has(t, artifactDesc("prefetch shared").Digest) {
		t.Errorf("after b's removal: %v", fx.files(t))
	}
	if _, err := os.Stat(fx.s.partPath(fx.s.blobPath(zb))); !os.IsNotExist(err) {
		t.Errorf("part file of b's zTOC kept: %v", err)
	}

	// Not ours: left alone.
	other := filepath.Join(fx.s.root, "artifacts", "sha256", "README")
	os.WriteFile(other, []byte("x"), 0o600)
	if _, err := fx.s.collect(nil, 0); err != nil {
		t.Fatal(err)
	}
	if got := fx.files(t); len(got) != 1 || got[0] != filepath.Join("artifacts", "sha256", "README") {
		t.Fatalf("store with no snapshot left holds %v", got)
	}
}

// TestCollectCap: past the cap, the oldest artifacts go, live or not; the
// records stay (their zTOCs are fetched again at the next mount).
func TestCollectCap(t *testing.T) {
	fx := newStoreFixture(t)
	old := time.Now().Add(-time.Hour)
	za := fx.s.blobPath(artifactDesc("ztoc a").Digest)
	if err := os.Chtimes(za, old, old); err != nil {
		t.Fatal(err)
	}
	// "ztoc a", "ztoc b", "prefetch shared": 6+6+15 bytes; a cap of 25
	// takes the oldest, a's zTOC, only.
	st, err := fx.s.collect(keys(fx.la, fx.lb), 25)
	if err != nil {
		t.Fatal(err)
	}
	if st.capped != 1 || st.kept != 21 {
		t.Fatalf("capped %d, kept %d bytes; want a's zTOC gone, 21 bytes kept", st.capped, st.kept)
	}
	if fx.has(t, artifactDesc("ztoc a").Digest) || !fx.has(t, artifactDesc("ztoc b").Digest) {
		t.Fatalf("after the cap: %v", fx.files(t))
	}
	if _, ok := fx.s.layer(fx.la); !ok {
		t.Fatal("record removed by the cap")
	}
}

// blockingMounter is a LayerMounter whose MountLayer waits for release.
type blockingMounter struct {
	layerRecorder
	entered, release chan struct{}
}

func (m *blockingMounter) MountLayer(ctx context.Context, mp string, l Layer) error {
	m.entered <- struct{}{}
	<-m.release
	return m.layerRecorder.MountLayer(ctx, mp, l)
}

// TestCollectPutOffDuringMount: a collection while a Mount is in flight
// (what it writes is named by no record yet) removes nothing, and runs
// once the Mount is over.
func TestCollectPutOffDuringMount(t *testing.T) {
	fx := newStoreFixture(t)
	m := &blockingMounter{entered: make(chan struct{}), release: make(chan struct{})}
	f := NewFileSystem(nil, m)
	f.store = fx.s
	// A layer mounted from the store: no discovery.
	mounted := make(chan error, 1)
	go func() { mounted <- f.Mount(context.Background(), "/mp", fx.la) }()
	<-m.entered
	none := func(context.Context) ([]map[string]string, error) { return nil, nil }
	if err := f.Collect(context.Background(), none); err != nil {
		t.Fatal(err)
	}
	if !fx.has(t, artifactDesc("orphan").Digest) {
		t.Fatal("collected while a mount was in flight")
	}
	close(m.release)
	if err := <-mounted; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fx.files(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the collection put off did not run after the mount: %v", fx.files(t))
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A Mount that starts while the snapshots are listed puts the
	// collection off too.
	// A new FileSystem: the first one's put-off collection ran in a
	// goroutine this test has no happens-before edge with (it only saw the
	// files go), so its store must not be swapped under it.
	fx = newStoreFixture(t)
	m2 := &blockingMounter{entered: make(chan struct{}), release: make(chan struct{})}
	f2 := NewFileSystem(nil, m2)
	f2.store = fx.s
	racing := func(context.Context) ([]map[string]string, error) {
		go func() { mounted <- f2.Mount(context.Background(), "/mp", fx.la) }()
		<-m2.entered
		return nil, nil
	}
	if err := f2.Collect(context.Background(), racing); err != nil {
		t.Fatal(err)
	}
	if !fx.has(t, artifactDesc("orphan").Digest) {
		t.Fatal("collected with a mount started during the listing")
	}
	close(m2.release)
	if err := <-mounted; err != nil {
		t.Fatal(err)
	}
}

// TestStoreMaxSize: the store's cap is a quarter of the span cache's
// limit, within [MinStoreMaxSize, DefaultStoreMaxSize].
func TestStoreMaxSize(t *testing.T) {
	for _, tc := range []struct{ limit, want int64 }{
		{0, DefaultStoreMaxSize},
		{10 << 30, DefaultStoreMaxSize},
		{1 << 30, 256 << 20},
		{16 << 20, MinStoreMaxSize},
	} {
		c, err := cache.Open(t.TempDir(), cache.WithMaxSize(tc.limit))
		if err != nil {
			t.Fatal(err)
		}
		if got := storeMaxSize(&Layers{cache: c}); got != tc.want {
			t.Errorf("cache limit %d: store cap %d, want %d", tc.limit, got, tc.want)
		}
	}
}
