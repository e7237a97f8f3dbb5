//go:build integration

package e2e

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// repoRoot is the socikit checkout (this module is integration/e2e).
func repoRoot(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Sandbox is one registry and one buildkitd shared by the tests.
type Sandbox struct {
	Registry     string // host:port
	Addr         string // buildkitd address
	Root         string // buildkitd root directory
	BuildctlPath string
}

var (
	sbOnce sync.Once
	sb     *Sandbox
	sbErr  string
	stops  []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	printBenchReports()
	for _, s := range stops {
		s()
	}
	os.Exit(code)
}

// NewSandbox returns the shared sandbox, starting it on first use, or skips
// the test when the machine cannot run it.
func NewSandbox(t testing.TB) *Sandbox {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: buildkitd with the OCI worker")
	}
	root := repoRoot(t)
	bin := os.Getenv("BIN")
	if bin == "" {
		bin = filepath.Join(root, "bin")
	}
	for _, b := range []string{"buildkitd", "buildctl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Skipf("%s/%s missing: run scripts/buildkit-build.sh", bin, b)
		}
	}
	sbOnce.Do(func() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			sbErr = err.Error()
			return
		}
		srv := &http.Server{Handler: refusals.wrap(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(l)
		stops = append(stops, func() { srv.Close() })
		host := l.Addr().String()

		bkroot, err := os.MkdirTemp("", "socikit-e2e-buildkitd-")
		if err != nil {
			sbErr = err.Error()
			return
		}
		cmd := exec.Command(filepath.Join(root, "scripts/buildkit-start.sh"))
		cmd.Env = append(os.Environ(), "BUILDKITD_ROOT="+bkroot, "BUILDKITD_REGISTRIES="+host, "BIN="+bin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			sbErr = "start buildkitd: " + err.Error() + ": " + stderr.String()
			return
		}
		stops = append(stops, func() {
			pid, _ := os.ReadFile(filepath.Join(bkroot, "buildkitd.pid"))
			exec.Command("kill", strings.TrimSpace(string(pid))).Run()
			time.Sleep(500 * time.Millisecond)
			if os.Getenv("E2E_KEEP") == "" {
				exec.Command("umount", "-R", filepath.Join(bkroot, "state")).Run()
				os.RemoveAll(bkroot)
			}
		})
		sb = &Sandbox{Registry: host, Addr: strings.TrimSpace(string(out)), Root: bkroot, BuildctlPath: filepath.Join(bin, "buildctl")}
	})
	if sb == nil {
		t.Fatalf("sandbox: %s", sbErr)
	}
	return sb
}

// Buildctl runs buildctl against the sandbox's buildkitd.
func (s *Sandbox) Buildctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.BuildctlPath, append([]string{"--addr", s.Addr}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// Log returns buildkitd's log.
func (s *Sandbox) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Root, "buildkitd.log"))
	return string(b)
}

// refusingRegistry makes the sandbox registry refuse some pushes, by
// repository name, and records the manifests it accepted:
//   - a repository named refuse-tag-*: manifest PUTs by tag get a 500;
//   - refuse-soci-*: PUTs of a manifest whose body names a SOCI index
//     media type get a 500;
//   - refuse-blob-*: it has no blob, and every blob upload gets a 500.
type refusingRegistry struct {
	mu       sync.Mutex
	accepted map[string][][]byte // repository -> manifest bodies stored
}

var refusals = &refusingRegistry{accepted: map[string][][]byte{}}

// Accepted returns the manifest bodies stored in repo.
func (r *refusingRegistry) Accepted(repo string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted[repo]
}

func (r *refusingRegistry) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := strings.TrimPrefix(req.URL.Path, "/v2/")
		repo, ref, isManifest := strings.Cut(p, "/manifests/")
		if !isManifest {
			repo, _, _ = strings.Cut(p, "/blobs/")
		}
		refuse := func() {
			http.Error(w, `{"errors":[{"code":"UNKNOWN","message":"refused by the test registry"}]}`, http.StatusInternalServerError)
		}
		if strings.HasPrefix(repo, "refuse-blob-") && strings.Contains(p, "/blobs/") {
			// The registry's blobs are shared by all repositories: answer
			// that this one has none, so that the pusher uploads them.
			if req.Method == http.MethodHead || req.Method == http.MethodGet {
				http.NotFound(w, req)
				return
			}
			refuse()
			return
		}
		if !isManifest || req.Method != http.MethodPut {
			h.ServeHTTP(w, req)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			refuse()
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if strings.HasPrefix(repo, "refuse-tag-") && !strings.HasPrefix(ref, "sha256:") ||
			strings.HasPrefix(repo, "refuse-soci-") && bytes.Contains(body, []byte("application/vnd.amazon.soci.index")) {
			refuse()
			return
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, req)
		if sw.code < 300 {
			r.mu.Lock()
			r.accepted[repo] = append(r.accepted[repo], body)
			r.mu.Unlock()
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}
