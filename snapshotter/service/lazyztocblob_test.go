package service

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// blobCounter counts blob requests by digest and serves other bytes for
// the blobs in tamper.
type blobCounter struct {
	next   http.Handler
	tamper map[digest.Digest][]byte
	mu     sync.Mutex
	reqs   map[digest.Digest]int
}

func (c *blobCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if i := strings.LastIndex(r.URL.Path, "/blobs/"); i >= 0 && r.Method == http.MethodGet {
		d := digest.Digest(r.URL.Path[i+len("/blobs/"):])
		c.mu.Lock()
		c.reqs[d]++
		c.mu.Unlock()
		if b, ok := c.tamper[d]; ok {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
			return
		}
	}
	c.next.ServeHTTP(w, r)
}

func (c *blobCounter) count(d digest.Digest) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs[d]
}

// TestReadZtocLazyZtoc: with a lazy zTOC in the index, the daemon reads it
// (one request, checked) and no byte of the zTOC before the mount; the
// zTOC is Checked, serves every file (windows fetched from the zTOC when a
// span needs one), and completes. A lazy zTOC whose bytes are not the
// index's, or that is another zTOC's, is not used: the zTOC is read as
// without one, and what is served is the zTOC's.
func TestReadZtocLazyZtoc(t *testing.T) {
	tarball, blob, zb := upstreamStyleZtoc(t)
	desc := ocispec.Descriptor{MediaType: soci.MediaTypeZtoc, Digest: digest.FromBytes(zb), Size: int64(len(zb))}
	gz, err := ztoc.EncodeLazy(zb)
	if err != nil {
		t.Fatal(err)
	}
	ldesc := ocispec.Descriptor{MediaType: soci.MediaTypeLazyZtoc, Digest: digest.FromBytes(gz), Size: int64(len(gz))}
	// Another zTOC's lazy zTOC: a valid blob, not this zTOC's.
	var other2 bytes.Buffer
	z2, err := ztoc.Compress(&other2, bytes.NewReader(tarball), ztoc.WithSpanSize(ztoc.MinSpanSize))
	if err != nil {
		t.Fatal(err)
	}
	zb2, err := ztoc.Marshal(z2)
	if err != nil {
		t.Fatal(err)
	}
	gz2, err := ztoc.EncodeLazy(zb2)
	if err != nil {
		t.Fatal(err)
	}
	other := ocispec.Descriptor{MediaType: soci.MediaTypeLazyZtoc, Digest: digest.FromBytes(gz2), Size: int64(len(gz2))}
	tampered := bytes.Clone(gz)
	tampered[len(tampered)/2] ^= 1

	for _, tc := range []struct {
		name   string
		lazy   ocispec.Descriptor
		tamper []byte
		used   bool
	}{
		{"used", ldesc, nil, true},
		{"tampered", ldesc, tampered, false},
		{"another zTOC's", other, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc := &blobCounter{next: registry.New(registry.Logger(log.New(io.Discard, "", 0))), reqs: map[digest.Digest]int{},
				tamper: map[digest.Digest][]byte{}}
			if tc.tamper != nil {
				bc.tamper[tc.lazy.Digest] = tc.tamper
			}
			srv := httptest.NewServer(bc)
			t.Cleanup(srv.Close)
			repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/test/ztoc")
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range [][]byte{zb, gz, gz2} {
				if err := remote.WriteLayer(repo, static.NewLayer(b, types.MediaType("application/octet-stream"))); err != nil {
					t.Fatal(err)
				}
			}
			ld := tc.lazy
			l := Layer{Repo: repo, Ztoc: desc, LazyZtoc: &ld}
			ctx := context.Background()
			ls, err := NewLayers(ctx, t.TempDir(), LayersZtoc(false, time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			reg, err := image.OpenRegistry(repo.Digest(desc.Digest.String()), nil)
			if err != nil {
				t.Fatal(err)
			}
			lz, z, err := ls.readZtocLazily(ctx, reg, l)
			if err != nil || lz == nil {
				t.Fatalf("lazy read: %v (lazily: %v)", err, lz != nil)
			}
			zreqs, lreqs := bc.count(desc.Digest), bc.count(tc.lazy.Digest)
			t.Logf("before the mount: %d requests of the zTOC, %d of the lazy zTOC (%d B)", zreqs, lreqs, tc.lazy.Size)
			if lreqs != 1 {
				t.Errorf("%d requests of the lazy zTOC, want 1", lreqs)
			}
			if tc.used != (zreqs == 0) || tc.used != lz.lz.Checked {
				t.Errorf("used %v: %d requests of the zTOC before the mount, checked %v", tc.used, zreqs, lz.lz.Checked)
			}
			want, err := ztoc.Unmarshal(zb)
			if err != nil {
				t.Fatal(err)
			}
			if len(z.Files) != len(want.Files) || z.MaxSpanID != want.MaxSpanID {
				t.Fatalf("zTOC of %d files, %d spans; want %d, %d", len(z.Files), z.MaxSpanID, len(want.Files), want.MaxSpanID)
			}
			checkFiles(t, lz.ix, tarball, blob)
			if tc.used && lz.w.Fetched() == 0 {
				t.Error("no window fetched from the zTOC for spans that need one")
			}
			if err := lz.w.Complete(ctx); err != nil || !lz.w.Verified() {
				t.Fatalf("complete: %v", err)
			}
			if err := lz.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
