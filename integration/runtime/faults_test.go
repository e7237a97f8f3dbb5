//go:build integration

package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/integration/runtime/faultproxy"
)

// TestRegistryFaults starts containers lazily (containerd 2.4.2,
// socikit-snapshotter, SOCI v2) from a registry behind
// faultproxy, which fails a share of the range requests for blobs with
// every fault it knows (resets, 500/502/503, 429 with Retry-After, short
// bodies, 30 s stalls, 200 with the whole blob, corrupted bytes). Each
// start is cold (a new containerd + snapshotter, empty caches): pull, then
// a container that checksums every file of the image's data layer and its
// busybox. Every start must succeed and every checksum must match the
// image's own files. It logs the time of each start, the faults injected,
// and the snapshotter's retries by reason, stalls and hedges.
//
// Default (CI): 5 starts of a ~66 MB image (Go sources and tools under
// /data, 256 KiB spans), 10 % of range requests faulted. The environment
// changes it (TestRegistryFaultsLong: 50 starts of ~100 MB):
//
//	SOCIKIT_FAULTS=mix=0.10        rates: mix=R (R spread over every fault), FAULT=R,... or none
//	SOCIKIT_FAULTS_STARTS=5        cold starts (50: Long)
//	SOCIKIT_FAULTS_DATA_MB=64      uncompressed size of the data layer (100: Long)
//	SOCIKIT_FAULTS_SPAN=262144     span size
//	SOCIKIT_FAULTS_STALL=30s       how long a stall lasts
//	SOCIKIT_FAULTS_SEED=1          start i uses seed+i
//	SOCIKIT_BIN=DIR                socikit-snapshotter from DIR instead of bin/
//
// With stalls of 20 s or more and a snapshotter that cuts stalls (it
// reports socikit_fetch_stalls_total), a start that takes longer than one
// stall fails the test: a stall was waited out.
func TestRegistryFaults(t *testing.T) {
	testRegistryFaults(t, faultRun{starts: 5, dataMB: 64})
}

// TestRegistryFaultsLong is TestRegistryFaults with 50 cold starts of a
// ~100 MB image; it runs with SOCIKIT_FAULTS_LONG=1 only.
func TestRegistryFaultsLong(t *testing.T) {
	if os.Getenv("SOCIKIT_FAULTS_LONG") == "" {
		t.Skip("SOCIKIT_FAULTS_LONG=1 runs it (50 cold starts of a ~100 MB image, ~15 min)")
	}
	testRegistryFaults(t, faultRun{starts: 50, dataMB: 100})
}

type faultRun struct {
	starts, dataMB int
}

func envOr(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number", name, v)
	}
	return n
}

func testRegistryFaults(t *testing.T, run faultRun) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	useSnapshotterFrom(t, os.Getenv("SOCIKIT_BIN"))
	starts := envOr(t, "SOCIKIT_FAULTS_STARTS", run.starts)
	dataMB := envOr(t, "SOCIKIT_FAULTS_DATA_MB", run.dataMB)
	span := envOr(t, "SOCIKIT_FAULTS_SPAN", 256<<10)
	seed := envOr(t, "SOCIKIT_FAULTS_SEED", 1)
	spec := os.Getenv("SOCIKIT_FAULTS")
	if spec == "" {
		spec = "mix=0.10"
	}
	rates, err := faultproxy.ParseRates(spec)
	if err != nil {
		t.Fatal(err)
	}
	stall := 30 * time.Second
	if v := os.Getenv("SOCIKIT_FAULTS_STALL"); v != "" {
		if stall, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}

	reg := newRegistry(t)
	t0 := time.Now()
	bb := busyboxTar(t)
	data := goTreeTar(t, int64(dataMB)<<20)
	plain, _ := reg.pushImage(t, "socikit/faults", bb, data)
	ref := convertWith(t, plain, plain+"-soci", "-span-size", strconv.Itoa(span))
	layers := sociLayers(t, ref)
	if len(layers) != 2 || layers[0].z == nil || layers[1].z == nil {
		t.Fatalf("converted image has %d layers (want 2, both indexed)", len(layers))
	}
	want := fileSums(t, bb, data)
	t.Logf("image made in %v: %d files; layers %d + %d bytes compressed (%d + %d uncompressed), %d spans of the data layer",
		time.Since(t0).Round(time.Millisecond), len(want), layers[0].desc.Size, layers[1].desc.Size,
		len(bb), len(data), layers[1].z.MaxSpanID+1)
	t.Logf("faults: %s (%v), stalls of %v, %d cold starts", spec, rates, stall, starts)

	// Every regular file of the data layer, and busybox, checksummed in
	// the container.
	script := "/bin/busybox find /data -type f -print0 | /bin/busybox xargs -0 /bin/busybox sha256sum && " +
		"/bin/busybox sha256sum /bin/busybox /etc/socikit-test"

	var times []time.Duration
	total := map[string]float64{}
	injected := map[faultproxy.Fault]int64{}
	var matched int64
	for i := range starts {
		ok := t.Run(fmt.Sprintf("start-%02d", i), func(t *testing.T) {
			p, err := faultproxy.New(faultproxy.Config{Target: "http://" + reg.host, Seed: uint64(seed + i), Rates: rates, Stall: stall})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			pref := strings.Replace(ref, reg.host, p.Host(), 1)
			d := startContainerd(t, f)
			start := time.Now()
			if _, err := d.ctrFor(10*time.Minute, "-n", "socikit-test", "image", "pull", "--snapshotter", "socikit", "--plain-http", pref); err != nil {
				t.Fatal(err)
			}
			pulled := time.Since(start)
			if got := d.lazyMounts(t); got != 2 {
				t.Fatalf("%d lazy layer mounts after the pull, want 2", got)
			}
			id := fmt.Sprintf("socikit-faults-%d-%d", i, time.Now().UnixNano())
			out, err := d.ctrFor(15*time.Minute, "-n", "socikit-test", "run", "--rm", "--snapshotter", "socikit", pref, id, "/bin/busybox", "sh", "-c", script)
			took := time.Since(start)
			m := d.metricsMap(t)
			_, matchedHere := p.Requests()
			matched += matchedHere
			for k, v := range p.Counts() {
				injected[k] += v
			}
			for k, v := range m {
				total[k] += v
			}
			t.Logf("start %d: %v (pull %v); proxy: %s; snapshotter: %s", i, took.Round(time.Millisecond), pulled.Round(time.Millisecond),
				p.Summary(), faultMetricsLine(m))
			if err != nil {
				t.Fatalf("container failed: %v", firstLines(err.Error(), 8))
			}
			checkSums(t, out, want)
			times = append(times, took)
			if _, ours := m["socikit_fetch_stalls_total"]; ours && stall >= 20*time.Second && took > stall {
				t.Errorf("start took %v, longer than one stall (%v): a stall was waited out", took, stall)
			}
			if r := sumPrefix(m, "socikit_fetch_retries_total"); r > 0 {
				logb, _ := os.ReadFile(filepath.Join(d.dir, "socikit.log"))
				if !bytes.Contains(logb, []byte("range request failed, retrying")) && !bytes.Contains(logb, []byte("span failed verification")) {
					t.Errorf("%v retries counted, none logged", r)
				}
			}
		})
		if !ok {
			t.Errorf("start %d failed", i)
		}
	}
	if len(times) == 0 {
		return
	}
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range times {
		sum += d
	}
	var inj []string
	var ninj int64
	for _, k := range slices.Sorted(maps.Keys(injected)) {
		if k != faultproxy.None {
			inj = append(inj, fmt.Sprintf("%s=%d", k, injected[k]))
			ninj += injected[k]
		}
	}
	t.Logf("SUMMARY %d/%d starts succeeded, every file right; start time min %v median %v max %v mean %v; "+
		"%d range requests through the proxy, %d faults injected (%s); snapshotter: %s",
		len(times), starts, sorted[0].Round(time.Millisecond), sorted[len(sorted)/2].Round(time.Millisecond),
		sorted[len(sorted)-1].Round(time.Millisecond), (sum / time.Duration(len(times))).Round(time.Millisecond),
		matched, ninj, strings.Join(inj, " "), faultMetricsLine(total))
}

// useSnapshotterFrom makes the daemons of this test run dir's
// socikit-snapshotter (nothing when dir is ""): a directory standing for
// the checkout, with links to its scripts, examples and bin/ but that one
// binary, becomes repoRoot until the test ends (the tests of this package
// do not run in parallel).
func useSnapshotterFrom(t *testing.T, dir string) {
	t.Helper()
	if dir == "" {
		return
	}
	bin, err := filepath.Abs(filepath.Join(dir, "socikit-snapshotter"))
	if err != nil {
		t.Fatal(err)
	}
	requireExecutable(t, bin)
	shadow := t.TempDir()
	for _, sub := range []string{"scripts", "examples"} {
		if err := os.Symlink(filepath.Join(repoRoot, sub), filepath.Join(shadow, sub)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(shadow, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(repoRoot, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		src := filepath.Join(repoRoot, "bin", e.Name())
		if e.Name() == "socikit-snapshotter" {
			src = bin
		}
		if err := os.Symlink(src, filepath.Join(shadow, "bin", e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	saved := repoRoot
	repoRoot = shadow
	t.Cleanup(func() { repoRoot = saved })
	t.Logf("socikit-snapshotter: %s", bin)
}

// fileSums returns the sha256 of every regular file of the layers, by
// absolute path; a later layer's file replaces an earlier one's.
func fileSums(t testing.TB, layers ...[]byte) map[string]string {
	t.Helper()
	sums := map[string]string{}
	for _, l := range layers {
		tr := tar.NewReader(bytes.NewReader(l))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			s := sha256.New()
			if _, err := io.Copy(s, tr); err != nil {
				t.Fatal(err)
			}
			sums["/"+strings.TrimPrefix(h.Name, "./")] = hex.EncodeToString(s.Sum(nil))
		}
	}
	return sums
}

// checkSums compares sha256sum's output with want: every file listed,
// every sum right.
func checkSums(t *testing.T, out string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		sum, name, ok := strings.Cut(l, "  ")
		if !ok {
			t.Fatalf("sha256sum printed %q", l)
		}
		got[name] = sum
	}
	var bad, missing []string
	for name, sum := range want {
		switch g, ok := got[name]; {
		case !ok:
			missing = append(missing, name)
		case g != sum:
			bad = append(bad, name)
		}
	}
	sort.Strings(bad)
	sort.Strings(missing)
	if len(bad) > 0 || len(missing) > 0 {
		t.Fatalf("%d files read wrong (%.5q), %d not read (%.5q), of %d", len(bad), bad, len(missing), missing, len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("%d files checksummed in the container, the image has %d", len(got), len(want))
	}
}

// ctrFor is tryCtr with a longer bound.
func (d *daemons) ctrFor(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.ctrPath, append([]string{"-a", d.address}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ctr %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, tail(stdout.Bytes(), 2000), stderr.Bytes())
	}
	return stdout.String(), nil
}

// metricsMap reads every sample of the snapshotter's /metrics (name with
// labels → value); histograms' buckets left out.
func (d *daemons) metricsMap(t testing.TB) map[string]float64 {
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
	m := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || l[0] == '#' || strings.Contains(l, "_bucket{") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			m[l[:i]] = v
		}
	}
	return m
}

func sumPrefix(m map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

// faultMetricsLine sums up the snapshotter's fetch and fault metrics.
func faultMetricsLine(m map[string]float64) string {
	var retries []string
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, "socikit_fetch_retries_total{") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if m[k] > 0 {
			reason := strings.TrimSuffix(strings.TrimPrefix(k, `socikit_fetch_retries_total{reason="`), `"}`)
			retries = append(retries, fmt.Sprintf("%s=%g", reason, m[k]))
		}
	}
	s := fmt.Sprintf("fetches %g, %g bytes, errors %g, verify failures %g",
		sumPrefix(m, "socikit_fetches_total"), m["socikit_fetched_bytes_total"], m["socikit_fetch_errors_total"], m["socikit_verify_failures_total"])
	if _, ok := m["socikit_fetch_stalls_total"]; !ok {
		return s + " (no fault metrics: an older snapshotter)"
	}
	return s + fmt.Sprintf(", retries %g [%s], stalls cut %g, hedges %g (won %g), whole-blob answers %g, slow fetches %g",
		sumPrefix(m, "socikit_fetch_retries_total"), strings.Join(retries, " "), m["socikit_fetch_stalls_total"],
		m["socikit_fetch_hedges_total"], m["socikit_fetch_hedge_wins_total"], m["socikit_fetch_whole_blob_total"], m["socikit_fetch_slow_total"])
}
