//go:build integration

package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMemoryBounds mounts 10 images lazily in one socikit-snapshotter
// (each a busybox layer and a data layer of its own of many small files),
// starts a container of each that checksums every file, and measures the
// daemon's resident memory and Go heap (go_memstats_heap_alloc_bytes:
// live objects and garbage not yet collected): idle, with the 10 images
// mounted, after every file was read, and after the images' removal.
// The goal (docs/reliability.md, "Memory and disk bounds") is at most
// 200 MiB resident with the 10 images mounted and read. CI runs it with
// 10 images of 8 MB; SOCIKIT_BOUNDS_DATA_MB sets the data layer's size
// (the figures in the docs: 40).
func TestMemoryBounds(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	dataMB := envOr(t, "SOCIKIT_BOUNDS_DATA_MB", 8)
	const images = 10

	reg := newRegistry(t)
	bb := busyboxTar(t)
	type image struct {
		ref  string
		want map[string]string
	}
	var imgs []image
	files := 0
	for i := range images {
		data := uniqueTar(t, fmt.Sprintf("mem%d", i), dataMB<<20)
		plain, _ := reg.pushImage(t, fmt.Sprintf("socikit/mem%d", i), bb, data)
		ref := convertWith(t, plain, plain+"-soci", "-span-size", strconv.Itoa(256<<10))
		want := fileSums(t, bb, data)
		files += len(want)
		imgs = append(imgs, image{ref: ref, want: want})
	}
	d := startContainerd(t, f)
	const ns = "socikit-mem"
	mem := func() (rss, heap float64) {
		m := d.metricsMap(t)
		return m["process_resident_memory_bytes"], m["go_memstats_heap_alloc_bytes"]
	}
	rss0, heap0 := mem()
	for _, img := range imgs {
		if _, err := d.ctrFor(5*time.Minute, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", img.ref); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.lazyMounts(t); got != images+1 {
		t.Fatalf("%d lazy mounts, want %d (busybox shared)", got, images+1)
	}
	rss1, heap1 := mem()
	script := "/bin/busybox find /data -type f -print0 | /bin/busybox xargs -0 /bin/busybox sha256sum && " +
		"/bin/busybox sha256sum /bin/busybox /etc/socikit-test"
	var rssMax float64
	for i, img := range imgs {
		out, err := d.ctrFor(10*time.Minute, "-n", ns, "run", "--rm", "--snapshotter", "socikit", img.ref,
			fmt.Sprintf("socikit-mem-%d-%d", i, time.Now().UnixNano()), "/bin/busybox", "sh", "-c", script)
		if err != nil {
			t.Fatalf("image %d: %v", i, firstLines(err.Error(), 8))
		}
		checkSums(t, out, img.want)
		r, _ := mem()
		rssMax = max(rssMax, r)
	}
	rss2, heap2 := mem()
	// Idle: what the Go runtime gives back to the kernel (its scavenger
	// returns freed pages within a few minutes; a forced GC runs every 2).
	time.Sleep(15 * time.Second)
	rss3, heap3 := mem()
	args := []string{"-n", ns, "image", "rm", "--sync"}
	for _, img := range imgs {
		args = append(args, img.ref)
	}
	if _, err := d.ctrFor(5*time.Minute, args...); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(d.dir, "socikit", "cache")
	deadline := time.Now().Add(30 * time.Second)
	for d.lazyMounts(t) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	rss4, heap4 := mem()
	left := dirSize(t, cacheDir)
	mb := func(v float64) string { return fmt.Sprintf("%.0f MB", v/1e6) }
	t.Logf("SUMMARY %d images of %d MB data (%d files in all): RSS / Go heap idle %s / %s; 10 mounted %s / %s (%s heap per mounted image); "+
		"after reading every file %s / %s (peak RSS %s); 15 s later %s / %s; after removal %s / %s; span cache left %d bytes",
		images, dataMB, files, mb(rss0), mb(heap0), mb(rss1), mb(heap1), mb((heap1-heap0)/images),
		mb(rss2), mb(heap2), mb(rssMax), mb(rss3), mb(heap3), mb(rss4), mb(heap4), left)
	if limit := 200.0 * (1 << 20); rssMax > limit {
		t.Errorf("peak RSS %s with %d images mounted and read: over the 200 MiB goal", mb(rssMax), images)
	}
	if left > 1<<20 {
		t.Errorf("span cache holds %d bytes after every image was removed", left)
	}
}

// dirSize returns the bytes of the regular files under dir.
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestCacheFull puts the span cache on a 6 MiB tmpfs and starts a
// container that checksums every file of a 16 MB layer: the cache fills
// up, and reads fail (EIO: sha256sum reports them) but no file is read
// wrong; the disk then gets space back (the tmpfs grows) and a second
// container reads every file right, from the same daemon and mounts.
func TestCacheFull(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	reg := newRegistry(t)
	bb := busyboxTar(t)
	data := uniqueTar(t, "full", 16<<20)
	plain, _ := reg.pushImage(t, "socikit/full", bb, data)
	ref := convertWith(t, plain, plain+"-soci", "-span-size", strconv.Itoa(256<<10))
	want := fileSums(t, bb, data)

	d := startContainerd(t, f, "[lazy]\ndisable_passthrough = true")
	cacheDir := filepath.Join(d.dir, "socikit", "cache")
	if err := syscall.Mount("tmpfs", cacheDir, "tmpfs", 0, "size=6m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs on the span cache: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(cacheDir, syscall.MNT_DETACH) })
	const ns = "socikit-full"
	if _, err := d.ctrFor(5*time.Minute, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", ref); err != nil {
		t.Fatal(err)
	}
	if got := d.lazyMounts(t); got != 2 {
		t.Fatalf("%d lazy mounts, want 2", got)
	}
	// sha256sum goes on past a file it cannot read, and exits 1.
	script := "/bin/busybox find /data -type f -print0 | /bin/busybox xargs -0 /bin/busybox sha256sum; " +
		"/bin/busybox sha256sum /bin/busybox /etc/socikit-test; echo done"
	run := func(name string) string {
		out, err := d.ctrFor(10*time.Minute, "-n", ns, "run", "--rm", "--snapshotter", "socikit", ref,
			fmt.Sprintf("socikit-full-%s-%d", name, time.Now().UnixNano()), "/bin/busybox", "sh", "-c", script)
		if err != nil {
			t.Fatalf("container: %v", firstLines(err.Error(), 8))
		}
		return out
	}
	out := run("full")
	right, wrong := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok {
			continue
		}
		if want[name] == sum {
			right++
		} else {
			wrong++
			t.Errorf("%s read wrong with the cache full", name)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "done") {
		t.Fatalf("container did not finish: %s", tail([]byte(out), 500))
	}
	failed := len(want) - right - wrong
	if failed == 0 {
		t.Fatalf("every file read with the span cache on a 6 MiB tmpfs: the cache did not fill up")
	}
	m := d.metricsMap(t)
	t.Logf("cache full: %d files right, %d failed (EIO), %d wrong, of %d; fetch errors %v", right, failed, wrong, len(want), m["socikit_fetch_errors_total"])

	// Space returns.
	if err := syscall.Mount("tmpfs", cacheDir, "tmpfs", syscall.MS_REMOUNT, "size=256m,mode=0700"); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	out = run("space")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[len(lines)-1] != "done" {
		t.Fatalf("container did not finish: %s", tail([]byte(out), 500))
	}
	checkSums(t, strings.Join(lines[:len(lines)-1], "\n"), want)
	t.Logf("SUMMARY cache full: %d of %d files failed with EIO, %d wrong; after space returned: every file right; span cache %d bytes",
		failed, len(want), wrong, dirSize(t, cacheDir))
}

// TestCacheLimitMounted gives the span cache a size limit of a quarter
// of an image's data layer and starts a container that checksums every
// file twice (the second pass opens files through passthrough where all
// their spans are still cached), with a background fetch on: the layer
// is mounted the whole time, so the cache can keep within its limit only
// by evicting the mounted layer's spans and content files. Every file
// must read right both times; the span cache, polled during the run
// (named files, and files evicted but still held open by the daemon),
// must stay within the limit plus the spans reads in flight pin (at most
// 6 per FUSE read of 1 MiB over spans of 256 KiB), a content file being
// made (a quarter of the limit) and the span just written. After the
// image's removal and containerd's garbage collection, the cache and the
// daemon's store of zTOCs, prefetch lists and discovery records are
// empty.
func TestCacheLimitMounted(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	const (
		dataSize = 24 << 20
		limit    = dataSize / 4
		spanSize = 256 << 10
	)
	reg := newRegistry(t)
	bb := busyboxTar(t)
	data := uniqueTar(t, "limit", dataSize)
	plain, _ := reg.pushImage(t, "socikit/limit", bb, data)
	ref := convertWith(t, plain, plain+"-soci", "-span-size", strconv.Itoa(spanSize))
	want := fileSums(t, bb, data)

	d := startContainerd(t, f, fmt.Sprintf("[lazy]\ncache_max_size = %d\npassthrough_min_size = 16384\nbackground_rate = 50000000\nbackground_delay = \"0s\"", limit))
	root := filepath.Join(d.dir, "socikit")
	cacheDir := filepath.Join(root, "cache")
	const ns = "socikit-limit"
	if _, err := d.ctrFor(5*time.Minute, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", ref); err != nil {
		t.Fatal(err)
	}
	if got := d.lazyMounts(t); got != 2 {
		t.Fatalf("%d lazy mounts, want 2", got)
	}
	if n := len(storeFiles(t, root)); n == 0 {
		t.Fatal("the daemon's store holds nothing after a lazy pull")
	}

	// Poll the cache's bytes on disk while the container reads.
	pid := d.pid(t, "socikit")
	stop := make(chan struct{})
	done := make(chan struct{})
	var maxNamed, maxHeld, polls int64
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			named := dirSize(t, cacheDir)
			held := heldDeleted(pid, cacheDir)
			maxNamed, maxHeld = max(maxNamed, named), max(maxHeld, named+held)
			polls++
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	script := "for pass in 1 2; do /bin/busybox find /data -type f -print0 | /bin/busybox xargs -0 /bin/busybox sha256sum || exit 1; done; " +
		"/bin/busybox sha256sum /bin/busybox /etc/socikit-test"
	out, err := d.ctrFor(10*time.Minute, "-n", ns, "run", "--rm", "--snapshotter", "socikit", ref,
		fmt.Sprintf("socikit-limit-%d", time.Now().UnixNano()), "/bin/busybox", "sh", "-c", script)
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("container: %v", firstLines(err.Error(), 8))
	}
	// Both passes: every line must be right, and every file listed.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok || want[name] != sum {
			t.Fatalf("read wrong with the cache limited: %q", l)
		}
	}
	if n := len(want) - 2; len(lines) != 2*n+2 {
		t.Fatalf("%d lines of sha256sum, want %d (every data file twice, busybox, the test file)", len(lines), 2*n+2)
	}
	checkSums(t, out, want)
	m := d.metricsMap(t)
	evicted := m["socikit_cache_evicted_bytes_total"]
	bound := int64(limit + limit/4 + (2*6+1)*(spanSize+8))
	t.Logf("cache limit %d bytes, data layer %d: max on disk %d named, %d with evicted files still open (%d polls); evicted %.0f bytes of mounted layers; fetched %.0f spans, %.0f bytes; bound %d",
		limit, dataSize, maxNamed, maxHeld, polls, evicted, m["socikit_fetched_spans_total"], m["socikit_fetched_bytes_total"], bound)
	if evicted == 0 {
		t.Fatal("nothing of the mounted layers evicted: the limit was not reached")
	}
	if maxHeld > bound {
		t.Errorf("the span cache reached %d bytes on disk, over the bound %d", maxHeld, bound)
	}

	if _, err := d.ctrFor(5*time.Minute, "-n", ns, "image", "rm", "--sync", ref); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for (d.lazyMounts(t) > 0 || len(storeFiles(t, root)) > 0) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := storeFiles(t, root); len(left) > 0 {
		t.Errorf("the daemon's store holds %d files after the image's removal: %.5q", len(left), left)
	}
	if left := dirSize(t, cacheDir); left > 0 {
		t.Errorf("span cache holds %d bytes after the image's removal", left)
	}
	t.Logf("SUMMARY cache limit %d MiB, %d MiB data layer read twice: every file right; max on disk %.1f MiB (%.1f MiB with evicted files still open), bound %.1f MiB; after removal: cache and store empty",
		limit>>20, dataSize>>20, float64(maxNamed)/(1<<20), float64(maxHeld)/(1<<20), float64(bound)/(1<<20))
}

// storeFiles returns the files of the daemon's store under root: zTOCs and
// prefetch lists (artifacts/), discovery records (layers/).
func storeFiles(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"artifacts", "layers"} {
		filepath.Walk(filepath.Join(root, sub), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// heldDeleted returns the bytes of the files under dir that process pid
// holds open after they were removed (evicted span and content files
// still read), leaving out the checkpoint windows of mounted zTOCs
// (.windows-*, removed as soon as made, by design).
func heldDeleted(pid int, dir string) int64 {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fds)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		p := filepath.Join(fds, e.Name())
		tgt, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(tgt, dir+"/") || !strings.HasSuffix(tgt, " (deleted)") || strings.Contains(tgt, "/.windows-") {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}
