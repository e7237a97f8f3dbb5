//go:build integration

package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The repository's Dockerfile makes the docker-container driver's builder
// image (our buildkitd, buildctl and the socikit binaries on
// moby/buildkit:v0.34.2, or on a base made from Debian packages given as a
// named context). docker_test.go builds it without Docker Hub (host-built
// binaries, Debian base) and runs it under Docker Engine. The tests below
// check the Docker Hub path as far as it can be checked here:
// TestDockerfileLint runs BuildKit's own Dockerfile checker on it through
// our buildkitd, strictly (any warning fails), with stand-ins for the base
// images; TestDockerfileBinaries builds the binaries with the environment
// and command of the Dockerfile's build stage and checks they are static
// and run.

// dockerfileInfo is what the tests need from a Dockerfile, read with a
// small line parser (enough for the repository's Dockerfile: continuation
// lines, global ARG defaults, FROM ... AS, ENV key=value, RUN).
type dockerfileInfo struct {
	Syntax string              // value of the "# syntax=" directive
	Bases  []string            // base images of the stages, global ARGs expanded (no scratch, no stage)
	Stages []string            // stage names
	Env    map[string][]string // stage -> ENV key=value
	Run    map[string][]string // stage -> RUN commands (flags such as --mount dropped)
}

var syntaxDirective = regexp.MustCompile(`(?i)^#\s*syntax\s*=\s*(\S+)\s*$`)

func parseDockerfile(t testing.TB, b []byte) dockerfileInfo {
	t.Helper()
	d := dockerfileInfo{Env: map[string][]string{}, Run: map[string][]string{}}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 0 {
		if m := syntaxDirective.FindStringSubmatch(lines[0]); m != nil {
			d.Syntax = m[1]
		}
	}
	// Join continuation lines; drop comments and blank lines.
	var instrs []string
	var cur strings.Builder
	for _, l := range lines {
		tl := strings.TrimSpace(l)
		if cur.Len() == 0 && (tl == "" || strings.HasPrefix(tl, "#")) {
			continue
		}
		if strings.HasSuffix(tl, `\`) {
			cur.WriteString(strings.TrimSuffix(tl, `\`) + " ")
			continue
		}
		cur.WriteString(tl)
		instrs = append(instrs, cur.String())
		cur.Reset()
	}
	args := map[string]string{}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}
	stage := ""
	inStage := false
	isStage := map[string]bool{}
	for _, in := range instrs {
		f := strings.Fields(in)
		switch strings.ToUpper(f[0]) {
		case "ARG":
			if !inStage {
				for _, a := range f[1:] {
					k, v, _ := strings.Cut(a, "=")
					args[k] = v
				}
			}
		case "FROM":
			inStage = true
			var rest []string
			for _, w := range f[1:] {
				if !strings.HasPrefix(w, "--") {
					rest = append(rest, w)
				}
			}
			if len(rest) == 0 {
				t.Fatalf("Dockerfile: %q", in)
			}
			base := expand(rest[0])
			stage = ""
			if len(rest) == 3 && strings.EqualFold(rest[1], "AS") {
				stage = rest[2]
				d.Stages = append(d.Stages, stage)
			}
			if base != "scratch" && !isStage[base] {
				d.Bases = append(d.Bases, base)
			}
			if stage != "" {
				isStage[stage] = true
			}
		case "ENV":
			d.Env[stage] = append(d.Env[stage], f[1:]...)
		case "RUN":
			var cmd []string
			for _, w := range f[1:] {
				if len(cmd) == 0 && strings.HasPrefix(w, "--") {
					continue
				}
				cmd = append(cmd, w)
			}
			d.Run[stage] = append(d.Run[stage], strings.Join(cmd, " "))
		}
	}
	return d
}

// buildctlOut runs buildctl against the sandbox's buildkitd and returns its
// stdout (where it prints a subrequest's result) and stderr (progress)
// apart.
func (s *Sandbox) buildctlOut(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, s.BuildctlPath, append([]string{"--addr", s.Addr}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// dockerfileCheck lints the Dockerfile in dir (build context ctxDir) with
// BuildKit's checker, the dockerfile frontend's lint subrequest (what
// `docker buildx build --call=check` asks for), through the sandbox's
// buildkitd, and returns the violations it prints. Every base image is
// given the busybox layout as a named context, so nothing is fetched from
// Docker Hub (but noStandin, which is looked up as it is). Then, as a
// build would, it converts every stage, one target at a time, with
// BUILDKIT_DOCKERFILE_CHECK=error=true;experimental=all (the outline
// subrequest), and returns the first error: that fails on any lint
// violation of the stages it reaches, and on what the lint subrequest
// reports only in its JSON result, which buildctl does not print (a base
// image that cannot be resolved, a malformed Dockerfile).
func dockerfileCheck(t *testing.T, s *Sandbox, ctxDir, dir, noStandin string) (warnings string, strictErr error) {
	t.Helper()
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	must(t, err)
	info := parseDockerfile(t, df)
	layout, standin := makeBaseLayout(t)
	args := []string{"build", "--progress=plain",
		"--frontend", "dockerfile.v0",
		"--local", "context=" + ctxDir, "--local", "dockerfile=" + dir,
		"--oci-layout", "standin=" + layout,
		// Every rule, experimental ones too; a violation fails a build.
		"--opt", "build-arg:BUILDKIT_DOCKERFILE_CHECK=error=true;experimental=all",
	}
	if info.Syntax != "" {
		// "# syntax=docker/dockerfile:1" makes the builtin frontend
		// forward the build to the docker/dockerfile image on Docker
		// Hub. A forwarded frontend receives the option cmdline (the
		// directive's value) and does not forward again: set it, so that
		// the builtin frontend, BuildKit v0.34.2's, does the work.
		args = append(args, "--opt", "cmdline="+info.Syntax)
	}
	for _, b := range info.Bases {
		if b == noStandin {
			continue
		}
		args = append(args, "--opt", "context:"+b+"=oci-layout://standin@"+standin.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, progress, err := s.buildctlOut(ctx, append(args, "--opt", "requestid=frontend.lint")...)
	if err != nil {
		t.Fatalf("buildctl lint: %v\n%s%s\n-- buildkitd log --\n%s", err, out, progress, lastLines(s.Log(), 30))
	}
	// A forwarded build would pull docker/dockerfile: make sure it was not.
	if strings.Contains(progress, "docker/dockerfile") {
		t.Fatalf("the lint was forwarded to the docker/dockerfile image:\n%s", progress)
	}
	for _, st := range info.Stages {
		o, p, err := s.buildctlOut(ctx, append(args, "--opt", "requestid=frontend.outline", "--opt", "target="+st)...)
		if err != nil {
			msg := lastLines(p, 1)
			for _, l := range strings.Split(p, "\n") {
				if strings.HasPrefix(l, "error: ") {
					msg = l
				}
			}
			return out, fmt.Errorf("target %s: %v: %s%s", st, err, o, msg)
		}
	}
	return out, nil
}

// TestDockerfileLint: the repository's Dockerfile passes BuildKit's checks
// (v0.34.2's rules, experimental ones included) without a single warning,
// and every stage converts with check=error=true; copies with a deliberate
// lint problem fail both ways.
func TestDockerfileLint(t *testing.T) {
	s := NewSandbox(t)
	root := repoRoot(t)
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	must(t, err)
	info := parseDockerfile(t, df)
	t.Logf("Dockerfile: syntax %q, base images %v (stand-ins: busybox layout), stages %v", info.Syntax, info.Bases, info.Stages)
	if len(info.Bases) < 2 || len(info.Stages) < 3 {
		t.Fatalf("Dockerfile parsed as %+v", info)
	}

	start := time.Now()
	warnings, err := dockerfileCheck(t, s, root, root, "")
	if strings.TrimSpace(warnings) != "" {
		t.Errorf("BuildKit's checker reports on the Dockerfile:\n%s", warnings)
	}
	if err != nil {
		t.Errorf("Dockerfile with check=error=true: %v", err)
	}
	t.Logf("lint and strict conversion of %d stages in %s", len(info.Stages), time.Since(start).Round(time.Millisecond))

	// The check can fail: copies of the Dockerfile with one problem each.
	bad := []struct {
		rule     string
		old, new string
	}{
		// 'as' in lower case after FROM in upper case.
		{"FromAsCasing", " AS build", " as build"},
		// ENV key value, the legacy form, in the build stage.
		{"LegacyKeyValueFormat", "ENV CGO_ENABLED=0 SKIP_RUNC=1", "ENV CGO_ENABLED 0"},
		// An ARG's comment that does not start with its name (an
		// experimental rule).
		{"InvalidDefinitionDescription", "# GO_VERSION is", "# The Go version is"},
	}
	for _, c := range bad {
		t.Run(c.rule, func(t *testing.T) {
			if !bytes.Contains(df, []byte(c.old)) {
				t.Fatalf("Dockerfile has no %q to change", c.old)
			}
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), bytes.Replace(df, []byte(c.old), []byte(c.new), 1), 0o644))
			warnings, err := dockerfileCheck(t, s, root, dir, "")
			if !strings.Contains(warnings, "WARNING: "+c.rule) {
				t.Errorf("lint of %q: no %s warning:\n%s", c.new, c.rule, warnings)
			}
			if err == nil {
				t.Errorf("%q with check=error=true: converted without an error", c.new)
			} else if !strings.Contains(err.Error(), "lint violation found for rules: "+c.rule) {
				t.Errorf("%q with check=error=true: %v", c.new, err)
			}
			t.Logf("caught:%s", warnings)
		})
	}

	// Why the strict conversion is needed: a base image that cannot be
	// resolved (here one missing from the sandbox registry) ends the lint
	// with an error that only its JSON result holds; buildctl prints no
	// warning and exits 0.
	t.Run("BaseNotResolved", func(t *testing.T) {
		missing := s.Registry + "/missing/"
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), bytes.Replace(df, []byte("FROM golang:"), []byte("FROM "+missing+"golang:"), 1), 0o644))
		warnings, err := dockerfileCheck(t, s, root, dir, missing+info.Bases[0])
		if strings.TrimSpace(warnings) != "" {
			t.Errorf("lint: %s", warnings)
		}
		if err == nil {
			t.Fatalf("FROM %s%s: the strict conversion passed", missing, info.Bases[0])
		}
		t.Logf("lint output %q; strict conversion: %v", warnings, err)
	})
}

// TestDockerfileBinaries builds the builder image's binaries the way the
// Dockerfile's build stage does (scripts/builder-binaries.sh), with the
// environment its ENV sets and the variables its RUN line gives the script
// (BIN pointed at a directory of the test's), and checks that all of them
// are static executables (the stock image is Alpine: no glibc) that run
// and print their versions. The output directory is kept between runs
// ($TMPDIR/socikit-e2e-static, shared with docker_test.go's builder image),
// so that with a warm Go build cache the test takes seconds.
func TestDockerfileBinaries(t *testing.T) {
	root := repoRoot(t)
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	must(t, err)
	info := parseDockerfile(t, df)
	env := info.Env["build"]
	var script []string
	for _, r := range info.Run["build"] {
		if strings.Contains(r, "scripts/builder-binaries.sh") {
			script = strings.Fields(r)
		}
	}
	if len(script) == 0 {
		t.Fatalf("the Dockerfile's build stage does not run scripts/builder-binaries.sh: %+v", info.Run)
	}
	// VAR=value words before the script are its environment too.
	for len(script) > 1 && strings.Contains(script[0], "=") {
		env = append(env, script[0])
		script = script[1:]
	}
	if script[0] != "scripts/builder-binaries.sh" || len(script) != 1 {
		t.Fatalf("build stage runs %q: expected scripts/builder-binaries.sh alone", strings.Join(script, " "))
	}
	want := map[string]string{"CGO_ENABLED": "0", "SKIP_RUNC": "1"}
	got := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("the build stage sets %s=%q, want %q (static binaries for the Alpine image, no runc install)", k, got[k], v)
		}
	}
	if got["BIN"] == "" {
		t.Fatalf("the build stage gives the script no BIN: %v", env)
	}

	out, work := builderBin()
	must(t, os.MkdirAll(out, 0o755))
	cmdEnv := os.Environ()
	for _, e := range env {
		if strings.HasPrefix(e, "BIN=") {
			e = "BIN=" + out
		}
		cmdEnv = append(cmdEnv, e)
	}
	// A work module of its own: another build of bin/ may run meanwhile.
	cmdEnv = append(cmdEnv, "BUILDKITD_WORKDIR="+work)
	t.Logf("%s %s", strings.Join(env, " "), script[0])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, script[0]))
	cmd.Dir = root
	cmd.Env = cmdEnv
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script[0], err, b)
	}
	t.Logf("built in %s", time.Since(start).Round(time.Millisecond))

	names := []string{"buildkitd", "buildctl"}
	for _, c := range []string{"socikit", "socikit-snapshotter", "socikit-frontend", "socikit-trace"} {
		if _, err := os.Stat(filepath.Join(root, "cmd", c)); err == nil {
			names = append(names, c)
		}
	}
	for _, name := range names {
		p := filepath.Join(out, name)
		f, err := elf.Open(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
				t.Errorf("%s has a %s program header: not a static executable", name, prog.Type)
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v (%v)", name, libs, err)
		}
		f.Close()
		if b, err := exec.Command("file", p).Output(); err == nil {
			t.Logf("%s", bytes.TrimSpace(b))
			if !bytes.Contains(b, []byte("statically linked")) {
				t.Errorf("file(1) does not call %s statically linked", name)
			}
		}
		v, err := exec.Command(p, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", name, err, v)
		}
		t.Logf("%s --version: %s", name, bytes.TrimSpace(v))
		if name == "buildkitd" && !bytes.Contains(v, []byte("v0.34.2+socikit")) {
			t.Errorf("buildkitd --version: %s: not BuildKit v0.34.2 with socikit", v)
		}
		if name == "buildctl" && !bytes.Contains(v, []byte("v0.34.2")) {
			t.Errorf("buildctl --version: %s: not v0.34.2", v)
		}
		if strings.HasPrefix(name, "socikit") && !regexp.MustCompile(`^`+name+` v\S+ \(commit ([0-9a-f]{12}|unknown)\)\n$`).Match(v) {
			t.Errorf("%s --version: %q: not \"%s VERSION (commit COMMIT)\"", name, v, name)
		}
	}
	// The soci exporter is in: its attributes are in buildkitd's binary.
	if b, err := os.ReadFile(filepath.Join(out, "buildkitd")); err != nil || !bytes.Contains(b, []byte("soci-span-size")) {
		t.Errorf("buildkitd: no soci exporter compiled in (%v)", err)
	}
}
