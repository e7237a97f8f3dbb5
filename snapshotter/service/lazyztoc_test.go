package service

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/ztoc"
)

// rangeRegistry is go-containerregistry's registry (single ranges only)
// that, with multi set, answers multi-range blob requests as a
// filesystem-backed distribution registry does (http.ServeContent), and
// counts the blob bytes it sends.
type rangeRegistry struct {
	next  http.Handler
	multi bool
	sent  atomic.Int64
	reqs  atomic.Int64
}

func (r *rangeRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
		r.reqs.Add(1)
		if rh := req.Header.Get("Range"); r.multi && strings.Contains(rh, ",") {
			whole := httptest.NewRecorder()
			req2 := req.Clone(req.Context())
			req2.Header.Del("Range")
			r.next.ServeHTTP(whole, req2)
			cw := &countWriter{ResponseWriter: w, n: &r.sent}
			http.ServeContent(cw, req, "", time.Time{}, bytes.NewReader(whole.Body.Bytes()))
			return
		}
		w = &countWriter{ResponseWriter: w, n: &r.sent}
	}
	r.next.ServeHTTP(w, req)
}

type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.ResponseWriter.Write(p)
}

// upstreamStyleZtoc returns a gzip layer of many files indexed as
// upstream's builder indexes one (spans inside one deflate stream, which
// need their windows), its tar and the zTOC blob.
func upstreamStyleZtoc(t *testing.T) (tarball, blob, zb []byte) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		data := make([]byte, 4000+i*50)
		for j := range data {
			data[j] = 'a' + byte(rnd.IntN(26)) // compressible to ~60 %: deflate blocks every few KiB
		}
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%d/f%d", i%7, i), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	z, err := ztoc.Build(bytes.NewReader(gz.Bytes()), ztoc.WithSpanSize(ztoc.MinSpanSize), ztoc.WithBuildToolIdentifier(ztoc.UpstreamBuildTool))
	if err != nil {
		t.Fatal(err)
	}
	zb, err = ztoc.Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	return tb.Bytes(), gz.Bytes(), zb
}

// checkFiles reads every file of the tar through ix and compares.
func checkFiles(t *testing.T, ix *ztoc.Index, tarball, blob []byte) {
	t.Helper()
	r := ix.Reader(bytes.NewReader(blob))
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		want, _ := io.ReadAll(tr)
		got, err := r.ReadFile(ix.Ztoc().Lookup(h.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs", h.Name)
		}
	}
}

// TestReadZtocLazily: the daemon reads an upstream-style zTOC lazily from
// a registry with and without multi-range requests (a small part of it
// before the mount), serves every file, completes and checks it in the
// background and keeps it whole in the store; a daemon restarted before
// completion mounts from the part file without the registry.
func TestReadZtocLazily(t *testing.T) {
	tarball, blob, zb := upstreamStyleZtoc(t)
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(zb), Size: int64(len(zb))}
	for _, multi := range []bool{true, false} {
		t.Run(fmt.Sprintf("multi-range=%v", multi), func(t *testing.T) {
			rr := &rangeRegistry{next: registry.New(registry.Logger(log.New(io.Discard, "", 0))), multi: multi}
			srv := httptest.NewServer(rr)
			t.Cleanup(srv.Close)
			repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/test/ztoc")
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.WriteLayer(repo, static.NewLayer(zb, types.MediaType(desc.MediaType))); err != nil {
				t.Fatal(err)
			}
			l := Layer{Repo: repo, Ztoc: desc}
			root := t.TempDir()
			ctx := context.Background()

			// A first daemon: no completion before it stops.
			ls, err := NewLayers(ctx, root, LayersZtoc(false, time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			rr.sent.Store(0)
			rr.reqs.Store(0)
			lz, z, err := ls.readZtocLazily(ctx, nil, l)
			if err != nil || lz == nil {
				t.Fatalf("lazy read: %v (lazily: %v)", err, lz != nil)
			}
			spans := int64(z.MaxSpanID) + 1
			t.Logf("%d spans, zTOC %d bytes: %d bytes in %d requests before the mount", spans, len(zb), rr.sent.Load(), rr.reqs.Load())
			if rr.sent.Load() > int64(len(zb))/10 {
				t.Errorf("%d bytes of a %d-byte zTOC read before the mount", rr.sent.Load(), len(zb))
			}
			checkFiles(t, lz.ix, tarball, blob)
			if err := lz.Close(); err != nil {
				t.Fatal(err)
			}
			whole := ls.store.blobPath(desc.Digest)
			if _, err := os.Stat(ls.store.partPath(whole)); err != nil {
				t.Fatalf("no part file: %v", err)
			}

			// A restarted daemon: the part file, no request.
			const delay = 100 * time.Millisecond
			ls, err = NewLayers(ctx, root, LayersZtoc(false, delay))
			if err != nil {
				t.Fatal(err)
			}
			rr.reqs.Store(0)
			lz, _, err = ls.readZtocLazily(ctx, nil, l)
			if err != nil || lz == nil {
				t.Fatalf("lazy read from the part file: %v", err)
			}
			if n := rr.reqs.Load(); n != 0 {
				t.Errorf("%d requests to mount from the part file", n)
			}
			// The layer is read for 500 ms: the rest is fetched once
			// that has been quiet for the delay.
			started := time.Now()
			busy := started.Add(500 * time.Millisecond)
			lz.start(func() int64 { // reads all the time until busy
				if now := time.Now(); now.Before(busy) {
					return now.UnixNano()
				}
				return busy.UnixNano()
			})
			for time.Now().Before(busy.Add(-50 * time.Millisecond)) {
				if n := rr.reqs.Load(); n != 0 {
					t.Fatalf("%d requests for the rest of the zTOC while the layer is read", n)
				}
				time.Sleep(10 * time.Millisecond)
			}
			select {
			case <-lz.done:
			case <-time.After(30 * time.Second):
				t.Fatal("zTOC not completed")
			}
			if el := time.Since(started); el < 500*time.Millisecond+delay {
				t.Errorf("completed %v after the start, before the reads were quiet for %v", el, delay)
			}
			if !lz.w.Verified() {
				t.Fatal("completed zTOC not verified")
			}
			checkFiles(t, lz.ix, tarball, blob)
			lz.Close()
			if b, ok := ls.store.blob(desc, int64(len(zb))); !ok || !bytes.Equal(b, zb) {
				t.Error("the store does not hold the whole zTOC")
			}
			if _, err := os.Stat(ls.store.partPath(whole)); !os.IsNotExist(err) {
				t.Errorf("part file left: %v", err)
			}
		})
	}
}
