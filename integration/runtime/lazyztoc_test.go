//go:build integration

package runtime

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLazyZtocUpstream: an image whose zTOCs upstream's builder made
// (small spans: windows are most of the zTOC), pulled with socikit pull
// (so containerd fetches no zTOC), is mounted from zTOCs read lazily: the
// registry serves a small part of the data layer's zTOC before the
// container runs; the container reads files byte-identical to the image's
// (windows fetched for the spans it reads); after the completion delay
// the rest of the zTOC is fetched, checked against its digest and kept
// whole in the daemon's store.
func TestLazyZtocUpstream(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	bin := filepath.Join(t.TempDir(), "upstreamindex")
	build := exec.Command(mustLookPath(t, "go"), "build", "-o", bin, "./internal/upstreamindex")
	build.Dir = filepath.Join(repoRoot, "integration")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build upstreamindex: %v\n%s", err, out)
	}

	reg := newRegistry(t)
	data := goTreeTar(t, 16<<20)
	plain, _ := reg.pushImage(t, "socikit/lazyztoc", busyboxTar(t), data)
	ref := plain + "-upstream"
	if out, err := exec.Command(bin, "-plain-http", "-min-layer-size", "0", "-span-size", strconv.Itoa(128<<10), plain, ref).CombinedOutput(); err != nil {
		t.Fatalf("upstreamindex: %v\n%s", err, out)
	}
	layers := sociLayers(t, ref)
	if len(layers) != 2 || layers[1].z == nil {
		t.Fatalf("upstream-indexed image has %d layers (want 2, the data layer indexed)", len(layers))
	}
	zl := layers[1]

	// Files to read in the container, and their digests from the tar.
	want, names := sampleTarFiles(t, data, 40)

	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	pull := filepath.Join(repoRoot, "bin/socikit")
	requireExecutable(t, pull)
	d := startContainerd(t, f, "[lazy]", `background_delay = "2s"`)
	ns := "socikit-test"
	served0 := reg.ServedOf(zl.ztocDigest)
	if out, err := exec.Command(pull, "pull", "--address", d.address, "--namespace", ns, "--plain-http", ref).CombinedOutput(); err != nil {
		t.Fatalf("socikit pull: %v\n%s", err, out)
	}
	if got := d.lazyMounts(t); got != 2 {
		t.Fatalf("%d lazy layer mounts after the pull, want 2", got)
	}
	before := reg.ServedOf(zl.ztocDigest) - served0
	t.Logf("data layer zTOC: %d bytes, %d spans; %d bytes (%.1f%%) served before the container", zl.ztocSize, zl.z.MaxSpanID+1,
		before, 100*float64(before)/float64(zl.ztocSize))
	if before*4 > zl.ztocSize {
		t.Errorf("%d of the zTOC's %d bytes served before the container ran, want < 25%%", before, zl.ztocSize)
	}

	sumsIn(t, d, ns, "socikit", ref, names, want)
	t.Logf("%d files read byte-identical", len(names))

	// The rest of the zTOC, then the whole in the store.
	waitStoredZtoc(t, d, zl.ztocDigest)
	t.Logf("zTOC complete: %d bytes served in all", reg.ServedOf(zl.ztocDigest)-served0)
	d.ctr(t, "-n", ns, "image", "rm", "--sync", ref)
}

// sumsIn runs busybox sha256sum of names in a container of ref on
// snapshotter and checks the sums against want (checkSums).
func sumsIn(t *testing.T, d *daemons, ns, snapshotter, ref string, names []string, want map[string]string) {
	t.Helper()
	id := fmt.Sprintf("socikit-sums-%d", time.Now().UnixNano())
	checkSums(t, d.ctr(t, append([]string{"-n", ns, "run", "--rm", "--snapshotter", snapshotter, ref, id, "/bin/busybox", "sha256sum"}, names...)...), want)
}

// waitStoredZtoc waits up to 60 s for the zTOC dg, read lazily, to be
// complete in the daemon's store, and checks it against its digest.
func waitStoredZtoc(t *testing.T, d *daemons, dg string) {
	t.Helper()
	stored := filepath.Join(d.dir, "socikit", "artifacts", "sha256", strings.TrimPrefix(dg, "sha256:"))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(stored); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zTOC %s not complete in the store after 60 s", dg)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err := os.ReadFile(stored)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != dg {
		t.Errorf("stored zTOC %s does not match its digest", dg)
	}
}

// sampleTarFiles returns every nth entry of a tar that is a regular file,
// as "/name" in tar order and by name with the sha256 of its content.
func sampleTarFiles(t *testing.T, data []byte, n int) (map[string]string, []string) {
	t.Helper()
	want := map[string]string{}
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for i := 0; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return want, names
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg || i%n != 0 {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		want["/"+h.Name] = hex.EncodeToString(sum[:])
		names = append(names, "/"+h.Name)
	}
}
