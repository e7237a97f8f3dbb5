package cli

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// faultyRegistry is an in-process registry whose blob range requests (GETs
// with a Range header: get-file's) can be answered 503 or left hanging,
// and whose every request can be left hanging.
type faultyRegistry struct {
	host       string
	fail503    atomic.Int64 // answer this many range requests with 503
	served503  atomic.Int64
	ranges     atomic.Int64 // range requests seen
	hangRanges atomic.Bool
	hangAll    atomic.Bool
}

func newFaultyRegistry(t *testing.T) *faultyRegistry {
	t.Helper()
	f := &faultyRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isRange := r.Header.Get("Range") != ""
		if isRange {
			f.ranges.Add(1)
		}
		switch {
		case f.hangAll.Load() || (isRange && f.hangRanges.Load()):
			<-r.Context().Done()
			return
		case isRange && f.fail503.Add(-1) >= 0:
			f.served503.Add(1)
			http.Error(w, "injected", http.StatusServiceUnavailable)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.CloseClientConnections()
		s.Close()
	})
	f.host = strings.TrimPrefix(s.URL, "http://")
	return f
}

// TestRangeReadRetryAndTimeout: get-file's range reads retry 503s (the
// snapshotter's policy, internal/httprange), and --timeout cuts get-file,
// inspect and convert against a registry that does not answer, long before
// the range client's own stall deadlines would.
func TestRangeReadRetryAndTimeout(t *testing.T) {
	t.Parallel()
	reg := newFaultyRegistry(t)
	srcDir, im := newLayoutImage(t)
	ref := reg.host + "/t/app:1"
	run(t, convertArgs(srcDir, ref)...)
	l := im.layers[0]
	var f testFile
	for _, x := range l.files {
		if x.typ == tar.TypeReg && len(x.data) > 0 {
			f = x
			break
		}
	}
	if f.name == "" {
		t.Fatal("no regular file in the layer")
	}
	getFile := []string{"get-file", "--layer", l.desc.Digest.String(), ref, f.name}

	reg.fail503.Store(2)
	if got := run(t, getFile...); got != string(f.data) {
		t.Fatalf("get-file through two 503s: %d bytes, want %d", len(got), len(f.data))
	}
	if n := reg.served503.Load(); n != 2 {
		t.Fatalf("%d 503s served, want 2", n)
	}
	if reg.ranges.Load() < 3 {
		t.Fatalf("%d range requests, want the 2 failed ones and more", reg.ranges.Load())
	}

	timedOut := func(name string, args ...string) {
		t.Helper()
		start := time.Now()
		_, _, err := runErr(t, args...)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%s: succeeded against a registry that does not answer", name)
		}
		if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline exceeded") {
			t.Errorf("%s: %v, want a deadline", name, err)
		}
		// Left to itself the range client would cut each hanging request
		// at its stall deadline (1 s at least) and retry 4 times: the
		// command ends at its --timeout instead. Without it the 5 attempts
		// take 5 s at least; the bound leaves room for a loaded machine.
		if took < 300*time.Millisecond || took > 4500*time.Millisecond {
			t.Errorf("%s: ended after %v, want about 300ms", name, took)
		}
	}
	reg.hangRanges.Store(true)
	timedOut("get-file", append([]string{"get-file", "--timeout", "300ms"}, getFile[1:]...)...)
	reg.hangAll.Store(true)
	timedOut("inspect", "inspect", "--timeout", "300ms", ref)
	timedOut("convert", convertArgs("--timeout", "300ms", ref, "oci-layout:"+filepath.Join(t.TempDir(), "out"))...)
}
