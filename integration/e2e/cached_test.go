//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// The tests here build an image with type=image first and then with
// type=soci on the same buildkitd: BuildKit then has a plain gzip blob
// cached for each new layer, which type=soci must not export as it is (it
// would get 4 MiB spans from ztoc.Build and no reordering).

// uniqueHello is examples/hello with a RUN line of its own, so that the
// test's layers are in no other test's cache, and the build context.
func uniqueHello(t *testing.T, marker string) helloInput {
	t.Helper()
	h := prepareHello(t)
	df := fmt.Sprintf(`FROM base
RUN echo %q > /marker && mkdir -p /data/text && \
    i=0; while [ $i -lt 400 ]; do \
      seq $i $((i + 1500)) > /data/text/file-$i.txt; i=$((i + 1)); \
    done && \
    head -c 3000000 /dev/urandom > /data/random.bin
COPY . /app/
`, marker+" "+time.Now().Format(time.RFC3339Nano))
	must(t, os.WriteFile(filepath.Join(h.Dir, "Dockerfile"), []byte(df), 0o644))
	return h
}

// buildOutput builds h with one --output and returns buildctl's output.
func buildOutput(t *testing.T, s *Sandbox, h helloInput, output string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(append(h.buildctlArgs(), extra...), "--output", output)
	out, err := s.Buildctl(ctx, args...)
	if err != nil {
		t.Fatalf("build --output %s: %v\n%s\n-- buildkitd log --\n%s", output, err, out, s.Log())
	}
	return out
}

// pushImage builds h with type=image and returns the pushed manifest's
// layers.
func pushImage(t *testing.T, s *Sandbox, h helloInput, ref string) []ocispec.Descriptor {
	t.Helper()
	buildOutput(t, s, h, "type=image,name="+ref+",push=true,registry.insecure=true")
	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	desc, err := remote.Get(r)
	must(t, err)
	var m ocispec.Manifest
	must(t, json.Unmarshal(desc.Manifest, &m))
	if len(m.Layers) < 3 {
		t.Fatalf("%s: %d layers, want base + RUN + COPY\n%s", ref, len(m.Layers), desc.Manifest)
	}
	return m.Layers
}

// compressions counts the layers the soci-gzip compressor wrote with digest
// d, by its log line in buildkitd's log.
func compressions(s *Sandbox, d digest.Digest) int {
	return strings.Count(s.Log(), "soci-gzip: compressed layer "+d.String())
}

// isSpanCandidate reports whether auto sizing chooses from size.
func isSpanCandidate(size int64) bool {
	return slices.Contains(exporter.DefaultSpanCandidates, size)
}

// TestSociAfterImage builds with type=image, then with type=soci (auto
// spans) twice, then type=image again, on one buildkitd without
// --no-cache. The soci export must not reuse the plain gzip blobs of the
// build's own layers: it writes them again with soci-gzip (one-pass zTOCs,
// spans planned from the content), same tars, other digests; the base
// layer keeps its blob. The second soci export reuses those blobs and zTOCs
// without compressing anything (same digests everywhere, no new compressor
// log line), and type=image still exports its plain gzip blobs.
func TestSociAfterImage(t *testing.T) {
	s := NewSandbox(t)
	h := uniqueHello(t, t.Name())
	plain := pushImage(t, s, h, s.Registry+"/after-image:image")

	soci1 := s.Registry + "/after-image:soci1"
	buildOutput(t, s, h, "type=soci,name="+soci1+",push=true,registry.insecure=true,soci-min-layer-size=0")
	a := readSociImage(t, soci1)
	if len(a.Layers) != len(plain) {
		t.Fatalf("%d layers with type=soci, %d with type=image", len(a.Layers), len(plain))
	}
	r, err := name.ParseReference(soci1, name.Insecure)
	must(t, err)
	if a.Layers[0] != plain[0].Digest {
		t.Errorf("base layer: %s with type=soci, %s with type=image: a base layer must keep its blob", a.Layers[0], plain[0].Digest)
	}
	for i := 1; i < len(a.Layers); i++ {
		t.Logf("layer %d: type=image %s, type=soci %s, span size %d, %d checkpoints, aligned %v",
			i, plain[i].Digest, a.Layers[i], a.SpanSizes[i], a.Checkpoints[i], a.Aligned[i])
		if a.Layers[i] == plain[i].Digest {
			t.Errorf("layer %d: type=soci exported the plain gzip blob %s of the type=image export", i, a.Layers[i])
		}
		if !a.Aligned[i] {
			t.Errorf("layer %d: its zTOC is not from the one-pass writer (ztoc.Build of a cached blob?)", i)
		}
		if !isSpanCandidate(a.SpanSizes[i]) {
			t.Errorf("layer %d: span size %d is not one auto sizing chooses from", i, a.SpanSizes[i])
		}
		if compressions(s, a.Layers[i]) == 0 {
			t.Errorf("layer %d: no soci-gzip log line for %s", i, a.Layers[i])
		}
		// Same tar: only the compression changed.
		if got, want := digest.FromBytes(gunzip(t, fetchBlob(t, r.Context(), a.Layers[i]))), digest.FromBytes(gunzip(t, fetchBlob(t, r.Context(), plain[i].Digest))); got != want {
			t.Errorf("layer %d: tar %s with type=soci, %s with type=image", i, got, want)
		}
	}
	before := make([]int, len(a.Layers))
	for i, d := range a.Layers {
		before[i] = compressions(s, d)
	}

	soci2 := s.Registry + "/after-image:soci2"
	buildOutput(t, s, h, "type=soci,name="+soci2+",push=true,registry.insecure=true,soci-min-layer-size=0")
	b := readSociImage(t, soci2)
	if strings.Join(digestStrings(a.Layers), ",") != strings.Join(digestStrings(b.Layers), ",") {
		t.Errorf("second soci export: layers differ:\n%v\n%v", a.Layers, b.Layers)
	}
	if strings.Join(digestStrings(a.Ztocs), ",") != strings.Join(digestStrings(b.Ztocs), ",") {
		t.Errorf("second soci export: zTOCs differ:\n%v\n%v", a.Ztocs, b.Ztocs)
	}
	if a.Index != b.Index || a.Manifest != b.Manifest || a.Root != b.Root {
		t.Errorf("second soci export: SOCI index / manifest / root differ: %s %s %s vs %s %s %s", a.Index, a.Manifest, a.Root, b.Index, b.Manifest, b.Root)
	}
	for i, d := range b.Layers {
		if n := compressions(s, d); n != before[i] {
			t.Errorf("layer %d: compressed again by the second soci export (%d log lines, %d before)", i, n, before[i])
		}
	}

	// With the inline cache, which BuildKit computes with the exporter's
	// compression during the export: it must name the soci-gzip blobs.
	soci3 := s.Registry + "/after-image:soci3"
	buildOutput(t, s, h, "type=soci,name="+soci3+",push=true,registry.insecure=true,soci-min-layer-size=0", "--export-cache", "type=inline")
	c := readSociImage(t, soci3)
	if strings.Join(digestStrings(a.Layers), ",") != strings.Join(digestStrings(c.Layers), ",") {
		t.Errorf("soci export with the inline cache: layers differ:\n%v\n%v", a.Layers, c.Layers)
	}
	var m3 ocispec.Manifest
	must(t, json.Unmarshal(fetchManifest(t, r.Context(), c.Manifest), &m3))
	var cfg struct {
		Cache []byte `json:"moby.buildkit.cache.v0"`
	}
	must(t, json.Unmarshal(fetchBlob(t, r.Context(), m3.Config.Digest), &cfg))
	// The inline cache's records name the image's layers by index; BuildKit
	// leaves it out when its blobs are not the image's ("failed to match
	// any cache with layers").
	var records []struct {
		Layers []struct {
			Layer int `json:"layer"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(cfg.Cache, &records); err != nil {
		t.Errorf("inline cache in the image config: %v: %s", err, cfg.Cache)
	}
	top := -1
	for _, r := range records {
		for _, l := range r.Layers {
			top = max(top, l.Layer)
		}
	}
	if top != len(c.Layers)-1 {
		t.Errorf("the inline cache names layers up to %d, want the image's %d: %s", top, len(c.Layers), cfg.Cache)
	}

	again := pushImage(t, s, h, s.Registry+"/after-image:image2")
	for i := range plain {
		if again[i].Digest != plain[i].Digest {
			t.Errorf("layer %d: type=image after type=soci exports %s, before %s", i, again[i].Digest, plain[i].Digest)
		}
	}
}

// TestSociReorderAfterImage builds with type=image, then with type=soci and
// soci-reorder=true: the new layers are reordered (prefetch files first)
// although plain gzip blobs of them are cached, with matching diff_ids; the
// base layer keeps its blob. A soci export without reordering then gets
// the unreordered variants, and reordering again the same reordered blobs
// as the first time (each parameter set has its own cached variant).
func TestSociReorderAfterImage(t *testing.T) {
	s := NewSandbox(t)
	h := uniqueHello(t, t.Name())
	plain := pushImage(t, s, h, s.Registry+"/reorder-after-image:image")

	const reorder = `,soci-min-layer-size=0,soci-reorder=true,"soci-prefetch=/data/random.bin,/app/payload.txt"`
	ref := s.Registry + "/reorder-after-image:reorder"
	buildOutput(t, s, h, "type=soci,name="+ref+",push=true,registry.insecure=true"+reorder)
	si := readSociImage(t, ref)
	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	var m ocispec.Manifest
	must(t, json.Unmarshal(fetchManifest(t, r.Context(), si.Manifest), &m))
	var cfg ocispec.Image
	must(t, json.Unmarshal(fetchBlob(t, r.Context(), m.Config.Digest), &cfg))
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(m.Layers) != len(plain) {
		t.Fatalf("%d diff_ids, %d layers, %d with type=image", len(cfg.RootFS.DiffIDs), len(m.Layers), len(plain))
	}
	if m.Layers[0].Digest != plain[0].Digest {
		t.Errorf("base layer: %s, %s with type=image: a base layer must keep its blob", m.Layers[0].Digest, plain[0].Digest)
	}
	firsts := map[string]bool{}
	for i, l := range m.Layers {
		tarb := gunzip(t, fetchBlob(t, r.Context(), l.Digest))
		if d := digest.FromBytes(tarb); d != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: diff_id %s in the config, tar is %s", i, cfg.RootFS.DiffIDs[i], d)
		}
		if i == 0 {
			continue
		}
		first := firstRegular(t, tarb)
		t.Logf("layer %d: %s (type=image %s), first regular file %s", i, l.Digest, plain[i].Digest, first)
		firsts[first] = true
		if l.Digest == plain[i].Digest {
			t.Errorf("layer %d: the plain gzip blob of the type=image export", i)
		}
		if !si.Aligned[i] {
			t.Errorf("layer %d: not from the one-pass writer", i)
		}
	}
	if !firsts["data/random.bin"] || !firsts["app/payload.txt"] {
		t.Errorf("first regular files of the new layers: %v, want data/random.bin and app/payload.txt", firsts)
	}
	ix, err := soci.ParseIndex(fetchManifest(t, r.Context(), si.Index))
	must(t, err)
	if len(ix.Prefetches) != 2 {
		t.Errorf("%d prefetch blobs, want 2", len(ix.Prefetches))
	}

	noReorder := s.Registry + "/reorder-after-image:plain"
	buildOutput(t, s, h, "type=soci,name="+noReorder+",push=true,registry.insecure=true,soci-min-layer-size=0")
	nr := readSociImage(t, noReorder)
	for i := 1; i < len(nr.Layers); i++ {
		if nr.Layers[i] == si.Layers[i] || nr.Layers[i] == plain[i].Digest {
			t.Errorf("layer %d without reordering: %s (reordered %s, type=image %s)", i, nr.Layers[i], si.Layers[i], plain[i].Digest)
		}
		if got, want := digest.FromBytes(gunzip(t, fetchBlob(t, r.Context(), nr.Layers[i]))), digest.FromBytes(gunzip(t, fetchBlob(t, r.Context(), plain[i].Digest))); got != want {
			t.Errorf("layer %d without reordering: tar %s, %s with type=image", i, got, want)
		}
	}

	ref2 := s.Registry + "/reorder-after-image:reorder2"
	buildOutput(t, s, h, "type=soci,name="+ref2+",push=true,registry.insecure=true"+reorder)
	si2 := readSociImage(t, ref2)
	if strings.Join(digestStrings(si.Layers), ",") != strings.Join(digestStrings(si2.Layers), ",") ||
		strings.Join(digestStrings(si.Ztocs), ",") != strings.Join(digestStrings(si2.Ztocs), ",") || si.Root != si2.Root {
		t.Errorf("reordering again: layers %v zTOCs %v root %s, first time %v %v %s", si2.Layers, si2.Ztocs, si2.Root, si.Layers, si.Ztocs, si.Root)
	}

	// A plain export with a cache export: the image keeps its plain gzip
	// blobs, and the cache, which gets every blob BuildKit links to a
	// record as a variant, no reordered blob.
	cacheDir := t.TempDir()
	buildOutput(t, s, h, "type=image,name="+s.Registry+"/reorder-after-image:image2,push=true,registry.insecure=true",
		"--export-cache", "type=local,mode=max,dest="+cacheDir)
	r2, err := name.ParseReference(s.Registry+"/reorder-after-image:image2", name.Insecure)
	must(t, err)
	d2, err := remote.Get(r2)
	must(t, err)
	var m2 ocispec.Manifest
	must(t, json.Unmarshal(d2.Manifest, &m2))
	for i := range plain {
		if i >= len(m2.Layers) || m2.Layers[i].Digest != plain[i].Digest {
			t.Errorf("layer %d: type=image after the reordering exports: %v, before %s", i, m2.Layers, plain[i].Digest)
		}
	}
	for i := 1; i < len(si.Layers); i++ {
		if _, err := os.Stat(filepath.Join(cacheDir, "blobs", "sha256", si.Layers[i].Encoded())); err == nil {
			t.Errorf("layer %d: the cache export holds the reordered blob %s", i, si.Layers[i])
		}
	}
}

// TestSociFromOwnImage builds an image with type=image and pushes it, then
// builds FROM it with type=soci. BuildKit maps the pulled layers to this
// builder's cache records of the first build (same blobs and diffIDs), so
// they look like layers the builder made; they are base layers all the
// same (the frontend's base image config lists them) and keep their blobs.
// Only the layer added on top is written with soci-gzip.
func TestSociFromOwnImage(t *testing.T) {
	s := NewSandbox(t)
	h := uniqueHello(t, t.Name())
	baseRef := s.Registry + "/own-base:1"
	base := pushImage(t, s, h, baseRef)

	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(fmt.Sprintf("FROM %s\nRUN echo %q > /top && head -c 2000000 /dev/urandom > /top.bin\n", baseRef, t.Name()+time.Now().String())), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ref := s.Registry + "/own-top:soci"
	out, err := s.Buildctl(ctx, "build", "--frontend", "dockerfile.v0", "--local", "context="+dir, "--local", "dockerfile="+dir,
		"--output", "type=soci,name="+ref+",push=true,registry.insecure=true,soci-min-layer-size=0")
	if err != nil {
		t.Fatalf("build FROM %s: %v\n%s\n-- buildkitd log --\n%s", baseRef, err, out, s.Log())
	}
	si := readSociImage(t, ref)
	if len(si.Layers) != len(base)+1 {
		t.Fatalf("%d layers, want the %d of %s and one more", len(si.Layers), len(base), baseRef)
	}
	for i, l := range base {
		if si.Layers[i] != l.Digest {
			t.Errorf("base layer %d: %s, %s in %s: a base layer must keep its blob", i, si.Layers[i], l.Digest, baseRef)
		}
	}
	top := len(si.Layers) - 1
	if !si.Aligned[top] || compressions(s, si.Layers[top]) == 0 {
		t.Errorf("top layer %s: aligned %v, compressor log lines %d: not written by soci-gzip", si.Layers[top], si.Aligned[top], compressions(s, si.Layers[top]))
	}
}

// TestOCIAfterImage builds with type=image, then with type=oci and soci-*
// attributes (an OCI layout with the SOCI image): as with type=soci, the
// new layers are written with soci-gzip, not taken from the type=image
// export, and the base layer keeps its blob.
func TestOCIAfterImage(t *testing.T) {
	s := NewSandbox(t)
	h := uniqueHello(t, t.Name())
	plain := pushImage(t, s, h, s.Registry+"/oci-after-image:image")
	dir, idx := buildOCI(t, s, h, ",name=example.com/after:ci,soci-min-layer-size=0,soci-span-size=1M")
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want the image index", len(idx.Manifests))
	}
	blob := layoutBlobs(dir)
	img, ix := checkSociImage(t, blob(t, idx.Manifests[0].Digest), blob)
	var m ocispec.Manifest
	must(t, json.Unmarshal(blob(t, img.Digest), &m))
	if len(m.Layers) != len(plain) {
		t.Fatalf("%d layers, %d with type=image", len(m.Layers), len(plain))
	}
	if m.Layers[0].Digest != plain[0].Digest {
		t.Errorf("base layer: %s, %s with type=image: a base layer must keep its blob", m.Layers[0].Digest, plain[0].Digest)
	}
	ztocs := map[digest.Digest]soci.LayerZtoc{}
	for _, l := range ix.Layers {
		ztocs[l.LayerDigest] = l
	}
	for i := 1; i < len(m.Layers); i++ {
		l := m.Layers[i]
		if l.Digest == plain[i].Digest {
			t.Errorf("layer %d: the plain gzip blob %s of the type=image export", i, l.Digest)
		}
		z, err := ztoc.Unmarshal(blob(t, ztocs[l.Digest].Ztoc.Digest))
		must(t, err)
		if aligned, _ := checkpointsAligned(t, z); !aligned || ztocs[l.Digest].SpanSize != 1<<20 {
			t.Errorf("layer %d: aligned %v, span size %d: want the one-pass writer's zTOC at 1 MiB", i, aligned, ztocs[l.Digest].SpanSize)
		}
	}
}

// TestSociForceCompression builds with force-compression=true: base layers
// are written with soci-gzip too (their digests change, their tars do not).
func TestSociForceCompression(t *testing.T) {
	s := NewSandbox(t)
	h := uniqueHello(t, t.Name())
	mb, err := os.ReadFile(filepath.Join(h.Layout, "blobs", h.Base.Algorithm().String(), h.Base.Encoded()))
	must(t, err)
	var bm ocispec.Manifest
	must(t, json.Unmarshal(mb, &bm))
	ref := s.Registry + "/force:latest"
	buildOutput(t, s, h, "type=soci,name="+ref+",push=true,registry.insecure=true,soci-min-layer-size=0,force-compression=true")
	si := readSociImage(t, ref)
	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	if si.Layers[0] == bm.Layers[0].Digest {
		t.Errorf("base layer kept its blob %s with force-compression=true", si.Layers[0])
	}
	lb, err := os.ReadFile(filepath.Join(h.Layout, "blobs", "sha256", bm.Layers[0].Digest.Encoded()))
	must(t, err)
	if got, want := digest.FromBytes(gunzip(t, fetchBlob(t, r.Context(), si.Layers[0]))), digest.FromBytes(gunzip(t, lb)); got != want {
		t.Errorf("base layer: tar %s, base image's %s", got, want)
	}
	for i := range si.Layers {
		if !si.Aligned[i] {
			t.Errorf("layer %d: not from the one-pass writer", i)
		}
	}
}
