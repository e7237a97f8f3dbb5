package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/socikit/socikit/integration/harness/results"
)

// File names Write uses inside its directory.
const (
	JSONFile       = "results.json"
	CSVFile        = "results.csv"
	MarkdownFile   = "summary.md"
	ReadyChartFile = "chart.png"
	BytesChartFile = "chart-bytes.png"
)

// Write writes results.json, results.csv, summary.md, chart.png and
// chart-bytes.png for r into dir, creating dir if needed. It writes every
// file it can and returns the errors joined.
func Write(dir string, r *results.Run) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report directory %s: %w", dir, err)
	}
	files := []struct {
		name  string
		write func(io.Writer, *results.Run) error
	}{
		{JSONFile, WriteJSON},
		{CSVFile, WriteCSV},
		{MarkdownFile, func(w io.Writer, r *results.Run) error {
			_, err := io.WriteString(w, Markdown(r))
			return err
		}},
		{ReadyChartFile, WriteReadyChart},
		{BytesChartFile, WriteBytesChart},
	}
	m := newModel(r)
	for _, im := range m.images {
		if len(m.timelineRows(im.Name)) == 0 {
			continue
		}
		files = append(files, struct {
			name  string
			write func(io.Writer, *results.Run) error
		}{TimelineChartFile(im.Name), func(w io.Writer, r *results.Run) error { return WriteTimelineChart(w, r, im.Name) }})
	}
	var errs []error
	for _, f := range files {
		var buf bytes.Buffer
		err := f.write(&buf, r)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f.name), buf.Bytes(), 0o644)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", f.name, err))
		}
	}
	return errors.Join(errs...)
}

// WriteJSON writes r as indented JSON (results.json). Nil lists are
// written as [] so that readers can iterate them; HTML characters are not
// escaped. The same Run always gives the same bytes.
func WriteJSON(w io.Writer, r *results.Run) error {
	c := *r
	if c.Images == nil {
		c.Images = []results.Image{}
	}
	if c.Samples == nil {
		c.Samples = []results.Sample{}
	}
	if c.Failures == nil {
		c.Failures = []results.Failure{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(&c)
}

// CSVHeader is the header row of results.csv, in column order. The
// first columns are the Sample's JSON names; image_compressed_bytes and
// startup_compressed_bytes come from the sample's Image (empty when the
// Run does not describe the image), rate_mbit and latency_ms from the
// Run's Link.
var CSVHeader = []string{
	"image", "contender", "iter",
	"pull_ms", "ready_ms", "read_all_ms",
	"bytes_before_ready", "bytes_total", "requests_before_ready",
	"index_bytes", "peak_rss_kib",
	"image_compressed_bytes", "startup_compressed_bytes",
	"rate_mbit", "latency_ms", "local_ready_ms",
}

// WriteCSV writes one row per sample (results.csv), after CSVHeader,
// sorted by image, contender and iteration.
func WriteCSV(w io.Writer, r *results.Run) error {
	m := newModel(r)
	images := map[string]results.Image{}
	for _, im := range r.Images {
		if _, dup := images[im.Name]; !dup {
			images[im.Name] = im
		}
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, s := range m.sortedSamples() {
		compressed, startup := "", ""
		if im, ok := images[s.Image]; ok {
			compressed, startup = i(im.CompressedBytes), i(im.StartupCompressed)
		}
		row := []string{
			s.Image, s.Contender, strconv.Itoa(s.Iter),
			f(s.PullMS), f(s.ReadyMS), f(s.ReadAllMS),
			i(s.BytesBeforeReady), i(s.BytesTotal), i(s.Requests),
			i(s.IndexBytes), i(s.PeakRSSKiB),
			compressed, startup,
			f(r.Link.RateMbit), f(r.Link.LatencyMS), f(s.LocalReadyMS),
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
