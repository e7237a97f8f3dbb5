//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The Docker Engine path (docs/docker.md): Debian's docker.io (Docker
// Engine 20.10) started by scripts/docker-start.sh with its state in a
// directory of its own, the builder image built by scripts/builder-image.sh
// with our buildkitd and pushed to the sandbox registry, and buildx
// (scripts/buildx-build.sh) as a docker CLI plugin, with the
// docker-container driver on that image, as docs/docker.md tells a user.
// The daemon is stopped by scripts/docker-stop.sh when the tests end.

// Docker is the test's Docker Engine and its client.
type Docker struct {
	CLI    string // docker client
	Host   string // DOCKER_HOST
	Dir    string // the daemon's state directory (docker-start.sh DIR)
	Config string // DOCKER_CONFIG, with cli-plugins/docker-buildx
}

var (
	dockerOnce sync.Once
	dk         *Docker
	dkSkip     string
	dkErr      string
)

// NewDocker starts the Docker Engine on first use (docker.io is installed if
// missing) and returns it, or skips t when the machine cannot run it: not
// root, no bin/docker-buildx, docker.io not installable.
func NewDocker(t *testing.T, s *Sandbox) *Docker {
	t.Helper()
	root := repoRoot(t)
	bin := os.Getenv("BIN")
	if bin == "" {
		bin = filepath.Join(root, "bin")
	}
	plugin := filepath.Join(bin, "docker-buildx")
	if _, err := os.Stat(plugin); err != nil {
		t.Skipf("%s missing: run scripts/buildx-build.sh", plugin)
	}
	dockerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "socikit-e2e-docker-")
		if err != nil {
			dkErr = err.Error()
			return
		}
		start := time.Now()
		cmd := exec.Command(filepath.Join(root, "scripts/docker-start.sh"), dir)
		cmd.Env = append(os.Environ(), "DOCKERD_INSECURE_REGISTRIES="+s.Registry)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		stops = append(stops, func() {
			args := []string{"--rm", dir}
			if os.Getenv("E2E_KEEP") != "" {
				args = []string{dir}
			}
			if b, err := exec.Command(filepath.Join(root, "scripts/docker-stop.sh"), args...).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "docker-stop.sh: %v\n%s", err, b)
			}
		})
		if err != nil {
			if strings.Contains(stderr.String(), "cannot install docker.io") {
				dkSkip = "Docker Engine not available: " + strings.TrimSpace(stderr.String())
				return
			}
			dkErr = "docker-start.sh: " + err.Error() + ": " + stderr.String()
			return
		}
		d := &Docker{Dir: dir}
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "DOCKER_HOST="); ok {
				d.Host = v
			}
		}
		// The client of the daemon's own release (Debian's docker.io),
		// unless DOCKER_CLI names another.
		d.CLI = os.Getenv("DOCKER_CLI")
		if d.CLI == "" {
			d.CLI = "/usr/bin/docker"
			if _, err := os.Stat(d.CLI); err != nil {
				d.CLI, _ = exec.LookPath("docker")
			}
		}
		if d.CLI == "" {
			dkErr = "no docker CLI"
			return
		}
		if d.Config, err = os.MkdirTemp("", "socikit-e2e-docker-config-"); err != nil {
			dkErr = err.Error()
			return
		}
		stops = append(stops, func() { os.RemoveAll(d.Config) })
		if err := os.MkdirAll(filepath.Join(d.Config, "cli-plugins"), 0o755); err != nil {
			dkErr = err.Error()
			return
		}
		if err := os.Symlink(plugin, filepath.Join(d.Config, "cli-plugins", "docker-buildx")); err != nil {
			dkErr = err.Error()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		v, err := d.Run(ctx, "version", "--format", "client {{.Client.Version}} (API {{.Client.APIVersion}}), engine {{.Server.Version}} (API {{.Server.APIVersion}})")
		if err != nil {
			dkErr = "docker version: " + err.Error() + ": " + v
			return
		}
		bv, _ := d.Run(ctx, "buildx", "version")
		t.Logf("Docker Engine started in %s: %s; %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(v), strings.TrimSpace(bv))
		dk = d
	})
	if dkSkip != "" {
		t.Skip(dkSkip)
	}
	if dk == nil {
		t.Fatalf("docker: %s", dkErr)
	}
	return dk
}

// Run runs the docker CLI against the test's daemon, with the test's
// DOCKER_CONFIG, and returns its stdout and stderr.
func (d *Docker) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.CLI, args...)
	cmd.Env = d.env()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// env is the environment of the docker CLI and of scripts calling it.
func (d *Docker) env() []string {
	env := []string{"DOCKER_HOST=" + d.Host, "DOCKER_CONFIG=" + d.Config, "BUILDX_NO_DEFAULT_LOAD=1"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DOCKER_") && !strings.HasPrefix(e, "BUILDX_") && !strings.HasPrefix(e, "BUILDKIT_") {
			env = append(env, e)
		}
	}
	return env
}

var (
	builderImageOnce sync.Once
	builderImageRef  string
	builderImageErr  string
)

// builderBin is where scripts/builder-binaries.sh builds the builder
// image's binaries in the tests (TestDockerfileBinaries and builderImage;
// kept between runs: with a warm Go build cache and nothing changed, go
// build relinks nothing), and its work module.
func builderBin() (bin, work string) {
	return filepath.Join(os.TempDir(), "socikit-e2e-static"), filepath.Join(os.TempDir(), "socikit-e2e-static-work")
}

// builderImage builds the builder image with scripts/builder-image.sh
// (host-built binaries, the Debian-package base) through the sandbox's
// buildkitd on first use, pushes it to the sandbox registry and returns
// its reference (by tag).
func builderImage(t *testing.T, s *Sandbox) string {
	t.Helper()
	builderImageOnce.Do(func() {
		ref := s.Registry + "/socikit/buildkit:e2e"
		bin, work := builderBin()
		start := time.Now()
		out, err := runBuilderImage(s, ref, "BUILDER_BIN="+bin, "BUILDKITD_WORKDIR="+work)
		if err != nil {
			builderImageErr = fmt.Sprintf("scripts/builder-image.sh: %v\n%s\n-- buildkitd log --\n%s", err, out, lastLines(s.Log(), 30))
			return
		}
		t.Logf("builder image %s built and pushed in %s", lastLines(out, 1), time.Since(start).Round(time.Millisecond))
		builderImageRef = ref
	})
	if builderImageRef == "" {
		if builderImageErr == "" {
			builderImageErr = "failed in an earlier test"
		}
		t.Fatalf("builder image: %s", builderImageErr)
	}
	return builderImageRef
}

// runBuilderImage runs scripts/builder-image.sh REF against the sandbox's
// buildkitd with extra environment.
func runBuilderImage(s *Sandbox, ref string, env ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	root, _ := filepath.Abs("../..")
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts/builder-image.sh"), "--addr", s.Addr, ref)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "BIN="+filepath.Dir(s.BuildctlPath), "BUILDER_OUTPUT_ATTRS=registry.insecure=true"), env...)
	b, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(b)), err
}

// buildkitdConfig writes the builder's buildkitd.toml: the sandbox
// registry over plain HTTP.
func buildkitdConfig(t *testing.T, s *Sandbox) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "buildkitd.toml")
	must(t, os.WriteFile(f, []byte(fmt.Sprintf("[registry.%q]\n  http = true\n  insecure = true\n", s.Registry)), 0o644))
	return f
}

var (
	dockerBuilderOnce sync.Once
	dockerBuilderName string
	dockerBuilderErr  string
)

// dockerBuilder creates, on first use, the buildx builder every test
// shares: docker-container driver on the builder image, host network (the
// sandbox registry is on loopback), the registry as plain HTTP in its
// buildkitd.toml.
func dockerBuilder(t *testing.T, s *Sandbox, d *Docker) string {
	t.Helper()
	img := builderImage(t, s)
	dockerBuilderOnce.Do(func() {
		name := "socikit-e2e"
		out, err := createDockerBuilder(t, s, d, name, img)
		if err != nil {
			dockerBuilderErr = fmt.Sprintf("docker buildx create: %v\n%s", err, out)
			return
		}
		dockerBuilderName = name
	})
	if dockerBuilderName == "" {
		if dockerBuilderErr == "" {
			dockerBuilderErr = "failed in an earlier test"
		}
		t.Fatalf("buildx builder: %s", dockerBuilderErr)
	}
	return dockerBuilderName
}

// createDockerBuilder runs the docker buildx create command of
// docs/docker.md and returns its output.
func createDockerBuilder(t *testing.T, s *Sandbox, d *Docker, name, img string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := d.Run(ctx, "buildx", "create", "--name", name, "--driver", "docker-container",
		"--driver-opt", "image="+img, "--driver-opt", "network=host",
		"--buildkitd-config", buildkitdConfig(t, s), "--bootstrap")
	if err == nil {
		t.Logf("docker buildx create --driver docker-container (image %s) + bootstrap: %s", img, time.Since(start).Round(time.Millisecond))
	}
	return out, err
}

// buildxHello runs docker buildx build on examples/hello (busybox base
// from a local OCI layout through --build-context) with the given builder
// and flags, and returns the output and the wall-clock time.
func (d *Docker) buildxHello(t *testing.T, builder string, h helloInput, flags ...string) (string, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"buildx", "build", "--builder", builder, "--progress", "plain",
		"--build-context", "base=oci-layout://" + h.Layout + "@" + h.Base.String()}, flags...)
	start := time.Now()
	out, err := d.Run(ctx, append(args, h.Dir)...)
	return out, time.Since(start), err
}

// builderLog returns the last lines of a buildx builder container's log.
func (d *Docker) builderLog(builder string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := d.Run(ctx, "logs", "--tail", "30", "buildx_buildkit_"+builder+"0")
	return out
}

// TestDockerBuilderImage: the builder image built by
// scripts/builder-image.sh (no Docker Hub) runs under Docker Engine, starts
// buildkitd by default, and carries our buildkitd, buildctl, runc and the
// socikit binaries, each printing its version.
func TestDockerBuilderImage(t *testing.T) {
	s := NewSandbox(t)
	d := NewDocker(t, s)
	img := builderImage(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if out, err := d.Run(ctx, "pull", img); err != nil {
		t.Fatalf("docker pull %s: %v\n%s", img, err, out)
	}
	t.Logf("docker pull: %s", time.Since(start).Round(time.Millisecond))
	out, err := d.Run(ctx, "image", "inspect", "--format", "{{json .Config.Entrypoint}} {{.Size}}", img)
	if err != nil {
		t.Fatalf("docker image inspect: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, `["buildkitd"] `) {
		t.Errorf("entrypoint and size: %s, want buildkitd", out)
	}
	t.Logf("entrypoint and size: %s", strings.TrimSpace(out))

	bins := []string{"buildkitd", "buildctl", "runc", "socikit", "socikit-snapshotter", "socikit-frontend", "socikit-trace"}
	script := ""
	for _, b := range bins {
		script += fmt.Sprintf("printf '%%s: ' %s; %s --version | head -1; ", b, b)
	}
	out, err = d.Run(ctx, "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", img, "-c", script)
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", img, err, out)
	}
	t.Logf("versions:\n%s", out)
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			got[k] = v
		}
	}
	want := map[string]*regexp.Regexp{
		"buildkitd": regexp.MustCompile(`^buildkitd github.com/socikit/socikit/cmd/buildkitd v0\.34\.2\+socikit`),
		"buildctl":  regexp.MustCompile(`^buildctl github.com/moby/buildkit v0\.34\.2`),
		"runc":      regexp.MustCompile(`^runc version \d`),
	}
	// The socikit binaries: the module version and the commit
	// scripts/builder-binaries.sh set (-ldflags -X).
	version := os.Getenv("SOCIKIT_VERSION")
	if version == "" {
		version = "v0.0.0-dev"
	}
	for _, b := range bins[3:] {
		want[b] = regexp.MustCompile(`^` + b + ` ` + regexp.QuoteMeta(version) + ` \(commit [0-9a-f]{12}\)$`)
	}
	for _, b := range bins {
		if !want[b].MatchString(got[b]) {
			t.Errorf("%s --version: %q, want %s", b, got[b], want[b])
		}
	}
}

// TestDockerBuildxSoci is docs/docker.md's main path: docker buildx with
// the docker-container driver on the builder image builds examples/hello
// (base image through --build-context) with --output type=soci and pushes
// it; the pushed image holds the SOCI index and the provenance attestation;
// Docker Engine pulls it in full and runs it; containerd with
// socikit-snapshotter pulls it lazily and runs it.
func TestDockerBuildxSoci(t *testing.T) {
	s := NewSandbox(t)
	d := NewDocker(t, s)
	builder := dockerBuilder(t, s, d)
	h := prepareHello(t)
	ref := s.Registry + "/hello:docker"
	out, took, err := d.buildxHello(t, builder, h,
		"--output", "type=soci,name="+ref+",push=true,soci-min-layer-size=0")
	if err != nil {
		t.Fatalf("docker buildx build: %v\n%s\n-- builder log --\n%s", err, out, d.builderLog(builder))
	}
	t.Logf("docker buildx build --output type=soci,push=true: %s", took.Round(time.Millisecond))
	checkBuildxSociPush(t, ref)

	t.Run("DockerRun", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		out, err := d.Run(ctx, "run", "--rm", ref)
		if err != nil {
			t.Fatalf("docker run %s: %v\n%s", ref, err, out)
		}
		t.Logf("docker run (full pull + run): %s\n%s", time.Since(start).Round(time.Millisecond), out)
		for _, w := range []string{"3000000 /data/random.bin", "payload.bin", "Dockerfile"} {
			if !strings.Contains(out, w) {
				t.Errorf("docker run output lacks %q:\n%s", w, out)
			}
		}
	})

	t.Run("Lazy", func(t *testing.T) {
		runLazily(t, ref)
	})
}

// runLazily pulls ref with containerd 2.4.2 and socikit-snapshotter
// (scripts/containerd-start.sh) and runs it: the layers are FUSE mounts
// of the snapshotter, not downloads.
func runLazily(t *testing.T, ref string) {
	t.Helper()
	root := repoRoot(t)
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "socikit-snapshotter"} {
		if _, err := os.Stat(filepath.Join(root, "bin", b)); err != nil {
			t.Skipf("bin/%s missing: run scripts/containerd-build.sh", b)
		}
	}
	dir, err := os.MkdirTemp("", "socikit-e2e-docker-ctrd-")
	must(t, err)
	out, err := exec.Command(filepath.Join(root, "scripts/containerd-start.sh"), dir).CombinedOutput()
	t.Cleanup(func() {
		args := []string{dir}
		if os.Getenv("E2E_KEEP") == "" && !t.Failed() {
			args = []string{"--rm", dir}
		}
		if out, err := exec.Command(filepath.Join(root, "scripts/containerd-stop.sh"), args...).CombinedOutput(); err != nil {
			t.Logf("containerd-stop.sh: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("containerd-start.sh: %v\n%s", err, out)
	}
	ctr := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(root, "bin/ctr"), append([]string{"-a", filepath.Join(dir, "containerd.sock"), "-n", "e2e"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return stdout.String() + stderr.String(), err
		}
		return stdout.String(), nil
	}
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "socikit.log"))
		return lastLines(string(b), 30)
	}
	start := time.Now()
	if out, err := ctr("image", "pull", "--snapshotter", "socikit", "--plain-http", ref); err != nil {
		t.Fatalf("ctr image pull --snapshotter socikit: %v\n%s\n-- socikit-snapshotter log --\n%s", err, out, logs())
	}
	t.Logf("lazy pull: %s", time.Since(start).Round(time.Millisecond))
	mounts := 0
	b, err := os.ReadFile("/proc/self/mounts")
	must(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && strings.HasPrefix(f[1], filepath.Join(dir, "socikit")+"/") && strings.HasPrefix(f[2], "fuse") {
			mounts++
		}
	}
	if mounts == 0 {
		t.Fatalf("no lazy (FUSE) layer mounts under %s/socikit after the pull\n-- socikit-snapshotter log --\n%s", dir, logs())
	}
	start = time.Now()
	id := fmt.Sprintf("e2e-docker-lazy-%d", time.Now().UnixNano())
	run, err := ctr("run", "--rm", "--snapshotter", "socikit", ref, id, "/bin/sh", "-c", "wc -c /data/random.bin; ls /app")
	if err != nil {
		t.Fatalf("ctr run --snapshotter socikit: %v\n%s\n-- socikit-snapshotter log --\n%s", err, run, logs())
	}
	t.Logf("%d lazy layer mounts; run: %s\n%s", mounts, time.Since(start).Round(time.Millisecond), run)
	for _, w := range []string{"3000000 /data/random.bin", "payload.bin"} {
		if !strings.Contains(run, w) {
			t.Errorf("container output lacks %q:\n%s", w, run)
		}
	}
}

// TestDockerBuildxOCI: the docker-container builder writes the OCI layout
// tar with the SOCI index (type=oci,dest=FILE plus soci-* attributes), its
// provenance attestation included, on the client side.
func TestDockerBuildxOCI(t *testing.T) {
	s := NewSandbox(t)
	d := NewDocker(t, s)
	builder := dockerBuilder(t, s, d)
	h := prepareHello(t)
	tarFile := filepath.Join(t.TempDir(), "hello.tar")
	out, took, err := d.buildxHello(t, builder, h,
		"--output", "type=oci,dest="+tarFile+",name=example.com/hello:docker,soci-min-layer-size=0")
	if err != nil {
		t.Fatalf("docker buildx build: %v\n%s\n-- builder log --\n%s", err, out, d.builderLog(builder))
	}
	t.Logf("docker buildx build --output type=oci,dest=...: %s", took.Round(time.Millisecond))
	checkBuildxOCITar(t, tarFile)
}

// TestDockerCIExample runs examples/ci/buildx-soci.sh, the shell form of
// the workflow's soci-push job, against the test's Docker Engine: it
// creates its builder on the builder image and pushes the SOCI image.
func TestDockerCIExample(t *testing.T) {
	s := NewSandbox(t)
	d := NewDocker(t, s)
	img := builderImage(t, s)
	root := repoRoot(t)
	wf, err := os.ReadFile(filepath.Join(root, "examples/ci/github-workflow.yml"))
	must(t, err)
	for _, w := range []string{"docker/setup-buildx-action", "driver: docker-container", "driver-opts: image=", "docker/build-push-action", "outputs: type=soci,"} {
		if !bytes.Contains(wf, []byte(w)) {
			t.Errorf("examples/ci/github-workflow.yml lacks %q", w)
		}
	}
	h := prepareHello(t)
	ref := s.Registry + "/hello:ci-docker"
	name := fmt.Sprintf("socikit-ci-%d", time.Now().UnixNano()%1e6)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d.Run(ctx, "buildx", "rm", name)
	})
	cmd := exec.CommandContext(ctx, filepath.Join(root, "examples/ci/buildx-soci.sh"), h.Dir, ref,
		"--progress", "plain", "--build-context", "base=oci-layout://"+h.Layout+"@"+h.Base.String())
	cmd.Env = append(d.env(), "DOCKER="+d.CLI, "SOCIKIT_BUILDER_IMAGE="+img, "BUILDER_NAME="+name,
		"BUILDER_NETWORK=host", "BUILDKITD_CONFIG="+buildkitdConfig(t, s), "SOCI_ATTRS=soci-index=v2,soci-min-layer-size=0")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("examples/ci/buildx-soci.sh: %v\n%s", err, b)
	}
	t.Logf("examples/ci/buildx-soci.sh (builder created, built, pushed): %s", time.Since(start).Round(time.Millisecond))
	checkBuildxSociPush(t, ref)
}

// TestDockerStockBuilderRefusesSoci: a builder image whose buildkitd is
// stock BuildKit v0.34.2 (built from the module proxy as
// scripts/buildkit-build.sh does, without our file) makes buildx fail
// with BuildKit's own message: no "soci" exporter.
func TestDockerStockBuilderRefusesSoci(t *testing.T) {
	s := NewSandbox(t)
	d := NewDocker(t, s)
	builderImage(t, s) // builds the binaries and the vendored work module
	bin, work := builderBin()
	stock := t.TempDir()
	ents, err := os.ReadDir(bin)
	must(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(bin, e.Name()))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(stock, e.Name()), b, 0o755))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	gb := exec.CommandContext(ctx, "go", "build", "-mod=vendor", "-trimpath",
		"-ldflags", "-s -w -X github.com/moby/buildkit/version.Version=v0.34.2",
		"-o", filepath.Join(stock, "buildkitd"), "github.com/moby/buildkit/cmd/buildkitd")
	gb.Dir = work
	gb.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if b, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("go build stock buildkitd: %v\n%s", err, b)
	}
	t.Logf("stock buildkitd built in %s", time.Since(start).Round(time.Millisecond))
	img := s.Registry + "/socikit/buildkit:stock"
	if out, err := runBuilderImage(s, img, "BUILDER_PREBUILT=1", "BUILDER_BIN="+stock); err != nil {
		t.Fatalf("scripts/builder-image.sh (stock buildkitd): %v\n%s", err, out)
	}
	name := "socikit-e2e-stock"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d.Run(ctx, "buildx", "rm", name)
	})
	if out, err := createDockerBuilder(t, s, d, name, img); err != nil {
		t.Fatalf("docker buildx create: %v\n%s", err, out)
	}
	h := prepareHello(t)
	out, _, err := d.buildxHello(t, name, h, "--output", "type=soci,name="+s.Registry+"/hello:stock,push=true")
	if err == nil {
		t.Fatalf("docker buildx build --output type=soci on stock BuildKit succeeded:\n%s", out)
	}
	if !strings.Contains(out, `exporter "soci" could not be found`) {
		t.Fatalf("docker buildx build on stock BuildKit: %v, without BuildKit's unknown-exporter message:\n%s", err, out)
	}
	t.Logf("stock BuildKit: %s", lastLines(out, 1))
}

// dockerExportSeconds is the duration of the exporter step in buildx's
// plain progress: the last DONE line of the "exporting to ..." vertex
// (buildx prints the vertex again when the push completes).
func dockerExportSeconds(out string) (float64, error) {
	m := exporterStep.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no exporter step in the progress output")
	}
	all := regexp.MustCompile(`(?m)^#`+m[1]+` DONE ([0-9.]+)s$`).FindAllStringSubmatch(out, -1)
	if all == nil {
		return 0, fmt.Errorf("exporter step #%s has no DONE line", m[1])
	}
	return strconv.ParseFloat(all[len(all)-1][1], 64)
}

// TestDockerSociVsImageTime builds examples/hello on the docker-container
// builder with --output type=image and type=soci, both pushing, --no-cache
// (every run executes the RUN step and compresses every layer), rounds
// alternating which type goes first, and reports the medians of the
// wall-clock time of `docker buildx build` and of the exporter step, and
// their soci/image ratios (goal <= 1.05; docs/docker.md). It fails only
// when the wall-clock ratio exceeds E2E_DOCKER_MAX_RATIO (default 1.5: a
// 2-core machine shared with other jobs is noisy). E2E_DOCKER_ROUNDS sets
// the number of rounds (default 3).
func TestDockerSociVsImageTime(t *testing.T) {
	s := NewSandbox(t)
	d := NewDocker(t, s)
	builder := dockerBuilder(t, s, d)
	h := prepareHello(t)
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("E2E_DOCKER_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	maxRatio := 1.5
	if v, err := strconv.ParseFloat(os.Getenv("E2E_DOCKER_MAX_RATIO"), 64); err == nil && v > 0 {
		maxRatio = v
	}
	kinds := [2]string{"image", "soci"}
	var wall, exp [2][]float64
	// A first build warms the builder (base layout, frontend) for both.
	if out, _, err := d.buildxHello(t, builder, h, "--output", "type=image,name="+s.Registry+"/perf-warm:0,push=true"); err != nil {
		t.Fatalf("warm-up build: %v\n%s", err, out)
	}
	for i := 0; i < rounds; i++ {
		for j := 0; j < 2; j++ {
			k := (i + j) % 2
			ref := fmt.Sprintf("%s/perf-%s:%d", s.Registry, kinds[k], i)
			out, took, err := d.buildxHello(t, builder, h, "--no-cache", "--output", "type="+kinds[k]+",name="+ref+",push=true")
			if err != nil {
				t.Fatalf("%s build: %v\n%s", kinds[k], err, out)
			}
			e, err := dockerExportSeconds(out)
			if err != nil {
				t.Fatalf("%s build: %v\n%s", kinds[k], err, out)
			}
			wall[k] = append(wall[k], took.Seconds())
			exp[k] = append(exp[k], e)
			t.Logf("round %d type=%s: docker buildx build %.2fs, exporter step %.2fs (%s)", i, kinds[k], took.Seconds(), e, exportSteps(out))
			if os.Getenv("E2E_DOCKER_PROGRESS") != "" {
				t.Logf("progress:\n%s", out)
			}
		}
	}
	wi, ws := median(wall[0]), median(wall[1])
	ei, es := median(exp[0]), median(exp[1])
	// The two builds of a round run back to back: the median of the
	// per-round ratios is less sensitive to the machine's load drifting.
	pairs := make([]float64, rounds)
	for i := range pairs {
		pairs[i] = wall[1][i] / wall[0][i]
	}
	t.Logf("medians of %d rounds: docker buildx build type=image %.2fs, type=soci %.2fs (ratio %.3f; median of per-round ratios %.3f); exporter step %.2fs vs %.2fs (ratio %.3f)",
		rounds, wi, ws, ws/wi, median(pairs), ei, es, es/ei)
	if ws/wi > maxRatio {
		t.Errorf("type=soci takes %.3fx the time of type=image (limit %.2f)", ws/wi, maxRatio)
	}
}
