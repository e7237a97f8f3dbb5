package exporter

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/ztoc"
)

// TestMeasureStartup measures, on a real layer, the bytes a lazy start
// fetches (the whole zTOC, then every span holding the header or data of a
// start-up file) for fixed and auto span sizes, with and without
// reordering. It runs only when SOCIKIT_MEASURE_TAR (a tar) and
// SOCIKIT_MEASURE_FILES (start-up paths, one a line) are set; see
// docs/exporter.md for the commands and figures.
func TestMeasureStartup(t *testing.T) {
	tarPath, listPath := os.Getenv("SOCIKIT_MEASURE_TAR"), os.Getenv("SOCIKIT_MEASURE_FILES")
	if tarPath == "" || listPath == "" {
		t.Skip("set SOCIKIT_MEASURE_TAR and SOCIKIT_MEASURE_FILES")
	}
	in, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := os.Open(listPath)
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	sc := bufio.NewScanner(lf)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			list = append(list, s)
		}
	}
	lf.Close()

	var gz bytes.Buffer
	t0 := time.Now()
	zw := gzip.NewWriter(&gz)
	zw.Write(in)
	zw.Close()
	gzTime := time.Since(t0)
	upstream, err := ztoc.Build(bytes.NewReader(gz.Bytes()), ztoc.WithSpanSize(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("layer %s: %d bytes tar, %d gzip -6 (%v), %d start-up paths", tarPath, len(in), gz.Len(), gzTime.Round(time.Millisecond), len(list))
	t.Logf("%-34s %8s %6s %10s %10s %12s %12s %7s", "config", "span", "spans", "blob", "zTOC", "spans read", "fetched", "time")
	report := func(name string, z *ztoc.Ztoc, span int64, blob int64, d time.Duration) {
		zb, err := ztoc.Marshal(z)
		if err != nil {
			t.Fatal(err)
		}
		read := spanBytesRead(t, z, list)
		t.Logf("%-34s %8s %6d %10d %10d %12d %12d %7v", name, sizeString(span), z.MaxSpanID+1, blob, len(zb), read, int64(len(zb))+read, d.Round(time.Millisecond))
	}
	report("upstream way: gzip, Build 4 MiB", upstream, 4<<20, int64(gz.Len()), gzTime)
	configs := []struct {
		name string
		opts []Option
	}{
		{"fixed 4 MiB", []Option{WithSpanSize(4 << 20)}},
		{"fixed 1 MiB", []Option{WithSpanSize(1 << 20)}},
		{"auto, no start-up list (model)", nil},
		{"auto, start-up list", []Option{WithStartupFiles(list)}},
		{"reorder + fixed 4 MiB", []Option{WithStartupFiles(list), WithReorder(true), WithSpanSize(4 << 20)}},
		{"reorder + fixed 1 MiB", []Option{WithStartupFiles(list), WithReorder(true), WithSpanSize(1 << 20)}},
		{"reorder + auto", []Option{WithStartupFiles(list), WithReorder(true)}},
	}
	for _, c := range configs {
		var blob countWriter
		t0 := time.Now()
		res, err := BuildLayer(context.Background(), &blob, bytes.NewReader(in), int64(len(in)), c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		name := c.name
		if len(res.Spans.Cuts) > 0 {
			name += fmt.Sprintf(" (+%d cuts)", len(res.Spans.Cuts))
		}
		report(name, res.Ztoc, res.Spans.Size, blob.n, time.Since(t0))
	}
	for _, c := range configs[2:4] {
		var blob countWriter
		t0 := time.Now()
		res, err := BuildLayerStream(context.Background(), &blob, bytes.NewReader(in), c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		report("stream "+c.name, res.Ztoc, res.Spans.Size, blob.n, time.Since(t0))
	}
}

// spanBytesRead returns the compressed bytes of the spans holding the tar
// header or data of each listed file (links followed).
func spanBytesRead(t *testing.T, z *ztoc.Ztoc, list []string) int64 {
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	hdrs := z.TarHeaderOffsets()
	pos := make(map[*ztoc.FileEntry]int, len(z.Files))
	for i := range z.Files {
		pos[&z.Files[i]] = i
	}
	seen := map[ztoc.SpanID]bool{}
	var n int64
	for _, p := range list {
		f := z.Lookup(p)
		if f == nil {
			continue
		}
		// Directories and empty files are served from the TOC alone.
		if f = followZtoc(z, f); f == nil || f.Type != ztoc.TypeReg || f.UncompressedSize == 0 {
			continue
		}
		first, _ := ix.SpansOf(hdrs[pos[f]], 1)
		_, last := ix.SpansOf(f.UncompressedOffset, f.UncompressedSize)
		for s := first; s <= last; s++ {
			if !seen[s] {
				seen[s] = true
				sp := ix.Spans()[s]
				n += sp.CompressedEnd - sp.CompressedStart
			}
		}
	}
	return n
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprint(n)
}
