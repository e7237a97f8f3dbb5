package report

import (
	"cmp"
	"image"
	"image/color"
	"io"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/socikit/socikit/integration/harness/results"
)

// TimelineChartFile is the name of an image's timeline chart.
func TimelineChartFile(image string) string { return "timeline-" + image + ".png" }

// fetchColors gives each fetch kind its colour in timeline charts.
var fetchColors = []struct {
	kind  string
	color color.Color
}{
	{results.FetchManifest, color.RGBA{120, 120, 120, 255}},
	{results.FetchConfig, color.RGBA{190, 160, 40, 255}},
	{results.FetchIndex, color.RGBA{222, 110, 60, 255}},
	{results.FetchLayerRange, color.RGBA{66, 133, 214, 255}},
	{results.FetchLayerWhole, color.RGBA{150, 112, 200, 255}},
	{results.FetchOther, color.RGBA{200, 200, 200, 255}},
}

func fetchColor(kind string) color.Color {
	for _, f := range fetchColors {
		if f.kind == kind {
			return f.color
		}
	}
	return color.Black
}

// timelineLanes is how many overlapping fetches a contender's row shows
// side by side; more overlap shares the last lane.
const timelineLanes = 6

// timelineRow is one contender's first cold start with a timeline.
type timelineRow struct {
	contender string
	tl        *results.Timeline
}

// timelineRows returns, per contender in report order, the timeline of
// its lowest-iteration sample of image that has one.
func (m *model) timelineRows(image string) []timelineRow {
	var rows []timelineRow
	for _, c := range m.contenders {
		ss := m.samples[cellKey{image, c}]
		i := slices.IndexFunc(ss, func(s results.Sample) bool { return s.Timeline != nil })
		if i < 0 {
			continue
		}
		best := ss[i]
		for _, s := range ss {
			if s.Timeline != nil && s.Iter < best.Iter {
				best = s
			}
		}
		rows = append(rows, timelineRow{c, best.Timeline})
	}
	return rows
}

// chartRow is one row of a timeline chart: a contender's registry
// requests, or (fuse set) the FUSE requests socikit-snapshotter answered
// during the same cold start.
type chartRow struct {
	label string
	tl    *results.Timeline
	fuse  []fuseBin
	peak  float64 // of fuse, requests per second
}

// chartRowsOf returns the chart rows of contenders' timelines: each one's
// registry requests, followed by its FUSE requests when it recorded any.
func chartRowsOf(rows []timelineRow) []chartRow {
	var out []chartRow
	for _, row := range rows {
		out = append(out, chartRow{label: row.contender, tl: row.tl})
		bins := fuseBins(row.tl.FUSE)
		if peak := fusePeak(bins); peak > 0 {
			out = append(out, chartRow{label: row.contender + " FUSE (peak " + rateString(peak) + ")", tl: row.tl, fuse: bins, peak: peak})
		}
	}
	return out
}

// WriteTimelineChart writes the timeline of one cold start per contender
// of image (its first run): a row per contender, the registry requests as
// bars from when they reached the registry to when it had answered,
// coloured by kind (overlapping requests side by side), the end of the
// pull (ctr run starts) as a black tick and the ready line as a red one.
// Under a socikit contender's row, when its run recorded them, a row of
// the FUSE requests socikit-snapshotter answered: their rate over each
// sampling interval (~100 ms), stacked by kind, scaled to the row's peak
// (in its label). The x axis ends a little after the slowest contender's
// ready line.
func WriteTimelineChart(w io.Writer, r *results.Run, imageName string) error {
	m := newModel(r)
	rows := chartRowsOf(m.timelineRows(imageName))
	height := 120 + 60*max(len(rows), 1)
	var fuse bool
	for _, row := range rows {
		fuse = fuse || row.fuse != nil
	}
	if fuse {
		height = max(height, 120+18*(len(fetchColors)+2+numFUSEGroups))
	}
	img := image.NewRGBA(image.Rect(0, 0, ChartWidth, height))
	canvas := vgimg.NewWith(vgimg.UseImage(img), vgimg.UseDPI(chartDPI))
	dc := draw.New(canvas)

	p := plot.New()
	p.Title.Text = "Cold start timeline, " + imageName + " (first run) — link " + LinkString(r.Link)
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = "seconds from the start of the pull"
	grid := plotter.NewGrid()
	grid.Horizontal.Color = nil
	grid.Vertical.Color = color.Gray{220}
	p.Add(grid)
	names := make([]string, len(rows))
	for i, row := range rows {
		names[len(rows)-1-i] = row.label // first contender on top
	}
	if len(rows) > 0 {
		p.NominalY(names...)
	}
	tp := &timelinePlot{rows: rows}
	p.Add(tp)
	p.X.Min, p.X.Max = 0, tp.xmax()
	p.Y.Min, p.Y.Max = -0.5, float64(len(rows))-0.5

	leg := plot.NewLegend()
	leg.Top = true
	leg.TextStyle.Font = font.From(plot.DefaultFont, 10)
	leg.ThumbnailWidth = vg.Points(14)
	leg.Padding = vg.Points(3)
	for _, f := range fetchColors {
		leg.Add(f.kind, colorThumb{f.color})
	}
	leg.Add("pull done", tickThumb{pullStyle})
	leg.Add("ready", tickThumb{readyStyle})
	if fuse {
		for _, g := range fuseGroups {
			leg.Add("FUSE "+g.name, colorThumb{g.color})
		}
	}

	legendWidth := leg.Rectangle(dc).Size().X + vg.Points(16)
	p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	titleHeight := p.Title.TextStyle.Rectangle(p.Title.Text).Size().Y + p.Title.Padding
	leg.Draw(draw.Crop(dc, dc.Max.X-legendWidth+vg.Points(8), 0, 0, -titleHeight-vg.Points(4)))
	_, err := vgimg.PngCanvas{Canvas: canvas}.WriteTo(w)
	return err
}

var (
	pullStyle  = draw.LineStyle{Color: color.Black, Width: vg.Points(2)}
	readyStyle = draw.LineStyle{Color: color.RGBA{220, 30, 30, 255}, Width: vg.Points(2.5)}
)

// timelinePlot draws the rows of a timeline chart (plot.Plotter).
type timelinePlot struct{ rows []chartRow }

// xmax is the end of the x axis in seconds: 5% after the latest ready
// line (or the latest fetch, if no row has one).
func (tp *timelinePlot) xmax() float64 {
	var x float64
	for _, row := range tp.rows {
		x = math.Max(x, row.tl.ReadyMS/1000)
	}
	if x == 0 {
		for _, row := range tp.rows {
			for _, f := range row.tl.Fetches {
				x = math.Max(x, f.EndMS/1000)
			}
		}
	}
	if x == 0 {
		x = 1
	}
	return x * 1.05
}

// Plot implements plot.Plotter.
func (tp *timelinePlot) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	n := len(tp.rows)
	for i, row := range tp.rows {
		y := float64(n - 1 - i)
		y0, y1 := y-0.4, y+0.4
		if row.fuse != nil {
			plotFUSE(c, trX, trY, row, y0, y1)
		} else {
			plotFetches(c, trX, trY, row.tl, y0, y1)
		}
		for _, mk := range []struct {
			ms    float64
			style draw.LineStyle
		}{{row.tl.PullEndMS, pullStyle}, {row.tl.ReadyMS, readyStyle}} {
			if mk.ms <= 0 {
				continue
			}
			x := trX(mk.ms / 1000)
			if x > c.Max.X {
				continue
			}
			c.StrokeLine2(mk.style, x, trY(y0-0.05), x, trY(y1+0.05))
		}
	}
}

// plotFUSE draws a row's FUSE request rates between y0 and y1: a bar per
// sampling interval, stacked by group, the row's peak at y1.
func plotFUSE(c draw.Canvas, trX, trY func(float64) vg.Length, row chartRow, y0, y1 float64) {
	for _, bin := range row.fuse {
		l, r := trX(bin.startMS/1000), trX(bin.endMS/1000)
		y := y0
		for g, perS := range bin.perS {
			if perS <= 0 {
				continue
			}
			top := y + (y1-y0)*perS/row.peak
			pts := []vg.Point{{X: l, Y: trY(y)}, {X: r, Y: trY(y)}, {X: r, Y: trY(top)}, {X: l, Y: trY(top)}}
			c.FillPolygon(fuseGroups[g].color, c.ClipPolygonX(pts))
			y = top
		}
	}
}

// plotFetches draws a row's registry requests between y0 and y1, in
// timelineLanes sub-lanes.
func plotFetches(c draw.Canvas, trX, trY func(float64) vg.Length, tl *results.Timeline, y0, y1 float64) {
	laneH := (y1 - y0) / timelineLanes
	var laneEnd [timelineLanes]float64
	fetches := slices.Clone(tl.Fetches)
	slices.SortStableFunc(fetches, func(a, b results.Fetch) int { return cmp.Compare(a.StartMS, b.StartMS) })
	for _, f := range fetches {
		lane := timelineLanes - 1
		for k := range laneEnd {
			if laneEnd[k] <= f.StartMS {
				lane = k
				break
			}
		}
		laneEnd[lane] = math.Max(laneEnd[lane], f.EndMS)
		l, r := trX(f.StartMS/1000), trX(f.EndMS/1000)
		if r-l < vg.Points(1) {
			r = l + vg.Points(1)
		}
		b, t := trY(y0+laneH*float64(lane)), trY(y0+laneH*float64(lane+1))-vg.Points(0.5)
		pts := []vg.Point{{X: l, Y: b}, {X: r, Y: b}, {X: r, Y: t}, {X: l, Y: t}}
		c.FillPolygon(fetchColor(f.Kind), c.ClipPolygonX(pts))
	}
}

// colorThumb is a legend entry: a filled box.
type colorThumb struct{ color color.Color }

func (t colorThumb) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	c.FillPolygon(t.color, []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
}

// tickThumb is a legend entry: a vertical tick.
type tickThumb struct{ style draw.LineStyle }

func (t tickThumb) Thumbnail(c *draw.Canvas) {
	x := (c.Min.X + c.Max.X) / 2
	c.StrokeLine2(t.style, x, c.Min.Y, x, c.Max.Y)
}
