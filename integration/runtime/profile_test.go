//go:build integration

package runtime

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/profile"
)

// TestProfileExport runs a two-layer image (busybox; a data layer with a
// small file, a 2 MiB file and a file nobody reads) lazily with containerd
// 2.4.2, the container reading the small file whole and 8 KiB in the middle
// of the big one, then exports the start-up profile socikit-snapshotter
// recorded with `socikit profile export`: busybox, then the two files, in
// that order, with ranges covering what was read and nothing of the big
// file before its middle, not the unread file, source snapshotter and the
// image's platform. With [profile] record = false the export fails with
// the reason.
func TestProfileExport(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	socikit := filepath.Join(repoRoot, "bin/socikit")
	requireExecutable(t, socikit)

	rnd := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	const bigSize = 2 << 20
	config := []byte(strings.Repeat("profile=on\n", 30))
	data := makeTar(t, []tarFile{
		{h: tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "data/app/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "data/app/config.txt", Typeflag: tar.TypeReg, Mode: 0o644}, body: config},
		{h: tar.Header{Name: "data/app/big.bin", Typeflag: tar.TypeReg, Mode: 0o644}, body: random(bigSize)},
		{h: tar.Header{Name: "data/app/unread.bin", Typeflag: tar.TypeReg, Mode: 0o644}, body: random(1 << 20)},
	})
	reg := newRegistry(t)
	plain, _ := reg.pushImage(t, "socikit/profile", busyboxTar(t), data)
	ref := convertWith(t, plain, plain+"-soci", "-span-size", "65536")

	export := func(d *daemons, args ...string) ([]byte, error) {
		return exec.Command(socikit, append([]string{"profile", "export", "--address", d.metrics}, args...)...).CombinedOutput()
	}

	t.Run("recorded", func(t *testing.T) {
		d := startContainerd(t, f)
		d.ctr(t, "-n", "socikit-test", "image", "pull", "--snapshotter", "socikit", "--plain-http", ref)
		if got := d.lazyMounts(t); got != 2 {
			t.Fatalf("%d lazy layer mounts after the pull, want 2", got)
		}
		if out, err := export(d, ref); err == nil || !strings.Contains(string(out), "no start-up profile recorded") {
			t.Errorf("export before any start: %v\n%s", err, out)
		}
		const skip = 256 // 4 KiB blocks: the middle of big.bin
		id := fmt.Sprintf("socikit-profile-%d", time.Now().UnixNano())
		script := fmt.Sprintf("cat /data/app/config.txt >/dev/null && dd if=/data/app/big.bin of=/dev/null bs=4096 skip=%d count=2 2>/dev/null && echo done", skip)
		out := d.ctr(t, "-n", "socikit-test", "run", "--rm", "--snapshotter", "socikit", ref, id, "/bin/busybox", "sh", "-c", script)
		if strings.TrimSpace(out) != "done" {
			t.Fatalf("container printed %q", out)
		}

		file := filepath.Join(t.TempDir(), "profile.json")
		if out, err := export(d, ref, "-o", file); err != nil {
			t.Fatalf("socikit profile export: %v\n%s", err, out)
		} else {
			t.Logf("socikit profile export: %s", bytes.TrimSpace(out))
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		p, err := profile.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("exported profile: %v\n%s", err, b)
		}
		t.Logf("profile: %s", b)
		if p.Source != profile.SourceSnapshotter || p.Platform != "linux/amd64" {
			t.Errorf("source %q platform %q", p.Source, p.Platform)
		}
		paths := p.Paths()
		at := func(name string) int {
			i := slices.Index(paths, name)
			if i < 0 {
				t.Errorf("%s is not in the profile %v", name, paths)
			}
			return i
		}
		bb, cfg, big := at("/bin/busybox"), at("/data/app/config.txt"), at("/data/app/big.bin")
		if t.Failed() {
			return
		}
		if !(bb < cfg && cfg < big) {
			t.Errorf("order %v: want busybox, then config.txt, then big.bin", paths)
		}
		if slices.Contains(paths, "/data/app/unread.bin") {
			t.Errorf("unread.bin is in the profile")
		}
		covers := func(f *profile.File, off, n int64) bool {
			for _, r := range profile.MergeRanges(f.Ranges) {
				if r.Offset <= off && off+n <= r.End() {
					return true
				}
			}
			return false
		}
		if f := p.Lookup("/data/app/config.txt"); !covers(f, 0, int64(len(config))) {
			t.Errorf("config.txt ranges %v do not cover the file (%d bytes)", f.Ranges, len(config))
		}
		fb := p.Lookup("/data/app/big.bin")
		if !covers(fb, skip*4096, 8192) {
			t.Errorf("big.bin ranges %v do not cover [%d,%d)", fb.Ranges, skip*4096, skip*4096+8192)
		}
		for _, r := range fb.Ranges {
			if r.Offset < skip*4096 {
				t.Errorf("big.bin range %v: the container read nothing before %d", r, skip*4096)
			}
		}
		if fbb := p.Lookup("/bin/busybox"); fbb.Bytes() == 0 {
			t.Errorf("busybox: no bytes")
		}
	})

	t.Run("record-off", func(t *testing.T) {
		d := startContainerd(t, f, "[profile]\nrecord = false")
		d.ctr(t, "-n", "socikit-test", "image", "pull", "--snapshotter", "socikit", "--plain-http", ref)
		id := fmt.Sprintf("socikit-profile-%d", time.Now().UnixNano())
		if out := d.ctr(t, "-n", "socikit-test", "run", "--rm", "--snapshotter", "socikit", ref, id, "/bin/busybox", "echo", "done"); strings.TrimSpace(out) != "done" {
			t.Fatalf("container printed %q", out)
		}
		out, err := export(d, ref)
		if err == nil || !strings.Contains(string(out), "record = false") {
			t.Errorf("export with recording off: %v\n%s", err, out)
		}
	})
}
