//go:build integration

package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/ztoc"
)

// TestUpstreamIndexed runs, lazily through socikit-snapshotter on
// containerd 2.4.2, an image whose zTOCs were built and marshalled by
// upstream soci-snapshotter v0.16.1 (integration/internal/upstreamindex,
// cgo zlib; the SOCI v2 index and binding are socikit's, in upstream's
// layout).
func TestUpstreamIndexed(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	bin := filepath.Join(t.TempDir(), "upstreamindex")
	start := time.Now()
	build := exec.Command(mustLookPath(t, "go"), "build", "-o", bin, "./internal/upstreamindex")
	build.Dir = filepath.Join(repoRoot, "integration")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build upstreamindex: %v\n%s", err, out)
	}
	t.Logf("built upstreamindex in %v", time.Since(start).Round(time.Millisecond))

	reg := newRegistry(t)
	plain, _ := reg.pushImage(t, "socikit/upstream", busyboxTar(t), goTreeTar(t, 16<<20))
	ref := plain + "-upstream"
	start = time.Now()
	if out, err := exec.Command(bin, "-plain-http", "-min-layer-size", "0", "-span-size", strconv.Itoa(1<<20), plain, ref).CombinedOutput(); err != nil {
		t.Fatalf("upstreamindex: %v\n%s", err, out)
	}
	t.Logf("indexed with upstream's builder in %v", time.Since(start).Round(time.Millisecond))
	layers := sociLayers(t, ref)
	if len(layers) != 2 || layers[0].z == nil || layers[1].z == nil {
		t.Fatalf("upstream-indexed image has %d layers (want 2, both indexed)", len(layers))
	}
	data := layers[1]
	if data.z.BuildToolIdentifier != "AWS SOCI CLI v0.2" {
		t.Errorf("zTOC build tool %q, want upstream's", data.z.BuildToolIdentifier)
	}
	// A file in the middle of the data layer.
	var name string
	var size int64
	for _, e := range data.z.Files[len(data.z.Files)/2:] {
		if e.Type == ztoc.TypeReg && e.UncompressedSize > 0 {
			name, size = "/"+e.Name, e.UncompressedSize
			break
		}
	}

	d := startContainerd(t, f)
	all0, _ := reg.Served("")
	d.ctr(t, "-n", "socikit-test", "image", "pull", "--snapshotter", "socikit", "--plain-http", ref)
	if got := d.lazyMounts(t); got != 2 {
		t.Fatalf("%d lazy layer mounts after the pull, want 2", got)
	}
	id := fmt.Sprintf("socikit-upstream-%d", time.Now().UnixNano())
	out := d.ctr(t, "-n", "socikit-test", "run", "--rm", "--snapshotter", "socikit", ref, id,
		"/bin/busybox", "sh", "-c", "echo hello from $(busybox cat /etc/socikit-test); busybox wc -c "+name)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "hello from socikit" || !strings.HasPrefix(lines[1], strconv.FormatInt(size, 10)+" ") {
		t.Fatalf("container printed %q, want hello from socikit and %d %s", out, size, name)
	}
	all1, _ := reg.Served("")
	var imageSize int64
	for _, l := range layers {
		imageSize += l.desc.Size
	}
	t.Logf("registry served %d blob bytes of a %d-byte image (%.1f%%)", all1-all0, imageSize, 100*float64(all1-all0)/float64(imageSize))
}
