package exporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// testImage is an image index with one platform image of two layers and a
// BuildKit attestation manifest, plus the zTOCs of its layers.
type testImage struct {
	root     ocispec.Descriptor
	rootBody []byte
	images   []ImageManifest
	layers   map[digest.Digest]*LayerIndex
	blobs    map[digest.Digest][]byte
}

func jsonDesc(t *testing.T, mt string, v any) (ocispec.Descriptor, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}, b
}

func newTestImage(t *testing.T) *testImage {
	t.Helper()
	ti := &testImage{layers: map[digest.Digest]*LayerIndex{}, blobs: map[digest.Digest][]byte{}}
	plat := &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	cdesc, cfg := jsonDesc(t, ocispec.MediaTypeImageConfig, ocispec.Image{Platform: *plat})
	ti.blobs[cdesc.Digest] = cfg
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cdesc}
	m.SchemaVersion = 2
	for i, entries := range [][]tarEntry{sampleEntries(), manyEntries(t, 40)} {
		in := makeTar(t, entries)
		var blob bytes.Buffer
		res, err := BuildLayer(context.Background(), &blob, bytes.NewReader(in), int64(len(in)), WithStartupFiles([]string{"bin/sh", "d/f3"}))
		if err != nil {
			t.Fatal(err)
		}
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: res.Digest, Size: res.Size}
		m.Layers = append(m.Layers, d)
		ti.blobs[d.Digest] = blob.Bytes()
		if i == 0 {
			li, err := NewLayerIndex(res.ZtocBlob)
			if err != nil {
				t.Fatal(err)
			}
			li.Prefetch = res.Prefetch
			ti.layers[d.Digest] = li
		} else {
			ti.layers[d.Digest] = &LayerIndex{Ztoc: res.Ztoc, Blob: res.ZtocBlob, SpanSize: res.Spans.Size}
		}
	}
	mdesc, mb := jsonDesc(t, ocispec.MediaTypeImageManifest, m)
	mdesc.Platform = plat
	ti.blobs[mdesc.Digest] = mb
	att := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: soci.EmptyConfigDigest, Size: 2}}
	att.SchemaVersion = 2
	adesc, ab := jsonDesc(t, ocispec.MediaTypeImageManifest, att)
	adesc.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	adesc.Annotations = map[string]string{AnnotationDockerReferenceType: "attestation-manifest", "vnd.docker.reference.digest": mdesc.Digest.String()}
	ti.blobs[adesc.Digest] = ab
	ti.blobs[soci.EmptyConfigDigest] = []byte("{}")
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{mdesc, adesc}}
	idx.SchemaVersion = 2
	ti.root, ti.rootBody = jsonDesc(t, ocispec.MediaTypeImageIndex, idx)
	ti.images = []ImageManifest{{Desc: mdesc, Body: mb, Platform: plat}}
	if IsPlatformImage(adesc) || !IsPlatformImage(mdesc) {
		t.Fatal("IsPlatformImage")
	}
	return ti
}

func TestAssemble(t *testing.T) {
	t.Parallel()
	ti := newTestImage(t)
	for _, v := range []soci.Version{soci.V2, soci.V1} {
		t.Run(v.String(), func(t *testing.T) {
			req := &Request{Version: v, BuildTool: "test", Root: ti.root, RootBody: ti.rootBody, Images: ti.images,
				Layers: ti.layers, Prefetch: []string{"d/f10"}}
			out, err := Assemble(req)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Indexed) != 1 || len(out.Unindexed) != 0 {
				t.Fatalf("indexed %d, unindexed %d", len(out.Indexed), len(out.Unindexed))
			}
			ix, err := soci.ParseIndex(out.Indexed[0].IndexBody)
			if err != nil {
				t.Fatal(err)
			}
			if ix.Version != v || len(ix.Layers) != 2 || len(ix.Prefetches) != 2 {
				t.Fatalf("index %+v", ix)
			}
			blobs := map[digest.Digest][]byte{}
			for _, b := range out.Blobs {
				if b.Desc.Digest != digest.FromBytes(b.Body) {
					t.Errorf("blob %s has digest %s", b.Desc.Digest, digest.FromBytes(b.Body))
				}
				blobs[b.Desc.Digest] = b.Body
			}
			for i, l := range ix.Layers {
				if !bytes.Equal(blobs[l.Ztoc.Digest], ti.layers[l.LayerDigest].Blob) || l.SpanSize <= 0 {
					t.Errorf("layer %d: %+v", i, l)
				}
			}
			for _, p := range ix.Prefetches {
				if _, err := soci.ParsePrefetch(blobs[p.Prefetch.Digest]); err != nil {
					t.Error(err)
				}
			}
			checkLazyZtocs(t, ix, blobs)
			if v == soci.V1 {
				if out.Root.Desc.Digest != ti.root.Digest || len(out.Referrers) != 1 || out.Referrers[0].Subject != ti.images[0].Desc.Digest || ix.Subject.Digest != ti.images[0].Desc.Digest {
					t.Errorf("v1 output: root %s, referrers %+v", out.Root.Desc.Digest, out.Referrers)
				}
			} else {
				var idx ocispec.Index
				if err := json.Unmarshal(out.Root.Body, &idx); err != nil {
					t.Fatal(err)
				}
				if len(idx.Manifests) != 3 {
					t.Fatalf("image index: %s", out.Root.Body)
				}
				m, att, s := idx.Manifests[0], idx.Manifests[1], idx.Manifests[2]
				if m.Annotations[soci.AnnotationIndexDigest] != s.Digest.String() || s.ArtifactType != soci.MediaTypeIndexV2 {
					t.Errorf("entries %+v %+v", m, s)
				}
				if att.Annotations[AnnotationDockerReferenceType] != "attestation-manifest" || att.Annotations["vnd.docker.reference.digest"] != m.Digest.String() {
					t.Errorf("attestation entry %+v", att)
				}
				if d, ok, err := soci.FindIndexInImageIndex(out.Root.Body, m.Digest); err != nil || !ok || d.Digest != s.Digest {
					t.Errorf("FindIndexInImageIndex: %v %v %v", d, ok, err)
				}
			}
			// Deterministic.
			again, err := Assemble(req)
			if err != nil {
				t.Fatal(err)
			}
			if again.Root.Desc.Digest != out.Root.Desc.Digest || again.Indexed[0].Index.Digest != out.Indexed[0].Index.Digest {
				t.Error("two runs differ")
			}
			// It writes to a layout, with the image content copied first.
			dst, err := image.CreateLayout(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			ctx := context.Background()
			for d, b := range ti.blobs {
				if err := dst.WriteBlob(ctx, ocispec.Descriptor{Digest: d, Size: int64(len(b))}, bytesOpener(b)); err != nil {
					t.Fatal(err)
				}
			}
			if err := out.Write(ctx, dst, "latest"); err != nil {
				t.Fatal(err)
			}
			if err := dst.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAssembleErrors(t *testing.T) {
	t.Parallel()
	ti := newTestImage(t)
	base := Request{Version: soci.V2, Root: ti.root, RootBody: ti.rootBody, Images: ti.images, Layers: ti.layers}
	r := base
	r.Prefetch = []string{"no/such"}
	var pe *PrefetchNotFoundError
	if _, err := Assemble(&r); !errors.As(err, &pe) || pe.Path != "no/such" {
		t.Errorf("missing prefetch: %v", err)
	}
	r = base
	r.Layers = nil
	if _, err := Assemble(&r); !errors.Is(err, ErrNoLayers) {
		t.Errorf("no layers: %v", err)
	}
	r = base
	r.Version = 3
	if _, err := Assemble(&r); err == nil {
		t.Error("version 3: no error")
	}
}

// checkLazyZtocs: every zTOC of ix has one lazy zTOC, linked to it by
// digest, stored among blobs, and decoding (ztoc.DecodeLazy) to the zTOC
// but its windows, which are zeros.
func checkLazyZtocs(t *testing.T, ix *soci.Index, blobs map[digest.Digest][]byte) {
	t.Helper()
	if len(ix.LazyZtocs) != len(ix.Layers) {
		t.Fatalf("%d lazy zTOCs for %d zTOCs", len(ix.LazyZtocs), len(ix.Layers))
	}
	for i, lz := range ix.LazyZtocs {
		l := ix.Layers[i]
		zb := blobs[l.Ztoc.Digest]
		gz := blobs[lz.Blob.Digest]
		if lz.Ztoc != l.Ztoc.Digest || gz == nil || int64(len(gz)) != lz.Blob.Size || lz.Blob.MediaType != soci.MediaTypeLazyZtoc {
			t.Fatalf("lazy zTOC %d: %+v for zTOC %s", i, lz, l.Ztoc.Digest)
		}
		want, err := ztoc.EncodeLazy(zb)
		if err != nil || !bytes.Equal(want, gz) {
			t.Fatalf("lazy zTOC %d is not EncodeLazy of its zTOC (%v)", i, err)
		}
		got, err := ztoc.DecodeLazy(gz, l.Ztoc.Digest, l.Ztoc.Size)
		if err != nil {
			t.Fatal(err)
		}
		whole, err := ztoc.Unmarshal(zb)
		if err != nil {
			t.Fatal(err)
		}
		whole.Checkpoints = nil
		if g := *got.Ztoc; !reflect.DeepEqual(&g, whole) {
			t.Errorf("lazy zTOC %d decodes to another zTOC", i)
		}
	}
}

func TestAssembleNoLazyZtoc(t *testing.T) {
	t.Parallel()
	ti := newTestImage(t)
	req := &Request{Version: soci.V2, BuildTool: "test", Root: ti.root, RootBody: ti.rootBody, Images: ti.images,
		Layers: ti.layers, NoLazyZtoc: true}
	out, err := Assemble(req)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := soci.ParseIndex(out.Indexed[0].IndexBody)
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.LazyZtocs) != 0 {
		t.Errorf("%d lazy zTOCs with NoLazyZtoc", len(ix.LazyZtocs))
	}
	for _, b := range out.Blobs {
		if b.Desc.MediaType == soci.MediaTypeLazyZtoc {
			t.Errorf("lazy zTOC blob %s written", b.Desc.Digest)
		}
	}
}
