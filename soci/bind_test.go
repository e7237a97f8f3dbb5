package soci

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	amd64 = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

const ociManifest = `{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "size": 100},
  "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222", "size": 20000000}],
  "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
}`

const dockerManifest = `{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 100, "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111"},
   "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 20000000, "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222"}]
}`

func sociDesc(name string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: MediaTypeIndexV2, Digest: dg(name), Size: 900}
}

func TestBindV2(t *testing.T) {
	ix := sociDesc("soci")
	tests := []struct {
		name     string
		manifest string
		index    ocispec.Descriptor
		want     string
	}{
		{"oci", ociManifest, ix, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":100},` +
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":20000000}],` +
			`"annotations":{"com.amazon.soci.index-digest":"` + dg("soci").String() + `","org.opencontainers.image.created":"2024-01-01T00:00:00Z"}}`},
		// Upstream forces the manifest and config media types to OCI but
		// leaves the Docker layer media types alone.
		{"docker schema2", dockerManifest, ix, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":100},` +
			`"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":20000000}],` +
			`"annotations":{"com.amazon.soci.index-digest":"` + dg("soci").String() + `"}}`},
		{"docker schema2, normalize only", dockerManifest, ocispec.Descriptor{}, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":100},` +
			`"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":20000000}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, desc, err := BindV2([]byte(tc.manifest), amd64, tc.index)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(b)); diff != "" {
				t.Errorf("bytes (-want +got):\n%s", diff)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			wantDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b)), Annotations: m.Annotations, Platform: amd64}
			if diff := cmp.Diff(wantDesc, desc); diff != "" {
				t.Errorf("descriptor (-want +got):\n%s", diff)
			}
			if desc.Platform == amd64 {
				t.Error("platform aliases the argument")
			}
			d, ok, err := IndexDigestFromManifest(b)
			if err != nil || ok != (tc.index.Digest != "") || d != tc.index.Digest {
				t.Errorf("IndexDigestFromManifest = %v, %v, %v; want %v", d, ok, err, tc.index.Digest)
			}
			// Binding again gives the same bytes (idempotent).
			b2, _, err := BindV2(b, amd64, tc.index)
			if err != nil || string(b2) != string(b) {
				t.Errorf("second BindV2 differs (err %v)", err)
			}
		})
	}
}

func TestBindV2Errors(t *testing.T) {
	tests := []struct {
		name, manifest string
		index          ocispec.Descriptor
		field          string
	}{
		{"not json", `[`, sociDesc("s"), "manifest"},
		{"schema1", `{"schemaVersion":1,"config":{"mediaType":"application/vnd.oci.image.config.v1+json"}}`, sociDesc("s"), "manifest.schemaVersion"},
		{"image index", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, sociDesc("s"), "manifest.mediaType"},
		{"artifact config", `{"schemaVersion":2,"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json"}}`, sociDesc("s"), "manifest.config.mediaType"},
		{"v1 index", ociManifest, ocispec.Descriptor{ArtifactType: MediaTypeIndexV1, Digest: dg("s"), Size: 1}, "index.artifactType"},
		{"bad index digest", ociManifest, ocispec.Descriptor{Digest: "sha256:abc", Size: 1}, "index.digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := BindV2([]byte(tc.manifest), amd64, tc.index)
			checkErr(t, err, tc.field)
		})
	}
}

// bound binds the test manifest with a distinguishing annotation for platform p.
func bound(t *testing.T, p *ocispec.Platform, soci string) (orig ocispec.Descriptor, im BoundImage) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(ociManifest), &m); err != nil {
		t.Fatal(err)
	}
	m["annotations"] = map[string]any{"arch": p.Architecture}
	b, _ := json.Marshal(m)
	orig = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b)), Platform: p}
	ix := ocispec.Descriptor{}
	if soci != "" {
		ix = sociDesc(soci)
	}
	_, desc, err := BindV2(b, p, ix)
	if err != nil {
		t.Fatal(err)
	}
	return orig, BoundImage{Original: orig.Digest, Manifest: desc, Index: ix}
}

func attestation(of ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest, Digest: dg("att" + of.Digest.String()), Size: 800,
		Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{
			"vnd.docker.reference.digest": of.Digest.String(),
			"vnd.docker.reference.type":   "attestation-manifest",
		},
	}
}

func TestBuildImageIndex(t *testing.T) {
	origAMD, amd := bound(t, amd64, "soci-amd64")
	origARM, arm := bound(t, arm64, "soci-arm64")
	_, armPlain := bound(t, arm64, "")
	attAMD, attARM := attestation(origAMD), attestation(origARM)
	base := ocispec.Index{MediaType: mediaTypeDockerManifestList, Manifests: []ocispec.Descriptor{origAMD, origARM, attAMD, attARM}}
	base.SchemaVersion = 2
	baseJSON, _ := json.Marshal(base)

	replaced := func(im BoundImage) ocispec.Descriptor {
		d := im.Manifest
		return d
	}
	sociFor := func(im BoundImage) ocispec.Descriptor {
		return ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, ArtifactType: MediaTypeIndexV2,
			Digest: im.Index.Digest, Size: im.Index.Size, Platform: im.Manifest.Platform,
			Annotations: map[string]string{AnnotationImageManifestDigest: im.Manifest.Digest.String()},
		}
	}
	reattached := func(att ocispec.Descriptor, im BoundImage) ocispec.Descriptor {
		att.Annotations = map[string]string{"vnd.docker.reference.digest": im.Manifest.Digest.String(), "vnd.docker.reference.type": "attestation-manifest"}
		return att
	}
	tests := []struct {
		name   string
		base   []byte
		images []BoundImage
		want   []ocispec.Descriptor
	}{
		{"single platform", nil, []BoundImage{amd}, []ocispec.Descriptor{replaced(amd), sociFor(amd)}},
		{"multi platform with attestations", baseJSON, []BoundImage{amd, arm},
			[]ocispec.Descriptor{replaced(amd), replaced(arm), reattached(attAMD, amd), reattached(attARM, arm), sociFor(amd), sociFor(arm)}},
		{"one platform indexed, other normalized", baseJSON, []BoundImage{amd, armPlain},
			[]ocispec.Descriptor{replaced(amd), replaced(armPlain), reattached(attAMD, amd), reattached(attARM, armPlain), sociFor(amd)}},
		{"one platform indexed, other untouched", baseJSON, []BoundImage{arm},
			[]ocispec.Descriptor{origAMD, replaced(arm), attAMD, reattached(attARM, arm), sociFor(arm)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, desc, err := BuildImageIndex(tc.base, tc.images)
			if err != nil {
				t.Fatal(err)
			}
			if desc.MediaType != ocispec.MediaTypeImageIndex || desc.Digest != digest.FromBytes(b) || desc.Size != int64(len(b)) {
				t.Errorf("descriptor %+v", desc)
			}
			var got ocispec.Index
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.SchemaVersion != 2 || got.MediaType != ocispec.MediaTypeImageIndex {
				t.Errorf("schemaVersion %d mediaType %q", got.SchemaVersion, got.MediaType)
			}
			if diff := cmp.Diff(tc.want, got.Manifests); diff != "" {
				t.Errorf("manifests (-want +got):\n%s", diff)
			}
			b2, _, err := BuildImageIndex(tc.base, tc.images)
			if err != nil || string(b2) != string(b) {
				t.Errorf("not deterministic (err %v)", err)
			}
			// Every SOCI index is found for its manifest.
			for _, im := range tc.images {
				d, ok, err := FindIndexInImageIndex(b, im.Manifest.Digest)
				if err != nil || ok != (im.Index.Digest != "") || d.Digest != im.Index.Digest {
					t.Errorf("FindIndexInImageIndex(%s) = %v, %v, %v", im.Manifest.Digest, d.Digest, ok, err)
				}
			}
		})
	}

	t.Run("reconvert replaces the SOCI index", func(t *testing.T) {
		first, _, err := BuildImageIndex(baseJSON, []BoundImage{amd})
		if err != nil {
			t.Fatal(err)
		}
		// Convert the converted image again with a new index.
		var m map[string]any
		json.Unmarshal([]byte(ociManifest), &m)
		m["annotations"] = map[string]any{"arch": "amd64"}
		b0, _ := json.Marshal(m)
		b1, d1, _ := BindV2(b0, amd64, sociDesc("soci-amd64"))
		if d1.Digest != amd.Manifest.Digest {
			t.Fatal("test setup")
		}
		_, d2, err := BindV2(b1, amd64, sociDesc("soci-amd64-new"))
		if err != nil {
			t.Fatal(err)
		}
		again := BoundImage{Original: d1.Digest, Manifest: d2, Index: sociDesc("soci-amd64-new")}
		second, _, err := BuildImageIndex(first, []BoundImage{again})
		if err != nil {
			t.Fatal(err)
		}
		var got ocispec.Index
		json.Unmarshal(second, &got)
		want := []ocispec.Descriptor{replaced(again), origARM, reattached(attAMD, again), attARM, sociFor(again)}
		if diff := cmp.Diff(want, got.Manifests); diff != "" {
			t.Errorf("manifests (-want +got):\n%s", diff)
		}
	})
}

func TestBuildImageIndexErrors(t *testing.T) {
	_, amd := bound(t, amd64, "soci-amd64")
	noPlatform := amd
	noPlatform.Manifest.Platform = nil
	unbound := amd
	unbound.Index = sociDesc("other")
	base := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
	tests := []struct {
		name   string
		base   string
		images []BoundImage
		field  string
	}{
		{"not an index", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`, []BoundImage{amd}, "image index.mediaType"},
		{"bad json", `{`, []BoundImage{amd}, "image index"},
		{"original missing", base, []BoundImage{amd}, "images[0].original"},
		{"no platform", "", []BoundImage{noPlatform}, "images[0].manifest.platform"},
		{"manifest not bound to index", "", []BoundImage{unbound}, "images[0].manifest.annotations[com.amazon.soci.index-digest]"},
		{"bad manifest digest", "", []BoundImage{{Manifest: ocispec.Descriptor{Digest: "x", Size: 1}}}, "images[0].manifest.digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			if tc.base != "" {
				b = []byte(tc.base)
			}
			_, _, err := BuildImageIndex(b, tc.images)
			checkErr(t, err, tc.field)
		})
	}
}

func TestFindIndexInImageIndex(t *testing.T) {
	m := dg("manifest")
	entry := func(d ocispec.Descriptor, mut func(*ocispec.Descriptor)) ocispec.Descriptor {
		d.Annotations = cloneMap(d.Annotations)
		mut(&d)
		return d
	}
	manifestEntry := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: m, Size: 10, Platform: amd64,
		Annotations: map[string]string{AnnotationIndexDigest: dg("soci").String()}}
	sociEntry := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: MediaTypeIndexV2, Digest: dg("soci"), Size: 900,
		Platform: amd64, Annotations: map[string]string{AnnotationImageManifestDigest: m.String()}}
	noop := func(*ocispec.Descriptor) {}
	tests := []struct {
		name    string
		entries []ocispec.Descriptor
		want    digest.Digest // "" = not found
		wantErr bool
	}{
		{"full", []ocispec.Descriptor{manifestEntry, sociEntry}, dg("soci"), false},
		{"artifactType dropped (skopeo)", []ocispec.Descriptor{manifestEntry, entry(sociEntry, func(d *ocispec.Descriptor) { d.ArtifactType = "" })}, dg("soci"), false},
		{"descriptor annotations dropped", []ocispec.Descriptor{manifestEntry, entry(sociEntry, func(d *ocispec.Descriptor) { d.ArtifactType = ""; d.Annotations = nil })}, dg("soci"), false},
		{"manifest entry not annotated", []ocispec.Descriptor{entry(manifestEntry, func(d *ocispec.Descriptor) { d.Annotations = nil }), sociEntry}, dg("soci"), false},
		{"other artifact type", []ocispec.Descriptor{entry(manifestEntry, func(d *ocispec.Descriptor) { d.Annotations = nil }),
			entry(sociEntry, func(d *ocispec.Descriptor) { d.ArtifactType = "application/vnd.example+json" })}, "", false},
		{"nothing", []ocispec.Descriptor{entry(manifestEntry, func(d *ocispec.Descriptor) { d.Annotations = nil })}, "", false},
		{"manifest annotation names unlisted index", []ocispec.Descriptor{manifestEntry}, "", false},
		{"disagreement", []ocispec.Descriptor{manifestEntry, sociEntry, entry(sociEntry, func(d *ocispec.Descriptor) { d.Digest = dg("soci2") })}, "", true},
		{"two by annotation", []ocispec.Descriptor{entry(manifestEntry, func(d *ocispec.Descriptor) { d.Annotations = nil }), sociEntry,
			entry(sociEntry, func(d *ocispec.Descriptor) { d.Digest = dg("soci2") })}, "", true},
		{"bad manifest annotation", []ocispec.Descriptor{entry(manifestEntry, func(d *ocispec.Descriptor) { d.Annotations[AnnotationIndexDigest] = "bad" }), sociEntry}, "", true},
		{"index is not a manifest", []ocispec.Descriptor{manifestEntry, entry(sociEntry, func(d *ocispec.Descriptor) { d.MediaType = ocispec.MediaTypeImageIndex })}, "", true},
		{"same entry twice", []ocispec.Descriptor{manifestEntry, sociEntry, entry(sociEntry, noop)}, dg("soci"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: tc.entries}
			idx.SchemaVersion = 2
			b, _ := json.Marshal(idx)
			d, ok, err := FindIndexInImageIndex(b, m)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v does not match ErrInvalid", err)
				}
				return
			}
			if ok != (tc.want != "") || d.Digest != tc.want {
				t.Errorf("got %v, %v; want %v", d.Digest, ok, tc.want)
			}
		})
	}
}

func TestIndexDigestFromManifest(t *testing.T) {
	tests := []struct {
		name, in string
		want     digest.Digest
		ok, err  bool
	}{
		{"present", `{"annotations":{"com.amazon.soci.index-digest":"` + dg("x").String() + `"}}`, dg("x"), true, false},
		{"absent", ociManifest, "", false, false},
		{"malformed", `{"annotations":{"com.amazon.soci.index-digest":"sha256:xyz"}}`, "", false, true},
		{"not json", `{"annotations":`, "", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, ok, err := IndexDigestFromManifest([]byte(tc.in))
			if d != tc.want || ok != tc.ok || (err != nil) != tc.err {
				t.Errorf("got %v, %v, %v", d, ok, err)
			}
		})
	}
}

func TestReferrersTag(t *testing.T) {
	d := dg("manifest")
	if got, want := ReferrersTag(d), "sha256-"+d.Encoded(); got != want {
		t.Errorf("ReferrersTag = %q, want %q", got, want)
	}
	if got := ReferrersTag("nocolon"); got != "" {
		t.Errorf("ReferrersTag(nocolon) = %q", got)
	}
}
