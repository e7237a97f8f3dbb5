//go:build integration

package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// TestV1Index runs an image indexed by a SOCI v1 index (`socikit convert
// --index-version v1`: the image unchanged, the index a referrer of its
// manifest) lazily on containerd 2.4.2 with `[discovery] enable_v1 = true`:
//   - referrers-api: the registry answers the referrers API, which the
//     snapshotter asks;
//   - tag-fallback: the registry has no referrers API (404), so the
//     snapshotter reads the sha256-<hex> tag;
//   - disabled: with v1 discovery off (the default) the same image is
//     unpacked by containerd instead, and still runs.
func TestV1Index(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	enableV1 := "[discovery]\nenable_v1 = true\n"
	for _, c := range []struct {
		name      string
		referrers bool
		config    []string
		lazy      bool
	}{
		{"referrers-api", true, []string{enableV1}, true},
		{"tag-fallback", false, []string{enableV1}, true},
		{"disabled", false, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := newRegistry(t, registry.WithReferrersSupport(c.referrers))
			plain, _ := reg.pushImage(t, "socikit/v1", busyboxTar(t))
			ref := convertWith(t, plain, plain+"-v1", "--index-version", "v1", "-span-size", "65536")
			apiBefore, tagBefore := reg.Requests("GET", "/referrers/"), reg.Requests("GET", "/manifests/sha256-")

			d := startContainerd(t, f, c.config...)
			ns := "socikit-test"
			d.ctr(t, "-n", ns, "image", "pull", "--snapshotter", "socikit", "--plain-http", ref)
			if got := d.lazyMounts(t); (got > 0) != c.lazy {
				t.Fatalf("%d lazy layer mounts after the pull, want lazy=%v", got, c.lazy)
			}
			id := fmt.Sprintf("socikit-v1-%d", time.Now().UnixNano())
			out := d.ctr(t, "-n", ns, "run", "--rm", "--snapshotter", "socikit", ref, id,
				"/bin/busybox", "sh", "-c", "echo hello from $(busybox cat /etc/socikit-test)")
			if want := "hello from socikit"; strings.TrimSpace(out) != want {
				t.Fatalf("container printed %q, want %q", out, want)
			}
			api, tag := reg.Requests("GET", "/referrers/")-apiBefore, reg.Requests("GET", "/manifests/sha256-")-tagBefore
			t.Logf("snapshotter asked the referrers API %d times, read the sha256-<hex> tag %d times", api, tag)
			logb, _ := os.ReadFile(filepath.Join(d.dir, "socikit.log"))
			switch {
			case !c.lazy:
				if api+tag != 0 {
					t.Errorf("v1 discovery disabled, yet %d referrers requests and %d tag reads", api, tag)
				}
				if strings.Contains(string(logb), "found_by=v1") {
					t.Errorf("v1 discovery disabled, yet socikit.log says an index was found by v1")
				}
			case c.referrers:
				if api == 0 || tag != 0 {
					t.Errorf("want the referrers API asked (got %d) and no tag read (got %d)", api, tag)
				}
			default:
				if tag == 0 {
					t.Errorf("no read of the sha256-<hex> tag")
				}
			}
			if c.lazy && !strings.Contains(string(logb), "found_by=v1") {
				t.Errorf("socikit.log does not say the index was found by v1")
			}
			d.ctr(t, "-n", ns, "image", "rm", "--sync", ref)
		})
	}
}
