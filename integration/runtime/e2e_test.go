//go:build integration

package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// repoRoot is the socikit checkout this module sits in.
var repoRoot, _ = filepath.Abs("../..")

// flavour is one containerd to test with.
type flavour struct {
	name       string
	startFlags []string // scripts/containerd-start.sh flags
	ctr        string
}

var flavours = []flavour{
	{name: "containerd-2.4", ctr: filepath.Join(repoRoot, "bin/ctr")},
	{name: "containerd-1.6", startFlags: []string{"--debian"}, ctr: "/usr/bin/ctr"},
}

// TestPullRun pulls a busybox image from a registry on loopback through
// socikit-snapshotter and runs a container from it, with containerd 2.4.2
// and Debian's 1.6, in two forms:
//   - plain: no SOCI index. containerd 2.4's transfer service passes the
//     labels, so the snapshotter pulls and unpacks the layer itself (the
//     pipelined pull, docs/pull.md: socikit_unpacked_layers_total); 1.6's
//     ctr does not, so socikit prepares the snapshot and containerd
//     unpacks it;
//   - soci: the same image converted by `socikit convert` (v2 index, every
//     layer indexed). containerd 2.4's transfer service passes the remote
//     snapshot labels, so the layer is mounted lazily over FUSE and nothing
//     is unpacked; Debian 1.6's ctr unpacks on the client side without those
//     labels, so there it falls back (`socikit pull` passes them:
//     TestSocikitPull).
//
// Each case then restarts the snapshotter and runs the image again.
func TestPullRun(t *testing.T) {
	requireRoot(t)
	plain := pushBusybox(t)
	indexed := convert(t, plain, plain+"-soci")
	for _, f := range flavours {
		for _, img := range []struct {
			name, ref string
			lazy      bool
		}{
			{"plain", plain, false},
			{"soci", indexed, f.name == "containerd-2.4"},
		} {
			t.Run(f.name+"/"+img.name, func(t *testing.T) {
				requireExecutable(t, f.ctr)
				d := startContainerd(t, f)
				ns := "socikit-test"
				ref := img.ref
				start := time.Now()
				d.ctr(t, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", ref)
				t.Logf("pull: %v", time.Since(start))
				if got := d.lazyMounts(t); (got > 0) != img.lazy {
					t.Fatalf("%d lazy layer mounts after the pull, want lazy=%v", got, img.lazy)
				}

				id := fmt.Sprintf("socikit-%s-%s-%d", f.name, img.name, time.Now().UnixNano())
				start = time.Now()
				out := d.ctr(t, "-n", ns, "run", "--rm", "--snapshotter", "socikit", ref, id,
					"/bin/busybox", "sh", "-c", "echo hello from $(busybox cat /etc/socikit-test)")
				t.Logf("run: %v", time.Since(start))
				if want := "hello from socikit"; strings.TrimSpace(out) != want {
					t.Fatalf("container printed %q, want %q", out, want)
				}
				if img.lazy {
					t.Logf("fetched before and during the run: %s", d.metric(t, "socikit_fetched_bytes_total"))
				} else {
					// The layer was unpacked into socikit-snapshotter's root:
					// the snapshot went through our snapshotter.
					hits, _ := filepath.Glob(filepath.Join(d.dir, "socikit/snapshots/*/fs/bin/busybox"))
					if len(hits) != 1 {
						t.Errorf("found the unpacked layer %d times under %s/socikit, want once", len(hits), d.dir)
					}
					want := "0"
					if f.name == "containerd-2.4" {
						want = "1"
					}
					if v := d.metric(t, "socikit_unpacked_layers_total"); v != want {
						t.Errorf("socikit_unpacked_layers_total = %s, want %s (the snapshotter pulls images without an index when it has the labels)", v, want)
					}
				}

				// Restart the snapshotter: remote layers are mounted again and
				// the image still runs. containerd redials the proxy with a
				// backoff of up to 3 s.
				d.restartSnapshotter(t)
				out = d.ctrRetry(t, 10*time.Second, "-n", ns, "run", "--rm", "--snapshotter", "socikit", ref, id+"-2", "/bin/busybox", "echo", "again")
				if strings.TrimSpace(out) != "again" {
					t.Fatalf("after a snapshotter restart the container printed %q", out)
				}
				if got := d.lazyMounts(t); (got > 0) != img.lazy {
					t.Errorf("%d lazy layer mounts after the restart, want lazy=%v", got, img.lazy)
				}

				d.ctr(t, "-n", ns, "image", "rm", "--sync", ref)
			})
		}
	}
}

// convert runs `socikit convert` (bin/socikit) from src to dst with every
// layer indexed, small spans, and returns dst.
func convert(t testing.TB, src, dst string) string {
	t.Helper()
	return convertWith(t, src, dst, "-span-size", "65536")
}

// convertWith runs `socikit convert -plain-http -min-layer-size 0 ARGS SRC
// DST` and returns dst.
func convertWith(t testing.TB, src, dst string, args ...string) string {
	t.Helper()
	bin := filepath.Join(repoRoot, "bin/socikit")
	requireExecutable(t, bin)
	args = append(append([]string{"convert", "-plain-http", "-min-layer-size", "0"}, args...), src, dst)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("socikit convert: %v\n%s", err, out)
	}
	return dst
}

// lazyMounts counts the FUSE layer mounts under the snapshotter's root.
func (d *daemons) lazyMounts(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && strings.HasPrefix(f[1], filepath.Join(d.dir, "socikit")+"/") && strings.HasPrefix(f[2], "fuse") {
			n++
		}
	}
	return n
}

// metric returns one value from the snapshotter's /metrics.
func (d *daemons) metric(t testing.TB, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	t.Fatalf("metric %s not in:\n%s", name, b)
	return ""
}

// pushBusybox pushes a one-layer image (Debian's static busybox, a marker
// file) to a registry on loopback and returns its reference.
func pushBusybox(t testing.TB) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs Debian's busybox-static (apt-get install busybox-static): %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bb)
	add(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "etc/socikit-test", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("socikit\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"/bin/sh"}
	cf.Config.Env = []string{"PATH=/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/socikit/busybox:latest"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// daemons is a containerd + socikit-snapshotter pair started by
// scripts/containerd-start.sh.
type daemons struct {
	dir     string
	address string
	ctrPath string
	metrics string // host:port of /metrics
}

// freeAddress returns a loopback host:port nobody listens on.
func freeAddress(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startContainerd starts the pair with the snapshotter's metrics on a free
// port and its [containerd] address set to this containerd's socket (as the
// default /run/containerd/containerd.sock is on a host), and extra appended
// to the snapshotter's TOML config (a [containerd] table there replaces
// ours).
func startContainerd(t testing.TB, f flavour, extra ...string) *daemons {
	t.Helper()
	for _, b := range []string{"bin/socikit-snapshotter", "bin/containerd", "bin/containerd-shim-runc-v2"} {
		requireExecutable(t, filepath.Join(repoRoot, b))
	}
	dir, err := os.MkdirTemp("", "socikit-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out, err := exec.Command(filepath.Join(repoRoot, "scripts/containerd-stop.sh"), dir).CombinedOutput()
		if err != nil {
			t.Errorf("containerd-stop.sh: %v\n%s", err, out)
		}
		if os.Getenv("SOCIKIT_TEST_KEEP") != "" { // keep the logs and state for a look
			t.Logf("kept %s", dir)
			return
		}
		if t.Failed() {
			for _, l := range []string{"socikit.log", "containerd.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, l))
				t.Logf("%s (last 3000 bytes):\n%s", l, tail(b, 3000))
			}
			return
		}
		os.RemoveAll(dir)
	})
	metrics := freeAddress(t)
	config := filepath.Join(dir, "socikit.toml")
	toml := fmt.Sprintf("metrics_address = %q\n", metrics)
	if x := strings.Join(extra, "\n"); !strings.Contains(x, "[containerd]") {
		toml += fmt.Sprintf("\n[containerd]\naddress = %q\n", filepath.Join(dir, "containerd.sock"))
	}
	toml += "\n" + strings.Join(extra, "\n") + "\n"
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, f.startFlags...), dir)
	cmd := exec.Command(filepath.Join(repoRoot, "scripts/containerd-start.sh"), args...)
	cmd.Env = append(os.Environ(), "SOCIKIT_LOG_LEVEL=debug", "SOCIKIT_CONFIG="+config)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("containerd-start.sh: %v\n%s%s", err, out, stderr)
	}
	d := &daemons{dir: dir, ctrPath: f.ctr, metrics: metrics}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "CONTAINERD_ADDRESS="); ok {
			d.address = v
		}
	}
	if d.address == "" {
		t.Fatalf("containerd-start.sh printed no address:\n%s", out)
	}
	return d
}

// ctr runs ctr against the daemon and returns its stdout.
func (d *daemons) ctr(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.tryCtr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ctrRetry runs ctr until it succeeds or the time is up.
func (d *daemons) ctrRetry(t testing.TB, wait time.Duration, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		out, err := d.tryCtr(args...)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (d *daemons) tryCtr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.ctrPath, append([]string{"-a", d.address}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ctr %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

// restartSnapshotter stops socikit-snapshotter and starts it again with the
// same root and socket, as containerd-start.sh did.
func (d *daemons) restartSnapshotter(t testing.TB) {
	t.Helper()
	pidFile := filepath.Join(d.dir, "socikit.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Signal(os.Interrupt)
	for i := 0; i < 100 && p.Signal(syscallZero) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	sock := filepath.Join(d.dir, "socikit.sock")
	logf, err := os.OpenFile(filepath.Join(d.dir, "socikit.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(repoRoot, "bin/socikit-snapshotter"), "--config", filepath.Join(d.dir, "socikit.toml"), "--root", filepath.Join(d.dir, "socikit"),
		"--address", sock, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pidFile, []byte(fmt.Sprint(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() //nolint:errcheck // reaped here; containerd-stop.sh stops it
	for i := 0; i < 200; i++ {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("socikit-snapshotter did not come back")
}

func requireExecutable(t testing.TB, p string) {
	t.Helper()
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		t.Skipf("%s is missing: run scripts/containerd-build.sh", p)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
