package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/integration/harness/images"
	"github.com/socikit/socikit/integration/harness/results"
	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
)

// benchImage is one app's image in every variant the contenders pull.
type benchImage struct {
	info       results.Image
	app        *images.App
	refs       map[string]string // variant tag → reference
	indexBytes map[string]int64  // variant tag → SOCI index manifest + zTOC bytes
	// failed holds the variants whose preparation failed (the profiled
	// build made no profile, the lazy profile could not be recorded): their
	// contenders are not measured on this image and the run fails.
	failed map[string]error
	// kinds caches blobKinds by variant tag, for timelines.
	kinds map[string]map[string]string
}

// Variant tags: how each image is built (docs/benchmark.md).
const (
	vPlain    = "plain"
	vAuto     = "auto"
	vReorder  = "reorder"
	vConvert  = "convert4m"
	vUpstream = "upstream"
	vProfiled = "profiled"    // through the # syntax= frontend, profiled in the build
	vLazy     = "lazyprofile" // through the frontend, with the profile of a lazy start of auto
)

// buildkitd is our buildkitd, started by scripts/buildkit-start.sh.
type buildkitd struct {
	addr, root string
	stopped    bool
}

func startBuildkitd(ctx context.Context, c config, root string) (*buildkitd, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.repo, "scripts/buildkit-start.sh"))
	cmd.Env = append(os.Environ(), "BUILDKITD_ROOT="+root, "BUILDKITD_REGISTRIES="+c.registry)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("buildkit-start.sh: %v\n%s", err, stderr.Bytes())
	}
	return &buildkitd{addr: strings.TrimSpace(string(out)), root: root}, nil
}

func (b *buildkitd) stop() {
	if b.stopped {
		return
	}
	b.stopped = true
	pid, err := os.ReadFile(filepath.Join(b.root, "buildkitd.pid"))
	if err != nil {
		return
	}
	_ = exec.Command("kill", strings.TrimSpace(string(pid))).Run()
	for i := 0; i < 100 && exec.Command("kill", "-0", strings.TrimSpace(string(pid))).Run() == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// freshBuildkitd starts a buildkitd with a new, empty root; stop removes
// the root too.
func freshBuildkitd(ctx context.Context, c config) (*buildkitd, func(), error) {
	dir, err := os.MkdirTemp("", "socikit-bench-buildkitd-fresh.")
	if err != nil {
		return nil, nil, err
	}
	bk, err := startBuildkitd(ctx, c, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return bk, func() { bk.stop(); os.RemoveAll(dir) }, nil
}

// maxPrefetchAttr keeps the soci-prefetch attribute under Linux's limit
// for one argument (MAX_ARG_STRLEN, 128 KiB) with room for the rest.
const maxPrefetchAttr = 100 << 10

// prep says what the prepare phase builds besides the five classic
// variants.
type prep struct {
	profiled, lazy bool
	frontend       string // the # syntax= frontend image (gateway.v0 source)
	logs           string // directory for build logs and profiles
}

// frontendRef is where the harness pushes the frontend image.
func frontendRef(c config) string { return c.registry + "/socikit/dockerfile:bench" }

// buildFrontend builds the # syntax= frontend image from the working tree
// (scripts/frontend-image.sh: socikit-frontend and socikit-trace, static)
// with the harness's buildkitd and pushes it to the bench registry, where
// that buildkitd (and any fresh one) pulls it from as a gateway frontend.
func buildFrontend(ctx context.Context, c config, bk *buildkitd) (string, error) {
	ref := frontendRef(c)
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(c.repo, "scripts/frontend-image.sh"), "--addr", bk.addr, ref)
	cmd.Env = append(os.Environ(), "FRONTEND_OUTPUT_ATTRS=registry.insecure=true")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("frontend-image.sh: %v\n%s", err, lastLines(out, 30))
	}
	logf("frontend image %s built from the working tree and pushed in %v", ref, time.Since(start).Round(time.Millisecond))
	return ref, nil
}

// buildArgs are the buildctl arguments of one variant's build.
type buildArgs struct {
	variant  string
	frontend string   // "": dockerfile.v0; else gateway.v0 with this source
	output   string   // --output
	extra    []string // more buildctl build arguments
}

// build runs one buildctl build of app on bk, writing its plain progress
// log to logs/APP-VARIANT.log, and returns the log and how long it took.
func (b *buildkitd) build(ctx context.Context, c config, a *images.App, ba buildArgs, logs string) ([]byte, time.Duration, error) {
	args := []string{"--addr", b.addr, "build", "--progress", "plain"}
	if ba.frontend == "" {
		args = append(args, "--frontend", "dockerfile.v0")
	} else {
		args = append(args, "--frontend", "gateway.v0", "--opt", "source="+ba.frontend)
	}
	args = append(args, "--local", "context="+a.Context, "--local", "dockerfile="+a.Dir)
	args = append(args, ba.extra...)
	args = append(args, "--output", ba.output)
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(c.repo, "bin/buildctl"), args...)
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if logs != "" {
		if werr := os.WriteFile(filepath.Join(logs, a.Name+"-"+ba.variant+".log"), out, 0o644); werr != nil {
			logf("writing the build log: %v", werr)
		}
	}
	if err != nil {
		cmdline := strings.Join(args, " ")
		if len(cmdline) > 300 {
			cmdline = cmdline[:300] + "..."
		}
		return out, d, fmt.Errorf("buildctl %s: %v\n%s", cmdline, err, lastLines(out, 20))
	}
	return out, d, nil
}

// buildImage builds the app's image with our buildkitd (plain `type=image`;
// `type=soci` with tuned spans; `type=soci` reordered from the start-up
// file list; with p.profiled, through the # syntax= frontend, profiled in
// the build) and indexes the plain one twice (`socikit convert` with fixed
// 4 MiB spans; upstream SOCI's builder), all pushed to the registry. With
// p.profiled, auto and profiled are each built on a fresh builder of their
// own, timed: the build-time cost of profiling.
func buildImage(ctx context.Context, c config, bk *buildkitd, app string, p prep) (*benchImage, []results.Build, error) {
	a, err := images.Load(filepath.Join(c.contexts, app))
	if err != nil {
		return nil, nil, fmt.Errorf("%w (run scripts/bench-images.sh %s)", err, app)
	}
	repo := c.registry + "/bench/" + app
	img := &benchImage{app: a, refs: map[string]string{}, indexBytes: map[string]int64{}, failed: map[string]error{}}
	variants := []string{vPlain, vAuto, vReorder, vConvert, vUpstream}
	if p.profiled {
		variants = append(variants, vProfiled)
	}
	if p.lazy {
		variants = append(variants, vLazy)
	}
	for _, v := range variants {
		img.refs[v] = repo + ":" + v
	}
	prefetch := a.PrefetchAttr()
	if len(prefetch) > maxPrefetchAttr {
		cut := strings.LastIndexByte(prefetch[:maxPrefetchAttr], ',')
		prefetch = prefetch[:cut]
		logf("%s: prefetch list cut to %d bytes (%d of %d paths)", app, len(prefetch), strings.Count(prefetch, ",")+1, len(a.Prefetch))
	}
	push := ",push=true,registry.insecure=true"
	builds := []buildArgs{
		{variant: vPlain, output: "type=image,name=" + img.refs[vPlain] + push},
		{variant: vAuto, output: "type=soci,name=" + img.refs[vAuto] + push},
		// buildctl reads --output as CSV: the comma-separated list is one
		// quoted field.
		{variant: vReorder, output: "type=soci,name=" + img.refs[vReorder] + push + ",soci-reorder=true," + `"soci-prefetch=` + prefetch + `"`},
	}
	if p.profiled {
		// No hand-made list: the frontend profiles the image's CMD until
		// the ready line and hands the profile to the soci exporter.
		builds = append(builds, buildArgs{variant: vProfiled, frontend: p.frontend,
			output: "type=soci,name=" + img.refs[vProfiled] + push,
			extra:  []string{"--opt", "build-arg:SOCIKIT_READY=" + a.Ready}})
	}
	var timed []results.Build
	for _, ba := range builds {
		// With the profiled variant, auto is its baseline: both on a
		// fresh builder, so that neither finds the other's (or plain's)
		// layers in the cache.
		fresh := p.profiled && (ba.variant == vAuto || ba.variant == vProfiled)
		on, done := bk, func() {}
		if fresh {
			// Each timed build starts from the same state: nothing left to
			// write back from the build before, nothing in the page cache.
			dropCaches()
			if on, done, err = freshBuildkitd(ctx, c); err != nil {
				return nil, nil, err
			}
		}
		log, d, err := on.build(ctx, c, a, ba, p.logs)
		done()
		if err == nil && ba.variant == vProfiled {
			b := results.Build{}
			if cerr := checkProfiled(log, &b); cerr != nil {
				err = fmt.Errorf("%w (log: %s)", cerr, filepath.Join(p.logs, app+"-"+ba.variant+".log"))
			}
		}
		if err != nil && ba.variant == vProfiled {
			// Not fatal here: the other contenders are still measured,
			// and the run fails at the end.
			logf("FAILED %s: build %s: %v", app, ba.variant, err)
			img.failed[ba.variant] = fmt.Errorf("build %s: %w", ba.variant, err)
			delete(img.refs, ba.variant)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("build %s: %w", ba.variant, err)
		}
		b := results.Build{Image: app, Variant: ba.variant, Fresh: fresh, MS: float64(d) / float64(time.Millisecond)}
		how := "on the shared builder"
		if fresh {
			how = "on a fresh builder"
		}
		if ba.variant == vProfiled {
			_ = checkProfiled(log, &b) // checked above
			how += fmt.Sprintf("; profiling step %.1f s, start-up %.1f s (%s)", b.ProfileStepMS/1000, b.StartupMS/1000, b.ProfileStatus)
		}
		timed = append(timed, b)
		logf("%s: built and pushed %s in %v %s", app, ba.variant, d.Round(time.Millisecond), how)
	}
	start := time.Now()
	if err := runCmd(ctx, filepath.Join(c.repo, "bin/socikit"), "convert", "--plain-http", "--span-size", "4194304",
		img.refs[vPlain], img.refs[vConvert]); err != nil {
		return nil, nil, err
	}
	logf("%s: socikit convert (4 MiB spans) in %v", app, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := runCmd(ctx, filepath.Join(c.repo, "bin/upstreamindex"), "-plain-http", img.refs[vPlain], img.refs[vUpstream]); err != nil {
		return nil, nil, err
	}
	logf("%s: upstream SOCI index in %v", app, time.Since(start).Round(time.Millisecond))

	for _, v := range variants {
		if v == vPlain || v == vLazy || img.failed[v] != nil { // lazyprofile: built later (lazyProfile)
			continue
		}
		n, err := sociIndexBytes(ctx, img.refs[v])
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", img.refs[v], err)
		}
		img.indexBytes[v] = n
	}
	img.info, err = describe(ctx, app, a, img.refs[vPlain])
	if err != nil {
		return nil, nil, err
	}
	for _, v := range []string{vAuto, vReorder, vProfiled} {
		if img.refs[v] != "" {
			inspectSpans(ctx, c, a, img.refs[v], filepath.Join(p.logs, app+"-"+v+".spans.txt"))
		}
	}
	return img, timed, nil
}

// inspectSpans writes `socikit inspect --profile` of ref against the byte
// ranges the start-up reads (startup-ranges.json) to file: per layer, the
// spans those reads touch and the prefetched ones. For the record only;
// failures are logged.
func inspectSpans(ctx context.Context, c config, a *images.App, ref, file string) {
	if a.Ranges == nil {
		return
	}
	out, err := exec.CommandContext(ctx, filepath.Join(c.repo, "bin/socikit"), "inspect", "--plain-http",
		"--profile", filepath.Join(a.Dir, "startup-ranges.json"), ref).CombinedOutput()
	if err != nil {
		logf("socikit inspect --profile %s: %v\n%s", ref, err, lastLines(out, 5))
		return
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		logf("writing %s: %v", file, err)
	}
}

var (
	traceOK      = regexp.MustCompile(`socikit-trace: ok: (\d+) files, (\d+) ranges, (\d+) bytes read in ([0-9.]+)s[^\n]*`)
	profileStep  = regexp.MustCompile(`(?m)^#(\d+) \[socikit\] profiling start-up`)
	noProfileMsg = regexp.MustCompile(`(?m)^.*(no start-up profile|socikit-trace: no profile|socikit-trace wrote).*$`)
)

// checkProfiled checks in a frontend build's log that its profiling step
// made a profile (socikit-trace's "ok" line, no "no start-up profile"
// warning) and fills b's profiling figures from it.
func checkProfiled(log []byte, b *results.Build) error {
	if m := noProfileMsg.Find(log); m != nil {
		return fmt.Errorf("the profiling step made no profile: %s", strings.TrimSpace(string(m)))
	}
	m := traceOK.FindSubmatch(log)
	if m == nil {
		return errors.New(`the profiling step made no profile: no "socikit-trace: ok" line in the build log`)
	}
	b.ProfileStatus = strings.TrimSpace(string(m[0]))
	if s, err := strconv.ParseFloat(string(m[4]), 64); err == nil {
		b.StartupMS = s * 1000
	}
	if v := profileStep.FindSubmatch(log); v != nil {
		done := regexp.MustCompile(`(?m)^#` + string(v[1]) + ` DONE ([0-9.]+)s`)
		if d := done.FindSubmatch(log); d != nil {
			if s, err := strconv.ParseFloat(string(d[1]), 64); err == nil {
				b.ProfileStepMS = s * 1000
			}
		}
	}
	return nil
}

// lazyProfile makes the lazyprofile variant of img: a cold start of the
// auto image through socikit-snapshotter with its metrics server on (the
// snapshotter records the start-up's reads: [profile] record, on by
// default), `socikit profile export` of what it recorded, then a rebuild
// through the frontend with that profile as build context (no profiling
// step) on bk, pushed as the lazyprofile tag.
func lazyProfile(ctx context.Context, c config, bk *buildkitd, img *benchImage, p prep) (results.Build, error) {
	app := img.info.Name
	b := results.Build{Image: app, Variant: vLazy}
	work, err := os.MkdirTemp("", "socikit-bench-lazyprofile.")
	if err != nil {
		return b, err
	}
	defer os.RemoveAll(work)
	profDir := filepath.Join(work, "prof")
	if err := os.MkdirAll(profDir, 0o755); err != nil {
		return b, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return b, err
	}
	metrics := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("# written by socikit-bench: the metrics server, for socikit profile export\nmetrics_address = %q\n\n", metrics)
	if c.socikitConfig != "" {
		user, err := os.ReadFile(c.socikitConfig)
		if err != nil {
			return b, err
		}
		cfg += string(user)
	}
	cfgPath := filepath.Join(work, "socikit.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return b, err
	}
	cc := c
	cc.socikitConfig = cfgPath
	ct := contender{results.SocikitAuto, "socikit", vAuto, false}
	ref := img.refs[vAuto]

	ctx2, cancel := context.WithTimeout(ctx, c.readyTimeout)
	defer cancel()
	dropCaches()
	d, err := startDaemons(ctx2, cc, ct)
	if err != nil {
		return b, err
	}
	start := time.Now()
	err = func() error {
		defer d.stop()
		if err := d.pull(ctx2, ct, ref); err != nil {
			return err
		}
		ready := false
		id := fmt.Sprintf("bench-profile-%s-%d", app, time.Now().UnixNano())
		if err := d.run(ctx2, ct, ref, id, nil, func(line string) {
			ready = ready || strings.TrimSpace(line) == img.info.Ready
		}); err != nil {
			return err
		}
		if !ready {
			return fmt.Errorf("the container exited without printing %q\n%s", img.info.Ready, d.logTail())
		}
		out, err := exec.CommandContext(ctx2, filepath.Join(c.repo, "bin/socikit"), "profile", "export",
			"--address", metrics, ref, "-o", filepath.Join(profDir, "profile.json")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("socikit profile export: %v\n%s\n%s", err, out, d.logTail())
		}
		logf("%s: lazy start of auto in %v; socikit profile export: %s", app, time.Since(start).Round(time.Millisecond),
			strings.Join(strings.Fields(string(out)), " "))
		return nil
	}()
	if err != nil {
		return b, fmt.Errorf("recording the start-up profile: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(profDir, "profile.json"))
	if err != nil {
		return b, err
	}
	pr, err := profile.Decode(bytes.NewReader(raw))
	if err != nil {
		return b, fmt.Errorf("the exported profile: %w", err)
	}
	if len(pr.Files) == 0 {
		return b, errors.New("the exported profile is empty")
	}
	img.info.LazyProfileFiles, img.info.LazyProfileBytes = len(pr.Files), pr.Bytes()
	if p.logs != "" {
		_ = os.WriteFile(filepath.Join(p.logs, app+"-lazyprofile.profile.json"), raw, 0o644)
	}

	log, dur, err := bk.build(ctx, c, img.app, buildArgs{variant: vLazy, frontend: p.frontend,
		output: "type=soci,name=" + img.refs[vLazy] + ",push=true,registry.insecure=true",
		extra: []string{"--local", "prof=" + profDir, "--opt", "context:prof=local:prof",
			"--opt", "build-arg:SOCIKIT_PROFILE_CONTEXT=prof"}}, p.logs)
	if err != nil {
		return b, fmt.Errorf("build %s: %w", vLazy, err)
	}
	if m := noProfileMsg.Find(log); m != nil {
		return b, fmt.Errorf("build %s: %s", vLazy, strings.TrimSpace(string(m)))
	}
	b.MS = float64(dur) / float64(time.Millisecond)
	logf("%s: built and pushed %s in %v on the shared builder (profile: %d files, %.1f MB)", app, vLazy,
		dur.Round(time.Millisecond), len(pr.Files), mb(pr.Bytes()))
	n, err := sociIndexBytes(ctx, img.refs[vLazy])
	if err != nil {
		return b, fmt.Errorf("%s: %w", img.refs[vLazy], err)
	}
	img.indexBytes[vLazy] = n
	inspectSpans(ctx, c, img.app, img.refs[vLazy], filepath.Join(p.logs, app+"-"+vLazy+".spans.txt"))
	return b, nil
}

func runCmd(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		cmdline := strings.Join(args, " ")
		if len(cmdline) > 300 {
			cmdline = cmdline[:300] + "..."
		}
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), cmdline, err, lastLines(out, 20))
	}
	return nil
}

// sociIndexBytes returns the size of the SOCI v2 index manifest of ref's
// (single) image and of the zTOCs it lists.
func sociIndexBytes(ctx context.Context, ref string) (int64, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return 0, err
	}
	idx, err := remote.Index(r, remote.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return 0, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return 0, err
	}
	for _, m := range im.Manifests {
		desc, ok, err := soci.FindIndexInImageIndex(raw, digest.Digest(m.Digest.String()))
		if err != nil || !ok {
			continue
		}
		h, err := v1.NewHash(desc.Digest.String())
		if err != nil {
			return 0, err
		}
		b, err := remote.Get(r.Context().Digest(h.String()), remote.WithContext(ctx))
		if err != nil {
			return 0, err
		}
		ix, err := soci.ParseIndex(b.Manifest)
		if err != nil {
			return 0, err
		}
		n := int64(len(b.Manifest))
		for _, l := range ix.Layers {
			n += l.Ztoc.Size
		}
		for _, p := range ix.Prefetches {
			n += p.Prefetch.Size
		}
		return n, nil
	}
	return 0, fmt.Errorf("no SOCI index in the image index")
}

// describe fills the image's sizes: compressed from the registry,
// uncompressed and the start-up files from the build context (layers are
// base/, pkgs/, app/ in that order, as the Dockerfile COPYs them).
func describe(ctx context.Context, app string, a *images.App, ref string) (results.Image, error) {
	info := results.Image{Name: app, Ready: a.Ready}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return info, err
	}
	im, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return info, err
	}
	layers, err := im.Layers()
	if err != nil {
		return info, err
	}
	parts := []string{"base", "pkgs", "app"}
	if len(layers) != len(parts) {
		return info, fmt.Errorf("%s has %d layers, want %d (%s)", ref, len(layers), len(parts), strings.Join(parts, ", "))
	}
	info.Layers = len(layers)
	for i, l := range layers {
		size, err := l.Size()
		if err != nil {
			return info, err
		}
		raw, err := treeSize(filepath.Join(a.Context, parts[i]))
		if err != nil {
			return info, err
		}
		info.CompressedBytes += size
		info.UncompressedSize += raw
	}
	// The start-up files, in the order they are first opened, as one gzip
	// tar stream: what their bytes cost on the wire when fetched together.
	// The last layer holding a path is the one a reader sees.
	cw := &countWriter{}
	gz := gzip.NewWriter(cw)
	tw := tar.NewWriter(gz)
	for _, p := range a.StartupFiles {
		for i := len(parts) - 1; i >= 0; i-- {
			rel := strings.TrimPrefix(p, "/")
			if parts[i] == "app" {
				var ok bool
				if rel, ok = strings.CutPrefix(rel, "app/"); !ok {
					continue
				}
			}
			fi, err := os.Lstat(filepath.Join(a.Context, parts[i], rel))
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			info.StartupFiles++
			info.StartupBytes += fi.Size()
			if err := addFile(tw, filepath.Join(a.Context, parts[i], rel), p, fi); err != nil {
				return info, err
			}
			break
		}
	}
	if err := tw.Close(); err != nil {
		return info, err
	}
	if err := gz.Close(); err != nil {
		return info, err
	}
	info.StartupCompressed = cw.n
	if a.Ranges != nil {
		if err := rangeSizes(&info, a, parts); err != nil {
			return info, fmt.Errorf("%s: startup-ranges.json: %w", app, err)
		}
	}
	return info, nil
}

// rangeSizes fills the byte-range figures of info from a.Ranges: the
// bytes the start-up reads, file by file in first-access order, each
// file's merged ranges by offset, as one gzip stream (level 6, no tar
// headers): what those bytes cost on the wire at best.
func rangeSizes(info *results.Image, a *images.App, parts []string) error {
	cw := &countWriter{}
	gz, err := gzip.NewWriterLevel(cw, 6)
	if err != nil {
		return err
	}
	for _, f := range a.Ranges.Files {
		name := ""
		for i := len(parts) - 1; i >= 0 && name == ""; i-- {
			rel := strings.TrimPrefix(f.Path, "/")
			if parts[i] == "app" {
				var ok bool
				if rel, ok = strings.CutPrefix(rel, "app/"); !ok {
					continue
				}
			}
			if fi, err := os.Lstat(filepath.Join(a.Context, parts[i], rel)); err == nil && fi.Mode().IsRegular() {
				name = filepath.Join(a.Context, parts[i], rel)
			}
		}
		if name == "" {
			continue // not a regular file of the image (e.g. written at run time)
		}
		fh, err := os.Open(name)
		if err != nil {
			return err
		}
		n := int64(0)
		for _, r := range profile.MergeRanges(f.Ranges) {
			m, err := io.Copy(gz, io.NewSectionReader(fh, r.Offset, r.Length))
			if err != nil {
				fh.Close()
				return err
			}
			n += m
		}
		fh.Close()
		if n > 0 {
			info.RangeFiles++
			info.RangeBytes += n
		}
	}
	if err := gz.Close(); err != nil {
		return err
	}
	info.RangeCompressed = cw.n
	return nil
}

func addFile(tw *tar.Writer, path, name string, fi os.FileInfo) error {
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	hdr.Name = name
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// treeSize approximates the tar size of a directory: regular files'
// bytes rounded up to 512, plus a 512-byte header per entry.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n += 512
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += (fi.Size() + 511) &^ 511
		}
		return nil
	})
	return n, err
}

// checkRegistry fails early when the shaped registry is not up.
func checkRegistry(ctx context.Context, reg string) error {
	if _, err := getStats(ctx, reg); err != nil {
		return fmt.Errorf("the registry %s does not answer (scripts/bench-net.sh up): %w", reg, err)
	}
	return nil
}
