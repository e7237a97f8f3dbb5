package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// faultRegistry starts an in-process registry behind fault, which may
// answer a request itself (true) instead of passing it on. It returns the
// host:port and a count of the requests that reached the registry.
func faultRegistry(t *testing.T, fault func(w http.ResponseWriter, r *http.Request) bool) (string, *atomic.Int64) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if fault != nil && fault(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://"), &n
}

// once returns a fault that fires on the first request match accepts.
func once(match func(r *http.Request) bool, do func(w http.ResponseWriter, r *http.Request)) (func(w http.ResponseWriter, r *http.Request) bool, *atomic.Int64) {
	var mu sync.Mutex
	var fired atomic.Int64
	return func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if fired.Load() > 0 || !match(r) {
			return false
		}
		fired.Add(1)
		do(w, r)
		return true
	}, &fired
}

// isLayerUpload matches the requests of a gzip layer's upload: a PATCH
// whose body starts with the gzip magic, or the PUT committing one of
// layers.
func isLayerUpload(method string, layers []testLayer) func(r *http.Request) bool {
	return func(r *http.Request) bool {
		if r.Method != method || !strings.Contains(r.URL.Path, "/blobs/uploads/") {
			return false
		}
		if method == http.MethodPut {
			for _, l := range layers {
				if r.URL.Query().Get("digest") == l.desc.Digest.String() {
					return true
				}
			}
			return false
		}
		head := make([]byte, 2)
		n, _ := io.ReadFull(r.Body, head)
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(head[:n]), r.Body))
		return n == 2 && head[0] == 0x1f && head[1] == 0x8b
	}
}

// TestConvertUploadRetried: a registry answering 500 to one blob upload
// request (the data PATCH, cut after half its body or after all of it, or
// the final PUT) gets the conversion go-containerregistry's retry makes,
// and the result is the same image as without the fault. Before, the retry
// failed with "upload retried after the stream was indexed".
func TestConvertUploadRetried(t *testing.T) {
	t.Parallel()
	srcDir, im := newLayoutImage(t)
	clean, _ := faultRegistry(t, nil)
	want := strings.TrimSpace(run(t, convertArgs(srcDir, clean+"/test/img:soci")...))
	cases := []struct {
		name   string
		method string
		read   func(r *http.Request) // how much of the body the registry reads before answering
	}{
		{"patch-half-body", http.MethodPatch, func(r *http.Request) { io.CopyN(io.Discard, r.Body, 100<<10) }},
		{"patch-whole-body", http.MethodPatch, func(r *http.Request) { io.Copy(io.Discard, r.Body) }},
		{"put", http.MethodPut, func(r *http.Request) { io.Copy(io.Discard, r.Body) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fault, fired := once(isLayerUpload(tc.method, im.layers), func(w http.ResponseWriter, r *http.Request) {
				tc.read(r)
				http.Error(w, "injected", http.StatusInternalServerError)
			})
			host, _ := faultRegistry(t, fault)
			ref := host + "/test/img:soci"
			out, errOut, err := runErr(t, convertArgs(srcDir, ref)...)
			if err != nil {
				t.Fatalf("convert with one failed upload request: %v\n%s", err, errOut)
			}
			if fired.Load() != 1 {
				t.Fatalf("the fault fired %d times, want 1", fired.Load())
			}
			if got := strings.TrimSpace(out); got != want {
				t.Errorf("converted image %s, want %s (as without the fault)", got, want)
			}
			checkFiles(t, ref, im)
		})
	}
}

// sameSizeLayers returns two plain tar layers of equal size and different
// content.
func sameSizeLayers(t *testing.T) (testLayer, testLayer) {
	t.Helper()
	mk := func(c byte) testLayer {
		files := []testFile{{name: "d/", typ: tar.TypeDir}, {name: "d/f", typ: tar.TypeReg, data: bytes.Repeat([]byte{c}, 300<<10)}}
		return tarLayer(t, files, false)
	}
	return mk('a'), mk('b')
}

// badLayoutImage writes a layout whose last layer's blob holds other bytes
// of the same size: its digest does not match.
func badLayoutImage(t *testing.T) (string, testLayer) {
	t.Helper()
	good, other := sameSizeLayers(t)
	dir, _ := newLayoutImageOf(t, makeLayer(t, "one", 4, false), good)
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", good.desc.Digest.Encoded()), other.blob, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, good
}

// treeDigest hashes the names, modes and contents of everything under dir
// ("absent" if dir does not exist).
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "absent"
	}
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v\n", strings.TrimPrefix(p, dir), d.Type())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestConvertReportsFirstCause: what failed first is what convert says, not
// what followed from it.
func TestConvertReportsFirstCause(t *testing.T) {
	t.Parallel()
	bad, badLayer := badLayoutImage(t)
	srcDir, _ := newLayoutImage(t)
	layer := digest.FromBytes(nil) // set below: the largest layer of srcDir
	var size int64
	_, _, body := openLayout(t, srcDir)
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if l.Size > size {
			layer, size = l.Digest, l.Size
		}
	}
	// A registry that sends the headers of that layer and half its body.
	short := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String()) {
			return false
		}
		b, err := os.ReadFile(filepath.Join(srcDir, "blobs", "sha256", layer.Encoded()))
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Header().Set("Docker-Content-Digest", layer.String())
		w.WriteHeader(http.StatusOK)
		w.Write(b[:len(b)/2])
		return true
	}
	shortHost, _ := faultRegistry(t, nil)
	run(t, convertArgs("--index-version", "v1", srcDir, shortHost+"/test/src:1")...) // the source, pushed clean
	var shortOn atomic.Bool
	shortReg, _ := faultRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
		return shortOn.Load() && short(w, r)
	})
	run(t, convertArgs("--index-version", "v1", srcDir, shortReg+"/test/src:1")...)
	shortOn.Store(true)

	cases := []struct {
		name, src, dst string
		want           []string // in the error
	}{
		{"digest-mismatch/to-layout", bad, "oci-layout:" + filepath.Join(t.TempDir(), "out"),
			[]string{"read layer " + badLayer.desc.Digest.String() + " from the source", "content has digest"}},
		{"digest-mismatch/to-registry", bad, shortHost + "/test/bad:1",
			[]string{"read layer " + badLayer.desc.Digest.String() + " from the source", "content has digest"}},
		{"short-body/to-layout", shortReg + "/test/src:1", "oci-layout:" + filepath.Join(t.TempDir(), "out"),
			[]string{"read layer " + layer.String() + " from the source", "unexpected EOF"}},
		// The destination has the layer: it is read for the index alone.
		{"short-body/in-place", shortReg + "/test/src:1", shortReg + "/test/src:2",
			[]string{"read layer " + layer.String() + " from the source", "unexpected EOF"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := runErr(t, convertArgs(tc.src, tc.dst)...)
			if err == nil {
				t.Fatalf("convert succeeded; stderr: %s", errOut)
			}
			t.Logf("message: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, masked := range []string{"closed early", "corrupt", "retried after"} {
				if strings.Contains(err.Error(), masked) {
					t.Errorf("error %q reports a consequence (%q), not the cause", err, masked)
				}
			}
		})
	}
}

// TestConvertAllOrNothing: a failed convert leaves the destination as it
// was: no new layout directory, an existing layout byte for byte, no layout
// tar, no registry tag (v1: the index refused after the image was pushed).
func TestConvertAllOrNothing(t *testing.T) {
	t.Parallel()
	bad, _ := badLayoutImage(t)
	good, goodIm := newLayoutImage(t)

	t.Run("new-layout", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "a", "b", "out")
		if _, _, err := runErr(t, convertArgs("--jobs", "1", bad, "oci-layout:"+dst)...); err == nil {
			t.Fatal("convert of a corrupt image succeeded")
		}
		if got := treeDigest(t, filepath.Dir(filepath.Dir(dst))); got != "absent" {
			t.Errorf("%s left behind", filepath.Dir(filepath.Dir(dst)))
		}
	})
	t.Run("existing-layout", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out")
		run(t, convertArgs(good, "oci-layout:"+dst+":good")...)
		before := treeDigest(t, dst)
		for _, v := range []string{"v1", "v2"} {
			if _, _, err := runErr(t, convertArgs("--index-version", v, bad, "oci-layout:"+dst+":bad")...); err == nil {
				t.Fatal("convert of a corrupt image succeeded")
			}
			if after := treeDigest(t, dst); after != before {
				t.Errorf("%s: the layout changed after a failed convert", v)
			}
		}
		checkFiles(t, dst+":good", goodIm) // still whole
		if _, _, err := runErr(t, "inspect", dst+":good"); err != nil {
			t.Errorf("inspect of the image already there: %v", err)
		}
	})
	t.Run("new-archive", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "out.tar")
		if _, _, err := runErr(t, convertArgs(bad, dst)...); err == nil {
			t.Fatal("convert of a corrupt image succeeded")
		}
		if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (%v)", dst, err)
		}
	})
	// The registry refuses the SOCI index manifest (v1: after the image
	// manifest; v2: before the image index).
	for _, v := range []struct{ version, artifact string }{{"v1", soci.MediaTypeIndexV1}, {"v2", soci.MediaTypeIndexV2}} {
		t.Run("registry-"+v.version+"-index-refused", func(t *testing.T) {
			host, _ := faultRegistry(t, func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/manifests/") {
					return false
				}
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(b))
				if !bytes.Contains(b, []byte(v.artifact)) {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"errors":[{"code":"DENIED","message":"no SOCI indexes here"}]}`)
				return true
			})
			ref := host + "/test/img:" + v.version
			_, _, err := runErr(t, convertArgs("--index-version", v.version, good, ref)...)
			if err == nil || !strings.Contains(err.Error(), "no SOCI indexes here") {
				t.Fatalf("convert: %v, want the registry's refusal", err)
			}
			t.Logf("message: %v", err)
			resp, err := http.Head("http://" + host + "/v2/test/img/manifests/" + v.version)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("tag %s: HEAD answered %d after a failed convert, want 404", ref, resp.StatusCode)
			}
		})
	}
}

// TestConvertChecksFlagsFirst: a bad flag is reported before the source is
// read or the destination created.
func TestConvertChecksFlagsFirst(t *testing.T) {
	t.Parallel()
	host, requests := faultRegistry(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--span-size", "1000"}, "--span-size 1000: below the minimum"},
		{[]string{"--prefetch", ""}, "--prefetch \"\": not a file path"},
		{[]string{"--min-layer-size", "-1"}, "--min-layer-size -1"},
	} {
		dst := filepath.Join(t.TempDir(), "out")
		args := append(append([]string{"convert"}, tc.args...), host+"/test/src:1", "oci-layout:"+dst)
		_, _, err := runErr(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("convert %v: %v, want %q", tc.args, err, tc.want)
		}
		t.Logf("convert %q: %v", tc.args, err)
		if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("convert %v: %s created", tc.args, dst)
		}
	}
	_, _, err := runErr(t, "convert", host+"/test/src:1", "oci-layout:"+filepath.Join(t.TempDir(), "out")+"@"+digest.FromBytes(nil).String())
	if err == nil || !strings.Contains(err.Error(), "must not select by digest") {
		t.Errorf("convert to a layout digest: %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the registry got %d requests", n)
	}
}

// TestConvertWarnings: a plain tar labelled gzip, an empty layer and tar
// entries with ".." are converted, with a warning each.
func TestConvertWarnings(t *testing.T) {
	t.Parallel()
	plain := makeLayer(t, "plain", 3, true)
	plain.desc.MediaType = ocispec.MediaTypeImageLayerGzip
	empty := tarLayer(t, nil, true)
	climb := tarLayer(t, []testFile{
		{name: "ok", typ: tar.TypeReg, data: []byte("fine")},
		{name: "a/../../etc/evil", typ: tar.TypeReg, data: []byte("x")},
		{name: "b/../c", typ: tar.TypeReg, data: []byte("y")},
		{name: "hard", typ: tar.TypeLink, linkname: "../../etc/passwd"},
	}, true)
	srcDir, _ := newLayoutImageOf(t, plain, empty, climb)
	var stdout, stderr bytes.Buffer
	dst := filepath.Join(t.TempDir(), "out")
	if err := Run(context.Background(), convertArgs(srcDir, "oci-layout:"+dst), WithOutput(&stdout, &stderr)); err != nil {
		t.Fatalf("convert: %v\n%s", err, stderr.String())
	}
	t.Logf("stderr:\n%s", stderr.String())
	for _, want := range []string{
		"layer " + plain.desc.Digest.String() + " is labelled " + ocispec.MediaTypeImageLayerGzip + " but is a plain tar",
		"layer " + empty.desc.Digest.String() + " is empty (no tar entry",
		"layer " + climb.desc.Digest.String() + ": 3 tar entries have \"..\" in their path (a/../../etc/evil, b/../c, hard)",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	for _, l := range []testLayer{makeLayer(t, "one", 4, false)} {
		// A sound layer gets no warning.
		srcDir, _ := newLayoutImageOf(t, l)
		_, errOut, err := runErr(t, convertArgs(srcDir, "oci-layout:"+filepath.Join(t.TempDir(), "ok"))...)
		if err != nil || strings.Contains(errOut, "warning") {
			t.Errorf("sound layer: %v, stderr %q", err, errOut)
		}
	}
}

// TestInconsistentIndex: a SOCI index naming a layer its image lacks is
// reported as such by get-file and inspect, not as a missing blob.
func TestInconsistentIndex(t *testing.T) {
	t.Parallel()
	srcDir, im := newLayoutImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	run(t, convertArgs("--index-version", "v1", srcDir, "oci-layout:"+dst)...)
	l, err := image.OpenLayout(dst, "", "")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := l.Index()
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the SOCI index so that its last zTOC names a layer of
	// another image.
	stranger := makeLayer(t, "stranger", 2, false).desc.Digest
	var n int
	for i, d := range idx.Manifests {
		if d.ArtifactType != soci.MediaTypeIndexV1 {
			continue
		}
		b, err := l.Manifest(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var last *ocispec.Descriptor // the last zTOC (lazy zTOCs follow the zTOCs)
		for i := range m.Layers {
			if m.Layers[i].MediaType == soci.MediaTypeZtoc {
				last = &m.Layers[i]
			}
		}
		if last.Annotations[soci.AnnotationImageLayerDigest] != im.layers[2].desc.Digest.String() {
			t.Fatalf("last zTOC of the index is for %s, want %s", last.Annotations[soci.AnnotationImageLayerDigest], im.layers[2].desc.Digest)
		}
		last.Annotations[soci.AnnotationImageLayerDigest] = stranger.String()
		nb, _ := json.Marshal(m)
		nd := ocispec.Descriptor{MediaType: d.MediaType, ArtifactType: d.ArtifactType, Digest: digest.FromBytes(nb), Size: int64(len(nb))}
		putBlob(t, l, nd, nb)
		idx.Manifests[i] = nd
		n++
	}
	if n != 1 {
		t.Fatalf("%d SOCI v1 entries in index.json, want 1", n)
	}
	ib, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dst, "index.json"), ib, 0o644); err != nil {
		t.Fatal(err)
	}
	want := "indexes layer " + stranger.String() + ", which image manifest " + im.manifest.Digest.String() + " does not have"
	_, _, err = runErr(t, "get-file", dst, im.layers[2].files[1].name) // before: "open blob …: not found"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("get-file: %v, want %q", err, want)
	}
	t.Logf("get-file: %v", err)
	_, errOut, err := runErr(t, "inspect", dst)
	if err != nil {
		t.Errorf("inspect: %v", err)
	}
	if !strings.Contains(errOut, want) {
		t.Errorf("inspect's warnings lack %q:\n%s", want, errOut)
	}
}

// fakeSource serves blobs from memory, the n-th open of a digest from
// reads[d][n] when set (unverified: what a misbehaving source sends).
type fakeSource struct {
	image.Source
	blobs map[digest.Digest][]byte
	reads map[digest.Digest][][]byte
	opens int
}

func (s *fakeSource) Blob(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	s.opens++
	if r := s.reads[d.Digest]; len(r) >= s.opens {
		return io.NopCloser(bytes.NewReader(r[s.opens-1])), nil
	}
	return image.NewVerifyingReader(io.NopCloser(bytes.NewReader(s.blobs[d.Digest])), d)
}

// cutTarget opens a blob once per entry of cuts, reading that many bytes
// (-1: to the end) and closing, as a retrying upload does.
type cutTarget struct {
	image.Target
	cuts []int64
	got  []byte
}

func (c *cutTarget) WriteBlob(ctx context.Context, d ocispec.Descriptor, open image.Opener) error {
	for _, n := range c.cuts {
		rc, err := open(ctx)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if n < 0 {
			_, err = io.Copy(&buf, rc)
		} else {
			_, err = io.CopyN(&buf, rc, n)
		}
		rc.Close()
		if err != nil {
			return err
		}
		c.got = buf.Bytes()
	}
	return nil
}

// TestLayerFeed: however the destination opens and cuts the layer, the
// indexer gets each byte once and the zTOC is that of one clean read; a
// layer the destination never reads is read for the index alone; a source
// sending other bytes on a second read is caught.
func TestLayerFeed(t *testing.T) {
	t.Parallel()
	l := makeLayer(t, "feed", 6, false)
	opts := []ztoc.Option{ztoc.WithSpanSize(65536)}
	want, err := ztoc.Build(bytes.NewReader(l.blob), opts...)
	if err != nil {
		t.Fatal(err)
	}
	wantBlob, _ := ztoc.Marshal(want)
	size := int64(len(l.blob))
	for _, cuts := range [][]int64{
		{-1}, {10, -1}, {size / 2, size / 3, -1}, {size / 2, size, -1}, {size, 1}, {}, {100},
	} {
		t.Run(fmt.Sprint(cuts), func(t *testing.T) {
			src := &fakeSource{blobs: map[digest.Digest][]byte{l.desc.Digest: l.blob}}
			dst := &cutTarget{cuts: cuts}
			f := newLayerFeed(src, l.desc, opts)
			z, err := f.finish(context.Background(), dst.WriteBlob(context.Background(), l.desc, f.open))
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := ztoc.Marshal(z); !bytes.Equal(b, wantBlob) {
				t.Errorf("zTOC differs from that of one clean read")
			}
			if len(cuts) > 0 && cuts[len(cuts)-1] < 0 && !bytes.Equal(dst.got, l.blob) {
				t.Errorf("the destination got %d bytes, want the %d of the layer", len(dst.got), size)
			}
		})
	}
	t.Run("second-read-differs", func(t *testing.T) {
		other := bytes.Clone(l.blob)
		other[len(other)-100] ^= 0xff
		src := &fakeSource{blobs: map[digest.Digest][]byte{l.desc.Digest: l.blob},
			reads: map[digest.Digest][][]byte{l.desc.Digest: {l.blob[:size/2], other}}}
		dst := &cutTarget{cuts: []int64{size / 2, -1}}
		f := newLayerFeed(src, l.desc, opts)
		_, err := f.finish(context.Background(), dst.WriteBlob(context.Background(), l.desc, f.open))
		if err == nil || !strings.Contains(err.Error(), "the bytes indexed have digest") {
			t.Fatalf("got %v, want the mixed stream caught", err)
		}
	})
}
