package spanmap

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Meta names what is drawn.
type Meta struct {
	// Image is the image reference as given.
	Image string
	// IndexDigest, IndexVersion and Platform describe the SOCI index.
	IndexDigest  digest.Digest
	IndexVersion string
	Platform     string
}

// Layout of the picture, in pixels.
const (
	svgWidth   = 1200
	margin     = 20
	barX       = 270 // left end of the bars
	barWidth   = 620 // width of the largest layer
	rightX     = 910 // right column
	rowHeight  = 44  // one layer
	cellY      = 8   // cell top within a row
	cellHeight = 22  // cell height
	fillHeight = 6   // the bar of read bytes at a cell's bottom
	minHotCell = 2.0 // hot and prefetched cells are drawn at least this wide
	fontSans   = "DejaVu Sans,Verdana,Arial,sans-serif"
	fontMono   = "DejaVu Sans Mono,Menlo,Consolas,monospace"
	colorOther = "#dcdcdc"
	colorText  = "#222222"
	colorMuted = "#666666"
	colorGrid  = "#c8c8c8"
	colorFill  = "#000000"
)

// kinds: fill colour and legend text, with a profile and without.
var (
	kindColor = [...]string{
		kindOther:       colorOther,
		kindPrefetch:    "#74add1",
		kindHotPrefetch: "#1a9641",
		kindHot:         "#d7301f",
	}
	kindClass = [...]string{
		kindOther:       "span other",
		kindPrefetch:    "span prefetch",
		kindHotPrefetch: "span hot prefetch",
		kindHot:         "span hot",
	}
	legendProfile = []struct {
		kind int
		text string
	}{
		{kindHot, "read at start-up, fetched on demand"},
		{kindHotPrefetch, "read at start-up, prefetched"},
		{kindPrefetch, "prefetched, not read at start-up"},
		{kindOther, "not needed to start"},
	}
	legendPrefetch = []struct {
		kind int
		text string
	}{
		{kindPrefetch, "listed for prefetch"},
		{kindOther, "other spans"},
	}
)

// prefetchOnlyColor is the prefetch colour of a picture without profile.
const prefetchOnlyColor = "#2c7bb6"

type svgWriter struct {
	b bytes.Buffer
}

func (s *svgWriter) f(format string, args ...any) { fmt.Fprintf(&s.b, format, args...) }

// num formats a coordinate: at most two decimals, no trailing zeros.
func num(x float64) string {
	s := strconv.FormatFloat(x, 'f', 2, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *svgWriter) text(x, y float64, size int, attrs, str string) {
	s.f(`<text x="%s" y="%s" font-size="%d"%s>%s</text>`+"\n", num(x), num(y), size, attrs, esc(str))
}

// SVG draws res: one row per layer, its spans as cells to the scale of
// their compressed size (one scale for all layers), coloured by whether
// the start-up reads bytes in them and whether they are prefetched, with
// a legend, each layer's digest, span count and size, and the totals. The
// same input gives the same bytes.
func SVG(w io.Writer, res *Result, meta Meta) error {
	s := &svgWriter{}
	var maxSize int64 = 1
	for _, l := range res.Layers {
		maxSize = max(maxSize, l.Size)
	}
	scale := float64(barWidth) / float64(maxSize)

	// Header: title, index, totals.
	var header []string
	t := res.Totals
	if res.Profile {
		header = append(header,
			fmt.Sprintf("The start-up reads %s (%d of the profile's %d files found) → a lazy start fetches %s: %s of %s + %s of zTOCs (%s%%)",
				Bytes(t.HotBytes), t.FilesFound, res.ProfileFiles, Bytes(t.FetchBytes+t.ZtocBytes), Bytes(t.FetchBytes), plural(t.SpansTouched, "span"),
				Bytes(t.ZtocBytes), num(t.ZtocPercent)),
			fmt.Sprintf("Fetched on demand (read, not prefetched): %s · prefetched but not read: %s%s · paths in no indexed layer: %d",
				Bytes(t.OnDemandBytes), Bytes(t.PrefetchUnread), wholeNote(t), res.NotFound))
	} else {
		header = append(header,
			fmt.Sprintf("Prefetch lists %s of spans · zTOCs: %s%s", Bytes(t.PrefetchBytes), Bytes(t.ZtocBytes), wholeNote(t)),
			"No start-up profile given (--profile): spans are coloured by prefetch only.")
	}
	type legendItem struct {
		fill, text string
		bar        bool
	}
	var legend []legendItem
	if res.Profile {
		for _, l := range legendProfile {
			legend = append(legend, legendItem{fill: kindColor[l.kind], text: l.text})
		}
		legend = append(legend, legendItem{fill: kindColor[kindHot], text: "dark bar: share of the span's bytes read", bar: true})
	} else {
		for _, l := range legendPrefetch {
			c := kindColor[l.kind]
			if l.kind == kindPrefetch {
				c = prefetchOnlyColor
			}
			legend = append(legend, legendItem{fill: c, text: l.text})
		}
	}
	if t.WholeBytes > 0 {
		legend = append(legend, legendItem{fill: "url(#whole)", text: "no zTOC: pulled whole"})
	}
	// Legend lines: items laid out left to right, wrapped.
	var legendLines [][]legendItem
	lineW := 0.0
	for _, l := range legend {
		w := legendItemWidth(l.text)
		if len(legendLines) == 0 || lineW+w > svgWidth-2*margin {
			legendLines = append(legendLines, nil)
			lineW = 0
		}
		legendLines[len(legendLines)-1] = append(legendLines[len(legendLines)-1], l)
		lineW += w
	}
	var notFound string
	if res.NotFound > 0 {
		notFound = fmt.Sprintf("Paths of the profile in no indexed layer (%d): ", res.NotFound)
		for i, p := range res.NotFoundPaths {
			if len(notFound)+len(p) > 180 {
				notFound += "…"
				break
			}
			if i > 0 {
				notFound += ", "
			}
			notFound += p
		}
	}

	const (
		titleY  = 32
		subY    = 54
		totalsY = 80
		lineGap = 19
	)
	legendY := totalsY + lineGap*len(header) + 10
	axisY := legendY + 20*len(legendLines) + 22
	rowsY := axisY + 10
	footY := rowsY + rowHeight*len(res.Layers) + 20
	height := footY + 18
	if notFound != "" {
		height += 16
	}

	s.f(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	s.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="%s" fill="%s">`+"\n",
		svgWidth, height, svgWidth, height, fontSans, colorText)
	s.f(`<defs><pattern id="whole" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
		`<rect width="6" height="6" fill="#f2f2f2"/><rect width="2" height="6" fill="#a0a0a0"/></pattern></defs>` + "\n")
	s.f(`<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, height)

	title := "Spans of " + meta.Image
	if res.Profile {
		title = "Start-up reads of " + meta.Image + " by span"
	}
	s.text(margin, titleY, 18, ` font-weight="bold"`, title)
	sub := []string{}
	if meta.IndexDigest != "" {
		sub = append(sub, "SOCI index "+short(meta.IndexDigest))
	}
	if meta.IndexVersion != "" {
		sub = append(sub, meta.IndexVersion)
	}
	if meta.Platform != "" {
		sub = append(sub, meta.Platform)
	}
	sub = append(sub, fmt.Sprintf("%d of %d layers indexed", t.IndexedLayers, t.Layers), Bytes(t.Size)+" compressed")
	s.text(margin, subY, 12, ` fill="`+colorMuted+`"`, strings.Join(sub, " · "))
	for i, h := range header {
		attrs := ""
		if i == 0 {
			attrs = ` font-weight="bold"`
		}
		s.text(margin, float64(totalsY+lineGap*i), 13, attrs, h)
	}

	// Legend.
	for i, line := range legendLines {
		x, y := float64(margin), legendY+20*i
		for _, l := range line {
			s.f(`<rect class="legend" x="%s" y="%d" width="14" height="14" fill="%s"/>`+"\n", num(x), y-11, l.fill)
			if l.bar {
				s.f(`<rect x="%s" y="%d" width="9" height="5" fill="%s" fill-opacity="0.5"/>`+"\n", num(x), y-2, colorFill)
			}
			s.text(x+20, float64(y), 12, "", l.text)
			x += legendItemWidth(l.text)
		}
	}

	// Axis: compressed offsets, one scale.
	s.text(margin, float64(axisY), 11, ` fill="`+colorMuted+`"`, "x: compressed offset in the layer blob")
	step, unit, uname := axisStep(maxSize)
	for k := 0; float64(k)*step*unit <= float64(maxSize)+0.5; k++ {
		v := math.Round(float64(k)*step*1000) / 1000
		gx := barX + v*unit*scale
		s.f(`<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="%s" stroke-width="1"/>`+"\n", num(gx), axisY+4, num(gx), rowsY+rowHeight*len(res.Layers), colorGrid)
		label := strconv.FormatFloat(v, 'f', -1, 64)
		if v != 0 {
			label += " " + uname
		}
		s.text(gx, float64(axisY), 11, ` text-anchor="middle" fill="`+colorMuted+`"`, label)
	}

	// Rows.
	for i := range res.Layers {
		l := &res.Layers[i]
		y := rowsY + rowHeight*i
		s.f(`<g class="layer" id="layer-%d">`+"\n", i+1)
		s.text(margin, float64(y+cellY+10), 12, ` font-family="`+fontMono+`"`, fmt.Sprintf("%d %s", i+1, short(l.Digest)))
		if l.Indexed {
			s.text(margin, float64(y+cellY+26), 11, ` fill="`+colorMuted+`"`, fmt.Sprintf("%s · %s (%s tar)", plural(l.Spans, "span"), Bytes(l.Size), Bytes(l.UncompressedSize)))
		} else {
			s.text(margin, float64(y+cellY+26), 11, ` fill="`+colorMuted+`"`, fmt.Sprintf("no zTOC · %s", Bytes(l.Size)))
		}
		s.drawRow(l, float64(y+cellY), scale, res.Profile)
		var r1, r2 string
		switch {
		case !l.Indexed:
			r1, r2 = "pulled whole before start", "fetch "+Bytes(l.Size)
		case res.Profile:
			r1 = fmt.Sprintf("read %s of %d files", Bytes(l.HotBytes), l.FilesFound)
			r2 = fmt.Sprintf("fetch %s in %s", Bytes(l.FetchBytes), plural(l.SpansTouched, "span"))
			if l.OnDemandBytes > 0 && l.OnDemandBytes != l.FetchBytes {
				r2 += fmt.Sprintf(" (%s on demand)", Bytes(l.OnDemandBytes))
			}
		default:
			r1 = "prefetch " + plural(l.PrefetchSpans, "span")
			r2 = Bytes(l.PrefetchBytes)
		}
		s.text(rightX, float64(y+cellY+10), 12, "", r1)
		s.text(rightX, float64(y+cellY+26), 11, ` fill="`+colorMuted+`"`, r2)
		s.f("</g>\n")
	}

	foot := "Cell width: a span's compressed size (one scale for all layers); a lazy start fetches every span it reads a byte of."
	s.text(margin, float64(footY), 11, ` fill="`+colorMuted+`"`, foot)
	if notFound != "" {
		s.text(margin, float64(footY+16), 11, ` fill="`+colorMuted+`"`, notFound)
	}
	s.f("</svg>\n")
	_, err := w.Write(s.b.Bytes())
	return err
}

// drawRow draws one layer's cells at top y.
func (s *svgWriter) drawRow(l *LayerResult, y, scale float64, withProfile bool) {
	if !l.Indexed {
		s.f(`<rect class="whole" x="%d" y="%s" width="%s" height="%d" fill="url(#whole)"><title>%s</title></rect>`+"\n",
			barX, num(y), num(max(float64(l.Size)*scale, minHotCell)), cellHeight, esc(fmt.Sprintf("layer %s: no zTOC, %s pulled whole", l.Digest, Bytes(l.Size))))
		return
	}
	for id, sp := range l.spans {
		k := l.kind(id)
		x0 := barX + float64(sp.CompressedStart)*scale
		w := float64(sp.CompressedEnd-sp.CompressedStart) * scale
		if k != kindOther {
			w = max(w, minHotCell)
		}
		// A white gap between cells wide enough to show it.
		if w >= 4 {
			w -= 1
		}
		c := kindColor[k]
		if !withProfile && k == kindPrefetch {
			c = prefetchOnlyColor
		}
		tip := fmt.Sprintf("span %d: compressed [%d, %d) %s, tar [%d, %d)", id, sp.CompressedStart, sp.CompressedEnd,
			Bytes(sp.CompressedEnd-sp.CompressedStart), sp.UncompressedStart, sp.UncompressedEnd)
		if withProfile {
			tip += fmt.Sprintf(", read %s", Bytes(l.hot[id]))
		}
		if l.prefetch[id] {
			tip += ", prefetched"
		}
		s.f(`<rect class="%s" x="%s" y="%s" width="%s" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
			kindClass[k], num(x0), num(y), num(w), cellHeight, c, esc(tip))
		if h := l.hot[id]; h > 0 {
			if u := sp.UncompressedEnd - sp.UncompressedStart; u > 0 {
				fw := max(w*float64(h)/float64(u), 1)
				s.f(`<rect class="read" x="%s" y="%s" width="%s" height="%d" fill="%s" fill-opacity="0.5"/>`+"\n",
					num(x0), num(y+cellHeight-fillHeight), num(min(fw, w)), fillHeight, colorFill)
			}
		}
	}
}

// wholeNote tells the bytes of layers without zTOC, if any.
func wholeNote(t Totals) string {
	if t.WholeBytes == 0 {
		return ""
	}
	return fmt.Sprintf(" · layers without zTOC, pulled whole: %s", Bytes(t.WholeBytes))
}

// legendItemWidth estimates the width of a legend item (swatch, text, gap).
func legendItemWidth(text string) float64 {
	return 20 + float64(len([]rune(text)))*6.7 + 22
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// axisStep returns a tick step (in unit) giving at most about 6 ticks up
// to size bytes, the unit in bytes and its name.
func axisStep(size int64) (step, unit float64, name string) {
	unit, name = 1, "B"
	for _, u := range []struct {
		n string
		v float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if float64(size) >= 2*u.v {
			unit, name = u.v, u.n
		}
	}
	raw := float64(size) / unit / 6
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p, unit, name
		}
	}
	return 10 * p, unit, name
}

// short is a digest cut to its algorithm and 12 hex digits.
func short(d digest.Digest) string {
	s := string(d)
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}

// Bytes formats n with binary units ("512 B", "1.5 MiB").
func Bytes(n int64) string {
	const u = 1024
	if n < u {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= u-0.05 && i < 4 {
		v /= u
		i++
	}
	return fmt.Sprintf("%.1f %s", v, [...]string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i])
}
