package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// small flags so test layers get several spans.
var testFlags = []string{"--min-layer-size", "0", "--span-size", "65536"}

func convertArgs(extra ...string) []string {
	return append(append([]string{"convert"}, testFlags...), extra...)
}

// checkV2 checks the v2 layout of the image index at root: the rewritten
// manifests first, then the SOCI index descriptors, each zTOC parseable and
// matching its layer.
func checkV2(t *testing.T, ctx context.Context, src image.Source, root ocispec.Descriptor, body []byte, im testImage) {
	t.Helper()
	if root.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("root media type %q, want an OCI image index", root.MediaType)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 {
		t.Fatalf("image index has %d entries, want 2: %s", len(idx.Manifests), body)
	}
	m, s := idx.Manifests[0], idx.Manifests[1]
	if m.Annotations[soci.AnnotationIndexDigest] != s.Digest.String() {
		t.Errorf("manifest entry annotation %s = %q, want %s", soci.AnnotationIndexDigest, m.Annotations[soci.AnnotationIndexDigest], s.Digest)
	}
	if s.ArtifactType != soci.MediaTypeIndexV2 || s.Annotations[soci.AnnotationImageManifestDigest] != m.Digest.String() {
		t.Errorf("SOCI entry = %+v", s)
	}
	if m.Platform == nil || m.Platform.Architecture != runtime.GOARCH || s.Platform == nil || platformString(s.Platform) != platformString(m.Platform) {
		t.Errorf("platforms: manifest %+v, index %+v", m.Platform, s.Platform)
	}
	mb, err := src.Manifest(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if dg, ok, err := soci.IndexDigestFromManifest(mb); err != nil || !ok || dg != s.Digest {
		t.Errorf("manifest annotation: %s %v %v", dg, ok, err)
	}
	sb, err := src.Manifest(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := soci.ParseIndex(sb)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Version != soci.V2 || len(ix.Layers) != len(im.layers) {
		t.Fatalf("SOCI index version %v with %d layers, want v2 with %d", ix.Version, len(ix.Layers), len(im.layers))
	}
	for i, l := range ix.Layers {
		if l.LayerDigest != im.layers[i].desc.Digest || l.LayerMediaType != im.layers[i].desc.MediaType || l.SpanSize != 65536 {
			t.Errorf("layer %d: %+v", i, l)
		}
		zb, err := image.ReadBlob(ctx, src, l.Ztoc, image.MaxZtocSize)
		if err != nil {
			t.Fatal(err)
		}
		z, err := ztoc.Unmarshal(zb)
		if err != nil {
			t.Fatal(err)
		}
		if z.CompressedArchiveSize != im.layers[i].desc.Size || len(z.Files) != len(im.layers[i].files) {
			t.Errorf("zTOC of layer %d: size %d, %d files; want %d, %d", i, z.CompressedArchiveSize, len(z.Files),
				im.layers[i].desc.Size, len(im.layers[i].files))
		}
	}
	if _, err := image.ReadBlob(ctx, src, soci.V2.ConfigDescriptor(), 2); err != nil {
		t.Errorf("empty config blob: %v", err)
	}
}

func openLayout(t *testing.T, ref string) (image.Source, ocispec.Descriptor, []byte) {
	t.Helper()
	r, err := image.ParseRef(ref, false)
	if err != nil {
		t.Fatal(err)
	}
	src, err := image.OpenSource(context.Background(), r, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	d, b, err := src.Resolve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return src, d, b
}

func TestConvertLayoutV2(t *testing.T) {
	srcDir, im := newLayoutImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	out := run(t, convertArgs(srcDir, "oci-layout:"+dst)...)
	src, root, body := openLayout(t, dst)
	if strings.TrimSpace(out) != root.Digest.String() {
		t.Errorf("convert printed %q, layout holds %s", out, root.Digest)
	}
	checkV2(t, context.Background(), src, root, body, im)
	checkFiles(t, dst, im)

	info := inspectJSON(t, dst)
	if len(info.Indexes) != 1 || info.Indexes[0].Version != "v2" || len(info.Indexes[0].Layers) != 3 {
		t.Fatalf("inspect: %+v", info)
	}
	for i, l := range info.Indexes[0].Layers {
		if l.Digest != im.layers[i].desc.Digest || l.Size != im.layers[i].desc.Size || l.Spans < 2 ||
			l.Files != len(im.layers[i].files) || len(l.FileList) != l.Files || l.SpanSize != 65536 || l.ZtocPercent <= 0 {
			t.Errorf("inspect layer %d: %+v", i, l)
		}
	}
	human := run(t, "inspect", "--files", dst)
	for _, want := range []string{"SOCI index:", "LAYER", "ZTOC %", im.layers[0].desc.Digest.String(), "one/filea"} {
		if !strings.Contains(human, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, human)
		}
	}
	// The SOCI index itself is a valid reference too.
	info2 := inspectJSON(t, dst+"@"+info.Indexes[0].Digest.String())
	if info2.Indexes[0].Digest != info.Indexes[0].Digest {
		t.Errorf("inspect by index digest: %+v", info2)
	}
}

func TestConvertLayoutV1(t *testing.T) {
	srcDir, im := newLayoutImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	run(t, convertArgs("--index-version", "v1", srcDir, "oci-layout:"+dst+":v1")...)
	_, root, _ := openLayout(t, dst+":v1")
	if root.Digest != im.manifest.Digest {
		t.Fatalf("v1 image digest %s, want the unchanged %s", root.Digest, im.manifest.Digest)
	}
	l, err := image.OpenLayout(dst, "", "")
	if err != nil {
		t.Fatal(err)
	}
	refs, err := l.Referrers(context.Background(), im.manifest.Digest, soci.MediaTypeIndexV1)
	if err != nil || len(refs) != 1 {
		t.Fatalf("referrers: %v %v", refs, err)
	}
	info := inspectJSON(t, dst)
	if len(info.Indexes) != 1 || info.Indexes[0].Version != "v1" || info.Indexes[0].ManifestDigest != im.manifest.Digest ||
		info.Indexes[0].Digest != refs[0].Digest {
		t.Fatalf("inspect: %+v", info)
	}
	checkFiles(t, dst, im)
}

func TestConvertInPlace(t *testing.T) {
	t.Parallel()
	srcDir, im := newLayoutImage(t)
	run(t, convertArgs(srcDir+":latest", srcDir+":soci")...)
	src, root, body := openLayout(t, srcDir+":soci")
	checkV2(t, context.Background(), src, root, body, im)
	checkFiles(t, srcDir+":soci", im)
}

func TestConvertDeterministic(t *testing.T) {
	t.Parallel()
	srcDir, _ := newLayoutImage(t)
	tmp := t.TempDir()
	var digests []string
	var tars [][]byte
	for _, n := range []string{"a", "b"} {
		out := run(t, convertArgs("--jobs", map[string]string{"a": "1", "b": "4"}[n], srcDir, filepath.Join(tmp, n+".tar"))...)
		digests = append(digests, strings.TrimSpace(out))
		b, err := os.ReadFile(filepath.Join(tmp, n+".tar"))
		if err != nil {
			t.Fatal(err)
		}
		tars = append(tars, b)
	}
	if digests[0] != digests[1] {
		t.Errorf("two conversions gave %s and %s", digests[0], digests[1])
	}
	if !bytes.Equal(tars[0], tars[1]) {
		t.Errorf("two conversions gave different OCI archives")
	}
	// The archive reads back as a source.
	info := inspectJSON(t, filepath.Join(tmp, "a.tar"))
	if len(info.Indexes) != 1 {
		t.Errorf("inspect archive: %+v", info)
	}
}

func TestConvertPrefetch(t *testing.T) {
	t.Parallel()
	srcDir, im := newLayoutImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	run(t, convertArgs("--prefetch", "one/filec", "--prefetch", "/two/fileb", srcDir, "oci-layout:"+dst)...)
	info := inspectJSON(t, dst)
	layers := info.Indexes[0].Layers
	if len(layers[0].Prefetch) == 0 || len(layers[1].Prefetch) == 0 || len(layers[2].Prefetch) != 0 || len(layers[1].Prefetch) != 1 {
		t.Fatalf("prefetch spans: %+v / %+v / %+v", layers[0].Prefetch, layers[1].Prefetch, layers[2].Prefetch)
	}
	for _, f := range layers[0].FileList {
		if f.Name == "one/filec" && (layers[0].Prefetch[0].StartSpan != f.FirstSpan || layers[0].Prefetch[0].EndSpan != f.LastSpan) {
			t.Errorf("prefetch %+v, file spans %d-%d", layers[0].Prefetch, f.FirstSpan, f.LastSpan)
		}
	}
	_ = im

	_, _, err := runErr(t, convertArgs("--prefetch", "no/such/file", srcDir, "oci-layout:"+dst+"2")...)
	if err == nil || !strings.Contains(err.Error(), "no/such/file") {
		t.Errorf("missing prefetch path: err = %v, want one naming it", err)
	}
}

func TestConvertMinLayerSize(t *testing.T) {
	t.Parallel()
	srcDir, im := newLayoutImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	// Only the largest layer is big enough.
	big := 0
	for i, l := range im.layers {
		if l.desc.Size > im.layers[big].desc.Size {
			big = i
		}
	}
	run(t, "convert", "--span-size", "65536", "--min-layer-size", itoa(im.layers[big].desc.Size), srcDir, "oci-layout:"+dst)
	info := inspectJSON(t, dst)
	if l := info.Indexes[0].Layers; len(l) != 1 || l[0].Digest != im.layers[big].desc.Digest {
		t.Errorf("indexed layers: %+v", l)
	}
	_, _, err := runErr(t, "convert", "--min-layer-size", "1000000000", srcDir, "oci-layout:"+dst+"2")
	if err == nil {
		t.Error("convert with no layer to index succeeded")
	}
}

func TestConvertUncompressedLayer(t *testing.T) {
	t.Parallel()
	tl := makeLayer(t, "plain", 6, true)
	if z, err := ztoc.Build(bytes.NewReader(tl.blob), ztoc.WithSpanSize(65536)); err != nil {
		t.Fatal(err)
	} else if _, err := ztoc.NewIndex(z); err != nil {
		t.Skipf("ztoc.Build of an uncompressed tar gives an invalid zTOC (a ztoc bug, not the CLI's): %v", err)
	}
	srcDir, im := newLayoutImageOf(t, tl, makeLayer(t, "gz", 3, false))
	dst := filepath.Join(t.TempDir(), "out")
	run(t, convertArgs(srcDir, "oci-layout:"+dst)...)
	checkFiles(t, dst, im)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestConvertMultiPlatform(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "src")
	l, err := image.CreateLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	amd := writeImage(t, l, "amd64", []testLayer{makeLayer(t, "amd", 5, false)}, "")
	arm := writeImage(t, l, "arm64", []testLayer{makeLayer(t, "arm", 5, false)}, "")
	amd.manifest.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm.manifest.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	att := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: amd.manifest.Digest, Size: amd.manifest.Size,
		Platform:    &ocispec.Platform{OS: "unknown", Architecture: "unknown"},
		Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd.manifest.Digest.String()}}
	putJSON(t, l, ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specsV2, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{amd.manifest, arm.manifest, att}}, "latest")

	dst := filepath.Join(t.TempDir(), "out")
	run(t, convertArgs("--platform", "linux/arm64", dir, "oci-layout:"+dst)...)
	info := inspectJSON(t, dst)
	if len(info.Indexes) != 1 || info.Indexes[0].Platform != "linux/arm64" {
		t.Fatalf("--platform linux/arm64: %+v", info)
	}
	_, _, body := openLayout(t, dst)
	var idx ocispec.Index
	json.Unmarshal(body, &idx)
	if len(idx.Manifests) != 4 || idx.Manifests[3].ArtifactType != soci.MediaTypeIndexV2 {
		t.Errorf("image index entries: %s", body)
	}
	checkFiles(t, dst, arm)

	dst2 := filepath.Join(t.TempDir(), "out")
	run(t, convertArgs("--all-platforms", dir, "oci-layout:"+dst2)...)
	info = inspectJSON(t, dst2)
	if len(info.Indexes) != 2 {
		t.Fatalf("--all-platforms: %+v", info)
	}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		want := amd
		if p == "linux/arm64" {
			want = arm
		}
		// get-file picks the index by platform.
		f := want.layers[0].files[2]
		got := run(t, "get-file", "--platform", p, dst2, f.name)
		if got != string(f.data) {
			t.Errorf("get-file --platform %s %s: wrong content", p, f.name)
		}
	}
}

func TestConvertRegistry(t *testing.T) {
	t.Parallel()
	for _, referrers := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers", false: "tag-fallback"}[referrers], func(t *testing.T) {
			host := newRegistry(t, referrers)
			srcDir, im := newLayoutImage(t)

			// layout -> registry, v2
			v2 := host + "/test/v2:soci"
			run(t, convertArgs(srcDir, v2)...)
			r, err := image.ParseRef(v2, false)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := image.OpenSource(context.Background(), r, nil)
			if err != nil {
				t.Fatal(err)
			}
			root, body, err := reg.Resolve(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			checkV2(t, context.Background(), reg, root, body, im)
			checkFiles(t, v2, im)
			if info := inspectJSON(t, v2); len(info.Indexes) != 1 || info.Indexes[0].Version != "v2" {
				t.Errorf("inspect %s: %+v", v2, info)
			}

			// registry -> registry, v1 (the source is plain: push it first)
			plain := host + "/test/plain:1"
			run(t, "convert", "--index-version", "v1", "--min-layer-size", "0", "--span-size", "65536", srcDir, plain)
			v1 := host + "/test/v1:1"
			run(t, convertArgs("--index-version", "v1", plain, v1)...)
			info := inspectJSON(t, v1)
			if len(info.Indexes) != 1 || info.Indexes[0].Version != "v1" || info.Indexes[0].ManifestDigest != im.manifest.Digest {
				t.Fatalf("inspect %s: %+v", v1, info)
			}
			checkFiles(t, v1, im)
			// The index is also reachable through the referrers tag.
			tagged := host + "/test/v1:" + soci.ReferrersTag(im.manifest.Digest)
			if _, _, err := runErr(t, "inspect", "--json", tagged); err != nil {
				t.Errorf("inspect %s: %v", tagged, err)
			}

			// registry -> registry, v2, to another repository
			v2b := host + "/other/v2:soci"
			out := run(t, convertArgs(v2, v2b)...)
			if strings.TrimSpace(out) != root.Digest.String() {
				t.Errorf("converting a converted image gave %s, want %s", out, root.Digest)
			}
			checkFiles(t, v2b, im)
		})
	}
}

func TestGetFileLocal(t *testing.T) {
	t.Parallel()
	srcDir, im := newLayoutImage(t)
	dst := filepath.Join(t.TempDir(), "out")
	run(t, convertArgs(srcDir, "oci-layout:"+dst)...)
	info := inspectJSON(t, dst)
	l := info.Indexes[0].Layers[1]
	blobPath := func(d digest.Digest) string { return filepath.Join(dst, "blobs", "sha256", d.Encoded()) }
	f := im.layers[1].files[2]
	out := filepath.Join(t.TempDir(), "file")
	run(t, "get-file", "--ztoc", blobPath(l.ZtocDigest), "--blob", blobPath(l.Digest), "-o", out, f.name)
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, f.data) {
		t.Errorf("get-file -o: %d bytes, err %v; want %d bytes", len(got), err, len(f.data))
	}
	if _, _, err := runErr(t, "get-file", "--ztoc", blobPath(l.ZtocDigest), "--blob", blobPath(l.Digest), "two/link"); err == nil ||
		!strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("get-file of a symlink: %v", err)
	}
	if _, _, err := runErr(t, "get-file", dst, "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("get-file of a missing file: %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"convert", "only-one"},
		{"convert", "--index-version", "v3", "a", "b"},
		{"convert", "--platform", "linux", "a", "b"},
		{"inspect"},
		{"get-file", "--ztoc", "x", "p"},
	} {
		if _, _, err := runErr(t, args...); err == nil {
			t.Errorf("socikit %q succeeded", args)
		}
	}
	if out, _, err := runErr(t, "convert", "--help"); err != nil || out != "" {
		t.Errorf("convert --help: %v, stdout %q", err, out)
	}
}

// TestConvertProfile checks --profile: the spans holding the profile's hot
// ranges are prefetched (links followed, merged with --prefetch), paths no
// layer holds are warned about, and bad profiles are refused.
func TestConvertProfile(t *testing.T) {
	t.Parallel()
	srcDir, _ := newLayoutImage(t)
	tmp := t.TempDir()
	writeProfile := func(name, body string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prof := writeProfile("p.json", `{"version":"socikit.profile.v1","files":[`+
		`{"path":"/one/fileb","ranges":[[0,100]]},`+
		`{"path":"/proc/self/maps","ranges":[[0,4096]]},`+
		`{"path":"/two/link","ranges":[[10,20]]}]}`)
	dst := filepath.Join(tmp, "out")
	out, errOut, err := runErr(t, convertArgs("--profile", prof, srcDir, "oci-layout:"+dst)...)
	if err != nil {
		t.Fatalf("convert --profile: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "1 of the profile's 3 paths") || !strings.Contains(errOut, "/proc/self/maps") {
		t.Errorf("no warning about the missing path: %q", errOut)
	}
	info := inspectJSON(t, dst)
	layers := info.Indexes[0].Layers
	first := func(l int, name string) soci.PrefetchSpan {
		for _, f := range layers[l].FileList {
			if f.Name == name {
				return soci.PrefetchSpan{StartSpan: ztoc.SpanID(f.FirstSpan), EndSpan: ztoc.SpanID(f.FirstSpan)}
			}
		}
		t.Fatalf("%s not in layer %d", name, l)
		return soci.PrefetchSpan{}
	}
	if got, want := layers[0].Prefetch, []soci.PrefetchSpan{first(0, "one/fileb")}; !slices.Equal(got, want) {
		t.Errorf("layer one prefetch %v, want %v (the first span of one/fileb)", got, want)
	}
	if got, want := layers[1].Prefetch, []soci.PrefetchSpan{first(1, "two/filea")}; !slices.Equal(got, want) {
		t.Errorf("layer two prefetch %v, want %v (two/link's target)", got, want)
	}
	if len(layers[2].Prefetch) != 0 {
		t.Errorf("layer three prefetch %v", layers[2].Prefetch)
	}
	// Deterministic; merged with --prefetch.
	if again := run(t, convertArgs("--profile", prof, srcDir, "oci-layout:"+dst+"2")...); again != out {
		t.Errorf("second conversion %s, first %s", again, out)
	}
	run(t, convertArgs("--profile", prof, "--prefetch", "three/filea", srcDir, "oci-layout:"+dst+"3")...)
	info = inspectJSON(t, dst+"3")
	if l := info.Indexes[0].Layers; len(l[0].Prefetch) != 1 || len(l[1].Prefetch) != 1 || len(l[2].Prefetch) == 0 {
		t.Errorf("--profile and --prefetch: %v / %v / %v", l[0].Prefetch, l[1].Prefetch, l[2].Prefetch)
	}
	// Refused: not a profile, unknown version, another platform.
	for _, tt := range []struct{ name, body, want string }{
		{"bad.json", `{"files":[`, "not a valid profile"},
		{"v9.json", `{"version":"socikit.profile.v9","files":[]}`, "not supported"},
		{"rel.json", `{"version":"socikit.profile.v1","files":[{"path":"rel","ranges":[[0,1]]}]}`, "absolute"},
		{"plat.json", `{"version":"socikit.profile.v1","platform":"linux/s390x-none","files":[]}`, "no selected image"},
	} {
		_, _, err := runErr(t, convertArgs("--profile", writeProfile(tt.name, tt.body), srcDir, "oci-layout:"+filepath.Join(tmp, tt.name+".out"))...)
		if err == nil || !strings.Contains(err.Error(), "--profile") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want --profile ... %s", tt.name, err, tt.want)
		}
	}
	if _, _, err := runErr(t, convertArgs("--profile", filepath.Join(tmp, "none.json"), srcDir, "oci-layout:"+dst+"4")...); err == nil {
		t.Error("absent profile file: no error")
	}
}
