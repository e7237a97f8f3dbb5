package service

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeStore is the part of containerd's content store containerdContent
// uses: committed blobs and ingests in progress, per namespace.
type fakeStore struct {
	content.Store // not called

	mu      sync.Mutex
	blobs   map[string][]byte         // ns/digest
	ingests map[string]content.Status // ns/digest
	calls   int
}

func newFakeStore() *fakeStore {
	return &fakeStore{blobs: map[string][]byte{}, ingests: map[string]content.Status{}}
}

func (s *fakeStore) key(ctx context.Context, d digest.Digest) string {
	ns, _ := namespaces.Namespace(ctx)
	return ns + "/" + d.String()
}

func (s *fakeStore) Info(ctx context.Context, d digest.Digest) (content.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	b, ok := s.blobs[s.key(ctx, d)]
	if !ok {
		return content.Info{}, errdefs.ErrNotFound
	}
	return content.Info{Digest: d, Size: int64(len(b))}, nil
}

type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

func (s *fakeStore) ReaderAt(ctx context.Context, d ocispec.Descriptor) (content.ReaderAt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[s.key(ctx, d.Digest)]
	if !ok {
		return nil, errdefs.ErrNotFound
	}
	return readerAt{bytes.NewReader(b)}, nil
}

func (s *fakeStore) ListStatuses(ctx context.Context, filters ...string) ([]content.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []content.Status
	for k, st := range s.ingests {
		ns, _ := namespaces.Namespace(ctx)
		if strings.HasPrefix(k, ns+"/") && len(filters) == 1 && strings.Contains(filters[0], st.Expected.Encoded()) {
			out = append(out, st)
		}
	}
	return out, nil
}

func (s *fakeStore) commit(ns string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := digest.FromBytes(b)
	delete(s.ingests, ns+"/"+d.String())
	s.blobs[ns+"/"+d.String()] = b
}

func (s *fakeStore) ingest(ns string, d digest.Digest, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ingests[ns+"/"+d.String()] = content.Status{Ref: "unknown-" + d.String(), Expected: d, Offset: off}
}

func TestContainerdContent(t *testing.T) {
	blob := []byte("a zTOC")
	d := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	index := []byte("a SOCI index")
	idg := digest.FromBytes(index)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	newC := func(s *fakeStore) *containerdContent {
		c := newContainerdContent("/nowhere")
		c.poll, c.stall, c.grace, c.settle = time.Millisecond, 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
		c.once.Do(func() {})
		c.store = s
		return c
	}

	t.Run("committed", func(t *testing.T) {
		s := newFakeStore()
		s.commit("k8s.io", blob)
		if b, ok := newC(s).read(ctx, d, idg, 1<<20); !ok || !bytes.Equal(b, blob) {
			t.Fatalf("read = %q, %v", b, ok)
		}
		// Another namespace, no namespace, over the limit, no address.
		if _, ok := newC(s).read(namespaces.WithNamespace(context.Background(), "other"), d, idg, 1<<20); ok {
			t.Error("read a blob of another namespace")
		}
		if _, ok := newC(s).read(context.Background(), d, idg, 1<<20); ok {
			t.Error("read without a namespace")
		}
		if _, ok := newC(s).read(ctx, d, idg, 3); ok {
			t.Error("read over the limit")
		}
		if _, ok := newContainerdContent("").read(ctx, d, idg, 1<<20); ok {
			t.Error("read with no containerd address")
		}
	})

	t.Run("wrong-content", func(t *testing.T) {
		s := newFakeStore()
		s.commit("k8s.io", blob)
		s.blobs["k8s.io/"+d.Digest.String()] = []byte("tampered") // same digest key, other bytes
		if _, ok := newC(s).read(ctx, d, idg, 1<<20); ok {
			t.Error("read content that does not match its digest")
		}
	})

	t.Run("being-fetched", func(t *testing.T) {
		s := newFakeStore()
		s.ingest("k8s.io", d.Digest, 1)
		go func() {
			time.Sleep(20 * time.Millisecond)
			s.ingest("k8s.io", d.Digest, 3) // progress
			time.Sleep(20 * time.Millisecond)
			s.commit("k8s.io", blob)
		}()
		if b, ok := newC(s).read(ctx, d, idg, 1<<20); !ok || !bytes.Equal(b, blob) {
			t.Fatalf("read = %q, %v; want it once containerd commits it", b, ok)
		}
	})

	t.Run("commit-lag", func(t *testing.T) {
		// The ingest is gone before the blob shows (containerd's commit).
		s := newFakeStore()
		s.ingest("k8s.io", d.Digest, 3)
		go func() {
			time.Sleep(10 * time.Millisecond)
			s.mu.Lock()
			delete(s.ingests, "k8s.io/"+d.Digest.String())
			s.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			s.commit("k8s.io", blob)
		}()
		if b, ok := newC(s).read(ctx, d, idg, 1<<20); !ok || !bytes.Equal(b, blob) {
			t.Fatalf("read = %q, %v", b, ok)
		}
	})

	t.Run("fetch-failed", func(t *testing.T) {
		// The ingest goes away and the blob never shows.
		s := newFakeStore()
		s.ingest("k8s.io", d.Digest, 3)
		go func() {
			time.Sleep(10 * time.Millisecond)
			s.mu.Lock()
			delete(s.ingests, "k8s.io/"+d.Digest.String())
			s.mu.Unlock()
		}()
		if _, ok := newC(s).read(ctx, d, idg, 1<<20); ok {
			t.Fatal("read a blob whose fetch failed")
		}
	})

	t.Run("stalled", func(t *testing.T) {
		s := newFakeStore()
		s.ingest("k8s.io", d.Digest, 1)
		start := time.Now()
		if _, ok := newC(s).read(ctx, d, idg, 1<<20); ok {
			t.Fatal("read a blob that never arrived")
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("gave up after %v", took)
		}
	})

	t.Run("index-known", func(t *testing.T) {
		// containerd has the SOCI index manifest: its zTOCs come next.
		s := newFakeStore()
		s.commit("k8s.io", index)
		go func() {
			time.Sleep(10 * time.Millisecond)
			s.ingest("k8s.io", d.Digest, 0)
			time.Sleep(10 * time.Millisecond)
			s.commit("k8s.io", blob)
		}()
		if b, ok := newC(s).read(ctx, d, idg, 1<<20); !ok || !bytes.Equal(b, blob) {
			t.Fatalf("read = %q, %v", b, ok)
		}
		// It never comes: give up after the grace.
		s = newFakeStore()
		s.commit("k8s.io", index)
		if _, ok := newC(s).read(ctx, d, idg, 1<<20); ok {
			t.Fatal("read a blob never fetched")
		}
	})

	t.Run("not-pulling", func(t *testing.T) {
		// Neither the blob nor the index: no wait at all.
		s := newFakeStore()
		if _, ok := newC(s).read(ctx, d, idg, 1<<20); ok {
			t.Fatal("read a blob containerd does not have")
		}
		if s.calls > 3 {
			t.Errorf("%d Info calls for a blob containerd is not fetching", s.calls)
		}
	})

	t.Run("no-daemon", func(t *testing.T) {
		// A socket nobody listens on: the first call fails at once.
		sock := filepath.Join(t.TempDir(), "containerd.sock")
		c := newContainerdContent(sock)
		start := time.Now()
		if _, ok := c.read(ctx, d, idg, 1<<20); ok {
			t.Fatal("read from no daemon")
		}
		if _, ok := c.read(ctx, d, idg, 1<<20); ok { // again, on the same connection
			t.Fatal("read from no daemon")
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("took %v to find no containerd", took)
		}
	})
}
