package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/socikit/socikit/integration/harness/results"
)

// Markdown returns the summary of r as Markdown (what Write puts in
// summary.md): a header with the command, date, link, runs per cell and
// host; the images; a table per image with, per contender, median
// (min–max) of time to ready, pull, read everything, MB before ready, MB
// total, requests before ready, index MB and peak RSS, and of the FUSE
// requests before ready by kind where recorded; ratio tables
// (time to ready against overlayfs and upstream SOCI, fetch
// amplification, read everything against overlayfs); the goals with
// PASS/FAIL; and the failures.
func Markdown(r *results.Run) string {
	m := newModel(r)
	var b strings.Builder
	m.writeHeader(&b)
	m.writeImages(&b)
	for _, im := range m.images {
		m.writeImage(&b, im)
	}
	m.writeRatios(&b)
	m.writeFloor(&b)
	m.writeGoals(&b)
	m.writeProfileGoals(&b)
	m.writeBuilds(&b)
	m.writeFailures(&b)
	return b.String()
}

// LinkString describes the link shaping, e.g. "100 Mbit/s, +20 ms per
// request" or "unshaped".
func LinkString(l results.Link) string {
	var parts []string
	if l.RateMbit > 0 {
		parts = append(parts, num(l.RateMbit)+" Mbit/s")
	}
	if l.LatencyMS > 0 {
		parts = append(parts, "+"+num(l.LatencyMS)+" ms per request")
	}
	if len(parts) == 0 {
		return "unshaped"
	}
	return strings.Join(parts, ", ")
}

func (m *model) writeHeader(b *strings.Builder) {
	r := m.run
	title := "socikit benchmark"
	if r.Mode != "" {
		title += " (" + r.Mode + ")"
	}
	fmt.Fprintf(b, "# %s\n\n", title)
	date := "unknown"
	if !r.Started.IsZero() {
		date = r.Started.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	cmd := "–"
	if r.Command != "" {
		cmd = codeSpan(r.Command)
	}
	host := r.Host
	if host == "" {
		host = "–"
	}
	fmt.Fprintf(b, "- Command: %s\n", cmd)
	fmt.Fprintf(b, "- Date: %s\n", date)
	fmt.Fprintf(b, "- Link: %s\n", LinkString(r.Link))
	fmt.Fprintf(b, "- Runs per cell: %d\n", r.Runs)
	fmt.Fprintf(b, "- Host: %s\n", host)
	fmt.Fprintf(b, "- Samples: %d, failures: %d\n\n", len(r.Samples), len(r.Failures))
	b.WriteString("Cells give the median (min–max) over the runs of one image and contender; " +
		"ratios are median / median. Times in seconds, MB = 10^6 bytes, RSS in MiB; " +
		"\"–\" means not measured.\n\n")
}

func (m *model) writeImages(b *strings.Builder) {
	if len(m.images) == 0 {
		b.WriteString("No images.\n\n")
		return
	}
	b.WriteString("## Images\n\n")
	rows := [][]string{}
	for _, im := range m.images {
		rows = append(rows, []string{
			im.Name, strconv.Itoa(im.Layers), mbString(im.CompressedBytes), mbString(im.UncompressedSize),
			strconv.Itoa(im.StartupFiles), mbString(im.StartupBytes), mbString(im.StartupCompressed),
			codeOrDash(im.Ready),
		})
	}
	table(b, 1, []string{"image", "layers", "compressed MB", "uncompressed MB",
		"files read before ready", "their MB", "their compressed MB", "ready line"}, rows)
	ranges, lazy := false, false
	for _, im := range m.images {
		ranges = ranges || im.RangeCompressed > 0
		lazy = lazy || im.LazyProfileFiles > 0
	}
	if !ranges && !lazy {
		return
	}
	b.WriteString("Byte ranges read before ready: the start-up traced by socikit-trace in a chroot of the image's rootfs " +
		"(as the frontend's profiling step does in the build; mapped pages included), the ranges' bytes and those bytes " +
		"as one gzip stream (level 6, file by file, no tar headers). The lazy profile is what socikit-snapshotter " +
		"recorded during a lazy start of socikit-auto (pages as the kernel asked for them, read-ahead included), " +
		"the socikit-lazyprofile image's input.\n\n")
	rows = nil
	for _, im := range m.images {
		rows = append(rows, []string{im.Name,
			intOrDash(im.RangeFiles), mbString(im.RangeBytes), mbString(im.RangeCompressed),
			intOrDash(im.LazyProfileFiles), mbString(im.LazyProfileBytes)})
	}
	table(b, 1, []string{"image", "files read (ranges)", "ranges MB", "ranges compressed MB",
		"lazy profile files", "lazy profile MB"}, rows)
}

func intOrDash(n int) string {
	if n <= 0 {
		return "–"
	}
	return strconv.Itoa(n)
}

// cellMetrics are the columns of the per-image tables.
var cellMetrics = []struct {
	head string
	f    metric
	prec int
}{
	{"time to ready s", readyS, 2},
	{"pull s", pullS, 2},
	{"read everything s", readAllS, 2},
	{"MB before ready", beforeMB, 1},
	{"MB total", totalMB, 1},
	{"requests before ready", requests, 0},
	{"index MB", indexMB, 2},
	{"peak RSS MiB", rssMiB, 0},
}

func (m *model) writeImage(b *strings.Builder, im results.Image) {
	fmt.Fprintf(b, "## %s\n\n", im.Name)
	if im.CompressedBytes > 0 {
		fmt.Fprintf(b, "%s MB compressed, %s MB uncompressed, %d layers; before ready it reads %d files, %s MB (%s MB compressed).\n\n",
			mbString(im.CompressedBytes), mbString(im.UncompressedSize), im.Layers,
			im.StartupFiles, mbString(im.StartupBytes), mbString(im.StartupCompressed))
	}
	head := []string{"contender", "n"}
	for _, c := range cellMetrics {
		head = append(head, c.head)
	}
	var rows [][]string
	for _, c := range m.contenders {
		k := cellKey{im.Name, c}
		n := len(m.samples[k])
		if n == 0 && !isKnown(c) {
			continue // another image's extra contender
		}
		row := []string{c, strconv.Itoa(n)}
		for _, cm := range cellMetrics {
			row = append(row, statString(m.stat(im.Name, c, cm.f), cm.prec))
		}
		if n == 0 {
			note := "no samples"
			if len(m.failures[k]) > 0 {
				note = "failed"
			}
			row[1] = "0 (" + note + ")"
		}
		rows = append(rows, row)
	}
	table(b, 1, head, rows)
	m.writeFUSE(b, im) // fuse.go
}

func (m *model) writeRatios(b *strings.Builder) {
	if len(m.images) == 0 {
		return
	}
	b.WriteString("## Ratios\n\n")
	others := func(base string) []string {
		var out []string
		for _, c := range m.contenders {
			if c != base {
				out = append(out, c)
			}
		}
		return out
	}
	byImage := func(title, note string, cs []string, value func(im results.Image, c string) float64) {
		fmt.Fprintf(b, "### %s\n\n", title)
		if note != "" {
			b.WriteString(note + "\n\n")
		}
		var rows [][]string
		for _, im := range m.images {
			row := []string{im.Name}
			for _, c := range cs {
				row = append(row, ratioString(value(im, c)))
			}
			rows = append(rows, row)
		}
		table(b, 1, append([]string{"image"}, cs...), rows)
	}
	medianOf := func(f metric, base string) func(results.Image, string) float64 {
		g := medianRatio(f, base)
		return func(im results.Image, c string) float64 { return g(m, im, c) }
	}
	byImage("Time to ready / overlayfs", "", others(results.Overlayfs), medianOf(readyS, results.Overlayfs))
	byImage("Time to ready / upstream SOCI", "", others(results.Upstream), medianOf(readyS, results.Upstream))
	if m.measured(results.SocikitProfiled) || m.measured(results.SocikitLazyProfile) {
		byImage("Time to ready / socikit-reorder", "", others(results.SocikitReorder), medianOf(readyS, results.SocikitReorder))
	}
	if m.measured(results.SocikitPull) || m.measured(results.UpstreamParallel) {
		byImage("Full pull + unpack / overlayfs",
			"Pull s (`ctr image pull` of the plain image until it returns: every layer fetched and unpacked) over containerd's own pull into overlayfs; docs/pull.md.",
			[]string{results.SocikitPull, results.UpstreamParallel}, medianOf(pullS, results.Overlayfs))
		byImage("Full pull + unpack / upstream parallel pull", "", []string{results.SocikitPull}, medianOf(pullS, results.UpstreamParallel))
	}
	byImage("Fetch amplification",
		"Bytes before ready / compressed size of the files read before ready.",
		m.contenders, m.fetchAmplification)
	ranges := false
	for _, im := range m.images {
		ranges = ranges || im.RangeCompressed > 0
	}
	if ranges {
		byImage("Fetch amplification against the byte ranges read",
			"Bytes before ready / compressed size of the byte ranges read before ready (SOCI index and zTOCs included in the bytes).",
			m.contenders, func(im results.Image, c string) float64 {
				return ratio(m.median(im.Name, c, beforeMB), float64(im.RangeCompressed)/mb)
			})
		byImage("Fetch amplification against the byte ranges read, index aside",
			"(Bytes before ready − SOCI index and zTOC bytes) / compressed size of the byte ranges read before ready.",
			m.contenders, func(im results.Image, c string) float64 {
				return ratio(m.median(im.Name, c, beforeMB)-m.median(im.Name, c, indexMB), float64(im.RangeCompressed)/mb)
			})
	}
	byImage("Read everything / overlayfs", "", others(results.Overlayfs), medianOf(readAllS, results.Overlayfs))
}

func (m *model) writeGoals(b *strings.Builder) {
	if len(m.images) == 0 {
		return
	}
	b.WriteString("## Goals\n\n")
	b.WriteString("Each cell: the measured ratio and its verdict. The goal on time to ready against overlayfs " +
		"is meant for the large images; it is checked on all, with each image's compressed size given. " +
		"Read everything is compared with overlayfs reading everything (a full pull, then every file from local disk).\n\n")
	checks := m.checks()
	byKey := map[[3]string]Check{}
	for _, c := range checks {
		byKey[[3]string{c.Image, c.Goal, c.Contender}] = c
	}
	var rows [][]string
	for _, im := range m.images {
		label := im.Name
		if im.CompressedBytes > 0 {
			label += " (" + mbString(im.CompressedBytes) + " MB)"
		}
		for _, g := range goals {
			row := []string{label, g.name + " ≤ " + num(g.limit)}
			for _, c := range m.goalContenders() {
				ch := byKey[[3]string{im.Name, g.name, c}]
				cell := ch.Verdict()
				if cell != "n/a" {
					cell = checkValue(ch) + " " + cell
				}
				row = append(row, cell)
			}
			rows = append(rows, row)
		}
	}
	table(b, 2, append([]string{"image", "goal"}, m.goalContenders()...), rows)
	var tally []string
	for _, c := range m.goalContenders() {
		pass, known := 0, 0
		for _, ch := range checks {
			if ch.Contender != c || ch.Verdict() == "n/a" {
				continue
			}
			known++
			if ch.Verdict() == "PASS" {
				pass++
			}
		}
		tally = append(tally, fmt.Sprintf("%s %d/%d", c, pass, known))
	}
	fmt.Fprintf(b, "Passed (of the checks with data): %s.\n\n", strings.Join(tally, ", "))
}

// writeProfileGoals writes the goals of the start-up profile issue for
// socikit-profiled and socikit-lazyprofile, when the run measured one.
func (m *model) writeProfileGoals(b *strings.Builder) {
	checks := m.profileChecks()
	if len(checks) == 0 {
		return
	}
	var cs []string
	for _, c := range profileGoalContenders {
		if m.measured(c) {
			cs = append(cs, c)
		}
	}
	b.WriteString("## Goals with start-up profiles\n\n")
	b.WriteString("For the images built from a start-up profile: socikit-profiled (profiled in the build by the " +
		"`# syntax=` frontend, no hand-made list) and socikit-lazyprofile (rebuilt with the profile " +
		"socikit-snapshotter recorded during a lazy start of socikit-auto). Bytes are compared with the compressed " +
		"byte ranges the start-up reads where they were measured, else with its files, whole (said per image). " +
		"Build time: the frontend build of socikit-profiled over the plain `type=soci` build (socikit-auto), each on " +
		"a fresh builder, push included, the traced start-up's own time (to its ready line) taken out; " +
		"the profiling step and the frontend image's pull stay in.\n\n")
	byKey := map[[3]string]Check{}
	for _, c := range checks {
		byKey[[3]string{c.Image, c.Goal, c.Contender}] = c
	}
	var rows [][]string
	for _, im := range m.images {
		_, what := ProfileBase(im)
		for _, g := range []struct {
			name  string
			limit float64
			label string
		}{
			{GoalProfileVsUpstream, 0.5, ""},
			{GoalProfileVsReorder, 1, ""},
			{GoalProfileFetch, 1.15, " (" + what + ")"},
			{GoalProfileBuild, 1.3, ""},
		} {
			row := []string{im.Name, g.name + g.label + " ≤ " + num(g.limit)}
			for _, c := range cs {
				ch := byKey[[3]string{im.Name, g.name, c}]
				cell := ch.Verdict()
				if cell != "n/a" {
					cell = checkValue(ch) + " " + cell
				}
				row = append(row, cell)
			}
			rows = append(rows, row)
		}
	}
	table(b, 2, append([]string{"image", "goal"}, cs...), rows)
	var tally []string
	for _, c := range cs {
		pass, known := 0, 0
		for _, ch := range checks {
			if ch.Contender != c || ch.Verdict() == "n/a" {
				continue
			}
			known++
			if ch.Verdict() == "PASS" {
				pass++
			}
		}
		tally = append(tally, fmt.Sprintf("%s %d/%d", c, pass, known))
	}
	fmt.Fprintf(b, "Passed (of the checks with data): %s.\n\n", strings.Join(tally, ", "))
}

// writeBuilds writes the timed builds of the prepare phase.
func (m *model) writeBuilds(b *strings.Builder) {
	if len(m.run.Builds) == 0 {
		return
	}
	b.WriteString("## Builds\n\n")
	b.WriteString("Each buildctl build, push to the bench registry included; \"fresh\": on a buildkitd of its own with an " +
		"empty cache, else on the run's shared builder after the builds above it (plain first). Profiling step: the " +
		"frontend's traced exec as BuildKit timed it; start-up: the traced app's own time to its ready line.\n\n")
	var rows [][]string
	for _, bd := range m.run.Builds {
		where := "shared"
		if bd.Fresh {
			where = "fresh"
		}
		step, su := "–", "–"
		if bd.ProfileStepMS > 0 {
			step = strconv.FormatFloat(bd.ProfileStepMS/1000, 'f', 1, 64)
		}
		if bd.StartupMS > 0 {
			su = strconv.FormatFloat(bd.StartupMS/1000, 'f', 2, 64)
		}
		rows = append(rows, []string{bd.Image, bd.Variant, where,
			strconv.FormatFloat(bd.MS/1000, 'f', 1, 64), step, su, codeOrDash(bd.ProfileStatus)})
	}
	table(b, 3, []string{"image", "variant", "builder", "build s", "profiling step s", "start-up s", "socikit-trace"}, rows)
	var ratios [][]string
	for _, im := range m.images {
		p, ok1 := m.build(im.Name, "profiled")
		a, ok2 := m.build(im.Name, "auto")
		if !ok1 || !ok2 || !p.Fresh || !a.Fresh {
			continue
		}
		ratios = append(ratios, []string{im.Name,
			strconv.FormatFloat(a.MS/1000, 'f', 1, 64), strconv.FormatFloat(p.MS/1000, 'f', 1, 64),
			ratioString(ratio(p.MS, a.MS)), ratioString(ratio(p.MS-p.ProfileStepMS, a.MS)), ratioString(ratio(p.MS-p.StartupMS, a.MS))})
	}
	if len(ratios) > 0 {
		table(b, 1, []string{"image", "type=soci s (fresh)", "frontend, profiled s (fresh)", "ratio",
			"ratio, profiling step aside", "ratio, start-up aside"}, ratios)
	}
}

func (m *model) writeFailures(b *strings.Builder) {
	if len(m.run.Failures) == 0 {
		return
	}
	b.WriteString("## Failures\n\n")
	for _, f := range m.run.Failures {
		msg := strings.Join(strings.Fields(f.Error), " ")
		fmt.Fprintf(b, "- %s / %s: %s\n", f.Image, f.Contender, msg)
	}
	b.WriteString("\n")
}

// table writes a Markdown table; its first left columns are aligned
// left, the others (figures) right.
func table(b *strings.Builder, left int, head []string, rows [][]string) {
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
		}
		b.WriteString("\n")
	}
	line(head)
	b.WriteString("|")
	for i := range head {
		if i < left {
			b.WriteString(" --- |")
		} else {
			b.WriteString(" ---: |")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		line(r)
	}
	b.WriteString("\n")
}

func isKnown(c string) bool {
	for _, k := range results.Contenders {
		if k == c {
			return true
		}
	}
	return false
}

// statString formats a Stat as "median (min–max)", "value" for a single
// sample, or "–" when empty.
func statString(s Stat, prec int) string {
	if s.N == 0 {
		return "–"
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	if s.Min == s.Max {
		return f(s.Median)
	}
	return f(s.Median) + " (" + f(s.Min) + "–" + f(s.Max) + ")"
}

func ratioString(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "×"
}

// checkValue formats a check's ratio with two decimals, or more when two
// would hide which side of the limit it is on (1.104 is not "1.10").
func checkValue(c Check) string {
	for prec := 2; ; prec++ {
		s := strconv.FormatFloat(c.Value, 'f', prec, 64)
		shown, _ := strconv.ParseFloat(s, 64)
		if (shown <= c.Limit) == (c.Value <= c.Limit) || prec == 6 {
			return s + "×"
		}
	}
}

func mbString(n int64) string {
	if n <= 0 {
		return "–"
	}
	return strconv.FormatFloat(float64(n)/mb, 'f', 1, 64)
}

// num formats a setting such as 100 or 0.5 without trailing zeros.
func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func codeOrDash(s string) string {
	if s == "" {
		return "–"
	}
	return codeSpan(s)
}

// codeSpan wraps s in a Markdown code span, with a fence longer than any
// run of backticks in s.
func codeSpan(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if longest > 0 {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}
