package service

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/snapshotter/snapshot"
)

// switchTransport fails every request while down, and counts them.
type switchTransport struct {
	down  atomic.Bool
	calls atomic.Int64
}

func (s *switchTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return nil, errors.New("registry down")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// layerRecorder is a LayerMounter that keeps the layers it was given.
type layerRecorder struct{ got []Layer }

func (m *layerRecorder) MountLayer(_ context.Context, _ string, l Layer) error {
	m.got = append(m.got, l)
	return nil
}
func (m *layerRecorder) Check(context.Context, string) error   { return nil }
func (m *layerRecorder) Unmount(context.Context, string) error { return nil }

// TestMountFromStore: a layer mounted once is mounted again by a new daemon
// (same root) from the local store, with the same Layer and no request to
// the registry, which is down.
func TestMountFromStore(t *testing.T) {
	ti := pushTestImage(t)
	root := t.TempDir()
	labels := map[string]string{
		snapshot.LabelImageRef:       ti.ref,
		snapshot.LabelManifestDigest: ti.bound.Digest.String(),
		snapshot.LabelLayerDigest:    ti.layer.String(),
	}
	rt := &switchTransport{}
	first := &layerRecorder{}
	f := NewFileSystem(testDiscoverer(t, DefaultConfig(), rt), first)
	f.store = newLocalStore(root)
	if err := f.Mount(context.Background(), "/mp", labels); err != nil {
		t.Fatal(err)
	}
	if len(first.got) != 1 || first.got[0].stored || rt.calls.Load() == 0 {
		t.Fatalf("first mount: layers %+v after %d requests; want one found by discovery", first.got, rt.calls.Load())
	}

	rt.down.Store(true)
	rt.calls.Store(0)
	again := &layerRecorder{}
	f = NewFileSystem(testDiscoverer(t, DefaultConfig(), rt), again)
	f.store = newLocalStore(root)
	if err := f.Mount(context.Background(), "/mp", labels); err != nil {
		t.Fatalf("mount from the store with the registry down: %v", err)
	}
	if n := rt.calls.Load(); n != 0 {
		t.Errorf("%d registry requests to mount a stored layer, want 0", n)
	}
	want := first.got[0]
	want.stored = true
	if diff := cmp.Diff(want, again.got[0], cmp.AllowUnexported(Layer{}), cmp.Comparer(func(a, b name.Repository) bool {
		return a.Name() == b.Name() && a.Scheme() == b.Scheme()
	})); diff != "" {
		t.Errorf("stored layer differs (-found +stored):\n%s", diff)
	}

	// Other labels (another manifest) are not in the store: discovery,
	// which fails with the registry down.
	other := map[string]string{}
	for k, v := range labels {
		other[k] = v
	}
	other[snapshot.LabelManifestDigest] = ti.plain.Digest.String()
	if err := f.Mount(context.Background(), "/mp2", other); err == nil || rt.calls.Load() == 0 {
		t.Errorf("mount of unstored labels with the registry down: %v after %d requests; want a discovery error", err, rt.calls.Load())
	}
}

func TestLocalStoreBlob(t *testing.T) {
	s := newLocalStore(t.TempDir())
	b := []byte("a zTOC")
	d := ocispec.Descriptor{Digest: digest.FromBytes(b), Size: int64(len(b))}
	if _, ok := s.blob(d, 1<<20); ok {
		t.Fatal("empty store has a blob")
	}
	if err := s.putBlob(d, b); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.blob(d, 1<<20); !ok || string(got) != string(b) {
		t.Fatalf("blob = %q, %v", got, ok)
	}
	if _, ok := s.blob(d, 2); ok {
		t.Error("blob over the limit returned")
	}
	// A file that does not match its digest is never returned.
	if err := os.WriteFile(s.blobPath(d.Digest), []byte("a zTOd"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.blob(d, 1<<20); ok {
		t.Error("corrupted blob returned")
	}
	var nilStore *localStore
	if _, ok := nilStore.blob(d, 1<<20); ok || nilStore.putBlob(d, b) != nil || nilStore.putLayer(nil, Layer{}) != nil {
		t.Error("a nil store must hold nothing and accept everything")
	}
}

// TestLazyBlob: no request until a read; a read while the registry is down
// fails and the next one, once it is back, works.
func TestLazyBlob(t *testing.T) {
	ti := pushTestImage(t)
	ctx := context.Background()
	r, err := name.ParseReference(ti.ref)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := image.OpenRegistry(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, body, err := reg.Resolve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	ld := m.Layers[0]
	want, err := image.ReadBlob(ctx, reg, ld, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	rt := &switchTransport{}
	rt.down.Store(true)
	b := &lazyBlob{repo: r.Context(), d: ld.Digest, size: ld.Size, opts: []httprange.Option{httprange.WithTransport(rt), httprange.WithRetries(0)}}
	if b.Size() != ld.Size || rt.calls.Load() != 0 {
		t.Fatalf("lazy blob: size %d, %d requests before a read", b.Size(), rt.calls.Load())
	}
	buf := make([]byte, 10)
	if err := b.ReadRanges(ctx, []httprange.Range{{Off: 5, Buf: buf}}); err == nil {
		t.Fatal("read with the registry down succeeded")
	}
	rt.down.Store(false)
	if err := b.ReadRanges(ctx, []httprange.Range{{Off: 5, Buf: buf}}); err != nil {
		t.Fatalf("read once the registry is back: %v", err)
	}
	if string(buf) != string(want[5:15]) {
		t.Errorf("read %x, want %x", buf, want[5:15])
	}
}
