package report

import (
	"fmt"
	"image/color"
	"slices"
	"strconv"
	"strings"

	"github.com/socikit/socikit/integration/harness/results"
)

// fuseGroup is a kind of FUSE requests reports show: the
// socikit-snapshotter kinds (statusapi.FUSEOps) it sums.
type fuseGroup struct {
	name  string
	ops   []string
	color color.Color
}

// fuseGroups are the groups in report order; the last, "other", takes
// every kind not named.
var fuseGroups = [...]fuseGroup{
	{"lookup", []string{"lookup"}, color.RGBA{0, 150, 136, 255}},
	{"getattr", []string{"getattr", "statx"}, color.RGBA{139, 195, 74, 255}},
	{"open", []string{"open"}, color.RGBA{255, 179, 0, 255}},
	{"read", []string{"read"}, color.RGBA{40, 53, 147, 255}},
	{"release", []string{"release", "flush"}, color.RGBA{233, 30, 99, 255}},
	{"readdir", []string{"opendir", "readdir", "readdirplus", "releasedir"}, color.RGBA{121, 85, 72, 255}},
	{"readlink", []string{"readlink"}, color.RGBA{0, 188, 212, 255}},
	{"xattr", []string{"getxattr", "listxattr"}, color.RGBA{190, 200, 40, 255}},
	{"forget", []string{"forget"}, color.RGBA{96, 125, 139, 255}},
	{"other", nil, color.RGBA{30, 30, 30, 255}},
}

const numFUSEGroups = len(fuseGroups)

// fuseGroupCounts sums counts by kind into fuseGroups.
func fuseGroupCounts(ops map[string]int64) [numFUSEGroups]int64 {
	var g [numFUSEGroups]int64
	for op, n := range ops {
		i := slices.IndexFunc(fuseGroups[:], func(gr fuseGroup) bool { return slices.Contains(gr.ops, op) })
		if i < 0 {
			i = numFUSEGroups - 1
		}
		g[i] += n
	}
	return g
}

// fuseMinBinMS is the shortest interval a FUSE rate is taken over: a
// sample closer to the last one kept (the ready line's next to the
// poller's) is skipped, its requests counted in the next interval (the
// last sample's, if too close, not drawn).
const fuseMinBinMS = 50

// fuseBin is the rate of FUSE requests, by group, over [startMS, endMS).
type fuseBin struct {
	startMS, endMS float64
	perS           [numFUSEGroups]float64
}

// fuseBins turns cumulative samples into rates per interval. A count that
// went down (samples read out of order) counts 0.
func fuseBins(samples []results.FUSESample) []fuseBin {
	var bins []fuseBin
	if len(samples) < 2 {
		return nil
	}
	prev := samples[0]
	for _, s := range samples[1:] {
		dt := s.MS - prev.MS
		if dt < fuseMinBinMS {
			continue
		}
		a, b := fuseGroupCounts(prev.Ops), fuseGroupCounts(s.Ops)
		bin := fuseBin{startMS: prev.MS, endMS: s.MS}
		for g := range bin.perS {
			bin.perS[g] = float64(max(b[g]-a[g], 0)) * 1000 / dt
		}
		bins = append(bins, bin)
		prev = s
	}
	return bins
}

// fusePeak is the highest total rate of bins, requests per second.
func fusePeak(bins []fuseBin) float64 {
	var peak float64
	for _, b := range bins {
		var sum float64
		for _, r := range b.perS {
			sum += r
		}
		peak = max(peak, sum)
	}
	return peak
}

// fuseMetric returns the metric of the FUSE requests before ready in group
// g (-1: all), for the samples that recorded them.
func fuseMetric(g int) metric {
	return func(s results.Sample) (float64, bool) {
		if s.FUSEBeforeReady == nil {
			return 0, false
		}
		counts := fuseGroupCounts(s.FUSEBeforeReady)
		if g >= 0 {
			return float64(counts[g]), true
		}
		var sum int64
		for _, n := range counts {
			sum += n
		}
		return float64(sum), true
	}
}

// writeFUSE writes the FUSE requests before ready of the image's
// contenders that recorded them: median (min–max) per group, the groups
// no contender sent left out.
func (m *model) writeFUSE(b *strings.Builder, im results.Image) {
	var cs []string
	for _, c := range m.contenders {
		if m.stat(im.Name, c, fuseMetric(-1)).N > 0 {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return
	}
	var groups []int
	for g := range fuseGroups {
		for _, c := range cs {
			if m.stat(im.Name, c, fuseMetric(g)).Max > 0 {
				groups = append(groups, g)
				break
			}
		}
	}
	b.WriteString("FUSE requests before ready (socikit-snapshotter's count, from the start of the pull to the ready line; " +
		"requests the kernel answered from its caches are not in it):\n\n")
	head := []string{"contender", "total"}
	for _, g := range groups {
		head = append(head, fuseGroups[g].name)
	}
	var rows [][]string
	for _, c := range cs {
		row := []string{c, statString(m.stat(im.Name, c, fuseMetric(-1)), 0)}
		for _, g := range groups {
			row = append(row, statString(m.stat(im.Name, c, fuseMetric(g)), 0))
		}
		rows = append(rows, row)
	}
	table(b, 1, head, rows)
}

// rateString formats a rate such as 12,345/s.
func rateString(perS float64) string {
	s := strconv.FormatInt(int64(perS+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return fmt.Sprintf("%s/s", s)
}
