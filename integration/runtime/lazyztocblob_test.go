//go:build integration

package runtime

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
)

// TestLazyZtocBlob: an image converted by socikit convert (its SOCI index
// names a lazy zTOC per zTOC, by default), pulled with socikit pull (so
// containerd fetches no zTOC), is mounted from its lazy zTOCs: no byte of
// a zTOC is served before the container runs, each lazy zTOC once, and the
// index bytes before the mount (SOCI index, lazy zTOCs, zTOC bytes) are
// under 1 % of the image's layers. The container reads files
// byte-identical to the image's (windows fetched from the zTOC for the
// spans it reads); after the completion delay the zTOC is complete and
// checked in the daemon's store.
func TestLazyZtocBlob(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	reg := newRegistry(t)
	data := goTreeTar(t, 16<<20)
	plain, _ := reg.pushImage(t, "socikit/lazyztocblob", busyboxTar(t), data)
	ref := convertWith(t, plain, plain+"-soci", "-span-size", "1048576")
	layers := sociLayers(t, ref)
	ix := sociIndexOf(t, ref)
	if len(ix.LazyZtocs) != len(ix.Layers) || len(ix.Layers) != len(layers) {
		t.Fatalf("%d lazy zTOCs for %d zTOCs of %d layers", len(ix.LazyZtocs), len(ix.Layers), len(layers))
	}
	var image, ztocs, lazies int64
	for _, l := range layers {
		image += l.desc.Size
		ztocs += l.ztocSize
	}
	for _, lz := range ix.LazyZtocs {
		lazies += lz.Blob.Size
	}
	t.Logf("layers %d B, zTOCs %d B (%.2f%%), lazy zTOCs %d B (%.2f%%)", image, ztocs, 100*float64(ztocs)/float64(image),
		lazies, 100*float64(lazies)/float64(image))

	// Files to read in the container, and their digests from the tar.
	want, names := sampleTarFiles(t, data, 40)

	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	pull := filepath.Join(repoRoot, "bin/socikit")
	requireExecutable(t, pull)
	d := startContainerd(t, f, "[lazy]", `background_delay = "2s"`)
	ns := "socikit-test"
	served := func() (z, lz int64) {
		for _, l := range layers {
			z += reg.ServedOf(l.ztocDigest)
		}
		for _, l := range ix.LazyZtocs {
			lz += reg.ServedOf(l.Blob.Digest.String())
		}
		return z, lz
	}
	z0, lz0 := served()
	if out, err := exec.Command(pull, "pull", "--address", d.address, "--namespace", ns, "--plain-http", ref).CombinedOutput(); err != nil {
		t.Fatalf("socikit pull: %v\n%s", err, out)
	}
	if got := d.lazyMounts(t); got != len(layers) {
		t.Fatalf("%d lazy layer mounts after the pull, want %d", got, len(layers))
	}
	z1, lz1 := served()
	// The SOCI index manifest (a manifest GET, not counted as a blob) is
	// read once by discovery.
	before := (z1 - z0) + (lz1 - lz0) + ix.desc.Size
	t.Logf("before the mount: zTOCs %d B, lazy zTOCs %d B, SOCI index %d B: %d B, %.2f%% of the layers", z1-z0, lz1-lz0, ix.desc.Size,
		before, 100*float64(before)/float64(image))
	if z1 != z0 {
		t.Errorf("%d bytes of zTOCs served before the mount, want none", z1-z0)
	}
	if lz1-lz0 != lazies {
		t.Errorf("%d bytes of lazy zTOCs served before the mount, want each once (%d)", lz1-lz0, lazies)
	}
	if before*100 >= image {
		t.Errorf("index bytes before the mount %d, not under 1%% of the layers' %d", before, image)
	}

	sumsIn(t, d, ns, "socikit", ref, names, want)
	t.Logf("%d files read byte-identical", len(names))

	// The rest of each zTOC, then the whole in the store.
	for _, l := range layers {
		waitStoredZtoc(t, d, l.ztocDigest)
	}
	d.ctr(t, "-n", ns, "image", "rm", "--sync", ref)
}

// sociIndexed is a SOCI index and its descriptor.
type sociIndexed struct {
	*soci.Index
	desc ocispec.Descriptor
}

// sociIndexOf returns the SOCI v2 index of the converted image ref.
func sociIndexOf(t testing.TB, ref string) sociIndexed {
	t.Helper()
	rr, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(rr)
	if err != nil {
		t.Fatal(err)
	}
	var ix ocispec.Index
	if err := json.Unmarshal(desc.Manifest, &ix); err != nil {
		t.Fatal(err)
	}
	for _, m := range ix.Manifests {
		if m.ArtifactType != soci.MediaTypeIndexV2 {
			continue
		}
		got, err := remote.Get(rr.Context().Digest(m.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		p, err := soci.ParseIndex(got.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		return sociIndexed{Index: p, desc: m}
	}
	t.Fatalf("%s has no SOCI v2 index", ref)
	return sociIndexed{}
}

// TestUpstreamRunsLazyZtocImage: upstream soci-snapshotter v0.16.1
// (bin/soci-snapshotter-grpc, scripts/soci-upstream-build.sh) runs an
// image socikit convert indexed, lazy zTOCs in its SOCI index, lazily: it
// mounts every layer through FUSE (it takes the zTOCs and ignores the lazy
// zTOCs, whose media type is not a zTOC's), and the container reads files
// byte-identical to the image's.
func TestUpstreamRunsLazyZtocImage(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	requireExecutable(t, filepath.Join(repoRoot, "bin/soci-snapshotter-grpc"))
	reg := newRegistry(t)
	data := goTreeTar(t, 8<<20)
	plain, _ := reg.pushImage(t, "socikit/lazyztocupstream", busyboxTar(t), data)
	ref := convertWith(t, plain, plain+"-soci", "-span-size", "1048576")
	ix := sociIndexOf(t, ref)
	if len(ix.LazyZtocs) == 0 {
		t.Fatal("the converted image's SOCI index has no lazy zTOC")
	}
	want, names := sampleTarFiles(t, data, 60)

	t.Setenv("SOCI_UPSTREAM", "1")
	t.Setenv("SOCI_PLAIN_HTTP_HOSTS", reg.host)
	d := startContainerd(t, f)
	ns := "socikit-test"
	d.ctr(t, "-n", ns, "image", "pull", "--snapshotter", "soci", "--plain-http", ref)
	sumsIn(t, d, ns, "soci", ref, names, want)
	// The layers' FUSE mounts stay while the image's snapshots do.
	mounts := sociFUSEMounts(t, filepath.Join(d.dir, "soci"))
	if mounts != len(ix.Layers) {
		b, _ := os.ReadFile(filepath.Join(d.dir, "soci.log"))
		t.Errorf("upstream mounted %d layers through FUSE, want %d (lazily)\nsoci.log:\n%s", mounts, len(ix.Layers), tail(b, 3000))
	}
	t.Logf("upstream: %d layers mounted lazily, %d files read byte-identical", mounts, len(names))
	d.ctr(t, "-n", ns, "image", "rm", "--sync", ref)
}

// sociFUSEMounts counts the FUSE mounts under root.
func sociFUSEMounts(t testing.TB, root string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && strings.HasPrefix(f[1], root+"/") && strings.HasPrefix(f[2], "fuse") {
			n++
		}
	}
	return n
}
