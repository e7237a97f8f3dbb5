package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"hash/fnv"
	"io"
	"log"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
)

// testFile is one entry of a test layer.
type testFile struct {
	name     string
	typ      byte
	data     []byte
	linkname string
}

// testLayer is a layer blob and the files in it.
type testLayer struct {
	files []testFile
	blob  []byte
	desc  ocispec.Descriptor
}

// newRand returns a generator seeded from the test name and salt.
func newRand(t *testing.T, salt string) *rand.Rand {
	h := fnv.New64a()
	io.WriteString(h, t.Name()+"/"+salt)
	return rand.New(rand.NewPCG(h.Sum64(), 42))
}

// makeLayer builds a tar layer (gzip unless plain) with a directory,
// regular files of random (incompressible) and repetitive content, a
// symlink and a hard link.
func makeLayer(t *testing.T, salt string, nfiles int, plain bool) testLayer {
	t.Helper()
	r := newRand(t, salt)
	files := []testFile{{name: salt + "/", typ: tar.TypeDir}}
	for i := range nfiles {
		n := r.IntN(200 << 10)
		if i%3 == 0 {
			n = r.IntN(2 << 10) // small files share spans
		}
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		if i%4 == 1 {
			data = bytes.Repeat([]byte("socikit "), n/8+1)
		}
		files = append(files, testFile{name: salt + "/file" + string(rune('a'+i)), typ: tar.TypeReg, data: data})
	}
	files = append(files,
		testFile{name: salt + "/link", typ: tar.TypeSymlink, linkname: "filea"},
		testFile{name: salt + "/hard", typ: tar.TypeLink, linkname: salt + "/fileb"},
	)
	return tarLayer(t, files, !plain)
}

// tarLayer builds a layer of exactly files (gzip unless plain).
func tarLayer(t *testing.T, files []testFile, gz bool) testLayer {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Typeflag: f.typ, Size: int64(len(f.data)), Linkname: f.linkname,
			Mode: 0o644, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if f.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	mt := ocispec.MediaTypeImageLayer
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		mt = ocispec.MediaTypeImageLayerGzip
	}
	b := buf.Bytes()
	return testLayer{files: files, blob: b, desc: ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}}
}

// testImage is an image written to a layout.
type testImage struct {
	layers   []testLayer
	manifest ocispec.Descriptor
}

func putJSON(t *testing.T, dst image.Target, mt string, v any, tag string) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := dst.PutManifest(context.Background(), d, b, tag); err != nil {
		t.Fatal(err)
	}
	return d
}

func putBlob(t *testing.T, dst image.Target, d ocispec.Descriptor, b []byte) {
	t.Helper()
	if err := dst.WriteBlob(context.Background(), d, func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}); err != nil {
		t.Fatal(err)
	}
}

// writeImage writes one platform image with the given layers to dst,
// tagged tag unless "".
func writeImage(t *testing.T, dst image.Target, arch string, layers []testLayer, tag string) testImage {
	t.Helper()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: arch}, RootFS: ocispec.RootFS{Type: "layers"}}
	cb, _ := json.Marshal(cfg)
	cd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}
	putBlob(t, dst, cd, cb)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd}
	for _, l := range layers {
		putBlob(t, dst, l.desc, l.blob)
		m.Layers = append(m.Layers, l.desc)
	}
	md := putJSON(t, dst, ocispec.MediaTypeImageManifest, m, tag)
	return testImage{layers: layers, manifest: md}
}

// newLayoutImage writes a single-platform image (host architecture) with
// three gzip layers to a new layout and returns its path.
func newLayoutImage(t *testing.T) (string, testImage) {
	t.Helper()
	return newLayoutImageOf(t, makeLayer(t, "one", 8, false), makeLayer(t, "two", 6, false), makeLayer(t, "three", 4, false))
}

func newLayoutImageOf(t *testing.T, layers ...testLayer) (string, testImage) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	l, err := image.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, writeImage(t, l, runtime.GOARCH, layers, "latest")
}

// newRegistry starts an in-process registry on loopback and returns its
// host:port.
func newRegistry(t *testing.T, referrers bool) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers)))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// run runs the CLI and returns stdout; it fails the test on error.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runErr(t, args...)
	if err != nil {
		t.Fatalf("socikit %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func runErr(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), args, WithOutput(&stdout, &stderr))
	return stdout.String(), stderr.String(), err
}

// inspectJSON runs inspect --json --files on ref.
func inspectJSON(t *testing.T, ref string) InspectOutput {
	t.Helper()
	out := run(t, "inspect", "--json", "--files", ref)
	var v InspectOutput
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("inspect --json output does not parse: %v\n%s", err, out)
	}
	return v
}

// checkFiles reads every regular file of the image through get-file and
// compares it with the tar content.
func checkFiles(t *testing.T, ref string, im testImage) {
	t.Helper()
	for _, l := range im.layers {
		content := map[string][]byte{}
		for _, f := range l.files {
			if f.typ == tar.TypeReg {
				content[f.name] = f.data
			}
		}
		for _, f := range l.files {
			want := content[f.name]
			switch f.typ {
			case tar.TypeReg:
			case tar.TypeLink:
				want = content[f.linkname]
			default:
				continue
			}
			got := run(t, "get-file", "--layer", l.desc.Digest.String(), ref, f.name)
			if !bytes.Equal([]byte(got), want) {
				t.Errorf("get-file %s %s: got %d bytes, want %d (equal prefix: %v)", ref, f.name, len(got), len(want),
					bytes.HasPrefix([]byte(got), want[:min(len(want), 16)]))
			}
		}
	}
}

var specsV2 = specs.Versioned{SchemaVersion: 2}
