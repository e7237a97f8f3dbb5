//go:build integration

package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/ztoc"
)

// TestUnindexedBase pulls an image whose base layer has no zTOC (Debian's
// static busybox, under `socikit convert`'s default --min-layer-size of 10
// MiB, as alpine or distroless bases are), a large indexed layer above it
// (~64 MB of the Go installation, 4 MiB spans) and a small unindexed layer
// on top that deletes a file of the big one and makes one of its
// directories opaque. containerd's unpacker fetches every layer above the
// first one it unpacks itself (core/unpack, startFetch), so with the base
// layer left to containerd the big layer is downloaded whole at pull time.
// With [lazy] unpack_unindexed (the default) socikit-snapshotter fetches and
// unpacks the two small layers itself and containerd fetches no layer:
//   - the big layer is mounted lazily and `busybox echo ready` runs having
//     fetched nothing of it, reading one of its files fetches about that
//     file's span, and each small layer is fetched once, by the snapshotter;
//   - the image's tree is identical to containerd's overlayfs unpack of the
//     plain image (walkTree: names, modes, owners, mtimes, contents,
//     xattrs; the deleted file and the hidden directory's files absent);
//
// on containerd 2.4.2 pulled by `ctr image pull` (the transfer service) and
// by `socikit pull`, and on Debian's 1.6 by `socikit pull`. The unpack-off
// cases (unpack_unindexed = false) log what containerd fetches otherwise,
// the figures of docs/snapshotter.md.
func TestUnindexedBase(t *testing.T) {
	requireRoot(t)
	reg := newRegistry(t)
	data := goTreeTar(t, 64<<20)
	top, gone, opaque := topLayer(t, data)
	plain, img := reg.pushImage(t, "socikit/unindexed", busyboxTar(t), data, top)
	ref := convertWith(t, plain, plain+"-soci", "-min-layer-size", strconv.Itoa(10<<20), "-span-size", strconv.Itoa(4<<20))
	layers := sociLayers(t, ref)
	if len(layers) != 3 || layers[0].z != nil || layers[1].z == nil || layers[2].z != nil {
		t.Fatalf("converted image: %d layers, want 3 with only the middle one indexed", len(layers))
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	chain := cf.RootFS.DiffIDs[0].String()
	for _, d := range cf.RootFS.DiffIDs[1:] {
		chain = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(chain+" "+d.String())))
	}
	big := layers[1]
	var imageSize int64
	for _, l := range layers {
		imageSize += l.desc.Size
	}
	ix, err := ztoc.NewIndex(big.z)
	if err != nil {
		t.Fatal(err)
	}
	spans := ix.Spans()
	mid := spans[len(spans)/2]
	var midFile string
	var midSize int64
	for _, e := range big.z.Files {
		name := strings.TrimPrefix(e.Name, "./")
		if e.Type == ztoc.TypeReg && e.UncompressedSize > 0 && e.UncompressedOffset >= mid.UncompressedStart &&
			e.UncompressedOffset+e.UncompressedSize <= mid.UncompressedEnd && name != gone && !strings.HasPrefix(name, opaque+"/") {
			midFile, midSize = "/"+name, e.UncompressedSize
			break
		}
	}
	if midFile == "" {
		t.Fatalf("no file lies inside span %d", len(spans)/2)
	}
	t.Logf("image %d bytes compressed: busybox %d (no zTOC), data %d (%d spans), top %d (no zTOC); zTOC %d bytes; top layer deletes /%s and hides /%s",
		imageSize, layers[0].desc.Size, big.desc.Size, len(spans), layers[2].desc.Size, big.ztocSize, gone, opaque)

	ns := "socikit-test"
	for _, c := range []struct {
		name   string
		f      flavour
		ctr    bool // pulled by ctr image pull, else socikit pull
		unpack bool
	}{
		{"containerd-2.4/ctr-pull/unpack-off", flavours[0], true, false},
		{"containerd-2.4/ctr-pull", flavours[0], true, true},
		{"containerd-2.4/socikit-pull", flavours[0], false, true},
		{"containerd-1.6/socikit-pull/unpack-off", flavours[1], false, false},
		{"containerd-1.6/socikit-pull", flavours[1], false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			requireExecutable(t, c.f.ctr)
			var extra []string
			if !c.unpack {
				extra = append(extra, "[lazy]\nunpack_unindexed = false\n")
			}
			d := startContainerd(t, c.f, extra...)
			served0, agents0 := reg.ServedByDigest(), reg.ServedByAgent()
			start := time.Now()
			if c.ctr {
				d.ctr(t, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", ref)
			} else {
				out, err := exec.Command(filepath.Join(repoRoot, "bin/socikit"), "pull", "--address", d.address,
					"--namespace", ns, "--plain-http", ref).CombinedOutput()
				if err != nil {
					t.Fatalf("socikit pull: %v\n%s", err, out)
				}
			}
			pullTime := time.Since(start)
			if got := d.lazyMounts(t); got != 1 {
				t.Fatalf("%d lazy layer mounts after the pull, want 1 (the data layer)", got)
			}
			afterPull := reg.ServedByDigest()
			id := fmt.Sprintf("socikit-unindexed-%d", time.Now().UnixNano())
			out, err := d.tryCtr("-n", ns, "run", "--rm", "--snapshotter", "socikit", ref, id, "/bin/busybox", "echo", "ready")
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(out) != "ready" {
				t.Fatalf("container printed %q, want ready", out)
			}
			runTime := time.Since(start) - pullTime
			served := reg.ServedByDigest()
			var total int64
			for dg, n := range served {
				total += n - served0[dg]
			}
			t.Logf("pull %v, run %v: registry served %d blob bytes (%.1f%% of the %d-byte image), %d during the pull",
				pullTime.Round(time.Millisecond), runTime.Round(time.Millisecond), total, 100*float64(total)/float64(imageSize), imageSize,
				sumServed(afterPull, served0))
			for i, l := range layers {
				dg := l.desc.Digest.String()
				t.Logf("  layer %d (%d bytes): %d served in the pull, %d by the first output", i, l.desc.Size, afterPull[dg]-served0[dg], served[dg]-served0[dg])
			}
			t.Logf("  zTOC: %d; snapshotter socikit_unpacked_bytes_total %s, socikit_fetched_bytes_total %s",
				served[big.ztocDigest]-served0[big.ztocDigest], d.metric(t, "socikit_unpacked_bytes_total"), d.metric(t, "socikit_fetched_bytes_total"))
			for a, n := range reg.ServedByAgent() {
				if n > agents0[a] {
					t.Logf("  to %q: %d", a, n-agents0[a])
				}
			}
			bigServed := served[big.desc.Digest.String()] - served0[big.desc.Digest.String()]
			if !c.unpack {
				if v := d.metric(t, "socikit_unpacked_layers_total"); v != "0" {
					t.Errorf("unpack_unindexed = false, yet the snapshotter unpacked %s layers", v)
				}
				t.Logf("unpack off: containerd fetched %d of the data layer's %d bytes (%.0f%%)", bigServed, big.desc.Size, 100*float64(bigServed)/float64(big.desc.Size))
				return
			}
			if v := d.metric(t, "socikit_unpacked_layers_total"); v != "2" {
				t.Errorf("socikit_unpacked_layers_total = %s, want 2 (busybox and the top layer)", v)
			}
			for _, i := range []int{0, 2} {
				dg := layers[i].desc.Digest.String()
				if got := served[dg] - served0[dg]; got != layers[i].desc.Size {
					t.Errorf("unindexed layer %d (%d bytes): %d bytes served, want it once", i, layers[i].desc.Size, got)
				}
			}
			if bigServed > big.desc.Size/10 {
				t.Errorf("the indexed layer (%d bytes) was served %d bytes before the first output: fetched whole?", big.desc.Size, bigServed)
			}

			// One file of the data layer: about its span.
			out, err = d.tryCtr("-n", ns, "run", "--rm", "--snapshotter", "socikit", ref, id+"-wc", "/bin/busybox", "wc", "-c", midFile)
			if err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(out); len(f) == 0 || f[0] != strconv.FormatInt(midSize, 10) {
				t.Fatalf("wc -c %s printed %q, want %d", midFile, out, midSize)
			}
			got := reg.ServedOf(big.desc.Digest.String()) - served[big.desc.Digest.String()]
			t.Logf("reading %s (%d bytes) fetched %d bytes of the data layer (its span: %d)", midFile, midSize, got, mid.CompressedEnd-mid.CompressedStart)
			if max := 2*(mid.CompressedEnd-mid.CompressedStart) + 64<<10; got > max {
				t.Errorf("reading one file fetched %d bytes of the data layer, want at most %d", got, max)
			}

			// The same tree as containerd's overlayfs unpack of the plain
			// image.
			before := reg.ServedByDigest()
			d.ctr(t, "-n", ns, "image", "pull", "--plain-http", plain)
			t.Logf("plain overlayfs pull of %s: registry served %d blob bytes", plain, sumServed(reg.ServedByDigest(), before))
			compareViews(t, d, ns, chain, gone, opaque)
		})
	}
}

func sumServed(now, before map[string]int64) int64 {
	var n int64
	for dg, v := range now {
		n += v - before[dg]
	}
	return n
}

// topLayer is a small layer over the data layer (goTreeTar): it deletes
// one file of it (gone), makes one of its directories opaque with a new
// file in it (opaque), and adds /etc/socikit-top. Every directory it
// touches has a header of its own, with the data layer's attributes, so
// that unpacks at different times give the same mtimes.
func topLayer(t *testing.T, data []byte) (layer []byte, gone, opaque string) {
	t.Helper()
	var files []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Typeflag == tar.TypeReg {
			files = append(files, h.Name)
		}
	}
	if len(files) < 100 {
		t.Fatalf("data layer has %d files", len(files))
	}
	gone = files[10]
	for _, f := range files[len(files)/3:] {
		dir := path.Dir(f)
		if !strings.HasPrefix(path.Dir(gone)+"/", dir+"/") && !strings.HasPrefix(dir+"/", path.Dir(gone)+"/") && strings.Count(dir, "/") >= 3 {
			opaque = dir
			break
		}
	}
	if opaque == "" {
		t.Fatal("no directory to make opaque")
	}
	dirs := map[string]bool{"etc": true}
	for _, p := range []string{path.Dir(gone), opaque} {
		for d := p; d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var entries []tarFile
	for d := range dirs {
		entries = append(entries, tarFile{h: tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}})
	}
	entries = append(entries,
		tarFile{h: tar.Header{Name: path.Join(path.Dir(gone), ".wh."+path.Base(gone)), Typeflag: tar.TypeReg, Mode: 0o644}},
		tarFile{h: tar.Header{Name: opaque + "/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o644}},
		tarFile{h: tar.Header{Name: opaque + "/new-in-opaque", Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte("new\n")},
		tarFile{h: tar.Header{Name: "etc/socikit-top", Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte("top\n")},
	)
	sortTarFiles(entries) // each directory before what is in it
	return makeTar(t, entries), gone, opaque
}

// compareViews mounts read-only views of chain from containerd's overlayfs
// snapshotter and from socikit and requires the two trees to be the same
// (the root's mtime aside: containerd leaves it at unpack time), without
// gone and with nothing of opaque but its new file.
func compareViews(t *testing.T, d *daemons, ns, chain, gone, opaque string) {
	t.Helper()
	client, err := containerd.New(d.address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 5*time.Minute)
	defer cancel()
	// A lease keeps containerd's collector off the views (diff_test.go).
	ctx, releaseLease, err := client.WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseLease(ctx) //nolint:errcheck
	view := func(snapshotter string) string {
		key := "unindexed-view-" + snapshotter
		target := t.TempDir()
		sn := client.SnapshotService(snapshotter)
		mounts, err := sn.View(ctx, key, chain)
		if err != nil {
			t.Fatalf("view of %s (%s): %v", chain, snapshotter, err)
		}
		if err := mount.All(mounts, target); err != nil {
			t.Fatalf("mount %s view at %s: %v (%+v)", snapshotter, target, err, mounts)
		}
		return target
	}
	unmount := func(target string) {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	}
	wantRoot := view("overlayfs")
	defer unmount(wantRoot)
	gotRoot := view("socikit")
	defer unmount(gotRoot)
	want, got := walkTree(t, wantRoot), walkTree(t, gotRoot)
	if _, ok := want[gone]; ok {
		t.Errorf("overlayfs shows %s, which the top layer deletes", gone)
	}
	if _, ok := want[opaque+"/new-in-opaque"]; !ok {
		t.Errorf("overlayfs lacks %s/new-in-opaque", opaque)
	}
	for p := range want {
		if strings.HasPrefix(p, opaque+"/") && p != opaque+"/new-in-opaque" {
			t.Errorf("overlayfs shows %s under the opaque directory", p)
		}
	}
	paths := map[string]bool{}
	for p := range want {
		paths[p] = true
	}
	for p := range got {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	diffs := 0
	for _, p := range sorted {
		w, g := want[p], got[p]
		if p == "." {
			w, g = dropMtime(w), dropMtime(g)
		}
		if w != g {
			if diffs++; diffs <= 20 {
				t.Errorf("%q:\n  overlayfs: %s\n  socikit:   %s", p, w, g)
			}
		}
	}
	t.Logf("compared %d paths (overlayfs unpack vs socikit): %d differ", len(sorted), diffs)
}
