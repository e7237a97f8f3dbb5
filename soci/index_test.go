package soci

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func dg(s string) digest.Digest { return digest.FromString(s) }

const layerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"

func testIndex(v Version) *Index {
	ix := &Index{
		Version: v,
		Layers: []LayerZtoc{
			{LayerDigest: dg("layer0"), LayerMediaType: layerGzip, Ztoc: ocispec.Descriptor{Digest: dg("ztoc0"), Size: 1000}, SpanSize: 1 << 22},
			{LayerDigest: dg("layer2"), LayerMediaType: layerGzip, Ztoc: ocispec.Descriptor{Digest: dg("ztoc2"), Size: 2000}, SpanSize: 1 << 22, DisableXattrs: true},
		},
		Prefetches: []LayerPrefetch{{Layer: dg("layer2"), Prefetch: ocispec.Descriptor{Digest: dg("prefetch2"), Size: 60}}},
		BuildTool:  "AWS SOCI CLI v0.2",
	}
	if v == V1 {
		ix.Subject = &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dg("manifest"), Size: 1234}
	}
	return ix
}

// goldenIndex is the upstream shape, written out by hand: encoding/json of
// ocispec.Manifest (struct field order, sorted annotation keys).
func goldenIndex(v Version) string {
	var subject string
	if v == V1 {
		subject = `"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + dg("manifest").String() + `","size":1234},`
	}
	return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.amazon.soci.index.` + v.String() + `+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},` +
		`"layers":[` +
		`{"mediaType":"application/octet-stream","digest":"` + dg("ztoc0").String() + `","size":1000,"annotations":{"com.amazon.soci.image-layer-digest":"` + dg("layer0").String() + `","com.amazon.soci.image-layer-mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","com.amazon.soci.span-size":"4194304"}},` +
		`{"mediaType":"application/octet-stream","digest":"` + dg("ztoc2").String() + `","size":2000,"annotations":{"com.amazon.soci.disable-xattrs":"true","com.amazon.soci.image-layer-digest":"` + dg("layer2").String() + `","com.amazon.soci.image-layer-mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","com.amazon.soci.span-size":"4194304"}},` +
		`{"mediaType":"application/vnd.amazon.soci.prefetch.v1+json","digest":"` + dg("prefetch2").String() + `","size":60,"annotations":{"com.amazon.soci.image-layer-digest":"` + dg("layer2").String() + `"}}],` +
		subject +
		`"annotations":{"com.amazon.soci.build-tool-identifier":"AWS SOCI CLI v0.2"}}`
}

func TestIndexMarshal(t *testing.T) {
	for _, v := range []Version{V1, V2} {
		t.Run(v.String(), func(t *testing.T) {
			ix := testIndex(v)
			b, desc, err := ix.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(goldenIndex(v), string(b)); diff != "" {
				t.Errorf("bytes (-want +got):\n%s", diff)
			}
			wantDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: v.MediaType(), Digest: digest.FromBytes(b), Size: int64(len(b))}
			if diff := cmp.Diff(wantDesc, desc); diff != "" {
				t.Errorf("descriptor (-want +got):\n%s", diff)
			}
			// Deterministic: again, and from a copy with other map instances.
			for range 5 {
				b2, _, err := testIndex(v).Marshal()
				if err != nil || string(b2) != string(b) {
					t.Fatalf("second Marshal differs (err %v)", err)
				}
			}
			// Round trip.
			got, err := ParseIndex(b)
			if err != nil {
				t.Fatal(err)
			}
			want := testIndex(v)
			for i := range want.Layers {
				want.Layers[i].Ztoc.MediaType = MediaTypeZtoc
			}
			for i := range want.Prefetches {
				want.Prefetches[i].Prefetch.MediaType = MediaTypePrefetch
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseIndex (-want +got):\n%s", diff)
			}
			b3, _, err := got.Marshal()
			if err != nil || string(b3) != string(b) {
				t.Errorf("re-Marshal differs (err %v)", err)
			}
		})
	}
}

func TestIndexMarshalErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Index)
		field  string // "" means a non-field error (ErrUnsupportedVersion)
	}{
		{"no version", func(ix *Index) { ix.Version = 0 }, ""},
		{"no layers", func(ix *Index) { ix.Layers = nil; ix.Prefetches = nil }, "layers"},
		{"v1 without subject", func(ix *Index) { ix.Version = V1 }, "subject"},
		{"v2 with subject", func(ix *Index) { ix.Subject = &ocispec.Descriptor{Digest: dg("m"), Size: 1} }, "subject"},
		{"bad ztoc digest", func(ix *Index) { ix.Layers[0].Ztoc.Digest = "sha256:zz" }, "layers[0].digest"},
		{"zero ztoc size", func(ix *Index) { ix.Layers[1].Ztoc.Size = 0 }, "layers[1].size"},
		{"no layer digest", func(ix *Index) { ix.Layers[0].LayerDigest = "" }, "layers[0].annotations[com.amazon.soci.image-layer-digest]"},
		{"negative span size", func(ix *Index) { ix.Layers[0].SpanSize = -1 }, "layers[0].annotations[com.amazon.soci.span-size]"},
		{"conflicting duplicate layer", func(ix *Index) { ix.Layers[1].LayerDigest = ix.Layers[0].LayerDigest }, "layers[1].annotations[com.amazon.soci.image-layer-digest]"},
		{"prefetch for unindexed layer", func(ix *Index) { ix.Prefetches[0].Layer = dg("layer1") }, "prefetch for layer " + dg("layer1").String() + " (descriptor 0)"},
		{"build tool in annotations", func(ix *Index) { ix.Annotations = map[string]string{AnnotationBuildToolIdentifier: "x"} }, "annotations"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := testIndex(V2)
			tc.mutate(ix)
			_, _, err := ix.Marshal()
			checkErr(t, err, tc.field)
		})
	}
}

func TestIndexExactDuplicateLayer(t *testing.T) {
	// Upstream writes one zTOC per image layer, so an image repeating a layer
	// gets the same descriptor twice. That must parse.
	ix := testIndex(V2)
	ix.Layers = append(ix.Layers, ix.Layers[0])
	ix.Prefetches = append(ix.Prefetches, ix.Prefetches[0])
	b, _, err := ix.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != 3 || len(got.Prefetches) != 2 {
		t.Errorf("got %d layers, %d prefetches; want 3, 2", len(got.Layers), len(got.Prefetches))
	}
}

func checkErr(t *testing.T, err error, field string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if field == "" {
		if !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("error %v: want ErrUnsupportedVersion or ErrTooLarge", err)
		}
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a *FieldError", err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("error %v does not match ErrInvalid", err)
	}
	if fe.Field != field {
		t.Errorf("field %q, want %q (error %v)", fe.Field, field, err)
	}
}

// edit decodes the golden v2 index into generic JSON, applies f and
// re-encodes it.
func edit(t testing.TB, v Version, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(goldenIndex(v)), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func layerAt(m map[string]any, i int) map[string]any { return m["layers"].([]any)[i].(map[string]any) }
func annAt(m map[string]any, i int) map[string]any {
	return layerAt(m, i)["annotations"].(map[string]any)
}

func TestParseIndexErrors(t *testing.T) {
	const (
		ld = "layers[0].annotations[com.amazon.soci.image-layer-digest]"
		ss = "layers[0].annotations[com.amazon.soci.span-size]"
		dx = "layers[1].annotations[com.amazon.soci.disable-xattrs]"
	)
	tests := []struct {
		name  string
		v     Version
		f     func(m map[string]any)
		field string
	}{
		{"schemaVersion 1", V2, func(m map[string]any) { m["schemaVersion"] = 1 }, "schemaVersion"},
		{"no schemaVersion", V2, func(m map[string]any) { delete(m, "schemaVersion") }, "schemaVersion"},
		{"index mediaType", V2, func(m map[string]any) { m["mediaType"] = ocispec.MediaTypeImageIndex }, "mediaType"},
		{"config mediaType", V2, func(m map[string]any) { m["config"].(map[string]any)["mediaType"] = "application/json" }, "config.mediaType"},
		{"config digest", V2, func(m map[string]any) { m["config"].(map[string]any)["digest"] = dg("{ }").String() }, "config.digest"},
		{"config size", V2, func(m map[string]any) { m["config"].(map[string]any)["size"] = 3 }, "config.size"},
		{"artifactType mismatch", V2, func(m map[string]any) { m["artifactType"] = MediaTypeIndexV1 }, "artifactType"},
		{"layers missing", V2, func(m map[string]any) { delete(m, "layers") }, "layers"},
		{"only prefetch", V2, func(m map[string]any) { m["layers"] = m["layers"].([]any)[2:] }, "layers"},
		{"only unknown mediaTypes", V2, func(m map[string]any) {
			for i := range m["layers"].([]any) {
				layerAt(m, i)["mediaType"] = layerGzip
			}
		}, "layers"},
		{"unknown mediaType, bad digest", V2, func(m map[string]any) {
			m["layers"] = append(m["layers"].([]any), map[string]any{"mediaType": "application/x-new", "digest": "sha256:12", "size": 3})
		}, "layers[3].digest"},
		{"bad ztoc digest", V2, func(m map[string]any) { layerAt(m, 0)["digest"] = "sha256:1234" }, "layers[0].digest"},
		{"unknown digest algorithm", V2, func(m map[string]any) { layerAt(m, 0)["digest"] = "md5:d41d8cd98f00b204e9800998ecf8427e" }, "layers[0].digest"},
		{"zero size", V2, func(m map[string]any) { layerAt(m, 0)["size"] = 0 }, "layers[0].size"},
		{"negative size", V2, func(m map[string]any) { layerAt(m, 2)["size"] = -1 }, "layers[2].size"},
		{"no annotations", V2, func(m map[string]any) { delete(layerAt(m, 0), "annotations") }, ld},
		{"no layer digest", V2, func(m map[string]any) { delete(annAt(m, 0), AnnotationImageLayerDigest) }, ld},
		{"bad layer digest", V2, func(m map[string]any) { annAt(m, 0)[AnnotationImageLayerDigest] = "layer0" }, ld},
		{"prefetch no layer digest", V2, func(m map[string]any) { delete(annAt(m, 2), AnnotationImageLayerDigest) }, "layers[2].annotations[com.amazon.soci.image-layer-digest]"},
		{"span size hex", V2, func(m map[string]any) { annAt(m, 0)[AnnotationSpanSize] = "0x400000" }, ss},
		{"span size zero", V2, func(m map[string]any) { annAt(m, 0)[AnnotationSpanSize] = "0" }, ss},
		{"span size negative", V2, func(m map[string]any) { annAt(m, 0)[AnnotationSpanSize] = "-4194304" }, ss},
		{"span size plus", V2, func(m map[string]any) { annAt(m, 0)[AnnotationSpanSize] = "+4194304" }, ss},
		{"span size leading zero", V2, func(m map[string]any) { annAt(m, 0)[AnnotationSpanSize] = "04194304" }, ss},
		{"span size overflow", V2, func(m map[string]any) { annAt(m, 0)[AnnotationSpanSize] = "9223372036854775808" }, ss},
		{"span size empty", V2, func(m map[string]any) { annAt(m, 0)[AnnotationSpanSize] = "" }, ss},
		{"disable-xattrs yes", V2, func(m map[string]any) { annAt(m, 1)[AnnotationDisableXattrs] = "yes" }, dx},
		{"duplicate layer", V2, func(m map[string]any) {
			annAt(m, 1)[AnnotationImageLayerDigest] = annAt(m, 0)[AnnotationImageLayerDigest]
		}, "layers[1].annotations[com.amazon.soci.image-layer-digest]"},
		{"two prefetches for a layer", V2, func(m map[string]any) {
			p := map[string]any{"mediaType": MediaTypePrefetch, "digest": dg("other").String(), "size": 9,
				"annotations": map[string]any{AnnotationImageLayerDigest: dg("layer2").String()}}
			m["layers"] = append(m["layers"].([]any), p)
		}, "layers[3].annotations[com.amazon.soci.image-layer-digest]"},
		{"prefetch for unindexed layer", V2, func(m map[string]any) {
			annAt(m, 2)[AnnotationImageLayerDigest] = dg("layer9").String()
		}, "prefetch for layer " + dg("layer9").String() + " (descriptor 0)"},
		{"v2 with subject", V2, func(m map[string]any) {
			m["subject"] = map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "digest": dg("m").String(), "size": 5}
		}, "subject"},
		{"v1 without subject", V1, func(m map[string]any) { delete(m, "subject") }, "subject"},
		{"v1 subject bad digest", V1, func(m map[string]any) { m["subject"].(map[string]any)["digest"] = "sha256:" }, "subject.digest"},
		{"v1 subject zero size", V1, func(m map[string]any) { m["subject"].(map[string]any)["size"] = 0 }, "subject.size"},
		{"layers not an array", V2, func(m map[string]any) { m["layers"] = "x" }, "manifest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := edit(t, tc.v, tc.f)
			ix, err := ParseIndex(b)
			if err == nil {
				t.Fatalf("ParseIndex succeeded: %+v", ix)
			}
			checkErr(t, err, tc.field)
		})
	}
}

func TestParseIndexAccepts(t *testing.T) {
	tests := []struct {
		name  string
		f     func(m map[string]any)
		check func(t *testing.T, ix *Index)
	}{
		{"no mediaType", func(m map[string]any) { delete(m, "mediaType") }, nil},
		{"artifactType equal to config", func(m map[string]any) { m["artifactType"] = MediaTypeIndexV2 }, nil},
		{"no span size (soci < v0.4)", func(m map[string]any) { delete(annAt(m, 0), AnnotationSpanSize) }, func(t *testing.T, ix *Index) {
			if ix.Layers[0].SpanSize != 0 {
				t.Errorf("SpanSize %d, want 0", ix.Layers[0].SpanSize)
			}
		}},
		{"disable-xattrs false", func(m map[string]any) { annAt(m, 1)[AnnotationDisableXattrs] = "false" }, func(t *testing.T, ix *Index) {
			if ix.Layers[1].DisableXattrs {
				t.Error("DisableXattrs true")
			}
		}},
		{"unknown layer mediaType skipped", func(m map[string]any) {
			m["layers"] = append(m["layers"].([]any), map[string]any{"mediaType": "application/vnd.example.new.v1", "digest": dg("new").String(), "size": 3})
		}, func(t *testing.T, ix *Index) {
			want, err := ParseIndex([]byte(goldenIndex(V2)))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, ix); d != "" {
				t.Errorf("index (-want +got):\n%s", d)
			}
		}},
		{"no build tool, other annotations", func(m map[string]any) { m["annotations"] = map[string]any{"org.example": "x"} }, func(t *testing.T, ix *Index) {
			if ix.BuildTool != "" || ix.Annotations["org.example"] != "x" {
				t.Errorf("BuildTool %q, Annotations %v", ix.BuildTool, ix.Annotations)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix, err := ParseIndex(edit(t, V2, tc.f))
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, ix)
			}
		})
	}
}

func TestParseIndexTooLarge(t *testing.T) {
	b := []byte(goldenIndex(V2))
	b = append(b[:len(b)-1], []byte(`,"x":"`+strings.Repeat("a", MaxDocumentSize)+`"}`)...)
	_, err := ParseIndex(b)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error %v, want ErrTooLarge", err)
	}
}

func TestVersion(t *testing.T) {
	for _, v := range []Version{V1, V2} {
		got, err := ParseVersion(v.String())
		if err != nil || got != v {
			t.Errorf("ParseVersion(%q) = %v, %v", v.String(), got, err)
		}
		if d := v.ConfigDescriptor(); d.Digest != digest.FromString(EmptyConfigJSON) || d.Size != EmptyConfigSize || d.MediaType != v.MediaType() {
			t.Errorf("%v.ConfigDescriptor() = %+v", v, d)
		}
	}
	if _, err := ParseVersion("v3"); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("ParseVersion(v3) error %v", err)
	}
	if s := Version(7).String(); s != "Version(7)" {
		t.Errorf("String() = %q", s)
	}
}
