package exporter

import (
	"bytes"
	"encoding/json"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
)

func TestAssembleStoresProfile(t *testing.T) {
	t.Parallel()
	ti := newTestImage(t)
	p := &profile.Profile{Version: profile.Version, Source: profile.SourceBuild,
		Files: []profile.File{{Path: "/d/f10", Ranges: []profile.Range{{Offset: 0, Length: 10}}}, {Path: "/not/here", Ranges: []profile.Range{{Offset: 0, Length: 1}}}}}
	req := &Request{Version: soci.V2, BuildTool: "test", Root: ti.root, RootBody: ti.rootBody, Images: ti.images,
		Layers: ti.layers, Profile: p, StoreProfile: true}
	out, err := Assemble(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.ProfileMissing) != 1 || out.ProfileMissing[0] != "/not/here" {
		t.Errorf("missing %v", out.ProfileMissing)
	}
	img := out.Indexed[0].Manifest.Digest
	d, ok, err := FindProfile(out.Root.Body, img)
	if err != nil || !ok {
		t.Fatalf("FindProfile: %v %v\n%s", ok, err, out.Root.Body)
	}
	if d.Platform == nil || d.Platform.OS != "unknown" || IsPlatformImage(d) {
		t.Errorf("profile entry %+v must not look like a platform image", d)
	}
	var mb []byte
	for _, m := range out.Manifests {
		if m.Desc.Digest == d.Digest {
			mb = m.Body
		}
	}
	pd, err := ProfileFromArtifact(mb)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil || m.Subject == nil || m.Subject.Digest != img {
		t.Fatalf("subject %+v (%v)", m.Subject, err)
	}
	found := false
	for _, b := range out.Blobs {
		if b.Desc.Digest == pd.Digest {
			q, err := profile.Unmarshal(b.Body)
			if err != nil || q.Files[0].Path != "/d/f10" {
				t.Fatalf("stored profile %v %+v", err, q)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("profile blob not in the output")
	}
	// Deterministic.
	out2, err := Assemble(req)
	if err != nil || !bytes.Equal(out2.Root.Body, out.Root.Body) {
		t.Fatalf("not deterministic: %v", err)
	}
	if _, err := ProfileFromArtifact([]byte(`{"artifactType":"x","layers":[]}`)); err == nil {
		t.Error("accepted a foreign artifact")
	}
}
