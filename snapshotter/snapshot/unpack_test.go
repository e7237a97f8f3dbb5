package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// sourceFS mounts nothing (no zTOC) and opens layers from memory.
type sourceFS struct {
	NoFileSystem
	mu     sync.Mutex
	layers map[string]testLayer // by layer digest label
	opened []string
	fail   error
	body   func(blob []byte) io.Reader // nil: the blob as it is
}

type testLayer struct {
	blob   []byte
	diffID digest.Digest
	desc   ocispec.Descriptor
}

func (f *sourceFS) OpenLayer(_ context.Context, labels map[string]string) (LayerBlob, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := labels[LabelLayerDigest]
	f.opened = append(f.opened, d)
	if f.fail != nil {
		return LayerBlob{}, f.fail
	}
	l, ok := f.layers[d]
	if !ok {
		return LayerBlob{}, ErrNotIndexed
	}
	var body io.Reader = bytes.NewReader(l.blob)
	if f.body != nil {
		body = f.body(l.blob)
	}
	return LayerBlob{Desc: l.desc, DiffID: l.diffID, Body: io.NopCloser(body)}, nil
}

type tarEntry struct {
	name, body string
	typ        byte
}

// gzipLayer makes a gzip tar layer of entries.
func gzipLayer(t *testing.T, entries ...tarEntry) testLayer {
	t.Helper()
	return streamLayer(t, ocispec.MediaTypeImageLayerGzip, func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }, entries...)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containerd's applier bind-mounts a base layer")
	}
}

// TestUnpackLocal: a layer the FileSystem cannot mount but can open is
// unpacked and committed by Prepare (ErrAlreadyExists), a base layer as
// containerd unpacks into a bind mount, an upper one with overlayfs
// whiteouts; a bad blob or diff ID, or an error, leaves the empty active
// snapshot to containerd.
func TestUnpackLocal(t *testing.T) {
	requireRoot(t)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	base := gzipLayer(t,
		tarEntry{name: "bin/", typ: tar.TypeDir},
		tarEntry{name: "bin/tool", body: "tool\n", typ: tar.TypeReg},
		tarEntry{name: "d/", typ: tar.TypeDir},
		tarEntry{name: "d/old", body: "old\n", typ: tar.TypeReg},
		tarEntry{name: "gone", body: "gone\n", typ: tar.TypeReg},
	)
	upper := gzipLayer(t,
		tarEntry{name: ".wh.gone", typ: tar.TypeReg},
		tarEntry{name: "d/", typ: tar.TypeDir},
		tarEntry{name: "d/.wh..wh..opq", typ: tar.TypeReg},
		tarEntry{name: "d/new", body: "new\n", typ: tar.TypeReg},
	)
	fsys := &sourceFS{layers: map[string]testLayer{base.desc.Digest.String(): base, upper.desc.Digest.String(): upper}}
	root := t.TempDir()
	s := newTestSnapshotter(t, root, fsys)
	defer s.Close()

	_, err := s.Prepare(ctx, "extract-1 sha256:c1", "", layerLabels("sha256:c1", base.desc.Digest.String()))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of a layer without zTOC: %v, want ErrAlreadyExists", err)
	}
	info, err := s.Stat(ctx, "sha256:c1")
	if err != nil || info.Kind != snapshots.KindCommitted || info.Labels[LabelRemote] != "" {
		t.Fatalf("target %+v, %v: want a committed snapshot, not remote", info, err)
	}
	if u, err := s.Usage(ctx, "sha256:c1"); err != nil || u.Size == 0 {
		t.Errorf("usage %+v, %v: want the unpacked size", u, err)
	}
	_, err = s.Prepare(ctx, "extract-2 sha256:c2", "sha256:c1", layerLabels("sha256:c2", upper.desc.Digest.String()))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of an upper layer without zTOC: %v, want ErrAlreadyExists", err)
	}
	ms, err := s.View(ctx, "view", "sha256:c2")
	if err != nil {
		t.Fatal(err)
	}
	lower := strings.Split(optionValue(ms[0], "lowerdir"), ":")
	if len(lower) != 2 {
		t.Fatalf("view mounts %+v, want two lower directories", ms)
	}
	up, bottom := lower[0], lower[1]
	if b, err := os.ReadFile(filepath.Join(bottom, "bin/tool")); err != nil || string(b) != "tool\n" {
		t.Errorf("base layer bin/tool: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(up, "d/new")); err != nil || string(b) != "new\n" {
		t.Errorf("upper layer d/new: %q, %v", b, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(up, "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout of gone: %+v, %v; want a 0/0 character device", st, err)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(up, "d"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque d: %q, %v; want trusted.overlay.opaque=y", buf[:n], err)
	}
	if _, err := os.Stat(filepath.Join(up, "d/.wh..wh..opq")); !os.IsNotExist(err) {
		t.Errorf("opaque marker unpacked as a file: %v", err)
	}
	for _, dir := range []string{up, bottom} {
		if blobs, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "blob-*")); len(blobs) != 0 {
			t.Errorf("temporary blobs left: %v", blobs)
		}
	}

	// Failures fall back to containerd with the active snapshot empty.
	corrupt := base
	corrupt.blob = append([]byte(nil), base.blob...)
	corrupt.blob[len(corrupt.blob)/2] ^= 0xff
	wrongDiff := upper
	wrongDiff.diffID = digest.FromString("other")
	for _, tc := range []struct {
		name  string
		layer testLayer
		fail  error
	}{
		{"digest mismatch", corrupt, nil},
		{"diff ID mismatch", wrongDiff, nil},
		{"not mine", testLayer{}, ErrNotIndexed},
		{"error", testLayer{}, errors.New("registry unreachable")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys.mu.Lock()
			fsys.fail = tc.fail
			fsys.layers["sha256:x"] = tc.layer
			fsys.mu.Unlock()
			key, target := "extract-"+tc.name, "sha256:"+strings.ReplaceAll(tc.name, " ", "-")
			ms, err := s.Prepare(ctx, key, "sha256:c1", layerLabels(target, "sha256:x"))
			if err != nil {
				t.Fatalf("Prepare: %v, want the active snapshot for containerd", err)
			}
			upper := optionValue(ms[0], "upperdir")
			entries, err := os.ReadDir(upper)
			if err != nil || len(entries) != 0 {
				t.Errorf("upper directory after the failure: %v, %v; want empty", entries, err)
			}
			if blobs, _ := filepath.Glob(filepath.Join(filepath.Dir(upper), "blob-*")); len(blobs) != 0 {
				t.Errorf("temporary blobs left: %v", blobs)
			}
			if _, err := s.Stat(ctx, target); !errdefs.IsNotFound(err) {
				t.Errorf("target exists after a failed unpack: %v", err)
			}
			if err := s.Remove(ctx, key); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUnpackLocalNotSource: a FileSystem that is no LayerSource leaves
// layers without zTOC to containerd.
func TestUnpackLocalNotSource(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "test")
	s := newTestSnapshotter(t, t.TempDir(), NoFileSystem{})
	defer s.Close()
	ms, err := s.Prepare(ctx, "extract-1", "", layerLabels("sha256:c1", "sha256:l1"))
	if err != nil || len(ms) != 1 || ms[0].Type != "bind" {
		t.Fatalf("Prepare: %+v, %v; want the active snapshot", ms, err)
	}
}
