package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"io"
	"math"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// TestPlannerBoundaries checks that Compress with a Planner ends spans only
// before an entry's headers or inside a large file, and exactly where
// simulate (the cost model) predicts.
func TestPlannerBoundaries(t *testing.T) {
	t.Parallel()
	n := 400
	if testing.Short() {
		n = 50
	}
	layers := map[string][]tarEntry{"sample": sampleEntries(), "many": manyEntries(t, n)}
	for lname, entries := range layers {
		in := makeTar(t, entries)
		l, err := Scan(bytes.NewReader(in), int64(len(in)))
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int64{64 << 10, 256 << 10, 1 << 20} {
			for _, withCuts := range []bool{false, true} {
				p := &Planner{Size: size}
				if withCuts {
					p.Cuts = []int64{l.Entries[3].HeaderOffset, l.Entries[len(l.Entries)/2].HeaderOffset}
				}
				t.Run(lname+"/"+itoa(int(size))+map[bool]string{true: "/cuts"}[withCuts], func(t *testing.T) {
					var blob bytes.Buffer
					z, err := ztoc.Compress(&blob, bytes.NewReader(in), ztoc.WithSpanPlanner(p), ztoc.WithSpanSize(size))
					if err != nil {
						t.Fatal(err)
					}
					ix, err := ztoc.NewIndex(z)
					if err != nil {
						t.Fatal(err)
					}
					var got []int64
					for _, s := range ix.Spans() {
						got = append(got, s.UncompressedStart)
					}
					if diff := cmp.Diff(simulate(l, p), got); diff != "" {
						t.Errorf("span starts: simulate (-) vs Compress (+):\n%s", diff)
					}
					for _, off := range got[1:] {
						ok := false
						for _, e := range l.Entries {
							if off == e.HeaderOffset || e.IsReg() && e.Size >= size && off > e.DataOffset && off < e.DataOffset+e.Size {
								ok = true
								break
							}
						}
						if !ok {
							t.Errorf("span starts at %d: neither an entry header nor inside a large file", off)
						}
					}
					for _, c := range p.Cuts {
						if _, ok := slices.BinarySearch(got, c); !ok {
							t.Errorf("no span starts at forced cut %d", c)
						}
					}
				})
			}
		}
	}
}

func TestChooseSpanSize(t *testing.T) {
	t.Parallel()
	in := makeTar(t, manyEntries(t, 2000))
	l, err := Scan(bytes.NewReader(in), int64(len(in)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		opts  []Option
		check func(t *testing.T, c SpanChoice)
	}{
		{"nothing read: largest span", []Option{WithStartupFiles([]string{})}, func(t *testing.T, c SpanChoice) {
			if c.Size != 8<<20 || c.FetchBytes != 0 || len(c.Cuts) != 0 {
				t.Errorf("got %v", c)
			}
		}},
		{"a few files: smaller spans or cuts", []Option{WithStartupFiles([]string{"d/f10", "d/f900", "d/f1500"})}, func(t *testing.T, c SpanChoice) {
			if c.Size == 8<<20 && len(c.Cuts) == 0 {
				t.Errorf("got %v", c)
			}
		}},
		{"unknown: model", nil, func(t *testing.T, c SpanChoice) {
			if c.StartupKnown || c.FetchBytes == 0 || c.Requests == 0 || c.RequestBytes != int64(math.Round(c.Requests*DefaultRequestBytes)) {
				t.Errorf("got %v (request bytes %d)", c, c.RequestBytes)
			}
		}},
		{"known: one request per span touched", []Option{WithStartupFiles([]string{"d/f10", "d/f900"}), WithRequestBytes(1000)}, func(t *testing.T, c SpanChoice) {
			if c.Requests < 1 || c.Requests != math.Trunc(c.Requests) || c.RequestBytes != int64(c.Requests)*1000 {
				t.Errorf("got %v (request bytes %d)", c, c.RequestBytes)
			}
		}},
		{"candidates", []Option{WithSpanCandidates(1 << 20)}, func(t *testing.T, c SpanChoice) {
			if c.Size != 1<<20 {
				t.Errorf("got %v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ChooseSpanSize(l, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
			// The choice is the cheapest candidate.
			o, _ := makeOptions(tt.opts)
			for _, size := range o.candidates {
				oo := *o
				oo.candidates = []int64{size}
				if alt := chooseSpanSize(l, &oo); alt.Cost() < c.Cost() {
					t.Errorf("size %d costs %d < chosen %v", size, alt.Cost(), c)
				}
			}
		})
	}
	if _, err := ChooseSpanSize(l, WithReadFraction(0)); err == nil {
		t.Error("read fraction 0: no error")
	}
	if _, err := ChooseSpanSize(l, WithRequestBytes(-1)); err == nil {
		t.Error("request bytes -1: no error")
	}
	// Requests cost: spans no smaller than when bytes alone count.
	for _, p := range []float64{0.01, 0.05, 0.3} {
		free, err := ChooseSpanSize(l, WithReadFraction(p), WithRequestBytes(0))
		if err != nil {
			t.Fatal(err)
		}
		paid, err := ChooseSpanSize(l, WithReadFraction(p))
		if err != nil {
			t.Fatal(err)
		}
		if paid.Size < free.Size || free.RequestBytes != 0 {
			t.Errorf("read fraction %v: %v with request cost, %v without", p, paid, free)
		}
	}
}

// TestHotRunCuts checks the cuts around runs of start-up files: each run
// is cut before and after, and runs closer than maxGap bytes are one run.
func TestHotRunCuts(t *testing.T) {
	var entries []tarEntry
	for i := 0; i < 12; i++ {
		entries = append(entries, tarEntry{name: "f" + itoa(i), size: 10 << 10})
	}
	in := makeTar(t, entries)
	l, err := Scan(bytes.NewReader(in), int64(len(in)))
	if err != nil {
		t.Fatal(err)
	}
	hot := make([]bool, len(l.Entries))
	for _, i := range []int{1, 2, 4, 9} { // runs 1-2, 4, 9: gaps of one and four files
		hot[i] = true
	}
	at := func(ix ...int) []int64 {
		var out []int64
		for _, i := range ix {
			out = append(out, l.Entries[i].HeaderOffset)
		}
		return out
	}
	file := l.Entries[1].End() - l.Entries[1].HeaderOffset // one file's bytes
	for _, tt := range []struct {
		maxGap int64
		want   []int64
	}{
		{0, at(1, 3, 4, 5, 9, 10)},
		{file, at(1, 3, 4, 5, 9, 10)}, // a gap of one file is not less than one file
		{file + 1, at(1, 5, 9, 10)},   // 1-4 joined
		{4*file + 1, at(1, 10)},       // all joined
		{1 << 30, at(1, 10)},          // all joined
	} {
		if got := hotRunCuts(l, hot, tt.maxGap); !slices.Equal(got, tt.want) {
			t.Errorf("max gap %d: cuts %v, want %v", tt.maxGap, got, tt.want)
		}
	}
}

func TestPrefetchSpans(t *testing.T) {
	in := makeTar(t, sampleEntries())
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(in), ztoc.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	spansOf := func(name string) soci.PrefetchSpan {
		f := z.Lookup(name)
		a, b := ix.SpansOf(f.UncompressedOffset, f.UncompressedSize)
		return soci.PrefetchSpan{StartSpan: a, EndSpan: b}
	}
	tests := []struct {
		name    string
		files   []string
		want    []soci.PrefetchSpan
		missing []string
	}{
		{"none", nil, nil, nil},
		{"one", []string{"bin/sh"}, []soci.PrefetchSpan{spansOf("bin/sh")}, nil},
		{"large file", []string{"usr/share/data"}, []soci.PrefetchSpan{spansOf("usr/share/data")}, nil},
		{"hard link is its target", []string{"bin/ln-to-sh"}, []soci.PrefetchSpan{spansOf("bin/sh")}, nil},
		{"symlink is its target", []string{"lib/link.so"}, []soci.PrefetchSpan{spansOf("lib/b.so")}, nil},
		{"directory and empty file add nothing", []string{"lib", "etc/.wh.old"}, nil, nil},
		{"merged", []string{"bin/big", "bin/sh"}, MergeSpans([]soci.PrefetchSpan{spansOf("bin/big"), spansOf("bin/sh")}), nil},
		{"missing", []string{"x", "bin/sh", "y"}, []soci.PrefetchSpan{spansOf("bin/sh")}, []string{"x", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, missing, err := PrefetchSpans(z, tt.files)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("spans (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.missing, missing); diff != "" {
				t.Errorf("missing (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeSpans(t *testing.T) {
	got := MergeSpans([]soci.PrefetchSpan{{StartSpan: 9, EndSpan: 9}, {StartSpan: 0, EndSpan: 2}, {StartSpan: 3, EndSpan: 4}, {StartSpan: 6, EndSpan: 7}, {StartSpan: 7, EndSpan: 7}})
	want := []soci.PrefetchSpan{{StartSpan: 0, EndSpan: 4}, {StartSpan: 6, EndSpan: 7}, {StartSpan: 9, EndSpan: 9}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}

func TestBuildLayer(t *testing.T) {
	t.Parallel()
	n := 260
	if testing.Short() {
		n = 50
	}
	in := makeTar(t, manyEntries(t, n))
	startup := []string{"d/f45", "d/f2", "d/f27", "d/nope"}
	tests := []struct {
		name string
		opts []Option
	}{
		{"auto", nil},
		{"fixed", []Option{WithSpanSize(1 << 20)}},
		{"startup", []Option{WithStartupFiles(startup)}},
		{"reorder", []Option{WithStartupFiles(startup), WithReorder(true)}},
		{"reorder level 1 one job", []Option{WithStartupFiles(startup), WithReorder(true), WithCompressionLevel(1), WithJobs(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			var blob bytes.Buffer
			res, err := BuildLayer(ctx, &blob, bytes.NewReader(in), int64(len(in)), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if res.Digest != digest.FromBytes(blob.Bytes()) || res.Size != int64(blob.Len()) || res.Ztoc.CompressedArchiveSize != res.Size {
				t.Errorf("blob digest/size %s %d, result %s %d", digest.FromBytes(blob.Bytes()), blob.Len(), res.Digest, res.Size)
			}
			// stdlib gzip reads it; the diffID is of what it holds.
			zr, err := gzip.NewReader(bytes.NewReader(blob.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			tarb, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if res.DiffID != digest.FromBytes(tarb) || len(tarb) != len(in) {
				t.Errorf("diffID %s, content %s", res.DiffID, digest.FromBytes(tarb))
			}
			checkTarValid(t, tarb)
			if len(res.Reordered) > 0 {
				entries, _ := rawEntries(t, tarb)
				if cleanName(entries[1].Name) != "d/f45" {
					t.Errorf("first file %s, want d/f45", entries[1].Name)
				}
				if !slices.Equal(res.Missing, []string{"d/nope"}) {
					t.Errorf("missing %v", res.Missing)
				}
			} else if !bytes.Equal(tarb, in) {
				t.Error("tar changed without reordering")
			}
			// Every file reads back through the zTOC.
			zb, err := ztoc.Unmarshal(res.ZtocBlob)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ztoc.NewReader(zb, bytes.NewReader(blob.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			all, err := r.ReadRange(0, zb.UncompressedArchiveSize)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(all, tarb[:len(all)]) {
				t.Fatal("the layer read through the zTOC differs")
			}
			for _, name := range []string{"d/f45", "d/f2"} {
				f := zb.Lookup(name)
				got, err := r.ReadFile(f)
				if err != nil || !bytes.Equal(got, tarb[f.UncompressedOffset:f.UncompressedOffset+f.UncompressedSize]) {
					t.Fatalf("%s differs (%v)", f.Name, err)
				}
			}
			if res.Spans.Spans != int(zb.MaxSpanID)+1 {
				t.Errorf("planned %d spans, zTOC has %d", res.Spans.Spans, zb.MaxSpanID+1)
			}
			if res.Spans.StartupKnown {
				want, _, _ := PrefetchSpans(zb, startup)
				if len(want) == 0 || !cmp.Equal(want, res.Prefetch) {
					t.Errorf("prefetch %v, want %v", res.Prefetch, want)
				}
			}
			// Deterministic, whatever the parallelism.
			var again bytes.Buffer
			res2, err := BuildLayer(ctx, &again, bytes.NewReader(in), int64(len(in)), append(slices.Clone(tt.opts), WithJobs(3))...)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(blob.Bytes(), again.Bytes()) || !bytes.Equal(res.ZtocBlob, res2.ZtocBlob) {
				t.Error("second build differs")
			}
		})
	}
}

func TestBuildLayerErrors(t *testing.T) {
	in := makeTar(t, sampleEntries())
	ctx := context.Background()
	if _, err := BuildLayer(ctx, io.Discard, bytes.NewReader(in), int64(len(in)), WithReorder(true)); err == nil {
		t.Error("reorder without start-up files: no error")
	}
	if _, err := BuildLayer(ctx, io.Discard, bytes.NewReader(in), int64(len(in)), WithSpanSize(100)); err == nil {
		t.Error("span size 100: no error")
	}
	if _, err := BuildLayer(ctx, io.Discard, bytes.NewReader(in[:700]), 700); err == nil {
		t.Error("truncated tar: no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := BuildLayer(cctx, io.Discard, bytes.NewReader(in), int64(len(in))); err == nil {
		t.Error("cancelled: no error")
	}
	_ = sha256.New
}

func TestBuildLayerStream(t *testing.T) {
	t.Parallel()
	n := 300
	if testing.Short() {
		n = 40
	}
	in := makeTar(t, manyEntries(t, n))
	startup := []string{"d/f30", "d/f31", "d/f3"}
	for _, tt := range []struct {
		name string
		opts []Option
	}{
		{"auto", nil},
		{"startup", []Option{WithStartupFiles(startup), WithSpanCandidates(64<<10, 256<<10, 1<<20)}},
		{"fixed", []Option{WithSpanSize(256 << 10)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var blob bytes.Buffer
			res, err := BuildLayerStream(context.Background(), &blob, bytes.NewReader(in), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(bytes.NewReader(blob.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			tarb, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(tarb, in) {
				t.Fatalf("gunzip: %v, equal %v", err, bytes.Equal(tarb, in))
			}
			if res.DiffID != digest.FromBytes(in) || res.Digest != digest.FromBytes(blob.Bytes()) || res.UncompressedSize != int64(len(in)) {
				t.Errorf("digests %+v", res)
			}
			r, err := ztoc.NewReader(res.Ztoc, bytes.NewReader(blob.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			all, err := r.ReadRange(0, res.Ztoc.UncompressedArchiveSize)
			if err != nil || !bytes.Equal(all, in[:len(all)]) {
				t.Fatalf("read through the zTOC: %v", err)
			}
			if res.Spans.Spans != int(res.Ztoc.MaxSpanID)+1 || res.Spans.Size == 0 {
				t.Errorf("spans %v", res.Spans)
			}
			var again bytes.Buffer
			if _, err := BuildLayerStream(context.Background(), &again, bytes.NewReader(in), append(slices.Clone(tt.opts), WithJobs(1))...); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), blob.Bytes()) {
				t.Error("second build differs")
			}
		})
	}
	if _, err := BuildLayerStream(context.Background(), io.Discard, bytes.NewReader(in), WithStartupFiles(startup), WithReorder(true)); err == nil {
		t.Error("reorder on a stream: no error")
	}
}
