//go:build integration

package runtime

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkColdStart compares, in one run and from the same in-process
// registry on loopback (no bandwidth or latency shaping), the cold start of
// the TestLazy image (busybox + ~64 MB of $(go env GOROOT), 4 MiB spans):
//   - overlayfs: containerd 2.4.2's full pull (unpacked by its overlayfs
//     snapshotter) of the plain image, then `ctr run ... /bin/busybox echo
//     ready`;
//   - lazy: socikit-snapshotter's lazy pull of the SOCI v2 image made from
//     it by `socikit convert`, then the same `ctr run`.
//
// Every iteration starts a fresh containerd + socikit-snapshotter pair per
// contender (scripts/containerd-start.sh into a new directory: empty content
// store, snapshots and span cache), so every start is cold. It measures the
// wall time from the start of the pull to the container's first line of
// output, and the blob bytes the registry served until then.
//
// Not run by CI (only tests are):
//
//	cd integration/runtime && go test -tags integration -run '^$' -bench ColdStart -benchtime 3x -count 1 .
func BenchmarkColdStart(b *testing.B) {
	requireRoot(b)
	f := flavours[0]
	requireExecutable(b, f.ctr)
	reg := newRegistry(b)
	plain, _ := reg.pushImage(b, "socikit/bench", busyboxTar(b), goTreeTar(b, 64<<20))
	indexed := convertWith(b, plain, plain+"-soci")
	layers := sociLayers(b, indexed)
	var imageSize int64
	for _, l := range layers {
		imageSize += l.desc.Size
	}
	b.Logf("image: %d layers, %.2f MB compressed; plain %s, SOCI v2 %s", len(layers), mb(imageSize), plain, indexed)

	type contender struct {
		name, ref, snapshotter string
		lazy                   bool
	}
	contenders := []contender{
		{"overlayfs", plain, "overlayfs", false},
		{"lazy", indexed, "socikit", true},
	}
	type sample struct {
		pull, run, ready time.Duration
		served           int64 // blob bytes served from the pull's start to the first output
	}
	samples := map[string][]sample{}

	coldStart := func(c contender, iter int) sample {
		d := startContainerd(b, f)
		defer func() {
			out, err := exec.Command(filepath.Join(repoRoot, "scripts/containerd-stop.sh"), "--rm", d.dir).CombinedOutput()
			if err != nil {
				b.Errorf("containerd-stop.sh: %v\n%s", err, out)
			}
		}()
		ns := "socikit-bench"
		all0, _ := reg.Served("")
		start := time.Now()
		if out, err := d.tryCtr("-n", ns, "image", "pull", "--snapshotter", c.snapshotter, "--plain-http", c.ref); err != nil {
			b.Fatalf("%s: %v\n%s", c.name, err, out)
		}
		pulled := time.Now()
		if got := d.lazyMounts(b); (got > 0) != c.lazy {
			b.Fatalf("%s: %d lazy layer mounts after the pull, want lazy=%v", c.name, got, c.lazy)
		}
		id := fmt.Sprintf("socikit-bench-%s-%d-%d", c.name, iter, time.Now().UnixNano())
		line, ready, err := d.firstLine("-n", ns, "run", "--rm", "--snapshotter", c.snapshotter, c.ref, id, "/bin/busybox", "echo", "ready")
		if err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		all1, _ := reg.Served("")
		if line != "ready" {
			b.Fatalf("%s: container printed %q first, want ready", c.name, line)
		}
		return sample{pull: pulled.Sub(start), run: ready.Sub(pulled), ready: ready.Sub(start), served: all1 - all0}
	}

	iter := 0
	for b.Loop() {
		// Alternate who goes first.
		order := contenders
		if iter%2 == 1 {
			order = []contender{contenders[1], contenders[0]}
		}
		for _, c := range order {
			samples[c.name] = append(samples[c.name], coldStart(c, iter))
		}
		iter++
	}

	// One row per contender (benchmark output is cut after 10 lines
	// without -v).
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "%-9s | %-27s | %-27s | %-27s | %s\n", "contender", "ms-to-ready per iter (mean)", "pull ms per iter", "run→first output ms", "MB served before ready (mean)")
	mean := map[string]sample{}
	for _, c := range contenders {
		var sum sample
		var ready, pull, run, served []string
		for _, s := range samples[c.name] {
			ready = append(ready, fmt.Sprintf("%.0f", ms(s.ready)))
			pull = append(pull, fmt.Sprintf("%.0f", ms(s.pull)))
			run = append(run, fmt.Sprintf("%.0f", ms(s.run)))
			served = append(served, fmt.Sprintf("%.2f", mb(s.served)))
			sum.pull += s.pull
			sum.run += s.run
			sum.ready += s.ready
			sum.served += s.served
		}
		n := len(samples[c.name])
		if n == 0 {
			continue
		}
		m := sample{pull: sum.pull / time.Duration(n), run: sum.run / time.Duration(n), ready: sum.ready / time.Duration(n), served: sum.served / int64(n)}
		mean[c.name] = m
		fmt.Fprintf(&tbl, "%-9s | %-27s | %-27s | %-27s | %s (%.2f)\n", c.name,
			fmt.Sprintf("%s (%.0f)", strings.Join(ready, " "), ms(m.ready)),
			fmt.Sprintf("%s (%.0f)", strings.Join(pull, " "), ms(m.pull)),
			fmt.Sprintf("%s (%.0f)", strings.Join(run, " "), ms(m.run)),
			strings.Join(served, " "), mb(m.served))
		b.ReportMetric(ms(m.ready), c.name+"-ms-to-ready")
		b.ReportMetric(mb(m.served), c.name+"-MB-before-ready")
	}
	o, l := mean["overlayfs"], mean["lazy"]
	if o.ready > 0 && o.served > 0 {
		b.ReportMetric(float64(l.ready)/float64(o.ready), "lazy/overlayfs-time")
		b.ReportMetric(float64(l.served)/float64(o.served), "lazy/overlayfs-bytes")
		fmt.Fprintf(&tbl, "ratio lazy/overlayfs: time to ready %.3f, bytes before ready %.3f (image %.2f MB compressed)\n",
			float64(l.ready)/float64(o.ready), float64(l.served)/float64(o.served), mb(imageSize))
	}
	b.Logf("cold start on loopback, no shaping (%d iterations):\n%s", iter, tbl.String())
}

// firstLine runs ctr ARGS and returns the first line it prints on stdout
// and when it came; it waits for ctr to exit.
func (d *daemons) firstLine(args ...string) (string, time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.ctrPath, append([]string{"-a", d.address}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", time.Time{}, err
	}
	if err := cmd.Start(); err != nil {
		return "", time.Time{}, err
	}
	line, rerr := bufio.NewReader(stdout).ReadString('\n')
	at := time.Now()
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return "", at, fmt.Errorf("ctr %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, line, stderr.Bytes())
	}
	if rerr != nil && rerr != io.EOF {
		return "", at, rerr
	}
	return strings.TrimSpace(line), at, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mb(n int64) float64         { return float64(n) / 1e6 }
