package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/socikit/socikit/integration/harness/report"
	"github.com/socikit/socikit/integration/harness/results"
)

// config is the harness's command line.
type config struct {
	repo, contexts, registry, out, mode, command, buildkitdRoot, socikitConfig, socikitPull string
	apps, contenders, readAll                                                               []string
	runs                                                                                    int
	link                                                                                    results.Link
	readyTimeout                                                                            time.Duration
	keepLogs                                                                                bool
}

// contender is one way of starting an image.
type contender struct {
	name        string
	snapshotter string // containerd snapshotter
	tag         string // which variant of the image it pulls
	upstream    bool   // needs upstream soci-snapshotter running
}

var allContenders = []contender{
	{results.Overlayfs, "overlayfs", vPlain, false},
	{results.SocikitAuto, "socikit", vAuto, false},
	{results.SocikitReorder, "socikit", vReorder, false},
	{results.SocikitProfiled, "socikit", vProfiled, false},
	{results.SocikitLazyProfile, "socikit", vLazy, false},
	{results.SocikitConvert, "socikit", vConvert, false},
	{results.Upstream, "soci", vUpstream, true},
	{results.SocikitPull, "socikit", vPlain, false},
	{results.UpstreamParallel, "soci", vPlain, true},
}

// contenderEnv is the extra environment of scripts/containerd-start.sh
// for a contender.
var contenderEnv = map[string][]string{results.UpstreamParallel: {"SOCI_PARALLEL_PULL=1"}}

func run(ctx context.Context, c config) error {
	var err error
	if c.repo, err = filepath.Abs(c.repo); err != nil {
		return err
	}
	if c.out == "" {
		c.out = filepath.Join(c.repo, "bench-results", time.Now().UTC().Format("20060102T150405Z"))
	}
	if c.buildkitdRoot == "" {
		// A fresh builder each run: with BuildKit's cache from earlier
		// runs, a type=image export of a layer that an earlier soci export
		// reordered gets the reordered blob (see docs/benchmark.md), and
		// the plain image would not be plain.
		dir, err := os.MkdirTemp("", "socikit-bench-buildkitd.")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.buildkitdRoot = dir
	}
	contenders := allContenders
	if len(c.contenders) > 0 {
		contenders = nil
		for _, name := range c.contenders {
			i := slices.IndexFunc(allContenders, func(x contender) bool { return x.name == name })
			if i < 0 {
				return fmt.Errorf("unknown contender %q (have %s)", name, strings.Join(results.Contenders, ", "))
			}
			contenders = append(contenders, allContenders[i])
		}
	}
	if err := checkRegistry(ctx, c.registry); err != nil {
		return err
	}
	r := &results.Run{
		Started: time.Now().UTC(), Mode: c.mode, Host: hostInfo(), Link: c.link, Runs: c.runs, Command: c.command,
	}

	// Build and index every image first: the measurements must not share
	// the machine with a build.
	p := prep{logs: filepath.Join(c.out, "prepare")}
	for _, ct := range contenders {
		p.profiled = p.profiled || ct.name == results.SocikitProfiled
		p.lazy = p.lazy || ct.name == results.SocikitLazyProfile
	}
	if err := os.MkdirAll(p.logs, 0o755); err != nil {
		return err
	}
	prepStart := time.Now()
	var images []*benchImage
	bk, err := startBuildkitd(ctx, c, c.buildkitdRoot)
	if err != nil {
		return err
	}
	defer bk.stop()
	if p.profiled || p.lazy {
		if p.frontend, err = buildFrontend(ctx, c, bk); err != nil {
			return err
		}
	}
	for _, app := range c.apps {
		img, builds, err := buildImage(ctx, c, bk, app, p)
		if err != nil {
			return fmt.Errorf("image %s: %w", app, err)
		}
		images = append(images, img)
		r.Builds = append(r.Builds, builds...)
	}
	// The profile of a lazy start, fed back into the build: after every
	// image is built, before any measurement.
	if p.lazy {
		for _, img := range images {
			b, err := lazyProfile(ctx, c, bk, img, p)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				logf("FAILED %s: %s: %v", img.info.Name, vLazy, err)
				img.failed[vLazy] = err
				delete(img.refs, vLazy)
				continue
			}
			r.Builds = append(r.Builds, b)
		}
	}
	bk.stop()
	for _, img := range images {
		r.Images = append(r.Images, img.info)
		for _, ct := range contenders {
			if err := img.failed[ct.tag]; err != nil {
				r.Failures = append(r.Failures, results.Failure{Image: img.info.Name, Contender: ct.name, Error: "prepare: " + err.Error()})
			}
		}
	}
	logf("prepare phase (builds, indexes, profiles) took %v", time.Since(prepStart).Round(time.Second))

	for iter := 0; iter < c.runs; iter++ {
		for _, img := range images {
			// Rotate who goes first, so no contender always runs on a
			// freshly idle machine.
			order := slices.Clone(contenders)
			rot := iter % len(order)
			order = append(order[rot:], order[:rot]...)
			for _, ct := range order {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if img.failed[ct.tag] != nil {
					continue // its preparation failed (a failure already)
				}
				s, err := coldStart(ctx, c, img, ct, iter)
				if err != nil {
					logf("FAILED %s/%s: %v", img.info.Name, ct.name, err)
					r.Failures = append(r.Failures, results.Failure{Image: img.info.Name, Contender: ct.name, Error: err.Error()})
					continue
				}
				if slices.Contains(c.readAll, ct.name) {
					ms, err := readAll(ctx, c, img, ct, iter)
					if err != nil {
						logf("FAILED read-all %s/%s: %v", img.info.Name, ct.name, err)
						r.Failures = append(r.Failures, results.Failure{Image: img.info.Name, Contender: ct.name + " (read-all)", Error: err.Error()})
					}
					s.ReadAllMS = ms
				}
				s.IndexBytes = img.indexBytes[ct.tag]
				r.Samples = append(r.Samples, s)
				logf("%s/%s #%d: ready %.0f ms (pull %.0f), %.1f MB before ready, %.1f MB total, read-all %.0f ms, peak RSS %d MiB",
					img.info.Name, ct.name, iter, s.ReadyMS, s.PullMS, mb(s.BytesBeforeReady), mb(s.BytesTotal), s.ReadAllMS, s.PeakRSSKiB>>10)
			}
		}
	}

	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if err := report.Write(c.out, r); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	fmt.Println(report.Markdown(r))
	logf("results in %s", c.out)
	if len(r.Failures) > 0 {
		return errors.New("some contenders failed (see the failures above and in the report)")
	}
	return checkLazy(r)
}

// checkLazy fails the run when a lazy contender (not results.FullPull)
// fetched, before its ready line, as many bytes as overlayfs's full pull:
// then it did not start lazily, and its figures would mean nothing. The
// goals themselves are reported, not enforced.
func checkLazy(r *results.Run) error {
	full := map[string]int64{}
	for _, s := range r.Samples {
		if s.Contender == results.Overlayfs {
			full[s.Image] = s.BytesBeforeReady
		}
	}
	var errs []error
	for _, s := range r.Samples {
		if f, ok := full[s.Image]; ok && !results.FullPull[s.Contender] && s.BytesBeforeReady >= f {
			errs = append(errs, fmt.Errorf("%s/%s #%d fetched %d bytes before ready, overlayfs's full pull %d: not lazy",
				s.Image, s.Contender, s.Iter, s.BytesBeforeReady, f))
		}
	}
	return errors.Join(errs...)
}

func hostInfo() string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("linux %s, %d cores, %s", strings.TrimSpace(string(kernel)), runtime.NumCPU(), memTotal())
}

func memTotal() string {
	if kib := procKiB("/proc/meminfo", "MemTotal:"); kib > 0 {
		return fmt.Sprintf("%.0f GiB", float64(kib)/(1<<20))
	}
	return "memory unknown"
}

// procKiB returns the "KEY  N kB" value of a /proc file, or 0.
func procKiB(path, key string) int64 {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			var kib int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib); err != nil {
				return 0
			}
			return kib
		}
	}
	return 0
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func mb(n int64) float64 { return float64(n) / 1e6 }
