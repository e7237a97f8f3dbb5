//go:build integration

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

var (
	feOnce sync.Once
	feRef  string
	feErr  string
)

// frontendImage builds the `# syntax=` frontend image with
// scripts/frontend-image.sh (the way users build it) through the sandbox's
// buildkitd and pushes it to the sandbox registry, once per run.
func frontendImage(t *testing.T, s *Sandbox) string {
	t.Helper()
	feOnce.Do(func() {
		ref := s.Registry + "/socikit/dockerfile:test"
		cmd := exec.Command(filepath.Join(repoRoot(t), "scripts/frontend-image.sh"), "--addr", s.Addr, ref)
		cmd.Env = append(os.Environ(), "FRONTEND_OUTPUT_ATTRS=registry.insecure=true")
		out, err := cmd.CombinedOutput()
		if err != nil {
			feErr = "frontend-image.sh: " + err.Error() + "\n" + string(out)
			return
		}
		feRef = ref
	})
	if feRef == "" {
		t.Fatal(feErr)
	}
	return feRef
}

// frontendApp is a build context whose Dockerfile uses the frontend: a
// start-up that reads one small file whole and 64 KiB of a 3 MB file,
// prints "ready" and stays up.
func frontendApp(t *testing.T, header, extra string) helloInput {
	t.Helper()
	h := prepareHello(t)
	df := header + `
FROM base
RUN mkdir -p /data && seq 1 100000 > /data/cold.txt && seq 1 20000 > /data/hot.txt && \
    head -c 12000000 /dev/urandom > /data/big.bin
RUN --mount=type=cache,target=/cache echo cached > /cache/x && cp /cache/x /data/from-cache
COPY <<EOF /app/start.sh
cat /data/hot.txt > /dev/null
dd if=/data/big.bin of=/dev/null bs=4096 skip=1000 count=16 2>/dev/null
echo ready
sleep 60
EOF
` + extra + `
CMD ["/bin/sh", "/app/start.sh"]
`
	must(t, os.WriteFile(filepath.Join(h.Dir, "Dockerfile"), []byte(df), 0o644))
	return h
}

func buildFrontendApp(t *testing.T, s *Sandbox, h helloInput, ref, attrs string, extra ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return s.Buildctl(ctx, append(append(h.buildctlArgs(), extra...),
		"--output", "type=soci,name="+ref+",push=true,registry.insecure=true,soci-min-layer-size=0"+attrs)...)
}

// TestFrontendProfile builds through `# syntax=` with buildctl: the
// start-up is profiled in the build, the profile reaches the exporter,
// which reorders (the default with a profile) and lists prefetch spans.
func TestFrontendProfile(t *testing.T) {
	s := NewSandbox(t)
	fe := frontendImage(t, s)
	h := frontendApp(t, "# syntax="+fe+"\n# socikit:ready=ready\n# socikit:profile-timeout=60s", "")
	ref := s.Registry + "/frontend:profile"
	out, err := buildFrontendApp(t, s, h, ref, "", "--progress", "plain")
	if err != nil {
		t.Fatalf("build: %v\n%s\n-- buildkitd log --\n%s", err, out, lastLines(s.Log(), 40))
	}
	if !strings.Contains(out, "[socikit] profiling start-up") {
		t.Errorf("no profiling step in the build log:\n%s", out)
	}
	if strings.Contains(out, "no profile:") {
		t.Fatalf("profiling failed:\n%s", out)
	}
	checkProfiledImage(t, ref)
}

// checkProfiledImage checks the layer that holds /data: hot.txt comes
// before cold.txt, and it has a prefetch artifact.
func checkProfiledImage(t *testing.T, ref string) {
	t.Helper()
	checkProfiledManifest(t, ref, readSociImage(t, ref))
}

// checkProfiledManifest is checkProfiledImage for one image manifest of
// ref.
func checkProfiledManifest(t *testing.T, ref string, si sociImage) *profile.Profile {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	var m ocispec.Manifest
	must(t, json.Unmarshal(fetchManifest(t, r.Context(), si.Manifest), &m))
	ix, err := soci.ParseIndex(fetchManifest(t, r.Context(), si.Index))
	must(t, err)
	found := false
	for i, l := range m.Layers {
		plain := gunzip(t, fetchBlob(t, r.Context(), l.Digest))
		names := tarNames(t, plain)
		hot, cold := indexOf(names, "data/hot.txt"), indexOf(names, "data/cold.txt")
		if hot < 0 || cold < 0 {
			continue
		}
		found = true
		if hot > cold {
			t.Errorf("layer %d: hot.txt (entry %d) after cold.txt (entry %d): not reordered", i, hot, cold)
		}
		var pf *soci.LayerPrefetch
		for k := range ix.Prefetches {
			if ix.Prefetches[k].Layer == l.Digest {
				pf = &ix.Prefetches[k]
			}
		}
		if pf == nil {
			t.Fatalf("layer %d: no prefetch artifact (index prefetches: %+v)", i, ix.Prefetches)
		}
		pre, err := soci.ParsePrefetch(fetchBlob(t, r.Context(), pf.Prefetch.Digest))
		must(t, err)
		z, err := ztoc.Unmarshal(fetchBlob(t, r.Context(), si.Ztocs[i]))
		must(t, err)
		n := 0
		for _, sp := range pre.Spans {
			n += int(sp.EndSpan-sp.StartSpan) + 1
		}
		t.Logf("layer %d: %d of %d spans prefetched (%+v), span size %d", i, n, z.MaxSpanID+1, pre.Spans, si.SpanSizes[i])
		// The start-up reads 64 KiB of the 12 MB big.bin: a byte-range
		// profile must not prefetch the whole layer.
		if n == 0 || n >= int(z.MaxSpanID)+1 {
			t.Errorf("layer %d: %d of %d spans prefetched: want some, not all", i, n, z.MaxSpanID+1)
		}
	}
	if !found {
		t.Fatalf("no layer holds /data/hot.txt and /data/cold.txt")
	}
	// The profile is stored with the image, attached to its manifest.
	root, err := remote.Get(r)
	must(t, err)
	d, ok, err := exporter.FindProfile(root.Manifest, si.Manifest)
	if err != nil || !ok {
		t.Fatalf("no profile artifact for %s in the image index (%v):\n%s", si.Manifest, err, root.Manifest)
	}
	pd, err := exporter.ProfileFromArtifact(fetchManifest(t, r.Context(), d.Digest))
	must(t, err)
	p, err := profile.Unmarshal(fetchBlob(t, r.Context(), pd.Digest))
	must(t, err)
	if f := p.Lookup("/data/hot.txt"); f == nil || f.Bytes() < 100000 {
		t.Errorf("stored profile: /data/hot.txt %+v, want it read whole (%d files: %v)", f, len(p.Files), p.Paths())
	}
	if f := p.Lookup("/data/big.bin"); f == nil || f.Bytes() >= 12000000/2 {
		t.Errorf("stored profile: /data/big.bin %+v, want a small part read", f)
	}
	if p.Lookup("/data/cold.txt") != nil {
		t.Errorf("stored profile names /data/cold.txt, which the start-up does not read")
	}
	return p
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// tarNames lists a tar's entry names in order.
func tarNames(t *testing.T, plain []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		out = append(out, strings.TrimPrefix(h.Name, "./"))
	}
}

// TestFrontendGatewaySource uses the frontend with --frontend gateway.v0
// --opt source=REF on a Dockerfile without a syntax line.
func TestFrontendGatewaySource(t *testing.T) {
	s := NewSandbox(t)
	fe := frontendImage(t, s)
	h := frontendApp(t, "# socikit:ready=ready", "")
	args := h.buildctlArgs()
	for i, a := range args {
		if a == "dockerfile.v0" {
			args[i] = "gateway.v0"
		}
	}
	args = append(args, "--opt", "source="+fe)
	ref := s.Registry + "/frontend:gateway"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := s.Buildctl(ctx, append(args, "--progress", "plain", "--output", "type=soci,name="+ref+",push=true,registry.insecure=true,soci-min-layer-size=0")...)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "[socikit] profiling start-up") {
		t.Errorf("no profiling step in the build log:\n%s", out)
	}
	checkProfiledImage(t, ref)
}

// TestFrontendBadInput: an unknown directive fails the build naming it; a
// start-up command missing from the image warns and builds without a
// profile, or fails with strict=true; a start-up that never prints the
// ready line warns.
func TestFrontendBadInput(t *testing.T) {
	s := NewSandbox(t)
	fe := frontendImage(t, s)
	t.Run("unknown directive", func(t *testing.T) {
		h := frontendApp(t, "# syntax="+fe+"\n# socikit:reordr=true", "")
		out, err := buildFrontendApp(t, s, h, s.Registry+"/frontend:bad", "")
		if err == nil || !strings.Contains(out, `unknown socikit directive \"reordr\"`) && !strings.Contains(out, `unknown socikit directive "reordr"`) {
			t.Fatalf("err %v, want an error naming the directive:\n%s", err, lastLines(out, 20))
		}
	})
	t.Run("missing command", func(t *testing.T) {
		h := frontendApp(t, "# syntax="+fe+"\n# socikit:startup=[\"/no/such/app\"]\n# socikit:ready=ready", "")
		out, err := buildFrontendApp(t, s, h, s.Registry+"/frontend:missing", "", "--progress", "plain")
		if err != nil {
			t.Fatalf("build failed, want a warning: %v\n%s", err, lastLines(out, 30))
		}
		// buildctl's plain progress prints the tracer's line (buildx also
		// prints the frontend's build warning, "socikit: ... no start-up
		// profile: ...").
		// A first build prints the tracer's line; a cached one the
		// warning on the profiling step.
		if !strings.Contains(out, "no profile: start-up command \"/no/such/app\" not found") &&
			!strings.Contains(out, "WARN: socikit: linux/amd64: no start-up profile: start-up command \"/no/such/app\" not found") {
			t.Errorf("no warning naming the cause:\n%s", out)
		}
	})
	t.Run("strict", func(t *testing.T) {
		h := frontendApp(t, "# syntax="+fe+"\n# socikit:startup=[\"/no/such/app\"]\n# socikit:strict=true", "")
		out, err := buildFrontendApp(t, s, h, s.Registry+"/frontend:strict", "")
		if err == nil || !strings.Contains(out, "/no/such/app") {
			t.Fatalf("err %v, want a failure naming the command:\n%s", err, lastLines(out, 20))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		h := frontendApp(t, "# syntax="+fe+"\n# socikit:ready=never-printed\n# socikit:profile-timeout=3s", "")
		out, err := buildFrontendApp(t, s, h, s.Registry+"/frontend:timeout", "", "--progress", "plain")
		if err != nil {
			t.Fatalf("build failed, want a warning: %v\n%s", err, lastLines(out, 30))
		}
		if !strings.Contains(out, "no profile: no ready line after 3s") && !strings.Contains(out, "WARN: socikit: linux/amd64: no start-up profile: no ready line after 3s") {
			t.Errorf("no warning naming the cause:\n%s", out)
		}
	})
}

// TestFrontendSubrequests: outline and lint (--call=check) answer as the
// Dockerfile frontend does, through ours, without profiling.
func TestFrontendSubrequests(t *testing.T) {
	s := NewSandbox(t)
	fe := frontendImage(t, s)
	h := frontendApp(t, "# syntax="+fe, "FROM base AS unused\nRUN true\nFROM base\n")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, req := range []string{"frontend.outline", "frontend.lint"} {
		out, err := s.Buildctl(ctx, append(h.buildctlArgs(), "--opt", "requestid="+req)...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", req, err, out)
		}
		if strings.Contains(out, "profiling start-up") {
			t.Errorf("%s ran the profiling step", req)
		}
	}
}

// TestFrontendBuildx builds through `# syntax=` with docker buildx (remote
// driver on our buildkitd): profiled, reordered, prefetch listed, the
// provenance attestation kept; and buildx prints the frontend's warning
// when the start-up cannot be profiled.
func TestFrontendBuildx(t *testing.T) {
	s := NewSandbox(t)
	fe := frontendImage(t, s)
	bx := NewBuildx(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h := frontendApp(t, "# syntax="+fe+"\n# socikit:ready=ready", "")
	ref := s.Registry + "/frontend:buildx"
	out, err := bx.Run(ctx, "buildx", "build", "--builder", bx.Builder, "--progress", "plain",
		"--build-context", "base=oci-layout://"+h.Layout+"@"+h.Base.String(),
		"--output", "type=soci,name="+ref+",push=true,registry.insecure=true,soci-min-layer-size=0",
		h.Dir)
	if err != nil {
		t.Fatalf("docker buildx build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "[socikit] profiling start-up") {
		t.Errorf("no profiling step in the build log:\n%s", out)
	}
	checkProfiledImage(t, ref)
	checkBuildxSociPush(t, ref)

	h = frontendApp(t, "# syntax="+fe+"\n# socikit:startup=[\"/no/such/app\"]", "")
	out, err = bx.Run(ctx, "buildx", "build", "--builder", bx.Builder, "--progress", "plain",
		"--build-context", "base=oci-layout://"+h.Layout+"@"+h.Base.String(),
		"--output", "type=soci,name="+s.Registry+"/frontend:buildx-missing,push=true,registry.insecure=true,soci-min-layer-size=0",
		h.Dir)
	if err != nil {
		t.Fatalf("docker buildx build: %v\n%s", err, out)
	}
	if !strings.Contains(out, "socikit: linux/") || !strings.Contains(out, "no start-up profile") {
		t.Errorf("buildx printed no socikit warning:\n%s", out)
	}
}

// TestFrontendProfileContextDeterministic builds twice with --no-cache and
// the same profile from a build context (no profiling run), with
// SOURCE_DATE_EPOCH and rewrite-timestamp: the same layer, zTOC and SOCI
// index digests. The profile names a file the image lacks: a warning, not
// an error.
func TestFrontendProfileContextDeterministic(t *testing.T) {
	s := NewSandbox(t)
	fe := frontendImage(t, s)
	h := frontendApp(t, "# syntax="+fe+"\n# socikit:span-size=256K", "")
	df, err := os.ReadFile(filepath.Join(h.Dir, "Dockerfile"))
	must(t, err)
	// No /dev/urandom: the same bytes each build.
	df = []byte(strings.Replace(string(df), "head -c 12000000 /dev/urandom > /data/big.bin", "seq 1 1500000 > /data/big.bin", 1))
	df = []byte(strings.Replace(string(df), "FROM base\n", "FROM base\nARG SOURCE_DATE_EPOCH\n", 1))
	must(t, os.WriteFile(filepath.Join(h.Dir, "Dockerfile"), df, 0o644))
	profDir := t.TempDir()
	p := &profile.Profile{Version: profile.Version, Source: profile.SourceFile, Files: []profile.File{
		{Path: "/data/hot.txt", Ranges: []profile.Range{{Offset: 0, Length: 108894}}},
		{Path: "/data/big.bin", Ranges: []profile.Range{{Offset: 4 << 20, Length: 64 << 10}}},
		{Path: "/not/in/the/image", Ranges: []profile.Range{{Offset: 0, Length: 1}}},
	}}
	pb, err := profile.Marshal(p)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(profDir, "profile.json"), pb, 0o644))
	var imgs []sociImage
	for i := range 2 {
		ref := s.Registry + "/frontend:det" + strconv.Itoa(i)
		out, err := buildFrontendApp(t, s, h, ref, ",rewrite-timestamp=true", "--no-cache", "--progress", "plain",
			"--local", "prof="+profDir, "--opt", "context:prof=local:prof",
			"--opt", "build-arg:SOCIKIT_PROFILE_CONTEXT=prof", "--opt", "build-arg:SOURCE_DATE_EPOCH=0")
		if err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, out)
		}
		if strings.Contains(out, "[socikit] profiling start-up") {
			t.Errorf("build %d ran the profiling step although a profile was given", i)
		}
		if !strings.Contains(out, "/not/in/the/image") {
			t.Errorf("build %d: no warning about the profile path the image lacks:\n%s", i, lastLines(out, 30))
		}
		imgs = append(imgs, readSociImage(t, ref))
		checkProfiledImage(t, ref)
	}
	a, b := imgs[0], imgs[1]
	if a.Index != b.Index || strings.Join(digestStrings(a.Layers), ",") != strings.Join(digestStrings(b.Layers), ",") ||
		strings.Join(digestStrings(a.Ztocs), ",") != strings.Join(digestStrings(b.Ztocs), ",") {
		t.Errorf("not deterministic:\n%+v\n%+v", a, b)
	}
}

// TestFrontendMultiPlatform builds for linux/amd64 and linux/arm64 through
// `# syntax=` from a two-platform base with no RUN step (the builder runs
// no arm64 code): the native platform is profiled in the build, arm64
// reuses its profile with a warning saying so, and both images get the
// reordered layer, prefetch spans and a stored profile.
func TestFrontendMultiPlatform(t *testing.T) {
	s := NewSandbox(t)
	fe := frontendImage(t, s)
	native := runtime.GOARCH
	other := "arm64"
	if native == "arm64" {
		other = "amd64"
	}
	layout, base := makeBaseLayoutFor(t, native, other)
	dir := t.TempDir()
	var cold, hot strings.Builder
	for i := 1; i <= 100000; i++ {
		fmt.Fprintln(&cold, i)
		if i <= 20000 {
			fmt.Fprintln(&hot, i)
		}
	}
	must(t, os.WriteFile(filepath.Join(dir, "cold.txt"), []byte(cold.String()), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "hot.txt"), []byte(hot.String()), 0o644))
	big := make([]byte, 12000000)
	_, err := cryptorand.Read(big)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "start.sh"), []byte(`cat /data/hot.txt > /dev/null
dd if=/data/big.bin of=/dev/null bs=4096 skip=1000 count=16 2>/dev/null
echo ready
`), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("# syntax="+fe+`
# socikit:ready=ready
FROM base
COPY cold.txt hot.txt big.bin /data/
COPY start.sh /app/start.sh
CMD ["/bin/sh", "/app/start.sh"]
`), 0o644))
	h := helloInput{Dir: dir, Layout: layout, Base: base}
	ref := s.Registry + "/frontend:multi"
	// rawjson: buildctl's plain output leaves out warnings.
	out, err := buildFrontendApp(t, s, h, ref, "", "--progress", "rawjson", "--opt", "platform=linux/"+native+",linux/"+other)
	if err != nil {
		t.Fatalf("build: %v\n%s\n-- buildkitd log --\n%s", err, out, lastLines(s.Log(), 40))
	}
	if !strings.Contains(out, "[socikit] profiling start-up") {
		t.Errorf("no profiling step in the build log:\n%s", out)
	}
	warnings := buildWarnings(t, out)
	want := "linux/" + other + ": not profiled (the builder does not run it natively): reusing linux/" + native + "'s profile"
	found := false
	for _, w := range warnings {
		if strings.Contains(w, "no profile:") {
			t.Fatalf("profiling failed: %s", w)
		}
		found = found || strings.Contains(w, want)
	}
	if !found {
		t.Errorf("no build warning says %q; warnings: %q", want, warnings)
	}
	for _, arch := range []string{native, other} {
		t.Run(arch, func(t *testing.T) {
			p := checkProfiledManifest(t, ref, readSociImageArch(t, ref, arch))
			t.Logf("%s: stored profile of %d files, platform %q", arch, len(p.Files), p.Platform)
		})
	}
}

// buildWarnings returns the warnings of a `buildctl --progress rawjson`
// output: one JSON client.SolveStatus per line.
func buildWarnings(t *testing.T, out string) []string {
	t.Helper()
	var ws []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var st struct {
			Warnings []struct {
				Short []byte
			}
		}
		if err := json.Unmarshal([]byte(line), &st); err != nil {
			continue
		}
		for _, w := range st.Warnings {
			ws = append(ws, string(w.Short))
		}
	}
	return ws
}
