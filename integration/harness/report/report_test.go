package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"image"
	_ "image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/integration/harness/results"
)

var outDir = flag.String("out", "", "also write the synthetic report into this directory, to look at")

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, tc := range []struct {
		name string
		in   []float64
		want Stat
	}{
		{"empty", nil, Stat{0, nan, nan, nan}},
		{"one", []float64{5}, Stat{1, 5, 5, 5}},
		{"odd", []float64{3, 1, 2}, Stat{3, 2, 1, 3}},
		{"even", []float64{4, 1, 3, 2}, Stat{4, 2.5, 1, 4}},
		{"even two", []float64{10, 11}, Stat{2, 10.5, 10, 11}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			got := Summarize(in)
			if !sameStat(got, tc.want) {
				t.Errorf("Summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
			if !reflect.DeepEqual(in, tc.in) {
				t.Errorf("Summarize modified its input: %v, was %v", in, tc.in)
			}
			if m := Median(tc.in); !sameFloat(m, tc.want.Median) {
				t.Errorf("Median(%v) = %v, want %v", tc.in, m, tc.want.Median)
			}
		})
	}
}

func sameFloat(a, b float64) bool {
	return (math.IsNaN(a) && math.IsNaN(b)) || math.Abs(a-b) < 1e-9
}

func sameStat(a, b Stat) bool {
	return a.N == b.N && sameFloat(a.Median, b.Median) && sameFloat(a.Min, b.Min) && sameFloat(a.Max, b.Max)
}

// cell is the median figures of one synthetic (image, contender) cell;
// its three iterations are these times 1, 0.9 and 1.1 (so the median is
// the figure itself, the minimum 0.9× and the maximum 1.1×).
type cell struct {
	pullMS, readyMS, readAllMS float64
	before, total, index, rss  int64
}

var iterFactors = []float64{1, 0.9, 1.1}

// syntheticRun has two images × five contenders × three iterations, with
// upstream-soci failed on jvm and socikit-4m simply missing on jvm. The
// samples are listed in a scrambled order.
func syntheticRun() *results.Run {
	r := &results.Run{
		Started:  time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC),
		Mode:     "quick",
		Host:     "6.1.0-amd64, 4 cores, 16 GiB",
		Link:     results.Link{RateMbit: 100, LatencyMS: 20},
		Runs:     3,
		Command:  "harness -mode quick -rate 100 -latency 20ms",
		Failures: []results.Failure{{Image: "jvm", Contender: results.Upstream, Error: "pull: context deadline exceeded\n(after 300 s)"}},
		Images: []results.Image{
			{Name: "python", Layers: 3, CompressedBytes: 87e6, UncompressedSize: 250e6,
				StartupFiles: 900, StartupBytes: 50e6, StartupCompressed: 20e6, Ready: "READY python"},
			{Name: "jvm", Layers: 5, CompressedBytes: 600e6, UncompressedSize: 1400e6,
				StartupFiles: 2000, StartupBytes: 120e6, StartupCompressed: 50e6, Ready: "READY jvm"},
		},
	}
	cells := map[[2]string]cell{
		{"python", results.Overlayfs}:      {9000, 12000, 12000, 87e6, 87e6, 0, 40000},
		{"python", results.SocikitAuto}:    {300, 2000, 12600, 24e6, 60e6, 1.5e6, 30000},
		{"python", results.SocikitReorder}: {300, 1500, 13500, 21e6, 55e6, 1.5e6, 30000},
		{"python", results.SocikitConvert}: {400, 4800, 0, 40e6, 80e6, 0.5e6, 0},
		{"python", results.Upstream}:       {500, 6000, 14000, 50e6, 87e6, 2e6, 50000},
		{"jvm", results.Overlayfs}:         {60000, 70000, 72000, 600e6, 600e6, 0, 40000},
		{"jvm", results.SocikitAuto}:       {800, 10500, 75000, 60e6, 300e6, 8e6, 60000},
		{"jvm", results.SocikitReorder}:    {800, 7000, 76000, 55e6, 300e6, 8e6, 60000},
	}
	for _, iter := range []int{2, 0, 1} {
		for _, img := range []string{"jvm", "python"} {
			for _, c := range []string{results.Upstream, results.SocikitAuto, results.Overlayfs, results.SocikitReorder, results.SocikitConvert} {
				v, ok := cells[[2]string{img, c}]
				if !ok {
					continue
				}
				f := iterFactors[iter]
				r.Samples = append(r.Samples, results.Sample{
					Image: img, Contender: c, Iter: iter,
					PullMS: v.pullMS * f, ReadyMS: v.readyMS * f, ReadAllMS: v.readAllMS * f,
					BytesBeforeReady: int64(float64(v.before) * f), BytesTotal: int64(float64(v.total) * f),
					Requests: int64(100 * f), IndexBytes: v.index, PeakRSSKiB: v.rss,
				})
			}
		}
	}
	return r
}

func TestStats(t *testing.T) {
	m := newModel(syntheticRun())
	for _, tc := range []struct {
		image, contender string
		f                metric
		want             Stat
	}{
		{"python", results.Overlayfs, readyS, Stat{3, 12, 10.8, 13.2}},
		{"python", results.SocikitAuto, beforeMB, Stat{3, 24, 21.6, 26.4}},
		{"python", results.SocikitConvert, readAllS, Stat{}}, // not measured
		{"python", results.SocikitConvert, rssMiB, Stat{}},   // not measured
		{"jvm", results.Upstream, readyS, Stat{}},            // failed
		{"jvm", results.SocikitConvert, readyS, Stat{}},      // missing
		{"jvm", results.SocikitReorder, indexMB, Stat{3, 8, 8, 8}},
	} {
		got := m.stat(tc.image, tc.contender, tc.f)
		want := tc.want
		if want.N == 0 {
			want = Summarize(nil)
		}
		if !sameStat(got, want) {
			t.Errorf("%s/%s: got %+v, want %+v", tc.image, tc.contender, got, want)
		}
	}
}

func TestChecks(t *testing.T) {
	checks := Checks(syntheticRun())
	// Without profiled or lazyprofile samples: auto, reorder and 4m only.
	if want := 2 * len(goals) * 3; len(checks) != want {
		t.Fatalf("got %d checks, want %d", len(checks), want)
	}
	got := map[[3]string]Check{}
	for _, c := range checks {
		got[[3]string{c.Image, c.Goal, c.Contender}] = c
	}
	const (
		vsOverlay  = "time to ready / overlayfs"
		vsUpstream = "time to ready / upstream SOCI"
		fetch      = "bytes before ready / compressed size of files read"
		readAll    = "read everything / overlayfs full pull + read"
	)
	nan := math.NaN()
	for _, tc := range []struct {
		image, goal, contender string
		value                  float64
		verdict                string
	}{
		{"python", vsOverlay, results.SocikitAuto, 2.0 / 12, "PASS"},
		{"python", vsOverlay, results.SocikitReorder, 1.5 / 12, "PASS"},
		{"python", vsOverlay, results.SocikitConvert, 4.8 / 12, "FAIL"},
		{"python", vsUpstream, results.SocikitAuto, 2.0 / 6, "PASS"},
		{"python", vsUpstream, results.SocikitConvert, 0.8, "FAIL"},
		{"python", fetch, results.SocikitAuto, 1.2, "PASS"},
		{"python", fetch, results.SocikitReorder, 1.05, "PASS"},
		{"python", fetch, results.SocikitConvert, 2.0, "FAIL"},
		{"python", readAll, results.SocikitAuto, 1.05, "PASS"},
		{"python", readAll, results.SocikitReorder, 1.125, "FAIL"},
		{"python", readAll, results.SocikitConvert, nan, "n/a"}, // not measured
		{"jvm", vsOverlay, results.SocikitAuto, 0.15, "PASS"},
		{"jvm", vsOverlay, results.SocikitReorder, 0.1, "PASS"},
		{"jvm", vsOverlay, results.SocikitConvert, nan, "n/a"},  // missing contender
		{"jvm", vsUpstream, results.SocikitAuto, nan, "n/a"},    // upstream failed
		{"jvm", vsUpstream, results.SocikitReorder, nan, "n/a"}, // upstream failed
		{"jvm", fetch, results.SocikitAuto, 1.2, "PASS"},
		{"jvm", fetch, results.SocikitReorder, 1.1, "PASS"},
		{"jvm", readAll, results.SocikitAuto, 75.0 / 72, "PASS"},
	} {
		c, ok := got[[3]string{tc.image, tc.goal, tc.contender}]
		if !ok {
			t.Errorf("no check %s/%s/%s", tc.image, tc.goal, tc.contender)
			continue
		}
		if !sameFloat(c.Value, tc.value) || c.Verdict() != tc.verdict {
			t.Errorf("%s/%s/%s: got %v %s, want %v %s", tc.image, tc.goal, tc.contender,
				c.Value, c.Verdict(), tc.value, tc.verdict)
		}
	}
	for _, tc := range []struct {
		value, limit float64
		want         string
	}{{0.2, 0.2, "PASS"}, {0.2001, 0.2, "FAIL"}, {nan, 0.2, "n/a"}} {
		if got := (Check{Value: tc.value, Limit: tc.limit}).Verdict(); got != tc.want {
			t.Errorf("Verdict(%v ≤ %v) = %s, want %s", tc.value, tc.limit, got, tc.want)
		}
	}
}

func TestCheckValue(t *testing.T) {
	for _, tc := range []struct {
		value, limit float64
		want         string
	}{
		{0.17, 0.2, "0.17×"},
		{0.2, 0.2, "0.20×"},
		{0.2049, 0.2, "0.205×"},
		{1.104, 1.1, "1.104×"},
		{1.0999, 1.1, "1.10×"},
		{1.125, 1.1, "1.12×"},
	} {
		if got := checkValue(Check{Value: tc.value, Limit: tc.limit}); got != tc.want {
			t.Errorf("checkValue(%v, limit %v) = %s, want %s", tc.value, tc.limit, got, tc.want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown(syntheticRun())
	for _, want := range []string{
		"# socikit benchmark (quick)",
		"- Command: `harness -mode quick -rate 100 -latency 20ms`",
		"- Date: 2025-03-14 09:26:53 UTC",
		"- Link: 100 Mbit/s, +20 ms per request",
		"- Runs per cell: 3",
		"- Host: 6.1.0-amd64, 4 cores, 16 GiB",
		"| overlayfs | 3 | 12.00 (10.80–13.20) | 9.00 (8.10–9.90) | 12.00 (10.80–13.20) | 87.0 (78.3–95.7) |",
		"| socikit-4m | 3 | 4.80 (4.32–5.28) | 0.40 (0.36–0.44) | – |",
		"| upstream-soci | 0 (failed) | – |",
		"| socikit-4m | 0 (no samples) | – |",
		"### Time to ready / overlayfs\n\n| image | socikit-auto | socikit-reorder | socikit-4m | upstream-soci |",
		"| python | 0.17× | 0.12× | 0.40× | 0.50× |",
		"| jvm | 0.15× | 0.10× | – | – |",
		"| python | 4.35× | 1.20× | 1.05× | 2.00× | 2.50× |", // fetch amplification
		"| python (87.0 MB) | time to ready / overlayfs ≤ 0.2 | 0.17× PASS | 0.12× PASS | 0.40× FAIL |",
		"| jvm (600.0 MB) | time to ready / upstream SOCI ≤ 0.7 | n/a | n/a | n/a |",
		"| python (87.0 MB) | read everything / overlayfs full pull + read ≤ 1.1 | 1.05× PASS | 1.12× FAIL | n/a |",
		"Passed (of the checks with data): socikit-auto 7/7, socikit-reorder 6/7, socikit-4m 0/3.",
		"## Failures\n\n- jvm / upstream-soci: pull: context deadline exceeded (after 300 s)\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// TestMarkdownFullPull: with the full-pull contenders, their pull times
// over overlayfs's and upstream parallel's.
func TestMarkdownFullPull(t *testing.T) {
	r := syntheticRun()
	for _, c := range []struct {
		name string
		pull float64
	}{{results.SocikitPull, 6000}, {results.UpstreamParallel, 8000}} {
		r.Samples = append(r.Samples, results.Sample{Image: "python", Contender: c.name, PullMS: c.pull, ReadyMS: c.pull + 500})
	}
	md := Markdown(r)
	for _, want := range []string{
		"### Full pull + unpack / overlayfs\n\nPull s",
		"| image | socikit-pull | upstream-parallel |\n| --- | ---: | ---: |\n| python | 0.67× | 0.89× |",
		"### Full pull + unpack / upstream parallel pull\n\n| image | socikit-pull |\n| --- | ---: |\n| python | 0.75× |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if strings.Contains(Markdown(syntheticRun()), "Full pull + unpack") {
		t.Error("full-pull ratios in a run without full-pull contenders")
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestCSV(t *testing.T) {
	r := syntheticRun()
	var buf bytes.Buffer
	if err := WriteCSV(&buf, r); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("parse CSV: %v", err)
	}
	if len(rows) != 1+len(r.Samples) {
		t.Fatalf("got %d rows, want %d", len(rows), 1+len(r.Samples))
	}
	if !reflect.DeepEqual(rows[0], CSVHeader) {
		t.Errorf("header %v, want %v", rows[0], CSVHeader)
	}
	col := map[string]int{}
	for i, h := range CSVHeader {
		col[h] = i
	}
	// Sorted: image in Run order, contender in report order, iteration.
	var order []string
	for _, row := range rows[1:] {
		key := row[col["image"]] + "/" + row[col["contender"]]
		if len(order) == 0 || order[len(order)-1] != key {
			order = append(order, key)
		}
	}
	wantOrder := []string{
		"python/overlayfs", "python/socikit-auto", "python/socikit-reorder", "python/socikit-4m", "python/upstream-soci",
		"jvm/overlayfs", "jvm/socikit-auto", "jvm/socikit-reorder",
	}
	if !reflect.DeepEqual(order, wantOrder) {
		t.Errorf("row order %v, want %v", order, wantOrder)
	}
	first := rows[1]
	for name, want := range map[string]float64{
		"iter": 0, "ready_ms": 12000, "read_all_ms": 12000, "bytes_before_ready": 87e6,
		"image_compressed_bytes": 87e6, "startup_compressed_bytes": 20e6, "rate_mbit": 100, "latency_ms": 20,
	} {
		got, err := strconv.ParseFloat(first[col[name]], 64)
		if err != nil || got != want {
			t.Errorf("first row %s = %q, want %v", name, first[col[name]], want)
		}
	}
	if got := rows[2][col["iter"]]; got != "1" {
		t.Errorf("second row iter = %s, want 1", got)
	}
}

func TestJSON(t *testing.T) {
	r := syntheticRun()
	var a, b bytes.Buffer
	if err := WriteJSON(&a, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two writes of the same Run differ")
	}
	var back results.Run
	if err := json.Unmarshal(a.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Errorf("round trip differs:\n%+v\nwant\n%+v", back, *r)
	}
	var empty bytes.Buffer
	if err := WriteJSON(&empty, &results.Run{}); err != nil {
		t.Fatal(err)
	}
	if s := empty.String(); !strings.Contains(s, `"failures": []`) || strings.Contains(s, "null") {
		t.Errorf("empty run: %s", s)
	}
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  *results.Run
	}{
		{"synthetic", syntheticRun()},
		{"empty", &results.Run{}},
		{"samples only", &results.Run{Samples: []results.Sample{{Image: "x", Contender: "other", ReadyMS: 5}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Write(dir, tc.run); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{JSONFile, CSVFile, MarkdownFile} {
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
					t.Errorf("%s: %v (empty: %v)", name, err, err == nil)
				}
			}
			for _, name := range []string{ReadyChartFile, BytesChartFile} {
				f, err := os.Open(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				cfg, format, err := image.DecodeConfig(f)
				f.Close()
				if err != nil || format != "png" || cfg.Width != ChartWidth || cfg.Height != ChartHeight {
					t.Errorf("%s: %s %dx%d, %v; want png %dx%d", name, format, cfg.Width, cfg.Height, err, ChartWidth, ChartHeight)
				}
			}
		})
	}
	if *outDir != "" {
		if err := Write(*outDir, syntheticRun()); err != nil {
			t.Fatal(err)
		}
	}
}

// profiledRun is syntheticRun plus socikit-profiled on both images and
// socikit-lazyprofile on python, byte-range figures for python and the
// timed builds of python.
func profiledRun() *results.Run {
	r := syntheticRun()
	r.Images[0].RangeFiles, r.Images[0].RangeBytes, r.Images[0].RangeCompressed = 800, 30e6, 12e6
	r.Images[0].LazyProfileFiles, r.Images[0].LazyProfileBytes = 850, 40e6
	add := func(img, c string, readyMS float64, before int64) {
		r.Samples = append(r.Samples, results.Sample{Image: img, Contender: c, ReadyMS: readyMS,
			BytesBeforeReady: before, BytesTotal: 2 * before, IndexBytes: 1e6})
	}
	add("python", results.SocikitProfiled, 1200, 13e6)
	add("python", results.SocikitLazyProfile, 1800, 15e6)
	add("jvm", results.SocikitProfiled, 6000, 52e6)
	r.Builds = []results.Build{
		{Image: "python", Variant: "plain", MS: 20000},
		{Image: "python", Variant: "auto", Fresh: true, MS: 30000},
		{Image: "python", Variant: "profiled", Fresh: true, MS: 40000, ProfileStepMS: 6000, StartupMS: 4000,
			ProfileStatus: "socikit-trace: ok: 800 files, 3000 ranges, 30000000 bytes read in 4.00s (ready line \"ready\" seen)"},
		{Image: "python", Variant: "lazyprofile", MS: 15000},
	}
	return r
}

func TestProfileChecks(t *testing.T) {
	r := profiledRun()
	if n := len(Checks(r)); n != 2*len(goals)*5 {
		t.Errorf("got %d checks, want %d (five goal contenders)", n, 2*len(goals)*5)
	}
	got := map[[3]string]Check{}
	for _, c := range ProfileChecks(r) {
		got[[3]string{c.Image, c.Goal, c.Contender}] = c
	}
	nan := math.NaN()
	for _, tc := range []struct {
		image, goal, contender string
		value                  float64
		verdict                string
	}{
		{"python", GoalProfileVsUpstream, results.SocikitProfiled, 0.2, "PASS"},
		{"python", GoalProfileVsReorder, results.SocikitProfiled, 0.8, "PASS"},
		{"python", GoalProfileVsReorder, results.SocikitLazyProfile, 1.2, "FAIL"},
		{"python", GoalProfileFetch, results.SocikitProfiled, 13.0 / 12, "PASS"}, // byte ranges
		{"python", GoalProfileFetch, results.SocikitLazyProfile, 15.0 / 12, "FAIL"},
		{"python", GoalProfileBuild, results.SocikitProfiled, 36.0 / 30, "PASS"},
		{"python", GoalProfileBuild, results.SocikitLazyProfile, nan, "n/a"},
		{"jvm", GoalProfileVsUpstream, results.SocikitProfiled, nan, "n/a"},   // upstream failed
		{"jvm", GoalProfileFetch, results.SocikitProfiled, 52.0 / 50, "PASS"}, // whole files
		{"jvm", GoalProfileBuild, results.SocikitProfiled, nan, "n/a"},        // not timed
	} {
		c, ok := got[[3]string{tc.image, tc.goal, tc.contender}]
		if !ok {
			t.Errorf("no check %s/%s/%s", tc.image, tc.goal, tc.contender)
			continue
		}
		if !sameFloat(c.Value, tc.value) || c.Verdict() != tc.verdict {
			t.Errorf("%s/%s/%s: got %v %s, want %v %s", tc.image, tc.goal, tc.contender,
				c.Value, c.Verdict(), tc.value, tc.verdict)
		}
	}
	if _, ok := got[[3]string{"jvm", GoalProfileFetch, results.SocikitLazyProfile}]; !ok {
		t.Error("lazyprofile, measured on python only, has no jvm checks")
	}
	if n := len(ProfileChecks(syntheticRun())); n != 0 {
		t.Errorf("%d profile checks in a run without profile contenders", n)
	}
}

func TestMarkdownProfiles(t *testing.T) {
	md := Markdown(profiledRun())
	for _, want := range []string{
		"| python | 800 | 30.0 | 12.0 | 850 | 40.0 |",
		"### Time to ready / socikit-reorder",
		"| socikit-profiled | 1 | 1.20 |",
		"### Fetch amplification against the byte ranges read\n",
		"## Goals with start-up profiles",
		"| python | bytes before ready / compressed bytes read (byte ranges) ≤ 1.15 | 1.08× PASS | 1.25× FAIL |",
		"| jvm | bytes before ready / compressed bytes read (whole files) ≤ 1.15 | 1.04× PASS | n/a |",
		"| python | build time with profiling / without (start-up run aside) ≤ 1.3 | 1.20× PASS | n/a |",
		"Passed (of the checks with data): socikit-profiled 6/6, socikit-lazyprofile 1/3.",
		"| python | profiled | fresh | 40.0 | 6.0 | 4.00 |",
		"| python | 30.0 | 40.0 | 1.33× | 1.13× | 1.20× |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
	// Without the profile contenders, no trace of them.
	md = Markdown(syntheticRun())
	for _, no := range []string{results.SocikitProfiled, results.SocikitLazyProfile, "socikit-reorder\n", "## Builds", "byte ranges"} {
		if strings.Contains(md, no) {
			t.Errorf("summary of a run without profile contenders has %q", no)
		}
	}
}

// floorRun is syntheticRun with local ready times on python's overlayfs
// samples, byte ranges for python, and timelines on two python samples.
func floorRun() *results.Run {
	r := syntheticRun()
	r.Images[0].RangeCompressed = 10e6 // 0.4 s at 200 Mbit/s
	r.Link = results.Link{RateMbit: 200, LatencyMS: 20}
	for i := range r.Samples {
		s := &r.Samples[i]
		if s.Image != "python" {
			continue
		}
		if s.Contender == results.Overlayfs {
			s.LocalReadyMS = 1000 * iterFactors[s.Iter] // median 1000
		}
		if s.Iter == 0 && (s.Contender == results.SocikitReorder || s.Contender == results.Overlayfs) {
			s.Timeline = &results.Timeline{PullEndMS: s.PullMS, ReadyMS: s.ReadyMS, ExitMS: s.ReadyMS + 100, Fetches: []results.Fetch{
				{StartMS: 1, EndMS: 25, Kind: results.FetchManifest, Bytes: 500},
				{StartMS: 30, EndMS: 60, Kind: results.FetchIndex, Bytes: 1e6},
				{StartMS: 70, EndMS: 900, Kind: results.FetchLayerRange, Bytes: 5e6},
				{StartMS: 75, EndMS: 400, Kind: results.FetchLayerRange, Bytes: 2e6},
			}}
		}
	}
	return r
}

func TestFloor(t *testing.T) {
	r := floorRun()
	m := newModel(r)
	f, ok := m.floor(r.Images[0])
	// 1 s local + 10 MB at 200 Mbit/s (0.4 s) + 4 × 20 ms.
	if !ok || math.Abs(f.MS()-1480) > 1e-6 || f.Bytes != 10e6 {
		t.Fatalf("python floor %+v (%v), want 1480 ms", f, ok)
	}
	if _, ok := m.floor(r.Images[1]); ok {
		t.Errorf("jvm has a floor without local ready times")
	}
	// socikit-reorder: ready 1.5 s / 1.48 s.
	if got := m.floorRatio(r.Images[0], results.SocikitReorder); math.Abs(got-1500/1480.0) > 1e-9 {
		t.Errorf("reorder / floor = %v", got)
	}
	checks := FloorChecks(r)
	if len(checks) != 1 || checks[0].Contender != results.SocikitReorder || checks[0].Verdict() != "PASS" {
		t.Errorf("floor checks %+v, want socikit-reorder on python, PASS", checks)
	}
	md := Markdown(r)
	for _, want := range []string{"## Floor", "| python | 1.00 | 0.40 (10.0 MB) | 0.08 | 1.48 |", "### Time to ready / floor"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(Markdown(syntheticRun()), "## Floor") {
		t.Errorf("a run without local ready times has a Floor section")
	}
}

func TestTimelineChart(t *testing.T) {
	r := fuseRun()
	if rows := newModel(r).timelineRows("python"); len(rows) != 2 || rows[0].contender != results.Overlayfs {
		t.Fatalf("timeline rows %+v", rows)
	}
	dir := t.TempDir()
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, TimelineChartFile("python")))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, format, err := image.DecodeConfig(f); err != nil || format != "png" {
		t.Errorf("timeline chart: %s, %v", format, err)
	}
	if _, err := os.Stat(filepath.Join(dir, TimelineChartFile("jvm"))); err == nil {
		t.Errorf("a timeline chart for jvm, which has no timeline")
	}
	if *outDir != "" {
		if err := Write(*outDir, r); err != nil {
			t.Fatal(err)
		}
	}
}

// fuseRun is floorRun with FUSE request counts on socikit-reorder's
// python samples: before ready, and over the first run's timeline.
func fuseRun() *results.Run {
	r := floorRun()
	for i := range r.Samples {
		s := &r.Samples[i]
		if s.Image != "python" || s.Contender != results.SocikitReorder {
			continue
		}
		k := int64(s.Iter + 1) // 1, 2, 3: medians of 2
		s.FUSEBeforeReady = map[string]int64{"lookup": 100 * k, "readdirplus": 3, "releasedir": 1, "read": 50 * k, "forget": 0, "statfs": 2}
		if s.Timeline != nil {
			at := func(ms float64, lookups, reads int64) results.FUSESample {
				return results.FUSESample{MS: ms, Ops: map[string]int64{"lookup": lookups, "read": reads, "open": 0}}
			}
			// 0-100 ms: 0; 100-200: 100 lookups + 20 reads (1200/s);
			// 200-300: 50 reads, the sample at 230 too close to 200 to
			// make an interval of its own (500/s); then counts out of
			// order (no negative rate).
			s.Timeline.FUSE = []results.FUSESample{at(0, 0, 0), at(100, 0, 0), at(200, 100, 20), at(230, 100, 40), at(300, 100, 70), at(400, 99, 70)}
		}
	}
	return r
}

func TestFUSEBins(t *testing.T) {
	var tl *results.Timeline
	for _, s := range fuseRun().Samples {
		if s.Timeline != nil && s.Contender == results.SocikitReorder {
			tl = s.Timeline
		}
	}
	bins := fuseBins(tl.FUSE)
	lookup, read := 0, 3 // fuseGroups
	if len(bins) != 4 {
		t.Fatalf("bins %+v, want 4", bins)
	}
	for i, want := range []struct {
		start, end, lookups, reads float64
	}{{0, 100, 0, 0}, {100, 200, 1000, 200}, {200, 300, 0, 500}, {300, 400, 0, 0}} {
		b := bins[i]
		if b.startMS != want.start || b.endMS != want.end || b.perS[lookup] != want.lookups || b.perS[read] != want.reads {
			t.Errorf("bin %d: %+v, want %+v", i, b, want)
		}
	}
	if p := fusePeak(bins); p != 1200 {
		t.Errorf("peak %v/s, want 1200", p)
	}
	if fuseBins(tl.FUSE[:1]) != nil || fuseBins(nil) != nil {
		t.Error("bins from fewer than 2 samples")
	}
	if got := fuseGroupCounts(map[string]int64{"lookup": 1, "statx": 2, "getattr": 3, "flush": 4, "lseek": 5, "other": 6, "new-kind": 7}); got[0] != 1 || got[1] != 5 || got[4] != 4 || got[numFUSEGroups-1] != 18 {
		t.Errorf("group counts %v", got)
	}
	if s := rateString(1234567.4); s != "1,234,567/s" {
		t.Errorf("rateString: %q", s)
	}
}

func TestMarkdownFUSE(t *testing.T) {
	md := Markdown(fuseRun())
	for _, want := range []string{
		"FUSE requests before ready (socikit-snapshotter's count",
		"| contender | total | lookup | read | readdir | other |",
		"| socikit-reorder | 306 (156–456) | 200 (100–300) | 100 (50–150) | 4 | 2 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
	if strings.Contains(Markdown(floorRun()), "FUSE requests") {
		t.Error("a run without FUSE counts has a FUSE table")
	}
	rows := chartRowsOf(newModel(fuseRun()).timelineRows("python"))
	var labels []string
	for _, r := range rows {
		labels = append(labels, r.label)
	}
	if want := []string{results.Overlayfs, results.SocikitReorder, results.SocikitReorder + " FUSE (peak 1,200/s)"}; !reflect.DeepEqual(labels, want) {
		t.Errorf("chart rows %q, want %q", labels, want)
	}
}
