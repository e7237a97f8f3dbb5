package report

import (
	"image"
	"image/color"
	"io"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/socikit/socikit/integration/harness/results"
)

// Pixel size of the PNG charts.
const (
	ChartWidth  = 900
	ChartHeight = 500
	chartDPI    = 96
)

// groupWidth is the share of one image's slot on the x axis its bars fill.
const groupWidth = 0.8

// contenderColors keeps each contender's colour the same in every chart.
var contenderColors = map[string]color.Color{
	results.Overlayfs:          color.RGBA{150, 150, 150, 255},
	results.SocikitAuto:        color.RGBA{66, 133, 214, 255},
	results.SocikitReorder:     color.RGBA{38, 166, 91, 255},
	results.SocikitConvert:     color.RGBA{150, 112, 200, 255},
	results.SocikitProfiled:    color.RGBA{20, 110, 60, 255},
	results.SocikitLazyProfile: color.RGBA{120, 200, 140, 255},
	results.Upstream:           color.RGBA{222, 110, 60, 255},
}

// WriteReadyChart writes chart.png: per image, one bar per contender for
// the median time to ready in seconds, whiskers from min to max, the
// median printed above each bar and "n/a" where a contender has no
// sample. The title gives the link settings.
func WriteReadyChart(w io.Writer, r *results.Run) error {
	return writeChart(w, newModel(r), chartSpec{
		title:  "Time to ready, median (whiskers min–max) — link " + LinkString(r.Link),
		ylabel: "seconds",
		f:      readyS,
		prec:   1,
	})
}

// WriteBytesChart writes chart-bytes.png: like WriteReadyChart for the
// MB the registry sent before ready, with a dashed mark per image at the
// compressed size of the files read before ready.
func WriteBytesChart(w io.Writer, r *results.Run) error {
	return writeChart(w, newModel(r), chartSpec{
		title:       "MB fetched before ready, median (whiskers min–max) — link " + LinkString(r.Link),
		ylabel:      "MB",
		f:           beforeMB,
		prec:        0,
		startupMark: true,
	})
}

type chartSpec struct {
	title, ylabel string
	f             metric
	prec          int  // decimals of the labels above the bars
	startupMark   bool // mark each image's StartupCompressed
}

func writeChart(w io.Writer, m *model, spec chartSpec) error {
	img := image.NewRGBA(image.Rect(0, 0, ChartWidth, ChartHeight))
	canvas := vgimg.NewWith(vgimg.UseImage(img), vgimg.UseDPI(chartDPI))
	dc := draw.New(canvas)

	p := plot.New()
	p.Title.Text = spec.title
	p.Title.Padding = vg.Points(8)
	p.Y.Label.Text = spec.ylabel
	p.Y.Min = 0
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	grid.Horizontal.Color = color.Gray{210}
	p.Add(grid)

	leg := plot.NewLegend()
	leg.Left, leg.Top = true, true
	leg.TextStyle.Font = font.From(plot.DefaultFont, 10)
	leg.ThumbnailWidth = vg.Points(14)
	leg.Padding = vg.Points(3)

	if len(m.images) == 0 {
		p.HideX()
	} else {
		names := make([]string, len(m.images))
		for i, im := range m.images {
			names[i] = im.Name
			if im.CompressedBytes > 0 {
				names[i] += "\n" + mbString(im.CompressedBytes) + " MB"
			}
		}
		p.NominalX(names...)
		p.X.Min, p.X.Max = -0.5, float64(len(m.images))-0.5
	}

	cs := m.withSamples()
	for j, c := range cs {
		b := &bars{idx: j, of: len(cs), color: contenderColor(c, j), prec: spec.prec}
		for _, im := range m.images {
			b.stats = append(b.stats, m.stat(im.Name, c, spec.f))
		}
		p.Add(b)
		leg.Add(c, b)
	}
	if spec.startupMark {
		mk := &marks{}
		for _, im := range m.images {
			mk.ys = append(mk.ys, float64(im.StartupCompressed)/mb)
		}
		p.Add(mk)
		leg.Add("compressed size of files read", mk)
	}
	if len(cs) == 0 {
		leg.Add("no samples")
	}

	legendWidth := leg.Rectangle(dc).Size().X + vg.Points(16)
	p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	titleHeight := p.Title.TextStyle.Rectangle(p.Title.Text).Size().Y + p.Title.Padding
	leg.Draw(draw.Crop(dc, dc.Max.X-legendWidth+vg.Points(8), 0, 0, -titleHeight-vg.Points(4)))

	_, err := vgimg.PngCanvas{Canvas: canvas}.WriteTo(w)
	return err
}

func contenderColor(c string, i int) color.Color {
	if col, ok := contenderColors[c]; ok {
		return col
	}
	return plotutil.Color(i)
}

// bars draws one contender's bars, one per image, at its place within
// each image's group, with min–max whiskers and the median above.
type bars struct {
	idx, of int // place in the group, group size
	color   color.Color
	stats   []Stat // per image
	prec    int
}

func (b *bars) span(i int) (x0, x1 float64) {
	w := groupWidth / float64(b.of)
	x0 = float64(i) - groupWidth/2 + w*float64(b.idx)
	return x0, x0 + w
}

func labelStyle(size vg.Length) text.Style {
	return text.Style{
		Color:   color.Black,
		Font:    font.From(plot.DefaultFont, size),
		XAlign:  draw.XCenter,
		YAlign:  draw.YBottom,
		Handler: plot.DefaultTextHandler,
	}
}

// Plot implements plot.Plotter.
func (b *bars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	outline := draw.LineStyle{Color: color.Gray{60}, Width: vg.Points(0.5)}
	whisker := draw.LineStyle{Color: color.Black, Width: vg.Points(1)}
	label := labelStyle(8)
	for i, s := range b.stats {
		x0, x1 := b.span(i)
		l, r := trX(x0), trX(x1)
		mid := (l + r) / 2
		base := trY(0)
		if s.N == 0 {
			na := label
			na.Rotation = math.Pi / 2
			na.XAlign, na.YAlign = draw.XLeft, draw.YCenter
			na.Color = color.Gray{110}
			c.FillText(na, vg.Point{X: mid, Y: base + vg.Points(3)}, "n/a")
			continue
		}
		top := trY(s.Median)
		pts := []vg.Point{{X: l, Y: base}, {X: r, Y: base}, {X: r, Y: top}, {X: l, Y: top}}
		c.FillPolygon(b.color, c.ClipPolygonY(pts))
		c.StrokeLines(outline, c.ClipLinesY(append(pts, pts[0]))...)
		if s.Max > s.Min {
			lo, hi := trY(s.Min), trY(s.Max)
			half := (r - l) / 4
			c.StrokeLine2(whisker, mid, lo, mid, hi)
			c.StrokeLine2(whisker, mid-half, lo, mid+half, lo)
			c.StrokeLine2(whisker, mid-half, hi, mid+half, hi)
		}
		c.FillText(label, vg.Point{X: mid, Y: trY(s.Max) + vg.Points(2)},
			strconv.FormatFloat(s.Median, 'f', b.prec, 64))
	}
}

// DataRange implements plot.DataRanger, leaving room above the highest
// whisker for its label.
func (b *bars) DataRange() (xmin, xmax, ymin, ymax float64) {
	for _, s := range b.stats {
		if s.N > 0 {
			ymax = math.Max(ymax, s.Max)
		}
	}
	return -0.5, float64(len(b.stats)) - 0.5, 0, ymax * 1.08
}

// Thumbnail implements plot.Thumbnailer.
func (b *bars) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	c.FillPolygon(b.color, []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
}

// marks draws a dashed line across each image's group at ys[i] (none
// where ys[i] is 0).
type marks struct{ ys []float64 }

var markStyle = draw.LineStyle{
	Color:  color.Black,
	Width:  vg.Points(1.2),
	Dashes: []vg.Length{vg.Points(4), vg.Points(2)},
}

// Plot implements plot.Plotter.
func (mk *marks) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for i, y := range mk.ys {
		if y <= 0 {
			continue
		}
		x := float64(i)
		c.StrokeLine2(markStyle, trX(x-groupWidth/2-0.03), trY(y), trX(x+groupWidth/2+0.03), trY(y))
	}
}

// DataRange implements plot.DataRanger.
func (mk *marks) DataRange() (xmin, xmax, ymin, ymax float64) {
	for _, y := range mk.ys {
		ymax = math.Max(ymax, y)
	}
	return -0.5, float64(len(mk.ys)) - 0.5, 0, ymax * 1.05
}

// Thumbnail implements plot.Thumbnailer.
func (mk *marks) Thumbnail(c *draw.Canvas) {
	y := (c.Min.Y + c.Max.Y) / 2
	c.StrokeLine2(markStyle, c.Min.X, y, c.Max.X, y)
}
