// Command socikit-bench is socikit's benchmark harness: it builds
// realistic images with our buildkitd (plain, SOCI with tuned spans, SOCI
// reordered from a start-up file list, SOCI through the `# syntax=`
// frontend profiled in the build, and SOCI rebuilt with the profile
// socikit-snapshotter recorded during a lazy start), indexes the plain image with `socikit
// convert` (fixed 4 MiB spans) and with upstream SOCI's builder, pushes all
// of them to a registry behind a shaped link, and starts each one cold,
// several times, with containerd 2.4.2 through each contender: overlayfs
// (full pull, the baseline), socikit-snapshotter, and upstream
// soci-snapshotter v0.16.1. It writes raw results (JSON, CSV), a Markdown
// table of ratios and charts to an output folder.
//
// scripts/bench.sh builds the tools, prepares the image contexts
// (scripts/bench-images.sh) and the shaped registry (scripts/bench-net.sh),
// then runs this command; see docs/benchmark.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	var c config
	flag.StringVar(&c.repo, "repo", "../..", "socikit checkout (scripts/ and bin/)")
	flag.StringVar(&c.contexts, "contexts", "/var/cache/socikit-bench", "where scripts/bench-images.sh left the image contexts")
	apps := flag.String("images", "python", "comma-separated images to measure (python,node,jvm,toolchain)")
	contenders := flag.String("contenders", "", "comma-separated contenders (default: all)")
	readAll := flag.String("read-all", "overlayfs,socikit-auto", "contenders that also run the read-everything workload")
	flag.StringVar(&c.registry, "registry", "10.200.0.2:5000", "the shaped registry (host:port, plain HTTP)")
	flag.IntVar(&c.runs, "runs", 3, "cold starts per image and contender")
	flag.StringVar(&c.mode, "mode", "full", "recorded in the results: quick or full")
	flag.StringVar(&c.out, "out", "", "results folder (default: bench-results/<UTC time>)")
	flag.Float64Var(&c.link.RateMbit, "rate-mbit", 0, "recorded: the link's rate (set by scripts/bench-net.sh)")
	flag.Float64Var(&c.link.LatencyMS, "latency-ms", 0, "recorded: the registry's per-request delay")
	flag.DurationVar(&c.readyTimeout, "timeout", 10*time.Minute, "longest wait for one container")
	flag.StringVar(&c.socikitConfig, "socikit-config", "", "socikit-snapshotter TOML config for the socikit contenders (default: none, the defaults)")
	flag.StringVar(&c.socikitPull, "socikit-pull", "ctr", "how the socikit contenders pull: ctr (ctr image pull: containerd 2.x's transfer service fetches every zTOC itself, docs/snapshotter.md) or socikit (socikit pull: a client-side pull, as CRI with use_local_image_pull and nerdctl; zTOCs read lazily by the snapshotter)")
	flag.BoolVar(&c.keepLogs, "keep-logs", false, "keep the daemons' logs of every cold start (OUT/logs/IMAGE-CONTENDER-RUN/): where a start's time goes, with socikit-snapshotter's debug lines")
	flag.StringVar(&c.buildkitdRoot, "buildkitd-root", "", "buildkitd state (default: a new directory for the run, removed after)")
	flag.Parse()
	if c.socikitPull != "ctr" && c.socikitPull != "socikit" {
		fmt.Fprintf(os.Stderr, "-socikit-pull %q: want ctr or socikit\n", c.socikitPull)
		os.Exit(2)
	}
	c.apps = splitList(*apps)
	c.contenders = splitList(*contenders)
	c.readAll = splitList(*readAll)
	c.command = strings.Join(os.Args, " ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "socikit-bench:", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
