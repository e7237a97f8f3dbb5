package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// TestMeasureStartup measures, on a real layer, the bytes a lazy start
// fetches (the whole zTOC, then every span holding the header or data of a
// start-up file) for fixed and auto span sizes, with and without
// reordering. It runs only when SOCIKIT_MEASURE_TAR (a tar) and
// SOCIKIT_MEASURE_FILES (start-up paths, one a line) or
// SOCIKIT_MEASURE_PROFILE (a byte-range profile, package profile) are set;
// see docs/exporter.md for the commands and figures.
//
// With a profile, the start-up reads the profile's hot ranges only, the
// whole-file list is the profile's paths, and each configuration also
// reports its prefetch spans (LayerResult.Prefetch): "fetched" is then
// the zTOC plus the spans holding hot bytes or prefetched, the bytes a
// lazy start with prefetch fetches before it is ready, and "ranges" the
// number of runs of adjacent spans among those. Configurations
// with the whole-file list and with the profile are compared, as are
// the rules for files read in part (docs/exporter.md, "Byte-range
// profiles"). SOCIKIT_MEASURE_ONLY=SUBSTRING keeps the configurations
// whose name holds it.
func TestMeasureStartup(t *testing.T) {
	tarPath, listPath, profPath := os.Getenv("SOCIKIT_MEASURE_TAR"), os.Getenv("SOCIKIT_MEASURE_FILES"), os.Getenv("SOCIKIT_MEASURE_PROFILE")
	if tarPath == "" || listPath == "" && profPath == "" {
		t.Skip("set SOCIKIT_MEASURE_TAR and SOCIKIT_MEASURE_FILES or SOCIKIT_MEASURE_PROFILE")
	}
	in, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	var prof *profile.Profile
	if profPath != "" {
		f, err := os.Open(profPath)
		if err != nil {
			t.Fatal(err)
		}
		prof, err = profile.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		list = prof.Paths()
	}
	if listPath != "" {
		if list, err = readList(listPath); err != nil {
			t.Fatal(err)
		}
	}

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
	var hot []startupFile
	if prof != nil {
		hot = startupFiles(prof, nil)
		l, err := Scan(bytes.NewReader(in), int64(len(in)))
		if err != nil {
			t.Fatal(err)
		}
		h := resolveHot(l, hot, nowOptions(t))
		var hb, wb int64
		for _, i := range h.idx {
			hb += rangeBytes(h.files[i].ranges)
			wb += l.Entries[i].Size
			if f := h.files[i]; f.partial {
				t.Logf("read in part: %s, %d of %d bytes hot in %d ranges, %d clusters of %d bytes", l.Entries[i].Name, rangeBytes(f.ranges), l.Entries[i].Size, len(f.ranges), len(f.clusters), rangeBytes(f.clusters))
			}
		}
		t.Logf("profile %s: %d files, %d in the layer, %d hot bytes of %d (whole files)", profPath, len(prof.Files), len(h.idx), hb, wb)
		t.Logf("%-44s %5s %6s %10s %10s %10s %10s %10s %12s %6s %7s", "config", "span", "spans", "blob", "zTOC", "list read", "hot read", "prefetch", "fetched", "ranges", "time")
	} else {
		t.Logf("%-34s %8s %6s %10s %10s %12s %12s %7s", "config", "span", "spans", "blob", "zTOC", "spans read", "fetched", "time")
	}
	report := func(name string, z *ztoc.Ztoc, span int64, blob int64, d time.Duration, prefetch []soci.PrefetchSpan) {
		zb, err := ztoc.Marshal(z)
		if err != nil {
			t.Fatal(err)
		}
		read := spanBytesRead(t, z, list)
		if prof == nil {
			t.Logf("%-34s %8s %6d %10d %10d %12d %12d %7v", name, sizeString(span), z.MaxSpanID+1, blob, len(zb), read, int64(len(zb))+read, d.Round(time.Millisecond))
			return
		}
		ix, err := ztoc.NewIndex(z)
		if err != nil {
			t.Fatal(err)
		}
		hotSpans, _ := prefetchFiles(ix, hot)
		n := func(ss ...[]soci.PrefetchSpan) int64 {
			seen := map[ztoc.SpanID]bool{}
			var c int64
			for _, s := range ss {
				for _, r := range s {
					for id := r.StartSpan; id <= r.EndSpan; id++ {
						if !seen[id] {
							seen[id] = true
							c += ix.Spans()[id].CompressedEnd - ix.Spans()[id].CompressedStart
						}
					}
				}
			}
			return c
		}
		all := MergeSpans(append(slices.Clone(hotSpans), prefetch...))
		t.Logf("%-44s %5s %6d %10d %10d %10d %10d %10d %12d %6d %7v", name, sizeString(span), z.MaxSpanID+1, blob, len(zb), read, n(hotSpans), n(prefetch),
			int64(len(zb))+n(hotSpans, prefetch), len(all), d.Round(time.Millisecond))
	}
	report("upstream way: gzip, Build 4 MiB", upstream, 4<<20, int64(gz.Len()), gzTime, nil)
	type config struct {
		name string
		opts []Option
	}
	configs := []config{
		{"fixed 4 MiB", []Option{WithSpanSize(4 << 20)}},
		{"fixed 1 MiB", []Option{WithSpanSize(1 << 20)}},
		{"auto, no start-up list (model)", nil},
		{"auto, start-up list", []Option{WithStartupFiles(list)}},
		{"reorder + fixed 4 MiB", []Option{WithStartupFiles(list), WithReorder(true), WithSpanSize(4 << 20)}},
		{"reorder + fixed 1 MiB", []Option{WithStartupFiles(list), WithReorder(true), WithSpanSize(1 << 20)}},
		{"reorder + auto", []Option{WithStartupFiles(list), WithReorder(true)}},
	}
	stream := configs[2:4]
	if prof != nil {
		rule := func(r partialRule) Option { return func(o *options) error { o.partial = r; return nil } }
		pr := WithProfile(prof)
		configs = []config{
			{"fixed 4 MiB, list", []Option{WithStartupFiles(list), WithSpanSize(4 << 20)}},
			{"fixed 4 MiB, profile", []Option{pr, WithSpanSize(4 << 20)}},
			{"auto, no start-up list (model)", nil},
			{"auto, list", []Option{WithStartupFiles(list)}},
			{"auto, profile", []Option{pr}},
			{"auto, profile, no file read in part", []Option{pr, rule(partialRule{minSize: 1 << 62})}},
			{"reorder + auto, list", []Option{WithStartupFiles(list), WithReorder(true)}},
			{"reorder + auto, profile", []Option{pr, WithReorder(true)}},
			{"reorder + auto, profile, in place", []Option{pr, WithReorder(true), rule(partialRule{minSize: PartialMinSize, maxShare: 0.5, inPlace: true})}},
			{"reorder + auto, profile, no file in part", []Option{pr, WithReorder(true), rule(partialRule{minSize: 1 << 62})}},
			{"reorder + auto, profile, share <= 0.25", []Option{pr, WithReorder(true), rule(partialRule{minSize: PartialMinSize, maxShare: 0.25})}},
			{"reorder + auto, profile, share <= 0.75", []Option{pr, WithReorder(true), rule(partialRule{minSize: PartialMinSize, maxShare: 0.75})}},
			{"reorder + auto, profile, min 16 MiB", []Option{pr, WithReorder(true), rule(partialRule{minSize: 16 << 20, maxShare: 0.5})}},
			{"reorder + auto, profile, min 1 MiB", []Option{pr, WithReorder(true), rule(partialRule{minSize: 1 << 20, maxShare: 0.5})}},
			{"reorder + auto, profile, request 100 KB", []Option{pr, WithReorder(true), WithRequestBytes(100_000)}},
			{"reorder + auto, profile, request 200 KB", []Option{pr, WithReorder(true), WithRequestBytes(200_000)}},
			{"reorder + auto, profile, request 2 MB", []Option{pr, WithReorder(true), WithRequestBytes(2_000_000)}},
		}
		stream = []config{configs[3], configs[4]}
	}
	if only := os.Getenv("SOCIKIT_MEASURE_ONLY"); only != "" {
		keep := func(c config) bool { return !strings.Contains(c.name, only) }
		configs, stream = slices.DeleteFunc(configs, keep), slices.DeleteFunc(stream, keep)
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
		report(name, res.Ztoc, res.Spans.Size, blob.n, time.Since(t0), res.Prefetch)
	}
	for _, c := range stream {
		var blob countWriter
		t0 := time.Now()
		res, err := BuildLayerStream(context.Background(), &blob, bytes.NewReader(in), c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		report("stream "+c.name, res.Ztoc, res.Spans.Size, blob.n, time.Since(t0), res.Prefetch)
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
