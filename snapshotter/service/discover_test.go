package service

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/snapshotter/snapshot"
	"github.com/socikit/socikit/soci"
)

// testImage is an image in an in-process registry with, optionally, a v2
// and a v1 SOCI index.
type testImage struct {
	ref      string
	plain    ocispec.Descriptor // the image manifest without annotation
	bound    ocispec.Descriptor // the v2-bound manifest
	v2, v1   ocispec.Descriptor // the SOCI indexes
	layer    digest.Digest      // the indexed layer
	unlisted digest.Digest      // a layer without a zTOC
}

func pushTestImage(t *testing.T) testImage {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/img:latest"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg, err := image.OpenRegistry(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	plainDesc, body, err := reg.Resolve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	l0, _ := layers[0].Digest()
	l1, _ := layers[1].Digest()
	ti := testImage{ref: ref, plain: plainDesc, layer: digest.Digest(l0.String()), unlisted: digest.Digest(l1.String())}
	ztocs := []soci.LayerZtoc{{LayerDigest: ti.layer, Ztoc: ocispec.Descriptor{Digest: digest.FromString("ztoc"), Size: 4}, SpanSize: 1 << 16}}

	put := func(ix *soci.Index) ([]byte, ocispec.Descriptor) {
		b, d, err := ix.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := reg.PutManifest(ctx, d, b, ""); err != nil {
			t.Fatal(err)
		}
		return b, d
	}
	_, ti.v2 = put(&soci.Index{Version: soci.V2, Layers: ztocs})
	mb, md, err := soci.BindV2(body, &ocispec.Platform{OS: "linux", Architecture: "amd64"}, ti.v2)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.PutManifest(ctx, md, mb, ""); err != nil {
		t.Fatal(err)
	}
	ti.bound = md

	subject := ocispec.Descriptor{MediaType: plainDesc.MediaType, Digest: plainDesc.Digest, Size: plainDesc.Size}
	v1 := &soci.Index{Version: soci.V1, Layers: ztocs, Subject: &subject}
	b, d, err := v1.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.PutReferrer(ctx, plainDesc.Digest, d, b); err != nil {
		t.Fatal(err)
	}
	ti.v1 = d
	return ti
}

func TestDiscover(t *testing.T) {
	ti := pushTestImage(t)
	labels := func(manifest digest.Digest, explicit string) map[string]string {
		l := map[string]string{
			snapshot.LabelImageRef:       ti.ref,
			snapshot.LabelManifestDigest: manifest.String(),
			snapshot.LabelLayerDigest:    ti.layer.String(),
		}
		if explicit != "" {
			l[snapshot.LabelIndexDigest] = explicit
		}
		return l
	}
	for _, tc := range []struct {
		name     string
		enableV1 bool
		labels   map[string]string
		wantHow  string
		wantIdx  digest.Digest
	}{
		{"explicit label", false, labels(ti.plain.Digest, ti.v2.Digest.String()), "label", ti.v2.Digest},
		{"v2 annotation", false, labels(ti.bound.Digest, ""), "v2", ti.v2.Digest},
		{"v2 before v1", true, labels(ti.bound.Digest, ""), "v2", ti.v2.Digest},
		{"v1 referrer", true, labels(ti.plain.Digest, ""), "v1", ti.v1.Digest},
		{"v1 disabled", false, labels(ti.plain.Digest, ""), "", ""},
		{"no labels", true, map[string]string{}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Discovery.EnableV1 = tc.enableV1
			d := testDiscoverer(t, c, nil)
			f, err := d.Find(context.Background(), tc.labels)
			if tc.wantHow == "" {
				if !errors.Is(err, snapshot.ErrNotIndexed) {
					t.Fatalf("Find = %v, %v; want ErrNotIndexed", f, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.How != tc.wantHow || f.IndexDesc.Digest != tc.wantIdx {
				t.Fatalf("found %s by %q, want %s by %q", f.IndexDesc.Digest, f.How, tc.wantIdx, tc.wantHow)
			}
			l, err := f.Layer(ti.layer)
			if err != nil || l.Ztoc.Digest != digest.FromString("ztoc") || l.SpanSize != 1<<16 || l.Desc.Size == 0 {
				t.Errorf("Layer(indexed) = %+v, %v", l, err)
			}
			if _, err := f.Layer(ti.unlisted); !errors.Is(err, snapshot.ErrNotIndexed) {
				t.Errorf("Layer(small layer) error = %v, want ErrNotIndexed", err)
			}
			// The second lookup is served from the cache.
			if f2, err := d.Find(context.Background(), tc.labels); err != nil || f2 != f {
				t.Errorf("second Find = %v, %v; want the cached result", f2, err)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := dir + "/c.toml"
		if err := writeFile(p, s); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write(`root = "/r"
[registry]
plain_http = ["reg:5000"]
[discovery]
enable_v1 = true
timeout = "3s"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != "/r" || c.Address != DefaultAddress || !c.Discovery.EnableV1 || c.Discovery.Timeout.String() != "3s" || c.Registry.PlainHTTP[0] != "reg:5000" {
		t.Errorf("config = %+v", c)
	}
	for _, bad := range []string{`rooot = "/x"`, `log_level = "loud"`, `[discovery]
timeout = "soon"`} {
		if _, err := LoadConfig(write(bad)); err == nil {
			t.Errorf("LoadConfig accepted %q", bad)
		}
	}
	if c, err := LoadConfig(""); err != nil || c.Root != DefaultRoot {
		t.Errorf("LoadConfig(\"\") = %+v, %v", c, err)
	}
}
