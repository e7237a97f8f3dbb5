//go:build integration

package runtime

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSocikitPull pulls a `socikit convert`-ed busybox (SOCI v2) with
// `socikit pull` (containerd's client-side pull, through the daemon's API,
// with the remote snapshot labels) into socikit-snapshotter, on Debian's
// containerd 1.6 (whose own ctr pull unpacks without those labels, so
// TestPullRun falls back there) and on 2.4.2, then runs it with that
// containerd's ctr. The layer is mounted lazily, the container prints the
// right thing, and the SOCI index's zTOC is fetched once: the client-side
// pull keeps one manifest of the image index, so containerd does not fetch
// the SOCI index manifest's blobs.
func TestSocikitPull(t *testing.T) {
	requireRoot(t)
	bin := filepath.Join(repoRoot, "bin/socikit")
	requireExecutable(t, bin)
	reg := newRegistry(t)
	plain, _ := reg.pushImage(t, "socikit/pull", busyboxTar(t))
	ref := convert(t, plain, plain+"-soci")
	layers := sociLayers(t, ref)
	if len(layers) != 1 || layers[0].z == nil {
		t.Fatalf("converted image has %d layers (want 1, indexed)", len(layers))
	}
	ix := sociIndexOf(t, ref)
	if len(ix.LazyZtocs) != 1 {
		t.Fatalf("converted image has %d lazy zTOCs, want 1", len(ix.LazyZtocs))
	}
	lazy := ix.LazyZtocs[0].Blob
	for _, f := range flavours {
		t.Run(f.name, func(t *testing.T) {
			requireExecutable(t, f.ctr)
			d := startContainerd(t, f)
			ns := "socikit-test"
			served0, lazy0 := reg.ServedOf(layers[0].ztocDigest), reg.ServedOf(lazy.Digest.String())
			start := time.Now()
			cmd := exec.Command(bin, "pull", "--address", d.address, "--namespace", ns, "--plain-http", ref)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("socikit pull: %v\n%s%s", err, out, stderr.Bytes())
			}
			t.Logf("socikit pull: %v, printed %s; progress:\n%s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)), stderr.Bytes())
			if !strings.HasPrefix(strings.TrimSpace(string(out)), "sha256:") {
				t.Errorf("socikit pull printed %q, want a digest", out)
			}
			// Plain progress lines (stderr is no terminal): the image's
			// manifest, not its lazily mounted layer.
			if !strings.Contains(stderr.String(), "manifest sha256:") || strings.Contains(stderr.String(), "layer "+layers[0].desc.Digest.String()[:19]) {
				t.Errorf("socikit pull's progress lines: %q", stderr.String())
			}
			if got := d.lazyMounts(t); got != 1 {
				t.Fatalf("%d lazy layer mounts after socikit pull, want 1", got)
			}
			// The lazy zTOC is read instead of the zTOC (docs/ztoc.md).
			if got := reg.ServedOf(lazy.Digest.String()) - lazy0; got != lazy.Size {
				t.Errorf("lazy zTOC (%d bytes) served %d bytes during the pull, want it once", lazy.Size, got)
			}
			if got := reg.ServedOf(layers[0].ztocDigest) - served0; got != 0 {
				t.Errorf("zTOC (%d bytes) served %d bytes during the pull, want none (its lazy zTOC is read)", layers[0].ztocSize, got)
			}
			// containerd knows the image under ref and runs it from the
			// remote snapshot.
			if images := d.ctr(t, "-n", ns, "image", "ls", "-q"); !strings.Contains(images, ref) {
				t.Fatalf("ctr image ls does not list %s:\n%s", ref, images)
			}
			id := fmt.Sprintf("socikit-pull-%s-%d", f.name, time.Now().UnixNano())
			out2 := d.ctr(t, "-n", ns, "run", "--rm", "--snapshotter", "socikit", ref, id,
				"/bin/busybox", "sh", "-c", "echo hello from $(busybox cat /etc/socikit-test)")
			if want := "hello from socikit"; strings.TrimSpace(out2) != want {
				t.Fatalf("container printed %q, want %q", out2, want)
			}
			if got := d.lazyMounts(t); got != 1 {
				t.Errorf("%d lazy layer mounts after the run, want 1", got)
			}
			t.Logf("fetched by the snapshotter before and during the run: %s bytes of spans", d.metric(t, "socikit_fetched_bytes_total"))
			d.ctr(t, "-n", ns, "image", "rm", "--sync", ref)
		})
	}
}
