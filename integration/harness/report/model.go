package report

import (
	"cmp"
	"math"
	"slices"

	"github.com/socikit/socikit/integration/harness/results"
)

// metric extracts one figure from a sample, in the unit reports show;
// false means the sample did not measure it.
type metric func(results.Sample) (float64, bool)

const mb = 1e6 // reports give bytes in MB of 10^6 bytes

var (
	readyS   metric = func(s results.Sample) (float64, bool) { return s.ReadyMS / 1000, true }
	pullS    metric = func(s results.Sample) (float64, bool) { return s.PullMS / 1000, true }
	readAllS metric = func(s results.Sample) (float64, bool) { return s.ReadAllMS / 1000, s.ReadAllMS > 0 }
	beforeMB metric = func(s results.Sample) (float64, bool) { return float64(s.BytesBeforeReady) / mb, true }
	totalMB  metric = func(s results.Sample) (float64, bool) { return float64(s.BytesTotal) / mb, true }
	indexMB  metric = func(s results.Sample) (float64, bool) { return float64(s.IndexBytes) / mb, true }
	requests metric = func(s results.Sample) (float64, bool) { return float64(s.Requests), true }
	rssMiB   metric = func(s results.Sample) (float64, bool) { return float64(s.PeakRSSKiB) / 1024, s.PeakRSSKiB > 0 }
)

type cellKey struct{ image, contender string }

// model groups a Run's samples by (image, contender).
type model struct {
	run    *results.Run
	images []results.Image // the Run's images, then images only samples name
	// contenders: results.Contenders, then any other name found in
	// samples or failures, sorted.
	contenders []string
	samples    map[cellKey][]results.Sample
	failures   map[cellKey][]string
}

func newModel(r *results.Run) *model {
	m := &model{
		run:      r,
		images:   slices.Clone(r.Images),
		samples:  map[cellKey][]results.Sample{},
		failures: map[cellKey][]string{},
	}
	knownImage := map[string]bool{}
	for _, im := range r.Images {
		knownImage[im.Name] = true
	}
	var extraImages, extraContenders []string
	addName := func(known map[string]bool, extra *[]string, name string) {
		if !known[name] {
			known[name] = true
			*extra = append(*extra, name)
		}
	}
	knownContender := map[string]bool{}
	for _, c := range results.Contenders {
		knownContender[c] = true
	}
	for _, s := range r.Samples {
		k := cellKey{s.Image, s.Contender}
		m.samples[k] = append(m.samples[k], s)
		addName(knownImage, &extraImages, s.Image)
		addName(knownContender, &extraContenders, s.Contender)
	}
	for _, f := range r.Failures {
		k := cellKey{f.Image, f.Contender}
		m.failures[k] = append(m.failures[k], f.Error)
		addName(knownImage, &extraImages, f.Image)
		addName(knownContender, &extraContenders, f.Contender)
	}
	slices.Sort(extraImages)
	for _, name := range extraImages {
		m.images = append(m.images, results.Image{Name: name})
	}
	slices.Sort(extraContenders)
	for _, c := range results.Contenders {
		if results.Optional[c] && !m.measured(c) {
			continue // not in this run: its tables stay as they were
		}
		m.contenders = append(m.contenders, c)
	}
	m.contenders = append(m.contenders, extraContenders...)
	return m
}

// measured reports whether the run has a sample or a failure of c.
func (m *model) measured(c string) bool {
	for k, v := range m.samples {
		if k.contender == c && len(v) > 0 {
			return true
		}
	}
	for k, v := range m.failures {
		if k.contender == c && len(v) > 0 {
			return true
		}
	}
	return false
}

// stat summarises metric f over the samples of one cell.
func (m *model) stat(image, contender string, f metric) Stat {
	var xs []float64
	for _, s := range m.samples[cellKey{image, contender}] {
		if v, ok := f(s); ok {
			xs = append(xs, v)
		}
	}
	return Summarize(xs)
}

// median is stat(...).Median.
func (m *model) median(image, contender string, f metric) float64 {
	return m.stat(image, contender, f).Median
}

// withSamples lists the contenders that have at least one sample.
func (m *model) withSamples() []string {
	var out []string
	for _, c := range m.contenders {
		for _, im := range m.images {
			if len(m.samples[cellKey{im.Name, c}]) > 0 {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// sortedSamples returns the samples ordered by image (model order),
// contender (model order) and iteration; ties keep the Run's order.
func (m *model) sortedSamples() []results.Sample {
	imageIdx := map[string]int{}
	for i, im := range m.images {
		if _, dup := imageIdx[im.Name]; !dup {
			imageIdx[im.Name] = i
		}
	}
	contIdx := map[string]int{}
	for i, c := range m.contenders {
		contIdx[c] = i
	}
	out := slices.Clone(m.run.Samples)
	slices.SortStableFunc(out, func(a, b results.Sample) int {
		return cmp.Or(
			cmp.Compare(imageIdx[a.Image], imageIdx[b.Image]),
			cmp.Compare(contIdx[a.Contender], contIdx[b.Contender]),
			cmp.Compare(a.Iter, b.Iter),
		)
	})
	return out
}

// fetchAmplification is the median bytes before ready over the
// compressed size of the files read before ready.
func (m *model) fetchAmplification(im results.Image, contender string) float64 {
	return ratio(m.median(im.Name, contender, beforeMB), float64(im.StartupCompressed)/mb)
}

// Check is one goal evaluated for one contender on one image.
type Check struct {
	Image     string
	Contender string
	Goal      string  // what is compared, e.g. "time to ready / overlayfs"
	Limit     float64 // the goal: Value ≤ Limit
	Value     float64 // the measured ratio; NaN when data is missing
}

// Verdict is "PASS" when Value ≤ Limit, "FAIL" when it is above, and
// "n/a" when Value is unknown.
func (c Check) Verdict() string {
	switch {
	case math.IsNaN(c.Value):
		return "n/a"
	case c.Value <= c.Limit:
		return "PASS"
	default:
		return "FAIL"
	}
}

// goal is one of the benchmark issue's goals.
type goal struct {
	name  string
	limit float64
	value func(m *model, im results.Image, contender string) float64
}

// medianRatio compares a contender's median to another's on one image.
func medianRatio(f metric, base string) func(*model, results.Image, string) float64 {
	return func(m *model, im results.Image, c string) float64 {
		return ratio(m.median(im.Name, c, f), m.median(im.Name, base, f))
	}
}

var goals = []goal{
	{"time to ready / overlayfs", 0.2, medianRatio(readyS, results.Overlayfs)},
	{"time to ready / upstream SOCI", 0.7, medianRatio(readyS, results.Upstream)},
	{"bytes before ready / compressed size of files read", 1.3, (*model).fetchAmplification},
	{"read everything / overlayfs full pull + read", 1.1, medianRatio(readAllS, results.Overlayfs)},
}

// goalContenders are the contenders the goals are checked for; the
// optional ones only when the run measured them.
var goalContenders = []string{results.SocikitAuto, results.SocikitReorder, results.SocikitProfiled, results.SocikitLazyProfile, results.SocikitConvert}

// goalContenders lists the goal contenders of this run.
func (m *model) goalContenders() []string {
	var out []string
	for _, c := range goalContenders {
		if !results.Optional[c] || m.measured(c) {
			out = append(out, c)
		}
	}
	return out
}

func (m *model) checks() []Check {
	var out []Check
	for _, im := range m.images {
		for _, g := range goals {
			for _, c := range m.goalContenders() {
				out = append(out, Check{
					Image: im.Name, Contender: c, Goal: g.name, Limit: g.limit,
					Value: g.value(m, im, c),
				})
			}
		}
	}
	return out
}

// Checks evaluates the benchmark goals for every socikit contender
// (auto, reorder, 4m, and profiled and lazyprofile when measured) on every
// image, ordered by image, goal, contender. Missing data gives a Check
// whose Verdict is "n/a".
func Checks(r *results.Run) []Check { return newModel(r).checks() }

// The goals of the start-up profile issue, for the contenders built from a
// profile (profiled, lazyprofile).
const (
	GoalProfileVsUpstream = "time to ready / upstream SOCI"
	GoalProfileVsReorder  = "time to ready / socikit-reorder"
	GoalProfileFetch      = "bytes before ready / compressed bytes read"
	GoalProfileBuild      = "build time with profiling / without (start-up run aside)"
)

var profileGoalContenders = []string{results.SocikitProfiled, results.SocikitLazyProfile}

// ProfileBase says what GoalProfileFetch compares with on im: the
// compressed byte ranges the start-up reads when they were measured, else
// the compressed files it reads, whole.
func ProfileBase(im results.Image) (bytes int64, what string) {
	if im.RangeCompressed > 0 {
		return im.RangeCompressed, "byte ranges"
	}
	return im.StartupCompressed, "whole files"
}

// build returns the timed build of image's variant, if any.
func (m *model) build(image, variant string) (results.Build, bool) {
	for _, b := range m.run.Builds {
		if b.Image == image && b.Variant == variant {
			return b, true
		}
	}
	return results.Build{}, false
}

// buildRatio is the profiled build's time, less the traced start-up's
// own time, over the auto build's (both on fresh builders).
func (m *model) buildRatio(image string) float64 {
	p, ok1 := m.build(image, "profiled")
	a, ok2 := m.build(image, "auto")
	if !ok1 || !ok2 || !p.Fresh || !a.Fresh {
		return math.NaN()
	}
	return ratio(p.MS-p.StartupMS, a.MS)
}

// profileChecks evaluates the start-up profile goals for the profile
// contenders the run measured, ordered by image, goal, contender.
func (m *model) profileChecks() []Check {
	var out []Check
	for _, im := range m.images {
		base, _ := ProfileBase(im)
		for _, c := range profileGoalContenders {
			if !m.measured(c) {
				continue
			}
			out = append(out,
				Check{im.Name, c, GoalProfileVsUpstream, 0.5, medianRatio(readyS, results.Upstream)(m, im, c)},
				Check{im.Name, c, GoalProfileVsReorder, 1, medianRatio(readyS, results.SocikitReorder)(m, im, c)},
				Check{im.Name, c, GoalProfileFetch, 1.15, ratio(m.median(im.Name, c, beforeMB), float64(base)/mb)},
			)
			bv := math.NaN()
			if c == results.SocikitProfiled {
				bv = m.buildRatio(im.Name)
			}
			out = append(out, Check{im.Name, c, GoalProfileBuild, 1.3, bv})
		}
	}
	return out
}

// ProfileChecks evaluates the goals of the start-up profile issue for the
// contenders built from a profile (socikit-profiled, socikit-lazyprofile)
// that the run measured: time to ready ≤ 0.5× upstream SOCI and ≤ the
// socikit-reorder figure, bytes before ready ≤ 1.15× the compressed bytes
// the start-up reads (ProfileBase), and, for socikit-profiled, the build
// with its profiling step ≤ 1.3× the same build without it (type=soci),
// both on a fresh builder, the traced start-up's own time taken out.
func ProfileChecks(r *results.Run) []Check { return newModel(r).profileChecks() }
