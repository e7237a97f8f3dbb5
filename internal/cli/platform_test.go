package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
)

func plat(t *testing.T, s string) *ocispec.Platform {
	t.Helper()
	p, err := parsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

// TestSelectPlatforms pins which images of an index a platform selects:
// what a runtime of that platform pulls (containerd's platforms.Only), so
// variants are compared normalized and the host's variant counts.
func TestSelectPlatforms(t *testing.T) {
	for _, c := range []struct {
		name string
		want []string
		have []string
		sel  []bool
	}{
		{"arm64/v8 is arm64", []string{"linux/arm64/v8"}, []string{"linux/amd64", "linux/arm64"}, []bool{false, true}},
		{"arm64 is arm64/v8", []string{"linux/arm64"}, []string{"linux/arm64/v8", "linux/amd64"}, []bool{true, false}},
		{"arm is arm/v7", []string{"linux/arm"}, []string{"linux/arm/v6", "linux/arm/v7"}, []bool{false, true}},
		{"arm/v7 runs arm/v6", []string{"linux/arm/v7"}, []string{"linux/arm/v6", "linux/amd64"}, []bool{true, false}},
		{"arm/v6 does not run arm/v7", []string{"linux/arm/v6"}, []string{"linux/arm/v7"}, []bool{false}},
		{"amd64 before 386", []string{"linux/amd64"}, []string{"linux/386", "linux/amd64"}, []bool{false, true}},
		{"amd64 runs 386", []string{"linux/amd64"}, []string{"linux/386", "linux/arm64"}, []bool{true, false}},
		{"same platform twice", []string{"linux/arm64"}, []string{"linux/arm64", "linux/amd64", "linux/arm64/v8"}, []bool{true, false, true}},
		{"two wanted", []string{"linux/amd64", "linux/arm64"}, []string{"linux/arm64", "linux/s390x", "linux/amd64"}, []bool{true, false, true}},
		{"other os", []string{"linux/amd64"}, []string{"windows/amd64"}, []bool{false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want []ocispec.Platform
			for _, w := range c.want {
				want = append(want, *plat(t, w))
			}
			have := []*ocispec.Platform{}
			for _, h := range c.have {
				have = append(have, plat(t, h))
			}
			have = append(have, nil) // an entry without a platform matches nothing
			if diff := cmp.Diff(append(c.sel, false), selectPlatforms(want, have)); diff != "" {
				t.Errorf("selectPlatforms(%v, %v) (-want +got):\n%s", c.want, c.have, diff)
			}
		})
	}
}

func TestPlatformFlag(t *testing.T) {
	var l platformList
	for _, v := range []string{"linux/arm64/v8", "linux/arm", "linux/amd64"} {
		if err := l.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	// containerd's parser keeps what was written in its canonical form;
	// matching normalizes.
	if got, want := l.String(), "linux/arm64/v8,linux/arm,linux/amd64"; got != want {
		t.Errorf("platforms %q, want %q", got, want)
	}
	if !platformMatches(l[0], plat(t, "linux/aarch64")) || !platformMatches(l[1], plat(t, "linux/arm/v7")) || platformMatches(l[1], plat(t, "linux/arm/v6")) {
		t.Errorf("%v: normalized matching failed", l)
	}
	if err := l.Set("linux/arm64/v8/x"); err == nil {
		t.Error("linux/arm64/v8/x: no error")
	}
	if got := platformString(nil); got != "" {
		t.Errorf("platformString(nil) = %q", got)
	}
}

// setHost makes hostPlatform return p for the rest of the test (which must
// not be parallel).
func setHost(t *testing.T, p string) {
	h := *plat(t, p)
	old := hostPlatform
	hostPlatform = func() ocispec.Platform { return h }
	t.Cleanup(func() { hostPlatform = old })
}

// TestPickIndexHostVariant: with no --platform, the index of the host's
// platform is chosen with its variant: an arm/v6 host reads the arm/v6
// index, not the arm/v7 one listed first.
func TestPickIndexHostVariant(t *testing.T) {
	setHost(t, "linux/arm/v6")
	found := []foundIndex{{platform: plat(t, "linux/arm/v7")}, {platform: plat(t, "linux/arm/v6")}, {platform: plat(t, "linux/amd64")}}
	f, err := pickIndex(found, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := platformString(f.platform); got != "linux/arm/v6" {
		t.Errorf("picked %s, want linux/arm/v6", got)
	}
	if _, err := pickIndex(found[:1], platformList{*plat(t, "linux/arm/v6")}); err == nil || !strings.Contains(err.Error(), "linux/arm/v6") {
		t.Errorf("arm/v6 wanted, arm/v7 found: error %v", err)
	}
	f, err = pickIndex(found, platformList{*plat(t, "linux/amd64/v1")})
	if err != nil || platformString(f.platform) != "linux/amd64" {
		t.Errorf("--platform linux/amd64/v1: %v, %v", f.platform, err)
	}
}

// writeIndex writes an image index of one image per platform (each with
// one layer) and returns the layout's path.
func writeIndex(t *testing.T, plats ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	l, err := image.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ds []ocispec.Descriptor
	for _, p := range plats {
		pl := plat(t, p)
		im := writeImage(t, l, pl.Architecture, []testLayer{makeLayer(t, p, 5, false)}, "")
		im.manifest.Platform = pl
		ds = append(ds, im.manifest)
	}
	putJSON(t, l, ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specsV2, MediaType: ocispec.MediaTypeImageIndex, Manifests: ds}, "latest")
	return dir
}

// TestConvertPlatformVariant converts an index whose arm64 entry says
// linux/arm64/v8 with --platform linux/arm64 and the other way round, and
// one with arm/v7 and arm/v6 images on an arm/v6 host.
func TestConvertPlatformVariant(t *testing.T) {
	for _, c := range []struct {
		name, host string
		plats      []string
		args       []string
		want       []string
	}{
		{"arm64 wanted, arm64/v8 listed", "linux/amd64", []string{"linux/amd64", "linux/arm64/v8"}, []string{"--platform", "linux/arm64"}, []string{"linux/arm64/v8"}},
		{"arm64/v8 wanted, arm64 listed", "linux/amd64", []string{"linux/amd64", "linux/arm64"}, []string{"--platform", "linux/arm64/v8"}, []string{"linux/arm64"}},
		{"host arm/v6", "linux/arm/v6", []string{"linux/arm/v7", "linux/arm/v6"}, nil, []string{"linux/arm/v6"}},
		{"host arm/v7", "linux/arm/v7", []string{"linux/arm/v7", "linux/arm/v6"}, nil, []string{"linux/arm/v7"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			setHost(t, c.host)
			src := writeIndex(t, c.plats...)
			dst := filepath.Join(t.TempDir(), "out")
			run(t, convertArgs(append(c.args, src, "oci-layout:"+dst)...)...)
			var got []string
			for _, ix := range inspectJSON(t, dst).Indexes {
				got = append(got, ix.Platform)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("indexed platforms (-want +got):\n%s", diff)
			}
		})
	}
}
