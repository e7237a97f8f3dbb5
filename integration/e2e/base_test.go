//go:build integration

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// busyboxApplets are linked to busybox in the base image: what the example
// Dockerfiles use.
var busyboxApplets = []string{"sh", "ls", "mkdir", "seq", "head", "wc", "cat", "echo", "true"}

// makeBaseLayout writes an OCI layout with a one-layer busybox-static image
// and returns its directory and manifest digest.
func makeBaseLayout(t testing.TB) (string, digest.Digest) {
	t.Helper()
	return makeBaseLayoutFor(t, runtime.GOARCH)
}

// makeBaseLayoutFor is makeBaseLayout for the given architectures, all
// with the host's busybox (an image for another architecture is never
// run: Dockerfiles on it have no RUN step). With more than one, the
// digest is that of an image index listing one manifest per architecture.
func makeBaseLayoutFor(t testing.TB, arches ...string) (string, digest.Digest) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox-static needed for the base image: %v", err)
	}
	mtime := time.Unix(0, 0)
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/"} {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}))
	}
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: mtime}))
	_, err = tw.Write(bb)
	must(t, err)
	for _, a := range busyboxApplets {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime}))
	}
	must(t, tw.Close())
	diffID := digest.FromBytes(tarBuf.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = zw.Write(tarBuf.Bytes())
	must(t, err)
	must(t, zw.Close())

	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "blobs/sha256"), 0o755))
	put := func(mt string, b []byte) ocispec.Descriptor {
		d := digest.FromBytes(b)
		must(t, os.WriteFile(filepath.Join(dir, "blobs/sha256", d.Encoded()), b, 0o644))
		return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
	}
	layer := put(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
	var mds []ocispec.Descriptor
	for _, arch := range arches {
		cfg := ocispec.Image{
			Platform: ocispec.Platform{OS: "linux", Architecture: arch},
			Config:   ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}},
			RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		}
		cb, err := json.Marshal(cfg)
		must(t, err)
		config := put(ocispec.MediaTypeImageConfig, cb)
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: []ocispec.Descriptor{layer}}
		m.SchemaVersion = 2
		mb, err := json.Marshal(m)
		must(t, err)
		d := put(ocispec.MediaTypeImageManifest, mb)
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		mds = append(mds, d)
	}
	md := mds[0]
	if len(mds) > 1 {
		nested := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: mds}
		nested.SchemaVersion = 2
		nb, err := json.Marshal(nested)
		must(t, err)
		md = put(ocispec.MediaTypeImageIndex, nb)
	} else {
		md.Platform = nil
	}
	md.Annotations = map[string]string{ocispec.AnnotationRefName: "latest"}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}}
	idx.SchemaVersion = 2
	ib, err := json.Marshal(idx)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644))
	return dir, md.Digest
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
