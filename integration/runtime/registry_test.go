//go:build integration

package runtime

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/ztoc"
)

// testRegistry is an in-process registry on loopback (go-containerregistry's
// registry, which answers range requests) behind a handler that counts the
// blob bytes it serves, can serve a blob's bytes altered (Corrupt) and can
// go away (Down).
type testRegistry struct {
	t    testing.TB
	srv  *httptest.Server
	host string
	next http.Handler

	mu       sync.Mutex
	served   map[string]int64         // body bytes of blob GETs, by digest
	byAgent  map[string]int64         // the same, by the first word of the User-Agent
	override map[string][]byte        // digest -> bytes served instead of the stored blob
	requests []string                 // "METHOD /path" of every request
	delay    map[string]time.Duration // digest -> wait before answering a GET of it
}

// newRegistry starts a registry without the referrers API (requests to it
// are answered 404, so clients fall back to the sha256-<hex> tag); opts go
// to go-containerregistry's registry.New (registry.WithReferrersSupport).
func newRegistry(t testing.TB, opts ...registry.Option) *testRegistry {
	t.Helper()
	opts = append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)
	r := &testRegistry{t: t, next: registry.New(opts...),
		served: map[string]int64{}, byAgent: map[string]int64{}, override: map[string][]byte{},
		delay: map[string]time.Duration{}}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// ServeHTTP counts blob bytes and serves overrides.
func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests = append(r.requests, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
	dg := ""
	if i := strings.Index(req.URL.Path, "/blobs/"); i >= 0 && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
		dg = req.URL.Path[i+len("/blobs/"):]
	}
	if dg == "" {
		r.next.ServeHTTP(w, req)
		return
	}
	cw := &countingWriter{ResponseWriter: w}
	r.mu.Lock()
	body, ok := r.override[dg]
	wait := r.delay[dg]
	r.mu.Unlock()
	if wait > 0 && req.Method == http.MethodGet {
		time.Sleep(wait)
	}
	if ok {
		w.Header().Set("Docker-Content-Digest", dg)
		http.ServeContent(cw, req, "", time.Time{}, bytes.NewReader(body))
	} else {
		r.next.ServeHTTP(cw, req)
	}
	agent, _, _ := strings.Cut(req.UserAgent(), " ")
	r.mu.Lock()
	r.served[dg] += cw.n
	r.byAgent[agent] += cw.n
	r.mu.Unlock()
}

// ServedByAgent returns the blob bytes served so far by User-Agent (its
// first word).
func (r *testRegistry) ServedByAgent() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int64{}
	for k, v := range r.byAgent {
		m[k] = v
	}
	return m
}

// Requests returns how many requests so far had method and a path
// containing part.
func (r *testRegistry) Requests(method, part string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.requests {
		m, p, _ := strings.Cut(q, " ")
		if m == method && strings.Contains(p, part) {
			n++
		}
	}
	return n
}

// ServedByDigest returns the blob bytes served so far by digest.
func (r *testRegistry) ServedByDigest() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int64{}
	for k, v := range r.served {
		m[k] = v
	}
	return m
}

// ServedOf returns the blob bytes of digest d served so far.
func (r *testRegistry) ServedOf(d string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.served[d]
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Served returns the blob bytes served so far, in all and of digest d
// ("" for none).
func (r *testRegistry) Served(d string) (all, of int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.served {
		all += v
		if k == d {
			of = v
		}
	}
	return all, of
}

// Corrupt serves blob d with the byte at offset off flipped.
func (r *testRegistry) Corrupt(d string, b []byte, off int64) {
	c := append([]byte(nil), b...)
	c[off] ^= 0xff
	r.mu.Lock()
	r.override[d] = c
	r.mu.Unlock()
}

// Down makes the registry go away: new connections are refused and open
// ones are closed.
func (r *testRegistry) Down() {
	r.srv.Listener.Close()
	r.srv.CloseClientConnections()
}

// tarFile is one entry of a layer made by makeTar.
type tarFile struct {
	h    tar.Header
	body []byte
}

// makeTar writes entries as a tar stream with a fixed mtime where none is
// set.
func makeTar(t testing.TB, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := f.h
		h.Size = int64(len(f.body))
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// busyboxTar is a layer with Debian's static busybox as /bin/busybox and
// /bin/sh, and /etc/socikit-test.
func busyboxTar(t testing.TB) []byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs Debian's busybox-static (apt-get install busybox-static): %v", err)
	}
	return makeTar(t, []tarFile{
		{h: tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, body: bb},
		{h: tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}},
		{h: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "etc/socikit-test", Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte("socikit\n")},
	})
}

// goTreeTar is a layer of about limit bytes of files of the Go
// installation (sources, then compiled tools) under /data/go: content
// no container start needs.
func goTreeTar(t testing.TB, limit int64) []byte {
	t.Helper()
	out, err := exec.Command(mustLookPath(t, "go"), "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	root := strings.TrimSpace(string(out))
	var files []tarFile
	var total int64
	dirs := map[string]bool{}
	addDir := func(p string) {
		for d := filepath.Dir(p); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	// Sources (many small files) up to three quarters, then compiled
	// tools (large files spanning several spans).
	for _, part := range []struct {
		sub  string
		upto int64
	}{{"src", limit * 3 / 4}, {"pkg/tool", limit}} {
		_ = filepath.WalkDir(filepath.Join(root, part.sub), func(p string, e fs.DirEntry, err error) error {
			if err != nil || total >= part.upto {
				return filepath.SkipDir
			}
			if !e.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			n := "data/go/" + rel
			addDir(n)
			files = append(files, tarFile{h: tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644}, body: b})
			total += int64(len(b))
			return nil
		})
	}
	var all []tarFile
	for d := range dirs {
		all = append(all, tarFile{h: tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}})
	}
	// Directories first, sorted, so that the stream is deterministic.
	sortTarFiles(all)
	return makeTar(t, append(all, files...))
}

func sortTarFiles(fs []tarFile) {
	for i := 1; i < len(fs); i++ {
		for j := i; j > 0 && fs[j].h.Name < fs[j-1].h.Name; j-- {
			fs[j], fs[j-1] = fs[j-1], fs[j]
		}
	}
}

func mustLookPath(t testing.TB, f string) string {
	t.Helper()
	for _, d := range append(filepath.SplitList(os.Getenv("PATH")), "/usr/local/go/bin") {
		p := filepath.Join(d, f)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			p, _ = filepath.EvalSymlinks(p)
			return p
		}
	}
	t.Skipf("no %s on PATH", f)
	return ""
}

// pushImage pushes an image of the given uncompressed layers (gzipped by
// go-containerregistry) as repo:latest and returns its reference and the
// image.
func (r *testRegistry) pushImage(t testing.TB, repo string, layers ...[]byte) (string, v1.Image) {
	t.Helper()
	img := empty.Image
	for _, l := range layers {
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		if _, err := zw.Write(l); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(gz.Bytes())), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"/bin/sh"}
	cf.Config.Env = []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := r.host + "/" + repo + ":latest"
	rr, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(rr, img); err != nil {
		t.Fatal(err)
	}
	return ref, img
}

// sociLayer is what a converted (SOCI v2) image tells about one layer.
type sociLayer struct {
	desc       ocispec.Descriptor // the image layer
	blob       []byte             // its compressed bytes
	z          *ztoc.Ztoc         // nil: not indexed
	ztocSize   int64              // the zTOC blob's size
	ztocDigest string             // and its digest
}

// sociLayers reads the converted image ref (an image index with one
// linux/amd64 image and its SOCI v2 index) back from the registry and
// returns its layers with their zTOCs.
func sociLayers(t testing.TB, ref string) []sociLayer {
	t.Helper()
	rr, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	get := func(d string) []byte {
		desc, err := remote.Get(rr.Context().Digest(d))
		if err != nil {
			t.Fatal(err)
		}
		return desc.Manifest
	}
	desc, err := remote.Get(rr)
	if err != nil {
		t.Fatal(err)
	}
	var ix ocispec.Index
	if err := json.Unmarshal(desc.Manifest, &ix); err != nil {
		t.Fatal(err)
	}
	var imgDesc, sociDesc ocispec.Descriptor
	for _, m := range ix.Manifests {
		if m.ArtifactType == "application/vnd.amazon.soci.index.v2+json" || m.Annotations["com.amazon.soci.image-manifest-digest"] != "" {
			sociDesc = m
		} else if imgDesc.Digest == "" {
			imgDesc = m
		}
	}
	if imgDesc.Digest == "" || sociDesc.Digest == "" {
		t.Fatalf("%s is not a SOCI v2 image index: %s", ref, desc.Manifest)
	}
	var img, si ocispec.Manifest
	if err := json.Unmarshal(get(imgDesc.Digest.String()), &img); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(get(sociDesc.Digest.String()), &si); err != nil {
		t.Fatal(err)
	}
	blob := func(d string) []byte {
		l, err := remote.Layer(rr.Context().Digest(d))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var out []sociLayer
	for _, l := range img.Layers {
		sl := sociLayer{desc: l, blob: blob(l.Digest.String())}
		for _, zd := range si.Layers {
			if zd.Annotations["com.amazon.soci.image-layer-digest"] == l.Digest.String() && zd.MediaType != "application/vnd.amazon.soci.prefetch.v1+json" {
				sl.ztocSize, sl.ztocDigest = zd.Size, zd.Digest.String()
				if sl.z, err = ztoc.Unmarshal(blob(zd.Digest.String())); err != nil {
					t.Fatal(err)
				}
			}
		}
		out = append(out, sl)
	}
	return out
}

// Restore serves blob d as stored again, without delay.
func (r *testRegistry) Restore(d string) {
	r.mu.Lock()
	delete(r.override, d)
	delete(r.delay, d)
	r.mu.Unlock()
}

// Delay makes GETs of blob d wait before they are answered.
func (r *testRegistry) Delay(d string, wait time.Duration) {
	r.mu.Lock()
	r.delay[d] = wait
	r.mu.Unlock()
}
