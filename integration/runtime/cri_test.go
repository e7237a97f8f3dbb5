//go:build integration

package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestCRI runs pods through containerd 2.4.2's CRI plugin (crictl, as the
// kubelet would) with socikit-snapshotter as the CRI snapshotter and its CRI
// image service proxy ([cri] enable) in front of containerd's image
// service, the way examples/kubernetes sets a node up. Host-network pods,
// so no CNI network; the pod sandbox (pause) image is a busybox image in the
// test registry. The snapshotter finds no docker config (DOCKER_CONFIG is
// an empty directory): credentials only come through CRI.
//   - lazy: a SOCI image (busybox, 24 MiB of incompressible data in 1 MiB
//     spans) pulled with crictl through the proxy starts its container
//     lazily: both layers FUSE-mounted, the registry served a small part of
//     the image until the container printed; reading a file of the data
//     layer later fetches its spans;
//   - unindexed: an image without a SOCI index runs from a normal unpack
//     (no lazy mount);
//   - basic-auth: the same from a registry that wants basic auth, `crictl
//     pull --creds`: the snapshotter's discovery, zTOC and span requests
//     authenticate with the pull's credentials (counted by the registry);
//     wrong credentials fail the pull with crictl printing the 401, and
//     leave no image, snapshot or mount behind;
//   - token-auth: the same behind a Bearer token service (the Docker
//     registry token flow: 401 challenge, token for basic credentials).
//
// TestCRIDockerConfig covers the other way in: no proxy, crictl pulls
// straight from containerd with --creds, and the snapshotter reads the
// credentials from its docker config.
func TestCRI(t *testing.T) {
	requireRoot(t)
	crictl := filepath.Join(repoRoot, "bin/crictl")
	requireExecutable(t, crictl)
	requireCNILoopback(t)
	reg := newRegistry(t)
	pause := pushCRIImage(t, reg, "socikit/pause", "pause", 0, false)
	t.Setenv("CRI_SANDBOX_IMAGE", pause)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	d := startContainerd(t, flavour{name: "containerd-2.4-cri", startFlags: []string{"--cri"}, ctr: filepath.Join(repoRoot, "bin/ctr")},
		"[cri]\nenable = true")
	c := &crictlRunner{t: t, bin: crictl, runtime: d.address, image: filepath.Join(d.dir, "socikit.sock"), dir: d.dir}
	pod := c.runPod("socikit-cri")

	// run starts a container of ref in the pod with args, waits for it to
	// exit and returns its log.
	n := 0
	run := func(t *testing.T, ref string, args ...string) string {
		t.Helper()
		n++
		return c.runContainer(pod, fmt.Sprintf("c%d", n), ref, args...)
	}
	lazyCase := func(t *testing.T, gate *authGate, repo string, creds string) {
		img := pushCRIImage(t, reg, repo, repo, 24<<20, true)
		ref := img
		if gate != nil {
			ref = gate.host + strings.TrimPrefix(img, reg.host)
			gate.lock(true)
			defer gate.lock(false)
		}
		layers := sociLayers(t, img)
		var imageSize int64
		for _, l := range layers {
			imageSize += l.desc.Size
		}
		mounts0 := d.lazyMounts(t)
		all0, _ := reg.Served("")
		var auth0 authCounts
		if gate != nil {
			auth0 = gate.counts()
		}
		start := time.Now()
		c.pull(ref, creds)
		pulled := time.Since(start)
		if got := d.lazyMounts(t) - mounts0; got != 2 {
			t.Fatalf("%d new lazy layer mounts after crictl pull, want 2", got)
		}
		out := run(t, ref, "/bin/busybox", "cat", "/etc/socikit-test")
		if strings.TrimSpace(out) != repo {
			t.Fatalf("container printed %q, want %q", out, repo)
		}
		all1, _ := reg.Served("")
		fetched := all1 - all0
		t.Logf("crictl pull %v, pod container started and exited %v after it; registry served %d blob bytes of a %d-byte image (%.1f%%)",
			pulled.Round(time.Millisecond), (time.Since(start) - pulled).Round(time.Millisecond), fetched, imageSize, 100*float64(fetched)/float64(imageSize))
		if fetched > imageSize/3 {
			t.Errorf("served %d bytes before the container's output, more than a third of the image (%d): not lazy", fetched, imageSize)
		}
		// A file of the data layer, read later: its spans are fetched now.
		_, data0 := reg.Served(layers[1].desc.Digest.String())
		out = run(t, ref, "/bin/busybox", "wc", "-c", "/data/f3")
		if got := strings.Fields(out); len(got) == 0 || got[0] != strconv.Itoa(1<<20) {
			t.Fatalf("wc -c /data/f3 printed %q", out)
		}
		_, data1 := reg.Served(layers[1].desc.Digest.String())
		if data1-data0 < 1<<20 || data1-data0 > 4<<20 {
			t.Errorf("reading a 1 MiB file fetched %d bytes of the data layer, want about its span(s)", data1-data0)
		}
		if gate != nil {
			a := gate.counts().sub(auth0)
			t.Logf("registry: %d authenticated requests from socikit-snapshotter (%d of them range requests), %d from containerd, %d refused",
				a.ok["socikit"], a.ranges["socikit"], a.ok["containerd"], a.refused)
			if a.ranges["socikit"] == 0 {
				t.Errorf("no authenticated range request from the snapshotter: %+v", a)
			}
		}
	}

	t.Run("lazy", func(t *testing.T) { lazyCase(t, nil, "socikit/cri-lazy", "") })

	t.Run("unindexed", func(t *testing.T) {
		ref := pushCRIImage(t, reg, "socikit/cri-plain", "plain", 0, false)
		mounts0 := d.lazyMounts(t)
		c.pull(ref, "")
		out := run(t, ref, "/bin/busybox", "cat", "/etc/socikit-test")
		if strings.TrimSpace(out) != "plain" {
			t.Fatalf("container printed %q", out)
		}
		if got := d.lazyMounts(t) - mounts0; got != 0 {
			t.Fatalf("%d lazy mounts for an image without a SOCI index", got)
		}
		// Unpacked into a snapshot of socikit-snapshotter.
		hits, _ := filepath.Glob(filepath.Join(d.dir, "socikit/snapshots/*/fs/etc/socikit-test"))
		found := false
		for _, h := range hits {
			if b, _ := os.ReadFile(h); strings.TrimSpace(string(b)) == "plain" {
				found = true
			}
		}
		if !found {
			t.Fatalf("the layer was not unpacked under %s/socikit/snapshots", d.dir)
		}
	})

	for _, mode := range []string{"basic", "token"} {
		t.Run(mode+"-auth", func(t *testing.T) {
			gate := newAuthGate(t, reg, mode, "kube", "s3cret")
			lazyCase(t, gate, "private/cri-"+mode, "kube:s3cret")

			// Wrong credentials: a clear error, nothing half-pulled.
			img := pushCRIImage(t, reg, "private/cri-"+mode+"-wrong", "wrong", 4<<20, true)
			ref := gate.host + strings.TrimPrefix(img, reg.host)
			gate.lock(true)
			defer gate.lock(false)
			mounts0 := d.lazyMounts(t)
			snaps0 := c.snapshots()
			out, err := c.try("pull", "--creds", "kube:wrong", ref)
			if err == nil {
				t.Fatalf("pull with wrong credentials succeeded: %s", out)
			}
			if !strings.Contains(out, "401 Unauthorized") {
				t.Errorf("crictl's error does not say 401 Unauthorized:\n%s", out)
			}
			t.Logf("crictl pull --creds kube:wrong: %s", firstLines(strings.TrimSpace(out), 2))
			if out, err := c.try("inspecti", ref); err == nil {
				t.Errorf("image present after the failed pull: %s", out)
			}
			if got := d.lazyMounts(t) - mounts0; got != 0 {
				t.Errorf("%d lazy mounts after the failed pull", got)
			}
			if got := c.snapshots(); got != snaps0 {
				t.Errorf("snapshots of socikit: %d before the failed pull, %d after", snaps0, got)
			}
			// The anonymous pull fails the same way.
			if out, err := c.try("pull", ref); err == nil || !strings.Contains(out, "401") && !strings.Contains(out, "pull access denied") {
				t.Errorf("pull without credentials: %v\n%s", err, out)
			}
		})
	}
}

// TestCRIDockerConfig pulls a SOCI image from a registry that wants basic
// auth with crictl straight from containerd's CRI (no image service proxy),
// the credentials given to containerd by --creds and to the snapshotter by
// its docker config ($DOCKER_CONFIG/config.json): the pod's container
// starts lazily.
func TestCRIDockerConfig(t *testing.T) {
	requireRoot(t)
	crictl := filepath.Join(repoRoot, "bin/crictl")
	requireExecutable(t, crictl)
	requireCNILoopback(t)
	reg := newRegistry(t)
	pause := pushCRIImage(t, reg, "socikit/pause", "pause", 0, false)
	img := pushCRIImage(t, reg, "private/cri-dockercfg", "dockercfg", 24<<20, true)
	gate := newAuthGate(t, reg, "basic", "node", "pw")
	ref := gate.host + strings.TrimPrefix(img, reg.host)
	cfgDir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, gate.host, base64.StdEncoding.EncodeToString([]byte("node:pw")))
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfgDir)
	t.Setenv("CRI_SANDBOX_IMAGE", pause)
	d := startContainerd(t, flavour{name: "containerd-2.4-cri", startFlags: []string{"--cri"}, ctr: filepath.Join(repoRoot, "bin/ctr")})
	c := &crictlRunner{t: t, bin: crictl, runtime: d.address, image: d.address, dir: d.dir}
	gate.lock(true)
	auth0 := gate.counts()
	c.pull(ref, "node:pw")
	if got := d.lazyMounts(t); got != 2 {
		t.Fatalf("%d lazy layer mounts after the pull, want 2", got)
	}
	pod := c.runPod("socikit-dockercfg")
	out := c.runContainer(pod, "c1", ref, "/bin/busybox", "wc", "-c", "/data/f3")
	if got := strings.Fields(out); len(got) == 0 || got[0] != strconv.Itoa(1<<20) {
		t.Fatalf("wc -c /data/f3 printed %q", out)
	}
	a := gate.counts().sub(auth0)
	t.Logf("registry: %d authenticated requests from socikit-snapshotter (%d range requests), %d from containerd, %d refused",
		a.ok["socikit"], a.ranges["socikit"], a.ok["containerd"], a.refused)
	if a.ranges["socikit"] == 0 {
		t.Errorf("no authenticated range request from the snapshotter: %+v", a)
	}
}

func requireCNILoopback(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/usr/lib/cni/loopback"); err != nil {
		if _, err2 := os.Stat("/opt/cni/bin/loopback"); err2 != nil {
			t.Skip("needs the loopback CNI plugin (apt-get install containernetworking-plugins; scripts/crictl-build.sh)")
		}
	}
}

// pushCRIImage pushes an image of Debian's static busybox with marker in
// /etc/socikit-test and, when data > 0, a layer of incompressible files
// /data/f0, f1, ... of 1 MiB each (data bytes in all), as repo:latest;
// converted with 1 MiB spans when soci, it returns the SOCI image's
// reference, else the plain one. The marker makes every image's layers
// its own: no snapshot or cached span is shared between cases.
func pushCRIImage(t testing.TB, reg *testRegistry, repo, marker string, data int, soci bool) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs Debian's busybox-static: %v", err)
	}
	layers := [][]byte{makeTar(t, []tarFile{
		{h: tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, body: bb},
		{h: tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}},
		{h: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{h: tar.Header{Name: "etc/socikit-test", Typeflag: tar.TypeReg, Mode: 0o644}, body: []byte(marker + "\n")},
	})}
	if data > 0 {
		files := []tarFile{{h: tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o755}}}
		for i := 0; i < data>>20; i++ {
			b := make([]byte, 1<<20)
			if _, err := rand.Read(b); err != nil {
				t.Fatal(err)
			}
			files = append(files, tarFile{h: tar.Header{Name: fmt.Sprintf("data/f%d", i), Typeflag: tar.TypeReg, Mode: 0o644}, body: b})
		}
		layers = append(layers, makeTar(t, files))
	}
	plain, img := reg.pushImage(t, repo, layers...)
	if marker == "pause" {
		// The pod sandbox's process: sleep until killed.
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Config.Entrypoint = []string{"/bin/busybox", "sleep", "2147483647"}
		cf.Config.Cmd = nil
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		r, err := name.ParseReference(plain)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
	}
	if !soci {
		return plain
	}
	return convertWith(t, plain, plain+"-soci", "-span-size", strconv.Itoa(1<<20))
}

// crictlRunner runs bin/crictl against the test containerd's CRI runtime
// service and an image service (containerd's, or the snapshotter's proxy).
type crictlRunner struct {
	t              *testing.T
	bin            string
	runtime, image string // unix sockets
	dir            string // for pod logs and configs
}

// try runs crictl and returns its stdout, or on failure its stdout and
// stderr and the error.
func (c *crictlRunner) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append([]string{"--config", filepath.Join(c.dir, "crictl.yaml"), "--runtime-endpoint", "unix://" + c.runtime,
		"--image-endpoint", "unix://" + c.image, "--timeout", "90s"}, args...)
	if _, err := os.Stat(args[1]); err != nil {
		// An empty config of its own: no warning about /etc/crictl.yaml.
		if err := os.WriteFile(args[1], nil, 0o644); err != nil {
			return "", err
		}
	}
	cmd := exec.CommandContext(ctx, c.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		out := stdout.String() + stderr.String()
		return out, fmt.Errorf("crictl %s: %v\n%s", strings.Join(args[8:], " "), err, out)
	}
	return stdout.String(), nil
}

func (c *crictlRunner) run(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// pull runs crictl pull, with --creds unless creds is "".
func (c *crictlRunner) pull(ref, creds string) {
	c.t.Helper()
	args := []string{"pull"}
	if creds != "" {
		args = append(args, "--creds", creds)
	}
	c.run(append(args, ref)...)
}

// writeJSON writes v to a new file under the runner's directory.
func (c *crictlRunner) writeJSON(file string, v any) string {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	p := filepath.Join(c.dir, file)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// runPod starts a host-network pod sandbox and returns its config file and
// ID; it is stopped and removed at the end of the test.
func (c *crictlRunner) runPod(podName string) criPod {
	c.t.Helper()
	logs := filepath.Join(c.dir, "pods", podName)
	if err := os.MkdirAll(logs, 0o755); err != nil {
		c.t.Fatal(err)
	}
	cfg := c.writeJSON(podName+".json", map[string]any{
		"metadata":      map[string]any{"name": podName, "namespace": "default", "uid": fmt.Sprintf("uid-%d", mrand.Int64())},
		"log_directory": logs,
		"linux": map[string]any{"security_context": map[string]any{
			"namespace_options": map[string]any{"network": 2}, // NODE: host network, no CNI
		}},
	})
	start := time.Now()
	id := c.run("runp", cfg)
	c.t.Logf("pod sandbox %s started in %v", podName, time.Since(start).Round(time.Millisecond))
	c.t.Cleanup(func() {
		c.try("stopp", id) //nolint:errcheck // removal below says
		if out, err := c.try("rmp", id); err != nil {
			c.t.Logf("rmp: %v %s", err, out)
		}
	})
	return criPod{id: id, config: cfg}
}

type criPod struct{ id, config string }

// runContainer creates and starts container cname of ref in pod, waits for
// it to exit 0 and returns its log.
func (c *crictlRunner) runContainer(pod criPod, cname, ref string, args ...string) string {
	c.t.Helper()
	cfg := c.writeJSON(cname+".json", map[string]any{
		"metadata": map[string]any{"name": cname},
		"image":    map[string]any{"image": ref},
		"command":  args,
		"log_path": cname + ".log",
		"linux":    map[string]any{},
	})
	id := c.run("create", pod.id, cfg, pod.config)
	c.run("start", id)
	deadline := time.Now().Add(time.Minute)
	for {
		var st struct {
			Status struct {
				State    string `json:"state"`
				ExitCode int    `json:"exitCode"`
				Reason   string `json:"reason"`
				Message  string `json:"message"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(c.run("inspect", "-o", "json", id)), &st); err != nil {
			c.t.Fatal(err)
		}
		if st.Status.State == "CONTAINER_EXITED" {
			logs, _ := c.try("logs", id)
			if st.Status.ExitCode != 0 {
				c.t.Fatalf("container %s exited %d (%s %s): %s", cname, st.Status.ExitCode, st.Status.Reason, st.Status.Message, logs)
			}
			c.try("rm", id) //nolint:errcheck
			return logs
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("container %s still %s after a minute", cname, st.Status.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshots counts the snapshots of socikit in CRI's namespace.
func (c *crictlRunner) snapshots() int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(repoRoot, "bin/ctr"), "-a", c.runtime, "-n", "k8s.io",
		"snapshots", "--snapshotter", "socikit", "ls").CombinedOutput()
	if err != nil {
		c.t.Fatalf("ctr snapshots ls: %v\n%s", err, out)
	}
	return len(strings.Split(strings.TrimSpace(string(out)), "\n")) - 1
}

// authGate puts authentication in front of a testRegistry (which still
// counts the blob bytes): "basic" wants basic credentials user:pass on
// every /v2/ request, "token" wants a Bearer token that its /token endpoint
// hands out for them (the Docker registry token flow). It counts what it
// let through and refused, by client (User-Agent).
type authGate struct {
	host       string
	mode       string
	user, pass string
	token      string
	next       http.Handler

	mu     sync.Mutex
	locked bool // off while the test pushes and converts
	c      authCounts
}

type authCounts struct {
	ok, ranges map[string]int // by client: "socikit" (the snapshotter), "containerd"
	refused    int
}

func (a authCounts) sub(b authCounts) authCounts {
	r := authCounts{ok: map[string]int{}, ranges: map[string]int{}, refused: a.refused - b.refused}
	for k, v := range a.ok {
		r.ok[k] = v - b.ok[k]
	}
	for k, v := range a.ranges {
		r.ranges[k] = v - b.ranges[k]
	}
	return r
}

func newAuthGate(t testing.TB, reg *testRegistry, mode, user, pass string) *authGate {
	t.Helper()
	g := &authGate{mode: mode, user: user, pass: pass, token: fmt.Sprintf("tok-%d", mrand.Int64()), next: reg,
		c: authCounts{ok: map[string]int{}, ranges: map[string]int{}}}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	g.host = strings.TrimPrefix(srv.URL, "http://")
	return g
}

func (g *authGate) lock(on bool) {
	g.mu.Lock()
	g.locked = on
	g.mu.Unlock()
}

func (g *authGate) counts() authCounts {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := authCounts{ok: map[string]int{}, ranges: map[string]int{}, refused: g.c.refused}
	for k, v := range g.c.ok {
		r.ok[k] = v
	}
	for k, v := range g.c.ranges {
		r.ranges[k] = v
	}
	return r
}

func (g *authGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	locked := g.locked
	g.mu.Unlock()
	if r.URL.Path == "/token" {
		if u, p, ok := r.BasicAuth(); !ok || u != g.user || p != g.pass {
			g.refuse(w, `Basic realm="socikit-test"`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token": %q, "access_token": %q, "expires_in": 300}`, g.token, g.token)
		return
	}
	if locked {
		switch g.mode {
		case "basic":
			if u, p, ok := r.BasicAuth(); !ok || u != g.user || p != g.pass {
				g.refuse(w, `Basic realm="socikit-test"`)
				return
			}
		case "token":
			if r.Header.Get("Authorization") != "Bearer "+g.token {
				scope := ""
				if repo, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/"); ok {
					scope = fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
				} else if repo, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/"); ok {
					scope = fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
				}
				g.refuse(w, fmt.Sprintf(`Bearer realm="http://%s/token",service="socikit-test"%s`, g.host, scope))
				return
			}
		}
		// Only containerd and the snapshotter talk to the gate once it
		// is locked (the snapshotter's span fetches send Go's agent).
		client := "socikit"
		if strings.HasPrefix(r.UserAgent(), "containerd") {
			client = "containerd"
		}
		g.mu.Lock()
		g.c.ok[client]++
		if r.Header.Get("Range") != "" {
			g.c.ranges[client]++
		}
		g.mu.Unlock()
	}
	g.next.ServeHTTP(w, r)
}

func (g *authGate) refuse(w http.ResponseWriter, challenge string) {
	g.mu.Lock()
	g.c.refused++
	g.mu.Unlock()
	w.Header().Set("WWW-Authenticate", challenge)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
}

// TestCRIStartup puts a lazy start through CRI beside CRI's ordinary pull:
// containerd 2.4.2's CRI with socikit-snapshotter (the SOCI image) and with
// its overlayfs snapshotter (the same image without the index, as a node
// without socikit pulls it), from a registry on loopback; each run with
// fresh daemons (cold caches): crictl pull, then create and start a
// container of a host-network pod (its sandbox started before) printing
// ready. Opt-in, SOCIKIT_CRI_BENCH=N runs of each; the figures are in
// docs/kubernetes.md.
func TestCRIStartup(t *testing.T) {
	runs := envOr(t, "SOCIKIT_CRI_BENCH", 0)
	if runs == 0 {
		t.Skip("SOCIKIT_CRI_BENCH=N runs it")
	}
	requireRoot(t)
	crictl := filepath.Join(repoRoot, "bin/crictl")
	requireExecutable(t, crictl)
	requireCNILoopback(t)
	reg := newRegistry(t)
	pause := pushCRIImage(t, reg, "socikit/pause", "pause", 0, false)
	t.Setenv("CRI_SANDBOX_IMAGE", pause)
	size := envOr(t, "SOCIKIT_CRI_BENCH_MB", 64)
	plain, _ := reg.pushImage(t, "socikit/cri-bench", busyboxTar(t), goTreeTar(t, int64(size)<<20))
	soci := convertWith(t, plain, plain+"-soci", "-span-size", strconv.Itoa(4<<20))
	var imageSize int64
	for _, l := range sociLayers(t, soci) {
		imageSize += l.desc.Size
	}
	type result struct {
		pull, start, total time.Duration
		bytes              int64
	}
	results := map[string][]result{}
	for _, mode := range []string{"socikit", "overlayfs"} {
		ref := soci
		if mode == "overlayfs" {
			ref = plain
		}
		for i := 0; i < runs; i++ {
			t.Run(fmt.Sprintf("%s-%d", mode, i), func(t *testing.T) {
				t.Setenv("CRI_SNAPSHOTTER", mode)
				d := startContainerd(t, flavour{name: "containerd-2.4-cri", startFlags: []string{"--cri"}, ctr: filepath.Join(repoRoot, "bin/ctr")})
				c := &crictlRunner{t: t, bin: crictl, runtime: d.address, image: d.address, dir: d.dir}
				pod := c.runPod("bench")
				all0, _ := reg.Served("")
				start := time.Now()
				c.pull(ref, "")
				pulled := time.Since(start)
				out := c.runContainer(pod, "c", ref, "/bin/busybox", "echo", "ready")
				total := time.Since(start)
				if strings.TrimSpace(out) != "ready" {
					t.Fatalf("container printed %q", out)
				}
				all1, _ := reg.Served("")
				r := result{pull: pulled, start: total - pulled, total: total, bytes: all1 - all0}
				results[mode] = append(results[mode], r)
				t.Logf("%s: pull %v, create+start+exit %v, total %v, registry served %d bytes", mode,
					r.pull.Round(time.Millisecond), r.start.Round(time.Millisecond), r.total.Round(time.Millisecond), r.bytes)
			})
		}
	}
	median := func(rs []result, f func(result) time.Duration) time.Duration {
		var ds []time.Duration
		for _, r := range rs {
			ds = append(ds, f(r))
		}
		slices.Sort(ds)
		if len(ds) == 0 {
			return 0
		}
		return ds[len(ds)/2]
	}
	t.Logf("image: %d bytes compressed (busybox + %d MiB of the Go installation, 4 MiB spans); medians of %d cold runs:", imageSize, size, runs)
	t.Logf("| CRI snapshotter | crictl pull | create + start + exit | total | registry bytes |")
	for _, mode := range []string{"socikit", "overlayfs"} {
		rs := results[mode]
		if len(rs) == 0 {
			continue
		}
		t.Logf("| %s | %v | %v | %v | %d |", mode, median(rs, func(r result) time.Duration { return r.pull }).Round(time.Millisecond),
			median(rs, func(r result) time.Duration { return r.start }).Round(time.Millisecond),
			median(rs, func(r result) time.Duration { return r.total }).Round(time.Millisecond), rs[len(rs)/2].bytes)
	}
}
