//go:build integration

package runtime

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/ztoc"
)

// TestLazy runs a two-layer image (busybox; ~64 MB of the Go installation
// under /data/go) converted by `socikit convert` (SOCI v2, 4 MiB spans)
// lazily with containerd 2.4.2, from a registry that counts the blob bytes
// it serves:
//   - partial-fetch: `busybox echo ready` runs having fetched a small part
//     of the image, each zTOC once (containerd's transfer service fetches
//     them, the snapshotter reads containerd's copies); reading one file of
//     the big layer fetches about its span(s);
//   - socikit-pull: the same pulled with `socikit pull` (containerd fetches
//     no zTOC, the snapshotter does);
//   - slow-ztoc: the zTOCs answered 1.5 s late: the snapshotter waits for
//     containerd's fetch in progress instead of fetching them too;
//   - corrupt-span: with one byte of the big layer flipped in the registry,
//     reading a file of the damaged span fails with EIO, the snapshotter
//     counts and logs a verification failure, and other files still read;
//   - registry-down: with the registry gone, reading an unfetched file
//     fails within the fetch timeouts instead of hanging.
func TestLazy(t *testing.T) {
	requireRoot(t)
	f := flavours[0]
	requireExecutable(t, f.ctr)
	reg := newRegistry(t)
	start := time.Now()
	plain, _ := reg.pushImage(t, "socikit/big", busyboxTar(t), goTreeTar(t, 64<<20))
	ref := convertWith(t, plain, plain+"-soci")
	layers := sociLayers(t, ref)
	t.Logf("image made, pushed and converted in %v", time.Since(start).Round(time.Millisecond))
	if len(layers) != 2 || layers[0].z == nil || layers[1].z == nil {
		t.Fatalf("converted image has %d layers (want 2, both indexed)", len(layers))
	}
	var imageSize int64
	for _, l := range layers {
		imageSize += l.desc.Size
	}
	data := layers[1]
	dataDigest := data.desc.Digest.String()
	ix, err := ztoc.NewIndex(data.z)
	if err != nil {
		t.Fatal(err)
	}
	spans := ix.Spans()
	t.Logf("image: %d bytes compressed (busybox layer %d, data layer %d: %d spans, %d files, %d bytes uncompressed); zTOCs %d + %d bytes",
		imageSize, layers[0].desc.Size, data.desc.Size, len(spans), len(data.z.Files), data.z.UncompressedArchiveSize, layers[0].ztocSize, data.ztocSize)

	// fileIn returns a regular file of the data layer lying inside span
	// id (or else one with data in it), as an absolute path, and its size.
	fileIn := func(t *testing.T, id int) (string, int64) {
		t.Helper()
		s := spans[id]
		for _, e := range data.z.Files {
			if e.Type == ztoc.TypeReg && e.UncompressedSize > 0 && e.UncompressedOffset >= s.UncompressedStart &&
				e.UncompressedOffset+e.UncompressedSize <= s.UncompressedEnd {
				return "/" + strings.TrimPrefix(e.Name, "./"), e.UncompressedSize
			}
		}
		for _, e := range data.z.Files {
			if e.Type == ztoc.TypeReg && e.UncompressedSize > 0 && e.UncompressedOffset < s.UncompressedEnd &&
				e.UncompressedOffset+e.UncompressedSize > s.UncompressedStart {
				return "/" + strings.TrimPrefix(e.Name, "./"), e.UncompressedSize
			}
		}
		t.Fatalf("no file has data in span %d", id)
		return "", 0
	}
	run := func(d *daemons, args ...string) (string, error) {
		id := fmt.Sprintf("socikit-lazy-%d", time.Now().UnixNano())
		return d.tryCtr(append([]string{"-n", "socikit-test", "run", "--rm", "--snapshotter", "socikit", ref, id}, args...)...)
	}
	pull := func(t *testing.T, d *daemons) {
		t.Helper()
		d.ctr(t, "-n", "socikit-test", "image", "pull", "--snapshotter", "socikit", "--plain-http", ref)
		if got := d.lazyMounts(t); got != 2 {
			t.Fatalf("%d lazy layer mounts after the pull, want 2", got)
		}
	}

	// firstOutput pulls with pullFn, runs `busybox echo ready` and reports
	// (and checks) what the registry served for it, returning the data
	// layer's bytes served so far.
	firstOutput := func(t *testing.T, d *daemons, pullFn func(*testing.T, *daemons)) int64 {
		t.Helper()
		all0, data0 := reg.Served(dataDigest)
		agents0 := reg.ServedByAgent()
		served0 := reg.ServedByDigest()
		start := time.Now()
		pullFn(t, d)
		allPull, _ := reg.Served(dataDigest)
		pullTime := time.Since(start)
		out, err := run(d, "/bin/busybox", "echo", "ready")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out) != "ready" {
			t.Fatalf("container printed %q, want ready", out)
		}
		runTime := time.Since(start) - pullTime
		all1, data1 := reg.Served(dataDigest)
		fetched := all1 - all0
		t.Logf("pull %v, run %v; registry served %d blob bytes (%d in the pull) of a %d-byte image (%.1f%%), %d of them from the data layer; snapshotter socikit_fetched_bytes_total %s",
			pullTime.Round(time.Millisecond), runTime.Round(time.Millisecond), fetched, allPull-all0, imageSize,
			100*float64(fetched)/float64(imageSize), data1-data0, d.metric(t, "socikit_fetched_bytes_total"))
		for a, n := range reg.ServedByAgent() {
			if n > agents0[a] {
				t.Logf("  of which to %q: %d", a, n-agents0[a])
			}
		}
		t.Logf("snapshotter read zTOCs: %s bytes from the registry, %s from containerd's content store",
			d.metric(t, `socikit_index_artifact_bytes_total{source="registry"}`), d.metric(t, `socikit_index_artifact_bytes_total{source="containerd"}`))
		// containerd's transfer service (ctr image pull) fetches the zTOCs
		// too (the SOCI index manifest is in the image index with the
		// image's platform) and the snapshotter reads them from its content
		// store; socikit pull keeps containerd from fetching them. Either
		// way each is served once.
		for _, l := range layers {
			if got := reg.ServedOf(l.ztocDigest) - served0[l.ztocDigest]; got > l.ztocSize {
				t.Errorf("zTOC %s (%d bytes) served %d bytes: fetched more than once", l.ztocDigest, l.ztocSize, got)
			}
		}
		if fetched > imageSize/4 {
			t.Errorf("fetched %d bytes before the first output, more than a quarter of the image (%d)", fetched, imageSize)
		}
		return data1
	}

	t.Run("partial-fetch", func(t *testing.T) {
		d := startContainerd(t, f)
		data1 := firstOutput(t, d, pull)

		// The status endpoint and `socikit status` see both layers: the
		// busybox layer read, the data layer barely touched.
		st := d.status(t)
		if len(st.Images) != 1 || len(st.Images[0].Layers) != 2 {
			t.Fatalf("status: %+v, want one image with two layers", st)
		}
		for _, l := range st.Images[0].Layers {
			if l.Layer == dataDigest && l.SpansCached > l.SpansTotal/4 {
				t.Errorf("status: %d of %d spans of the data layer present after echo", l.SpansCached, l.SpansTotal)
			}
		}
		table, err := exec.Command(filepath.Join(repoRoot, "bin/socikit"), "status", "--address", d.metrics).CombinedOutput()
		if err != nil {
			t.Fatalf("socikit status: %v\n%s", err, table)
		}
		t.Logf("socikit status:\n%s", table)
		if !strings.Contains(string(table), ref) {
			t.Errorf("socikit status does not name %s", ref)
		}
		if v := d.metric(t, `socikit_fetch_duration_seconds_count{kind="on-demand"}`); v == "0" {
			t.Errorf("no on-demand fetch in the latency histogram")
		}

		// One file of the data layer: about its span is fetched.
		name, size := fileIn(t, len(spans)/2)
		out, err := run(d, "/bin/busybox", "wc", "-c", name)
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(out); len(f) == 0 || f[0] != strconv.FormatInt(size, 10) {
			t.Fatalf("wc -c %s printed %q, want %d", name, out, size)
		}
		_, data2 := reg.Served(dataDigest)
		s := spans[len(spans)/2]
		t.Logf("reading %s (%d bytes) fetched %d bytes of the data layer (its span: %d compressed bytes)",
			name, size, data2-data1, s.CompressedEnd-s.CompressedStart)
		if got, max := data2-data1, 2*(s.CompressedEnd-s.CompressedStart)+64<<10; got > max {
			t.Errorf("reading one file fetched %d bytes of the data layer, want at most %d", got, max)
		}
	})

	// The same with `socikit pull` (containerd's client-side pull, one
	// manifest of the image index): containerd does not fetch the zTOCs,
	// the snapshotter does.
	t.Run("socikit-pull", func(t *testing.T) {
		d := startContainerd(t, f)
		firstOutput(t, d, func(t *testing.T, d *daemons) {
			t.Helper()
			out, err := exec.Command(filepath.Join(repoRoot, "bin/socikit"), "pull", "--address", d.address,
				"--namespace", "socikit-test", "--plain-http", ref).CombinedOutput()
			if err != nil {
				t.Fatalf("socikit pull: %v\n%s", err, out)
			}
			if got := d.lazyMounts(t); got != 2 {
				t.Fatalf("%d lazy layer mounts after socikit pull, want 2", got)
			}
		})
	})

	// The zTOCs answered slowly: the snapshotter finds containerd's fetch
	// in progress and waits for it instead of fetching them too.
	t.Run("slow-ztoc", func(t *testing.T) {
		for _, l := range layers {
			reg.Delay(l.ztocDigest, 1500*time.Millisecond)
			defer reg.Restore(l.ztocDigest)
		}
		d := startContainerd(t, f)
		firstOutput(t, d, pull)
		if v := d.metric(t, `socikit_index_artifacts_total{source="containerd"}`); v != "2" {
			t.Errorf("%s zTOCs read from containerd's content store, want 2", v)
		}
	})

	t.Run("corrupt-span", func(t *testing.T) {
		bad := len(spans) / 3
		s := spans[bad]
		badFile, _ := fileIn(t, bad)
		goodFile, goodSize := fileIn(t, len(spans)-1)
		reg.Corrupt(dataDigest, data.blob, (s.CompressedStart+s.CompressedEnd)/2)
		defer reg.Restore(dataDigest)

		d := startContainerd(t, f)
		pull(t, d)
		out, err := run(d, "/bin/busybox", "cat", badFile)
		if err == nil {
			t.Fatalf("cat %s in a corrupted span succeeded (%d bytes)", badFile, len(out))
		}
		if !strings.Contains(err.Error(), "I/O error") && !strings.Contains(err.Error(), "Input/output error") {
			t.Errorf("cat %s failed, but not with an I/O error: %v", badFile, err)
		}
		t.Logf("cat of a file in the corrupted span %d: %v", bad, firstLines(err.Error(), 4))
		if v := d.metric(t, "socikit_verify_failures_total"); v == "0" {
			t.Errorf("socikit_verify_failures_total = %s, want > 0", v)
		}
		logb, _ := os.ReadFile(filepath.Join(d.dir, "socikit.log"))
		if !strings.Contains(string(logb), "span failed verification") {
			t.Errorf("socikit.log does not mention the verification failure")
		}
		// Other spans are intact.
		out, err = run(d, "/bin/busybox", "wc", "-c", goodFile)
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(out); len(f) == 0 || f[0] != strconv.FormatInt(goodSize, 10) {
			t.Fatalf("wc -c %s printed %q, want %d", goodFile, out, goodSize)
		}
	})

	// Last: the registry does not come back.
	t.Run("registry-down", func(t *testing.T) {
		d := startContainerd(t, f)
		pull(t, d)
		if out, err := run(d, "/bin/busybox", "echo", "ready"); err != nil || strings.TrimSpace(out) != "ready" {
			t.Fatalf("run before the registry went away: %q, %v", out, err)
		}
		reg.Down()
		name, _ := fileIn(t, len(spans)-2)
		start := time.Now()
		out, err := run(d, "/bin/busybox", "cat", name)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("cat %s with the registry gone succeeded (%d bytes)", name, len(out))
		}
		t.Logf("cat with the registry gone failed after %v: %s", took.Round(time.Millisecond), firstLines(err.Error(), 4))
		if !strings.Contains(err.Error(), "I/O error") && !strings.Contains(err.Error(), "Input/output error") {
			t.Errorf("failed, but not with an I/O error: %v", err)
		}
		if took > 60*time.Second {
			t.Errorf("the failure took %v", took)
		}
		// What is cached still reads.
		if out, err := run(d, "/bin/busybox", "echo", "still"); err != nil || strings.TrimSpace(out) != "still" {
			t.Errorf("cached busybox with the registry gone: %q, %v", out, err)
		}
	})
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, " | ")
}

// snapshotterStatus is the part of socikit-snapshotter's /status the tests
// read.
type snapshotterStatus struct {
	Images []struct {
		Image  string `json:"image"`
		Layers []struct {
			Layer        string `json:"layer"`
			FetchedBytes int64  `json:"fetched_bytes"`
			SpansCached  int    `json:"spans_cached"`
			SpansTotal   int    `json:"spans_total"`
		} `json:"layers"`
	} `json:"images"`
}

// status reads the snapshotter's /status.
func (d *daemons) status(t *testing.T) snapshotterStatus {
	t.Helper()
	resp, err := http.Get("http://" + d.metrics + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var st snapshotterStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("parse /status: %v\n%s", err, b)
	}
	return st
}
