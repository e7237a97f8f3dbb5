package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/socikit/socikit/integration/harness/results"
	"github.com/socikit/socikit/integration/harness/shaping"
)

// namespace is the containerd namespace the harness works in.
const namespace = "socikit-bench"

// daemons is a containerd started by scripts/containerd-start.sh with
// socikit-snapshotter (and, for the upstream contender, upstream
// soci-snapshotter) beside it, in a directory of its own: every start is
// cold (empty content store, snapshots and span caches).
type daemons struct {
	dir, address, ctr string
	repo              string
	socikitPull       bool // socikit contenders pull with `socikit pull`
}

func startDaemons(ctx context.Context, c config, ct contender) (*daemons, error) {
	dir, err := os.MkdirTemp("", "socikit-bench-ctrd.")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.repo, "scripts/containerd-start.sh"), dir)
	level := "info"
	if c.keepLogs {
		level = "debug" // the logs kept say where the time went
	}
	cmd.Env = append(os.Environ(), "SOCIKIT_LOG_LEVEL="+level, "CONTAINERD_LOG_LEVEL=warn", "SOCI_PLAIN_HTTP_HOSTS="+c.registry)
	if ct.upstream {
		cmd.Env = append(cmd.Env, "SOCI_UPSTREAM=1")
	}
	cmd.Env = append(cmd.Env, contenderEnv[ct.name]...)
	if c.socikitConfig != "" {
		cmd.Env = append(cmd.Env, "SOCIKIT_CONFIG="+c.socikitConfig)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	d := &daemons{dir: dir, ctr: filepath.Join(c.repo, "bin/ctr"), repo: c.repo, socikitPull: c.socikitPull == "socikit"}
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("containerd-start.sh: %v\n%s%s", err, out, stderr.Bytes())
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "CONTAINERD_ADDRESS="); ok {
			d.address = v
		}
	}
	if d.address == "" {
		d.stop()
		return nil, fmt.Errorf("containerd-start.sh printed no address:\n%s", out)
	}
	return d, nil
}

func (d *daemons) stop() {
	out, err := exec.Command(filepath.Join(d.repo, "scripts/containerd-stop.sh"), "--rm", d.dir).CombinedOutput()
	if err != nil {
		logf("containerd-stop.sh: %v\n%s", err, out)
	}
}

// keepLogs copies the daemons' logs into dir (-keep-logs).
func (d *daemons) keepLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		logf("keep logs: %v", err)
		return
	}
	for _, l := range daemonLogs {
		data, err := os.ReadFile(filepath.Join(d.dir, l))
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, l), data, 0o644); err != nil {
			logf("keep logs: %v", err)
		}
	}
}

// daemonLogs are the logs scripts/containerd-start.sh writes.
var daemonLogs = []string{"containerd.log", "socikit.log", "soci.log"}

// logTail returns the end of the daemons' logs, for errors.
func (d *daemons) logTail() string {
	var b strings.Builder
	for _, l := range daemonLogs {
		data, err := os.ReadFile(filepath.Join(d.dir, l))
		if err != nil {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "--- %s (end)\n%s\n", l, data)
	}
	return b.String()
}

// pull runs `ctr image pull` into the contender's snapshotter, or
// `socikit pull` for socikit contenders with -socikit-pull socikit.
func (d *daemons) pull(ctx context.Context, ct contender, ref string) error {
	if d.socikitPull && ct.snapshotter == "socikit" {
		cmd := exec.CommandContext(ctx, filepath.Join(d.repo, "bin/socikit"), "pull", "--address", d.address, "--namespace", namespace,
			"--snapshotter", ct.snapshotter, "--plain-http", ref)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("socikit pull %s: %v\n%s\n%s", ref, err, lastLines(out, 10), d.logTail())
		}
		return nil
	}
	cmd := exec.CommandContext(ctx, d.ctr, "-a", d.address, "-n", namespace, "image", "pull",
		"--snapshotter", ct.snapshotter, "--plain-http", ref)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr image pull %s: %v\n%s\n%s", ref, err, lastLines(out, 10), d.logTail())
	}
	return nil
}

// run starts a container of ref (with args, if any, instead of the
// image's command) and calls onLine for each line it prints on stdout; it
// returns when the container has exited.
func (d *daemons) run(ctx context.Context, ct contender, ref, id string, args []string, onLine func(string)) error {
	argv := []string{"-a", d.address, "-n", namespace, "run", "--rm", "--snapshotter", ct.snapshotter, ref, id}
	cmd := exec.CommandContext(ctx, d.ctr, append(argv, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		onLine(sc.Text())
	}
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("ctr run %s: %v\n%s\n%s", ref, err, lastLines(stderr.Bytes(), 10), d.logTail())
	}
	return nil
}

// peakRSS returns the peak resident set (VmHWM, KiB) of the contender's
// snapshotter; for overlayfs, which unpacks inside containerd, of
// containerd.
func (d *daemons) peakRSS(ct contender) int64 {
	pidFile := map[string]string{"socikit": "socikit.pid", "soci": "soci.pid"}[ct.snapshotter]
	if pidFile == "" {
		pidFile = "containerd.pid"
	}
	pid, err := os.ReadFile(filepath.Join(d.dir, pidFile))
	if err != nil {
		return 0
	}
	return procKiB(filepath.Join("/proc", strings.TrimSpace(string(pid)), "status"), "VmHWM:")
}

// coldStart measures one cold start: fresh daemons, dropped page cache,
// pull, run until the ready line, then until the container exits.
func coldStart(ctx context.Context, c config, img *benchImage, ct contender, iter int) (results.Sample, error) {
	s := results.Sample{Image: img.info.Name, Contender: ct.name, Iter: iter}
	ctx, cancel := context.WithTimeout(ctx, c.readyTimeout)
	defer cancel()
	dropCaches()
	d, err := startDaemons(ctx, c, ct)
	if err != nil {
		return s, err
	}
	defer func() {
		if c.keepLogs {
			d.keepLogs(filepath.Join(c.out, "logs", fmt.Sprintf("%s-%s-%d", img.info.Name, ct.name, iter)))
		}
		d.stop()
	}()
	if err := resetStats(ctx, c.registry); err != nil {
		return s, err
	}
	ref := img.refs[ct.tag]
	start := time.Now()
	var fp *fusePoller // FUSE request counts over time (fuse.go)
	if ct.snapshotter == "socikit" {
		fp = startFUSEPoller(ctx, d, start)
		defer fp.stop()
	}
	if err := d.pull(ctx, ct, ref); err != nil {
		return s, err
	}
	s.PullMS = msSince(start)
	var ready bool
	var statsErr error
	id := fmt.Sprintf("bench-%s-%s-%d-%d", img.info.Name, ct.name, iter, time.Now().UnixNano())
	err = d.run(ctx, ct, ref, id, nil, func(line string) {
		if ready || strings.TrimSpace(line) != img.info.Ready {
			return
		}
		ready = true
		s.ReadyMS = msSince(start)
		st, err := getStats(ctx, c.registry)
		if err != nil {
			statsErr = err
			return
		}
		s.BytesBeforeReady, s.Requests = st.bytes, st.requests
		if fp != nil {
			s.FUSEBeforeReady, _ = fp.sample(ctx) // a failure is logged by stop
		}
	})
	exit := msSince(start)
	if err != nil {
		return s, err
	}
	if statsErr != nil {
		return s, statsErr
	}
	if !ready {
		return s, fmt.Errorf("the container exited without printing %q\n%s", img.info.Ready, d.logTail())
	}
	st, err := getStats(ctx, c.registry)
	if err != nil {
		return s, err
	}
	s.BytesTotal = st.bytes
	s.PeakRSSKiB = d.peakRSS(ct)
	ev, err := shaping.ReadEvents(ctx, nil, "http://"+c.registry)
	if err != nil {
		return s, err
	}
	if ct.name == results.Overlayfs {
		if s.LocalReadyMS, err = localReady(ctx, d, ct, img, ref, iter); err != nil {
			return s, err
		}
	}
	kinds := img.kinds[ct.tag]
	if kinds == nil {
		if kinds, err = blobKinds(ctx, ref); err != nil {
			return s, err
		}
		if img.kinds == nil {
			img.kinds = map[string]map[string]string{}
		}
		img.kinds[ct.tag] = kinds
	}
	s.Timeline = timeline(ev, start, kinds, s.PullMS, s.ReadyMS, exit)
	if fp != nil {
		s.Timeline.FUSE = fp.stop()
	}
	return s, nil
}

// localReady measures the app's time to ready on the rootfs overlayfs
// unpacked: a second container of the pulled image, page cache dropped,
// from the start of `ctr run` to the ready line.
func localReady(ctx context.Context, d *daemons, ct contender, img *benchImage, ref string, iter int) (float64, error) {
	dropCaches()
	id := fmt.Sprintf("bench-local-%s-%d-%d", img.info.Name, iter, time.Now().UnixNano())
	start := time.Now()
	var ms float64
	err := d.run(ctx, ct, ref, id, nil, func(line string) {
		if ms == 0 && strings.TrimSpace(line) == img.info.Ready {
			ms = msSince(start)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("local run: %w", err)
	}
	if ms == 0 {
		return 0, fmt.Errorf("local run: the container exited without printing %q", img.info.Ready)
	}
	return ms, nil
}

// readAllScript reads every regular file of the container's root
// filesystem (not /proc, /sys, /dev: -xdev) and prints the byte count.
const readAllScript = "find / -xdev -type f -print0 | xargs -0 cat | wc -c"

// readAll measures, from cold, the time from the start of the pull to the
// exit of a container that reads every file of the image.
func readAll(ctx context.Context, c config, img *benchImage, ct contender, iter int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.readyTimeout)
	defer cancel()
	dropCaches()
	d, err := startDaemons(ctx, c, ct)
	if err != nil {
		return 0, err
	}
	defer d.stop()
	ref := img.refs[ct.tag]
	start := time.Now()
	if err := d.pull(ctx, ct, ref); err != nil {
		return 0, err
	}
	var out string
	id := fmt.Sprintf("bench-readall-%s-%s-%d-%d", img.info.Name, ct.name, iter, time.Now().UnixNano())
	if err := d.run(ctx, ct, ref, id, []string{"/bin/sh", "-c", readAllScript}, func(l string) { out = l }); err != nil {
		return 0, err
	}
	ms := msSince(start)
	var n int64
	if _, err := fmt.Sscan(out, &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("read-everything printed %q, want a byte count", out)
	}
	return ms, nil
}

// dropCaches writes back and drops the page cache, so that no contender
// reads another's files from memory.
func dropCaches() {
	exec.Command("sync").Run() //nolint:errcheck // best effort
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		logf("dropping the page cache: %v", err)
	}
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
