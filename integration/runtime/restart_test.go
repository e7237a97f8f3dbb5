//go:build integration

package runtime

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// switchGate sits in front of a testRegistry's handler and can take the
// registry down (every connection closed before an answer) and bring it
// back, counting what it refused.
type switchGate struct {
	next    http.Handler
	down    atomic.Bool
	refused atomic.Int64
}

func (g *switchGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.down.Load() {
		g.refused.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	g.next.ServeHTTP(w, r)
}

// restartImage is busybox plus 9 data layers, every layer indexed (64 KiB
// spans): 10 lazy layers. Each data layer i has /data/l<i>/f0 … f3, 96 KiB
// of incompressible bytes each.
type restartImage struct {
	ref    string
	reg    *testRegistry
	gate   *switchGate
	sums   map[string]string // sha256 by absolute path, data files only
	layers int
}

func pushRestartImage(t *testing.T) restartImage {
	t.Helper()
	reg := newRegistry(t)
	g := &switchGate{next: reg.next}
	reg.next = g
	tars := [][]byte{busyboxTar(t)}
	for i := 1; i <= 9; i++ {
		files := []tarFile{{h: tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755}},
			{h: tar.Header{Name: fmt.Sprintf("data/l%d/", i), Typeflag: tar.TypeDir, Mode: 0o755}}}
		for j := range 4 {
			r := rand.New(rand.NewPCG(uint64(i), uint64(j)))
			b := make([]byte, 96<<10)
			for k := range b {
				b[k] = byte(r.Uint32())
			}
			files = append(files, tarFile{h: tar.Header{Name: fmt.Sprintf("data/l%d/f%d", i, j), Typeflag: tar.TypeReg, Mode: 0o644}, body: b})
		}
		tars = append(tars, makeTar(t, files))
	}
	plain, _ := reg.pushImage(t, "socikit/restart", tars...)
	ref := convert(t, plain, plain+"-soci")
	if n := len(sociLayers(t, ref)); n != 10 {
		t.Fatalf("converted image has %d layers, want 10", n)
	}
	return restartImage{ref: ref, reg: reg, gate: g, sums: fileSums(t, tars[1:]...), layers: 10}
}

// files returns the data files named f<j> of every layer, sorted, and
// their sums.
func (im restartImage) files(js ...int) ([]string, map[string]string) {
	var names []string
	want := map[string]string{}
	for p, s := range im.sums {
		for _, j := range js {
			if strings.HasSuffix(p, fmt.Sprintf("/f%d", j)) {
				names = append(names, p)
				want[p] = s
			}
		}
	}
	sort.Strings(names)
	return names, want
}

// restartNS is the namespace the tests pull into: CRI's, so that nothing
// can come from containerd's content store in the namespace a restarted
// daemon would look in by default.
const restartNS = "k8s.io"

func (d *daemons) runSums(t *testing.T, ref string, names []string) (string, error) {
	id := fmt.Sprintf("socikit-restart-%d", time.Now().UnixNano())
	return d.ctrFor(2*time.Minute, append([]string{"-n", restartNS, "run", "--rm", "--snapshotter", "socikit", ref, id,
		"/bin/busybox", "sha256sum"}, names...)...)
}

// killSnapshotter kill -9s socikit-snapshotter and waits until it is gone.
func (d *daemons) killSnapshotter(t *testing.T) {
	t.Helper()
	pid := d.pid(t, "socikit")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

func (d *daemons) pid(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitGone waits until process pid no longer exists (it is a child of
// the shell that started it, reaped by init).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			return // a zombie: dead
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still there 10 s after SIGKILL", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startSnapshotter starts socikit-snapshotter again with the state of the
// one containerd-start.sh started and returns how long it took until its
// socket answered a snapshots API call (a Stat of a name that does not
// exist: any gRPC answer counts).
func (d *daemons) startSnapshotter(t *testing.T) time.Duration {
	t.Helper()
	sock := filepath.Join(d.dir, "socikit.sock")
	logf, err := os.OpenFile(filepath.Join(d.dir, "socikit.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(repoRoot, "bin/socikit-snapshotter"), "--config", filepath.Join(d.dir, "socikit.toml"),
		"--root", filepath.Join(d.dir, "socikit"), "--address", sock, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "socikit.pid"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaped here; containerd-stop.sh stops it
	// Reconnect every few milliseconds: grpc's default backoff (1 s
	// after the first refused dial) would be measured instead of the
	// daemon.
	conn, err := grpc.NewClient("passthrough:///socikit", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 2 * time.Millisecond, Multiplier: 1, MaxDelay: 2 * time.Millisecond},
			MinConnectTimeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := snapshotsapi.NewSnapshotsClient(conn)
	ctx := namespaces.WithNamespace(context.Background(), restartNS)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Stat(cctx, &snapshotsapi.StatSnapshotRequest{Snapshotter: "socikit", Key: "socikit-no-such-snapshot"})
		cancel()
		if err != nil && strings.Contains(err.Error(), "not found") {
			return time.Since(start)
		}
		if time.Since(start) > 3*time.Minute { // long enough to measure a daemon that restores first
			t.Fatalf("socikit-snapshotter does not answer 3 min after its start: %v", err)
		}
		select {
		case err := <-exited:
			t.Fatalf("socikit-snapshotter exited: %v", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// waitLazyMounts waits until n layers are mounted lazily and returns how
// long that took.
func (d *daemons) waitLazyMounts(t *testing.T, n int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := d.lazyMounts(t)
		if got >= n && d.servingMounts(t) >= n {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%d lazy mounts (%d serving) after %v, want %d", got, d.servingMounts(t), within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// servingMounts counts the lazy layer mountpoints that answer statfs.
func (d *daemons) servingMounts(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || !strings.HasPrefix(f[1], filepath.Join(d.dir, "socikit")+"/") || !strings.HasPrefix(f[2], "fuse") {
			continue
		}
		var st syscall.Statfs_t
		if syscall.Statfs(f[1], &st) == nil {
			n++
		}
	}
	return n
}

// reader is a container reading files in a loop, each pass checked against
// the expected sums: DIR/log gets "fail PATH" for each read that failed and
// "ok N" or "bad N" for each pass (bad: some sum differs or is missing).
type reader struct {
	d   *daemons
	id  string
	dir string
}

func (d *daemons) startReader(t *testing.T, ref string, names []string, want map[string]string) *reader {
	t.Helper()
	r := &reader{d: d, id: fmt.Sprintf("socikit-reader-%d", time.Now().UnixNano()), dir: filepath.Join(d.dir, fmt.Sprintf("reader-%d", time.Now().UnixNano()))}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var w strings.Builder
	for _, n := range names {
		fmt.Fprintf(&w, "%s  %s\n", want[n], n)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "want"), []byte(w.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `cd /out; n=0; while :; do : > cur; for f in ` + strings.Join(names, " ") +
		`; do sha256sum $f >> cur 2>>errors || echo "fail $f" >> log; done; if cmp -s cur want; then echo "ok $n" >> log; else echo "bad $n" >> log; fi; n=$((n+1)); usleep 20000; done`
	d.ctr(t, "-n", restartNS, "run", "-d", "--snapshotter", "socikit", "--mount", "type=bind,src="+r.dir+",dst=/out,options=rbind:rw",
		ref, r.id, "/bin/busybox", "sh", "-c", script)
	t.Cleanup(r.remove)
	return r
}

// remove kills the reader's task and removes its container.
func (r *reader) remove() {
	_, _ = r.d.tryCtr("-n", restartNS, "task", "kill", "-s", "KILL", r.id)
	for i := 0; i < 100; i++ {
		if _, err := r.d.tryCtr("-n", restartNS, "task", "rm", r.id); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, _ = r.d.tryCtr("-n", restartNS, "container", "rm", r.id)
}

// counts returns the passes that read every file right, the passes that
// did not, and the failed reads, so far.
func (r *reader) counts(t *testing.T) (ok, bad, failed int) {
	t.Helper()
	f, err := os.Open(filepath.Join(r.dir, "log"))
	if os.IsNotExist(err) {
		return 0, 0, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		switch w, _, _ := strings.Cut(s.Text(), " "); w {
		case "ok":
			ok++
		case "bad":
			bad++
		case "fail":
			failed++
		}
	}
	return ok, bad, failed
}

// waitPasses waits until n more passes are logged than ok+bad at the call.
func (r *reader) waitPasses(t *testing.T, n int, within time.Duration) {
	t.Helper()
	ok0, bad0, _ := r.counts(t)
	start := time.Now()
	for {
		ok, bad, _ := r.counts(t)
		if ok+bad-ok0-bad0 >= n {
			return
		}
		if time.Since(start) > within {
			b, _ := os.ReadFile(filepath.Join(r.dir, "errors"))
			t.Fatalf("the reader made %d passes in %v, want %d; its errors:\n%s", ok+bad-ok0-bad0, within, n, tail(b, 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *reader) errors(t *testing.T) string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "errors"))
	return string(tail(b, 600))
}

// TestRestartRegistryDown: 10 lazy layers pulled in the k8s.io namespace;
// socikit-snapshotter is killed (kill -9) and started again with the
// registry down:
//   - its socket answers at once (goal < 1 s), the layers are mounted
//     again in the background from the zTOCs it kept on disk, with no
//     request to the registry;
//   - a container started after the restart reads the files read before
//     it, byte for byte, with the registry still down (spans from the
//     cache);
//   - once the registry is back, a file never read is fetched and read
//     right.
//
// A container reading files in a loop (each checksummed) runs through the
// kill: the /dev/fuse descriptors of the mounts are kept by the fd holder,
// so its reads wait in the kernel while no daemon serves them, and the
// restarted daemon resumes the same mounts (same mount ids, no remount):
// no read fails, and its passes go on. The test drops the page cache of
// the reader's files in a loop from the host, so that its reads are FUSE
// requests (served from the page cache, they would need no daemon). The
// gap (no pass completing) and the reads in it are logged. Once the image
// is removed, the holder's descriptors are back to what it had before the
// pull.
func TestRestartRegistryDown(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	im := pushRestartImage(t)
	d := startContainerd(t, f)
	holderBase := d.holderFDs(t)
	d.ctr(t, "-n", restartNS, "image", "pull", "--snapshotter", "socikit", "--plain-http", im.ref)
	if got := d.lazyMounts(t); got != im.layers {
		t.Fatalf("%d lazy layer mounts after the pull, want %d", got, im.layers)
	}
	read, wantRead := im.files(0, 1)
	out, err := d.runSums(t, im.ref, read)
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, out, wantRead)
	rd := d.startReader(t, im.ref, read, wantRead)
	rd.waitPasses(t, 2, time.Minute)
	if ok, bad, failed := rd.counts(t); bad > 0 || failed > 0 || ok == 0 {
		t.Fatalf("reader before the kill: %d passes ok, %d bad, %d reads failed: %s", ok, bad, failed, rd.errors(t))
	}
	artifacts0 := d.metricsMap(t)
	if got := d.holderFDs(t); got != holderBase+im.layers {
		t.Errorf("fd holder has %d descriptors with %d lazy mounts, %d before the pull", got, im.layers, holderBase)
	}
	ids0 := d.lazyMountIDs(t)
	paths := d.hostPaths(t, read)
	stopEvict := make(chan struct{})
	evicted := make(chan int, 1)
	go func() { evicted <- evictLoop(paths, stopEvict) }()
	passes := watchPasses(rd)

	im.gate.down.Store(true)
	servedBefore, _ := im.reg.Served("")
	ok0, bad0, failed0 := rd.counts(t)
	d.killSnapshotter(t)
	killed := time.Now()
	serve := d.startSnapshotter(t)
	t.Logf("socket answered %v after the start", serve.Round(time.Millisecond))
	restored := d.waitLazyMounts(t, im.layers, time.Minute)
	t.Logf("kill -9, then start with the registry down: socket answered %v after the start, the %d layers all mounted again and serving %v after the start",
		serve.Round(time.Millisecond), im.layers, (serve + restored).Round(time.Millisecond))
	if serve > time.Second {
		t.Errorf("socket answered %v after the start, goal < 1 s", serve)
	}
	m := d.metricsMap(t)
	t.Logf("zTOCs read at the restart: disk %v, registry %v, containerd %v (before the kill: registry %v, containerd %v)",
		m[`socikit_index_artifacts_total{source="disk"}`], m[`socikit_index_artifacts_total{source="registry"}`],
		m[`socikit_index_artifacts_total{source="containerd"}`],
		artifacts0[`socikit_index_artifacts_total{source="registry"}`], artifacts0[`socikit_index_artifacts_total{source="containerd"}`])
	if got := m[`socikit_index_artifacts_total{source="disk"}`]; got != float64(im.layers) {
		t.Errorf("%v zTOCs read from disk at the restart, want %d", got, im.layers)
	}
	if got := m[`socikit_index_artifacts_total{source="registry"}`] + m[`socikit_index_artifacts_total{source="containerd"}`]; got != 0 {
		t.Errorf("%v zTOCs fetched at the restart, want 0", got)
	}

	// containerd redials the snapshotter with a backoff of its own (about
	// a second after the refused dials of the gap): wait until it gets
	// through, a Stat of the reader's snapshot, before starting a container.
	reached := time.Now()
	d.ctrRetry(t, 30*time.Second, "-n", restartNS, "snapshots", "--snapshotter", "socikit", "info", rd.id)
	t.Logf("containerd reached the restarted snapshotter %v later (polled every 0.5 s)", time.Since(reached).Round(10*time.Millisecond))
	out, err = d.runSums(t, im.ref, read)
	if err != nil {
		t.Fatalf("container started after the restart, registry down: %v", err)
	}
	checkSums(t, out, wantRead)
	if n := im.gate.refused.Load(); n != 0 {
		t.Errorf("%d requests to the registry while it was down (restore and cached reads need none)", n)
	}

	// The container that read through the kill: its reads waited in the
	// kernel and went on with the resumed mounts.
	rd.waitPasses(t, 3, time.Minute)
	close(stopEvict)
	evictions := <-evicted
	ok, bad, failed := rd.counts(t)
	gap, inGap := passes.stop(killed)
	fuseReads := d.metricsMap(t)[`socikit_fuse_requests_total{op="read"}`]
	t.Logf("reader running through the kill: %d reads failed, %d passes ok and %d bad since the kill; longest time without a pass around the kill %v (socket answered %v after the start), %d passes (%d file reads) completed from the kill to the end of that gap; %v FUSE reads served by the restarted daemon (page cache of the %d files dropped %d times)",
		failed-failed0, ok-ok0, bad-bad0, gap.Round(time.Millisecond), serve.Round(time.Millisecond), inGap, inGap*len(read), fuseReads, len(read), evictions)
	if failed != failed0 || bad != bad0 {
		t.Errorf("reader through the kill: %d reads failed, %d passes bad; its errors: %s", failed-failed0, bad-bad0, rd.errors(t))
	}
	if fuseReads == 0 {
		t.Error("no FUSE read reached the restarted daemon: the test did not read through the resumed mounts")
	}
	if ids := d.lazyMountIDs(t); !maps.Equal(ids, ids0) {
		t.Errorf("lazy mounts changed across the restart (not resumed): before %v, after %v", ids0, ids)
	}
	if got := d.holderFDs(t); got != holderBase+im.layers {
		t.Errorf("fd holder has %d descriptors after the restart, want %d", got, holderBase+im.layers)
	}

	// The registry is back: a file never read is fetched.
	im.gate.down.Store(false)
	fresh, wantFresh := im.files(2)
	out, err = d.runSums(t, im.ref, fresh)
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, out, wantFresh)
	if after, _ := im.reg.Served(""); after <= servedBefore {
		t.Errorf("reading files never read fetched nothing from the registry (%d bytes served before, %d after)", servedBefore, after)
	}

	// The image and its containers removed: the mounts go, and their
	// descriptors with them.
	rd.remove()
	d.ctr(t, "-n", restartNS, "image", "rm", "--sync", im.ref)
	deadline := time.Now().Add(time.Minute)
	for d.lazyMounts(t) > 0 || d.holderFDs(t) != holderBase {
		if time.Now().After(deadline) {
			t.Fatalf("after the image's removal: %d lazy mounts, fd holder has %d descriptors, want 0 and %d", d.lazyMounts(t), d.holderFDs(t), holderBase)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holderFDs counts the descriptors the fd holder of the snapshotter has
// open.
func (d *daemons) holderFDs(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.dir, "socikit", "fdstore.sock.pid"))
	if err != nil {
		t.Fatalf("fd holder: %v", err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fd holder: %v", err)
	}
	return len(ents)
}

// lazyMountIDs returns the mount id of each lazy layer mount, by
// mountpoint (/proc/self/mountinfo): a mount resumed keeps its id, a
// mount made again gets a new one.
func (d *daemons) lazyMountIDs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		i := slices.Index(f, "-")
		if i < 5 || i+1 >= len(f) || !strings.HasPrefix(f[4], filepath.Join(d.dir, "socikit")+"/") || !strings.HasPrefix(f[i+1], "fuse") {
			continue
		}
		ids[f[4]] = f[0]
	}
	return ids
}

// hostPaths returns the path of each of names (absolute in the image)
// through the lazy mount that has it.
func (d *daemons) hostPaths(t *testing.T, names []string) []string {
	t.Helper()
	var paths []string
	for _, n := range names {
		found := ""
		for mp := range d.lazyMountIDs(t) {
			if _, err := os.Stat(filepath.Join(mp, n)); err == nil {
				found = filepath.Join(mp, n)
			}
		}
		if found == "" {
			t.Fatalf("%s is in no lazy mount", n)
		}
		paths = append(paths, found)
	}
	return paths
}

// evictLoop drops the page cache of paths, every few milliseconds, until
// stop is closed, and returns how many rounds it made. A round may wait
// while no daemon serves the mounts.
func evictLoop(paths []string, stop <-chan struct{}) int {
	n := 0
	for {
		select {
		case <-stop:
			return n
		case <-time.After(5 * time.Millisecond):
		}
		for _, p := range paths {
			if f, err := os.Open(p); err == nil {
				_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				f.Close()
			}
		}
		n++
	}
}

// passWatch records when the reader completes passes.
type passWatch struct {
	done  chan struct{}
	mu    sync.Mutex
	times []time.Time
}

// watchPasses polls the reader's log every few milliseconds.
func watchPasses(r *reader) *passWatch {
	w := &passWatch{done: make(chan struct{})}
	go func() {
		last := -1
		for {
			select {
			case <-w.done:
				return
			case <-time.After(3 * time.Millisecond):
			}
			b, err := os.ReadFile(filepath.Join(r.dir, "log"))
			if err != nil {
				continue
			}
			n := strings.Count(string(b), "ok ") + strings.Count(string(b), "bad ")
			if n != last {
				w.mu.Lock()
				w.times = append(w.times, time.Now())
				w.mu.Unlock()
				last = n
			}
		}
	}()
	return w
}

// stop ends the watch and returns the longest time without a pass that
// ends after the kill at killed, and the passes completed from killed to
// the end of that interval.
func (w *passWatch) stop(killed time.Time) (time.Duration, int) {
	close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	var gap time.Duration
	end := killed
	for i := 1; i < len(w.times); i++ {
		if w.times[i].After(killed) && w.times[i].Sub(w.times[i-1]) > gap {
			gap, end = w.times[i].Sub(w.times[i-1]), w.times[i]
		}
	}
	n := 0
	for _, at := range w.times {
		if at.After(killed) && !at.After(end) {
			n++
		}
	}
	return gap, n
}

// TestContainerdRestart: containerd is killed (kill -9) and started again
// while a container reads files of lazy layers in a loop: the container
// reads on with no failed read, and new containers start over the same
// layers (one reading files never read before).
func TestContainerdRestart(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	im := pushRestartImage(t)
	d := startContainerd(t, f)
	d.ctr(t, "-n", restartNS, "image", "pull", "--snapshotter", "socikit", "--plain-http", im.ref)
	read, wantRead := im.files(0, 1)
	rd := d.startReader(t, im.ref, read, wantRead)
	rd.waitPasses(t, 2, time.Minute)

	pid := d.pid(t, "containerd")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	down := time.Now()
	d.startContainerd(t)
	d.ctrRetry(t, 30*time.Second, "version")
	t.Logf("containerd back after %v", time.Since(down).Round(time.Millisecond))
	rd.waitPasses(t, 3, time.Minute)
	ok, bad, failed := rd.counts(t)
	t.Logf("reader through the containerd restart: %d passes ok, %d bad, %d reads failed", ok, bad, failed)
	if bad > 0 || failed > 0 {
		t.Errorf("reader through the containerd restart: %d passes bad, %d reads failed: %s", bad, failed, rd.errors(t))
	}
	if out := d.ctr(t, "-n", restartNS, "task", "ls"); !strings.Contains(out, rd.id) || !strings.Contains(out, "RUNNING") {
		t.Errorf("the reader's task after the containerd restart:\n%s", out)
	}
	out, err := d.runSums(t, im.ref, read)
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, out, wantRead)
	fresh, wantFresh := im.files(3)
	out, err = d.runSums(t, im.ref, fresh)
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, out, wantFresh)
}

// startContainerd starts containerd again as containerd-start.sh did (same
// config, state and log).
func (d *daemons) startContainerd(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dir, "containerd.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(repoRoot, "bin/containerd"), "--config", filepath.Join(d.dir, "config.toml"), "--log-level", "info")
	cmd.Env = append(os.Environ(), "PATH="+filepath.Join(repoRoot, "bin")+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "containerd.pid"), []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() //nolint:errcheck // reaped here; containerd-stop.sh stops it
}
