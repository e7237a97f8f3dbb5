//go:build integration

package runtime

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentStarts starts containers at the same time, lazily,
// through one containerd 2.4.2 + socikit-snapshotter pair, from 5 SOCI
// images that share layers: all five have the busybox layer, three also a
// 12 MB layer of Go sources and tools, and each has a layer of its own.
// Every start must succeed and checksum every file of its image right;
// then, once the images are removed (containers were run with --rm), the
// daemon must have unmounted every layer and be back near the goroutine
// and open fd counts it had before (no leak), the span cache freed of
// nothing it must keep. CI runs 10 starts; SOCIKIT_CONCURRENCY_LONG=1 runs
// TestConcurrentStartsLong, 50 (docs/reliability.md, "Concurrency").
func TestConcurrentStarts(t *testing.T) {
	testConcurrentStarts(t, envOr(t, "SOCIKIT_CONCURRENCY_STARTS", 10))
}

// TestConcurrentStartsLong is TestConcurrentStarts with 50 starts.
func TestConcurrentStartsLong(t *testing.T) {
	if os.Getenv("SOCIKIT_CONCURRENCY_LONG") == "" {
		t.Skip("set SOCIKIT_CONCURRENCY_LONG=1 to run 50 concurrent starts")
	}
	testConcurrentStarts(t, envOr(t, "SOCIKIT_CONCURRENCY_STARTS", 50))
}

// uniqueTar is a layer of about size bytes of text files under
// /data/<name>, different for each name.
func uniqueTar(t testing.TB, name string, size int) []byte {
	t.Helper()
	files := []tarFile{{h: tar.Header{Name: "data/" + name + "/", Typeflag: tar.TypeDir, Mode: 0o755}}}
	total := 0
	for i := 0; total < size; i++ {
		var b strings.Builder
		n := 1<<10 + (i*7919)%(48<<10)
		for j := 0; b.Len() < n; j++ {
			fmt.Fprintf(&b, "%s: line %d of file %d, %x\n", name, j, i, (i+1)*(j+7)*2654435761)
		}
		files = append(files, tarFile{h: tar.Header{Name: fmt.Sprintf("data/%s/f%04d.txt", name, i), Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte(b.String())})
		total += b.Len()
	}
	return makeTar(t, files)
}

// daemonCounts are the snapshotter's goroutines (go_goroutines of its
// /metrics) and open fds (/proc/PID/fd), with what the fds point to.
type daemonCounts struct {
	goroutines, fds int
	targets         map[string]int
}

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// pipes returns the pipe fds of c: go-fuse keeps the pipe pairs of its
// splice reads in a pool for reuse (splice.ClearSplicePool), which grows
// to the most reads ever in flight at once.
func (c daemonCounts) pipes() int { return c.targets["pipe:"] }

// newFds returns the fd targets c has more of than base.
func (c daemonCounts) newFds(base daemonCounts) []string {
	var out []string
	for tgt, n := range c.targets {
		if n > base.targets[tgt] {
			out = append(out, fmt.Sprintf("%s ×%d", tgt, n-base.targets[tgt]))
		}
	}
	slices.Sort(out)
	return out
}

func (d *daemons) counts(t testing.TB) daemonCounts {
	t.Helper()
	c, _, err := d.tryCounts()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryCounts returns the counts and the daemon's resident memory
// (process_resident_memory_bytes).
func (d *daemons) tryCounts() (daemonCounts, float64, error) {
	b, err := os.ReadFile(filepath.Join(d.dir, "socikit.pid"))
	if err != nil {
		return daemonCounts{}, 0, err
	}
	fdDir := fmt.Sprintf("/proc/%s/fd", strings.TrimSpace(string(b)))
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return daemonCounts{}, 0, err
	}
	targets := map[string]int{}
	for _, fd := range fds {
		tgt, _ := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if i := strings.IndexByte(tgt, '['); i > 0 { // socket:[123] → socket
			tgt = tgt[:i]
		}
		targets[tgt]++
	}
	// No keep-alive: an idle connection of ours would count as the
	// daemon's socket.
	resp, err := noKeepAlive.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		return daemonCounts{}, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return daemonCounts{}, 0, err
	}
	var g, rss float64 = -1, 0
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			g, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(l, "process_resident_memory_bytes "); ok {
			rss, _ = strconv.ParseFloat(v, 64)
		}
	}
	if g < 0 {
		return daemonCounts{}, 0, errors.New("no go_goroutines in the snapshotter's /metrics")
	}
	return daemonCounts{goroutines: int(g), fds: len(fds), targets: targets}, rss, nil
}

func testConcurrentStarts(t *testing.T, starts int) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))

	reg := newRegistry(t)
	t0 := time.Now()
	bb := busyboxTar(t)
	common := goTreeTar(t, 12<<20)
	type image struct {
		ref  string
		want map[string]string
	}
	var images []image
	layerUse := map[string]int{} // layer digest -> images using it
	for i := range 5 {
		layers := [][]byte{bb}
		if i < 3 {
			layers = append(layers, common)
		}
		layers = append(layers, uniqueTar(t, fmt.Sprintf("img%d", i), 3<<20))
		plain, _ := reg.pushImage(t, fmt.Sprintf("socikit/conc%d", i), layers...)
		ref := convertWith(t, plain, plain+"-soci", "-span-size", strconv.Itoa(256<<10))
		for _, l := range sociLayers(t, ref) {
			if l.z == nil {
				t.Fatalf("%s: layer %s has no zTOC", ref, l.desc.Digest)
			}
			layerUse[l.desc.Digest.String()]++
		}
		images = append(images, image{ref: ref, want: fileSums(t, layers...)})
	}
	shared := 0
	for _, n := range layerUse {
		if n > 1 {
			shared++
		}
	}
	if shared != 2 {
		t.Fatalf("%d layers shared between the images, want 2 (busybox, Go tree): %v", shared, layerUse)
	}
	t.Logf("5 images made in %v: %d distinct layers, 2 shared", time.Since(t0).Round(time.Millisecond), len(layerUse))

	d := startContainerd(t, f)
	const ns = "socikit-conc"
	script := "/bin/busybox find /data -type f -print0 | /bin/busybox xargs -0 /bin/busybox sha256sum && " +
		"/bin/busybox sha256sum /bin/busybox /etc/socikit-test"
	run := func(img image, id string) (string, error) {
		return d.ctrFor(10*time.Minute, "-n", ns, "run", "--rm", "--snapshotter", "socikit", img.ref, id, "/bin/busybox", "sh", "-c", script)
	}
	removeImages := func(imgs ...image) {
		t.Helper()
		args := []string{"-n", ns, "image", "rm", "--sync"}
		for _, img := range imgs {
			args = append(args, img.ref)
		}
		if _, err := d.ctrFor(5*time.Minute, args...); err != nil {
			t.Fatal(err)
		}
	}
	// settle waits until no layer is mounted and the daemon's counts are
	// within bounds, closing the registry's idle connections (the
	// daemon's HTTP client keeps them, with their goroutines and fds,
	// for reuse), and returns the counts.
	settle := func(within func(daemonCounts) bool) (daemonCounts, bool) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			reg.srv.CloseClientConnections()
			c := d.counts(t)
			mounts := d.lazyMounts(t)
			ok := mounts == 0 && (within == nil || within(c))
			if ok || time.Now().After(deadline) {
				if mounts != 0 {
					t.Errorf("%d lazy layers still mounted after the images were removed", mounts)
				}
				return c, ok
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Warm-up: one start and its clean-up, so that the baseline has the
	// connections and goroutines any daemon that served a start keeps
	// (containerd's gRPC connection, caches of metadata).
	if _, err := d.ctrFor(5*time.Minute, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", images[4].ref); err != nil {
		t.Fatal(err)
	}
	if _, err := run(images[4], fmt.Sprintf("socikit-conc-warm-%d", time.Now().UnixNano())); err != nil {
		t.Fatal(err)
	}
	removeImages(images[4])
	base, _ := settle(nil)
	t.Logf("baseline after a warm-up start: %d goroutines, %d open fds %v", base.goroutines, base.fds, base.targets)

	// The five pulls at once, then every start at once.
	t1 := time.Now()
	var wg sync.WaitGroup
	pullErrs := make([]error, len(images))
	for i, img := range images {
		wg.Go(func() {
			_, pullErrs[i] = d.ctrFor(5*time.Minute, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", img.ref)
		})
	}
	wg.Wait()
	for _, err := range pullErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	mounted := d.lazyMounts(t)
	if mounted != len(layerUse) {
		t.Errorf("%d lazy layer mounts after the pulls, want %d (one per distinct layer)", mounted, len(layerUse))
	}
	t.Logf("5 concurrent pulls in %v, %d layers mounted lazily", time.Since(t1).Round(time.Millisecond), mounted)

	type result struct {
		img  int
		out  string
		err  error
		took time.Duration
	}
	results := make([]result, starts)
	gate := make(chan struct{})
	t2 := time.Now()
	for i := range starts {
		wg.Go(func() {
			<-gate
			start := time.Now()
			out, err := run(images[i%len(images)], fmt.Sprintf("socikit-conc-%d-%d", i, time.Now().UnixNano()))
			results[i] = result{img: i % len(images), out: out, err: err, took: time.Since(start)}
		})
	}
	// While they run: the daemon's peak counts and memory.
	var peak daemonCounts
	var peakRSS float64
	done := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			c, rss, err := d.tryCounts()
			if err != nil {
				continue
			}
			peak.goroutines, peak.fds = max(peak.goroutines, c.goroutines), max(peak.fds, c.fds)
			peakRSS = max(peakRSS, rss)
		}
	})
	close(gate)
	wg.Wait()
	close(done)
	sampler.Wait()
	wall := time.Since(t2)

	var times []time.Duration
	for i, r := range results {
		t.Run(fmt.Sprintf("start-%02d", i), func(t *testing.T) {
			if r.err != nil {
				t.Fatalf("image %d: container failed: %v", r.img, firstLines(r.err.Error(), 8))
			}
			checkSums(t, r.out, images[r.img].want)
			times = append(times, r.took)
		})
	}
	if len(times) != starts {
		t.Errorf("%d of %d starts succeeded with every file right", len(times), starts)
	}

	removeImages(images...)
	// Pipes are go-fuse's splice pool (daemonCounts.pipes), bounded by the
	// reads in flight at once: counted apart, with a bound.
	after, ok := settle(func(c daemonCounts) bool {
		return c.goroutines <= base.goroutines+5 && c.fds-c.pipes() <= base.fds-base.pipes()+2 &&
			c.pipes() <= base.pipes()+2*starts
	})
	if !ok {
		t.Errorf("after the starts and the images' removal: %d goroutines, %d open fds (%d pipes); baseline %d, %d (%d pipes) (leak); new fds: %q",
			after.goroutines, after.fds, after.pipes(), base.goroutines, base.fds, base.pipes(), after.newFds(base))
	}
	if len(times) > 0 {
		slices.Sort(times)
		t.Logf("SUMMARY %d/%d concurrent starts succeeded, every file right; all done in %v; start time median %v max %v; "+
			"daemon peak %d goroutines, %d fds, %.0f MB RSS; after removal %d goroutines, %d fds, %d of them splice pipes (baseline %d, %d, %d)",
			len(times), starts, wall.Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond),
			times[len(times)-1].Round(time.Millisecond), peak.goroutines, peak.fds, peakRSS/1e6,
			after.goroutines, after.fds, after.pipes(), base.goroutines, base.fds, base.pipes())
	}
}
