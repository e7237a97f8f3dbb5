//go:build integration

package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// plainAfterReorderDockerfile has a RUN and a COPY layer whose tars depend
// only on the build context and the marker (%q) once timestamps are
// rewritten: the same on every buildkitd. The prefetch files below are the
// last entries of their layers, so reordering changes both tars.
const plainAfterReorderDockerfile = `FROM base
ARG SOURCE_DATE_EPOCH
RUN echo %q > /marker && mkdir -p /data/text && \
    i=0; while [ $i -lt 100 ]; do \
      seq $i $((i + 1500)) > /data/text/file-$i.txt; i=$((i + 1)); \
    done
COPY . /app/
`

const plainAfterReorderPrefetch = `,soci-min-layer-size=0,soci-reorder=true,"soci-prefetch=/data/text/file-99.txt,/app/payload.txt"`

// newFreshBuildkitd starts another buildkitd of ours, with an empty cache,
// that may push to the sandbox's registry; it is stopped when t ends.
func newFreshBuildkitd(t *testing.T, s *Sandbox) *Sandbox {
	t.Helper()
	bin := os.Getenv("BIN")
	if bin == "" {
		bin = filepath.Join(repoRoot(t), "bin")
	}
	root, err := os.MkdirTemp("", "socikit-e2e-fresh-")
	must(t, err)
	cmd := exec.Command(filepath.Join(repoRoot(t), "scripts/buildkit-start.sh"))
	cmd.Env = append(os.Environ(), "BUILDKITD_ROOT="+root, "BUILDKITD_REGISTRIES="+s.Registry, "BIN="+bin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Cleanup(func() {
		if pid, err := os.ReadFile(filepath.Join(root, "buildkitd.pid")); err == nil {
			exec.Command("kill", strings.TrimSpace(string(pid))).Run()
			time.Sleep(500 * time.Millisecond)
		}
		exec.Command("umount", "-R", filepath.Join(root, "state")).Run()
		os.RemoveAll(root)
	})
	if err != nil {
		t.Fatalf("start a fresh buildkitd: %v: %s", err, stderr.String())
	}
	return &Sandbox{Registry: s.Registry, Addr: strings.TrimSpace(string(out)), Root: root, BuildctlPath: s.BuildctlPath}
}

// plainImage is a pushed single-platform image: its layers, diff_ids and
// the repository to fetch blobs from.
type plainImage struct {
	Layers  []ocispec.Descriptor
	DiffIDs []digest.Digest
	Repo    name.Repository
}

func readPlainImage(t *testing.T, ref string) plainImage {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	var m ocispec.Manifest
	must(t, json.Unmarshal(desc.Manifest, &m))
	var cfg ocispec.Image
	must(t, json.Unmarshal(fetchBlob(t, r.Context(), m.Config.Digest), &cfg))
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(m.Layers) != 3 {
		t.Fatalf("%s: %d layers, %d diff_ids, want base + RUN + COPY\n%s", ref, len(m.Layers), len(cfg.RootFS.DiffIDs), desc.Manifest)
	}
	return plainImage{Layers: m.Layers, DiffIDs: cfg.RootFS.DiffIDs, Repo: r.Context()}
}

// layerEntryNames lists a tar's entry names in order.
func layerEntryNames(t *testing.T, plain []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		must(t, err)
		names = append(names, h.Name)
	}
}

// TestPlainAfterSociReorder exports one build with type=soci and
// soci-reorder=true first, then with type=image and type=oci (no soci-*
// attributes), on one buildkitd. The plain exports must not get the
// reordered blobs, whatever the soci export left in BuildKit's cache: with
// rewrite-timestamp=true their layers are the very blobs a fresh buildkitd
// exports for the same build; without it (blobs as cached) each layer's
// tar is in the differ's order, the same entries in the same order as on
// the fresh buildkitd, and matches its diff_id. A cache export of the same
// build must not carry a reordered blob either.
func TestPlainAfterSociReorder(t *testing.T) {
	s := NewSandbox(t)
	h := prepareHello(t)
	marker := t.Name() + " " + time.Now().Format(time.RFC3339Nano)
	must(t, os.WriteFile(filepath.Join(h.Dir, "Dockerfile"), []byte(fmt.Sprintf(plainAfterReorderDockerfile, marker)), 0o644))
	epoch := []string{"--opt", "build-arg:SOURCE_DATE_EPOCH=0"}
	repo := s.Registry + "/plain-after-reorder"
	push := ",push=true,registry.insecure=true"

	// The soci export comes first: BuildKit's cache records of the new
	// layers have no blob yet.
	buildOutput(t, s, h, "type=soci,name="+repo+":soci"+push+plainAfterReorderPrefetch, epoch...)
	si := readSociImage(t, repo+":soci")
	r, err := name.ParseReference(repo+":soci", name.Insecure)
	must(t, err)
	reordered := map[digest.Digest]bool{}
	for i := 1; i < len(si.Layers); i++ {
		first := firstRegular(t, gunzip(t, fetchBlob(t, r.Context(), si.Layers[i])))
		if first != "data/text/file-99.txt" && first != "app/payload.txt" {
			t.Fatalf("soci layer %d: first regular file %s, want a prefetch file (not reordered?)", i, first)
		}
		reordered[si.Layers[i]] = true
	}
	// Again, with the inline cache: the reordered blobs are found again
	// (no compression), and the inline cache names the image's layers.
	before := map[digest.Digest]int{}
	for _, d := range si.Layers {
		before[d] = compressions(s, d)
	}
	buildOutput(t, s, h, "type=soci,name="+repo+":soci2"+push+plainAfterReorderPrefetch, append(epoch, "--export-cache", "type=inline")...)
	si2 := readSociImage(t, repo+":soci2")
	if strings.Join(digestStrings(si.Layers), ",") != strings.Join(digestStrings(si2.Layers), ",") ||
		strings.Join(digestStrings(si.Ztocs), ",") != strings.Join(digestStrings(si2.Ztocs), ",") {
		t.Errorf("second reordering export: layers %v zTOCs %v, first %v %v", si2.Layers, si2.Ztocs, si.Layers, si.Ztocs)
	}
	for _, d := range si2.Layers {
		if n := compressions(s, d); n != before[d] {
			t.Errorf("layer %s compressed again by the second reordering export (%d log lines, %d before)", d, n, before[d])
		}
	}
	var m2 ocispec.Manifest
	must(t, json.Unmarshal(fetchManifest(t, r.Context(), si2.Manifest), &m2))
	var cfg2 struct {
		Cache []byte `json:"moby.buildkit.cache.v0"`
	}
	must(t, json.Unmarshal(fetchBlob(t, r.Context(), m2.Config.Digest), &cfg2))
	var records []struct {
		Layers []struct {
			Layer int `json:"layer"`
		} `json:"layers"`
	}
	top := -1
	if err := json.Unmarshal(cfg2.Cache, &records); err != nil {
		t.Errorf("inline cache in the image config: %v: %s", err, cfg2.Cache)
	}
	for _, rec := range records {
		for _, l := range rec.Layers {
			top = max(top, l.Layer)
		}
	}
	if top != len(si2.Layers)-1 {
		t.Errorf("the inline cache names layers up to %d, want the image's %d: %s", top, len(si2.Layers)-1, cfg2.Cache)
	}

	// Plain exports on the same buildkitd.
	rewritten := func(s *Sandbox, tag string) plainImage {
		buildOutput(t, s, h, "type=image,name="+repo+":"+tag+push+",rewrite-timestamp=true", epoch...)
		return readPlainImage(t, repo+":"+tag)
	}
	img := rewritten(s, "image")
	cacheDir := t.TempDir()
	buildOutput(t, s, h, "type=image,name="+repo+":as-cached"+push, append(epoch, "--export-cache", "type=local,mode=max,dest="+cacheDir)...)
	asCached := readPlainImage(t, repo+":as-cached")
	ociTar := filepath.Join(t.TempDir(), "image.tar")
	buildOutput(t, s, h, "type=oci,dest="+ociTar+",rewrite-timestamp=true", epoch...)
	layout := filepath.Join(t.TempDir(), "layout")
	untar(t, ociTar, layout)
	idx := readIndexJSON(t, layout)
	blob := layoutBlobs(layout)
	if len(idx.Manifests) != 1 {
		t.Fatalf("type=oci: index.json lists %d manifests, want 1", len(idx.Manifests))
	}
	var om ocispec.Manifest
	must(t, json.Unmarshal(blob(t, idx.Manifests[0].Digest), &om))

	// The same plain export on a fresh buildkitd.
	f := newFreshBuildkitd(t, s)
	fresh := rewritten(f, "fresh")
	buildOutput(t, f, h, "type=image,name="+repo+":fresh-as-cached"+push, epoch...)
	freshAsCached := readPlainImage(t, repo+":fresh-as-cached")

	for i := range fresh.Layers {
		t.Logf("layer %d: fresh %s, after soci %s, type=oci %s; as cached: fresh %s, after soci %s",
			i, fresh.Layers[i].Digest, img.Layers[i].Digest, om.Layers[i].Digest, freshAsCached.Layers[i].Digest, asCached.Layers[i].Digest)
		if img.Layers[i].Digest != fresh.Layers[i].Digest || img.DiffIDs[i] != fresh.DiffIDs[i] {
			t.Errorf("layer %d, type=image after type=soci: blob %s diff_id %s, a fresh buildkitd's %s %s", i, img.Layers[i].Digest, img.DiffIDs[i], fresh.Layers[i].Digest, fresh.DiffIDs[i])
		}
		if om.Layers[i].Digest != fresh.Layers[i].Digest {
			t.Errorf("layer %d, type=oci after type=soci: blob %s, a fresh buildkitd's %s", i, om.Layers[i].Digest, fresh.Layers[i].Digest)
		}
		if reordered[asCached.Layers[i].Digest] {
			t.Errorf("layer %d, type=image without rewrite-timestamp: the reordered blob %s of the soci export", i, asCached.Layers[i].Digest)
		}
		tb := gunzip(t, fetchBlob(t, asCached.Repo, asCached.Layers[i].Digest))
		if d := digest.FromBytes(tb); d != asCached.DiffIDs[i] {
			t.Errorf("layer %d, type=image without rewrite-timestamp: diff_id %s, tar %s", i, asCached.DiffIDs[i], d)
		}
		got, want := layerEntryNames(t, tb), layerEntryNames(t, gunzip(t, fetchBlob(t, freshAsCached.Repo, freshAsCached.Layers[i].Digest)))
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("layer %d, type=image without rewrite-timestamp: entries %.200q..., a fresh buildkitd's %.200q...", i, strings.Join(got, " "), strings.Join(want, " "))
		}
	}
	ents, err := os.ReadDir(filepath.Join(cacheDir, "blobs", "sha256"))
	must(t, err)
	for _, e := range ents {
		if reordered[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] {
			t.Errorf("the cache export holds the reordered blob %s", e.Name())
		}
	}
}
