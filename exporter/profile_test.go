package exporter

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// bigLayer is a layer with a big file read in two places and small files,
// some read at start-up: cold, hot, big, cold, hot (through a symlink
// before it), cold.
func bigLayer(t testing.TB, big int) []byte {
	t.Helper()
	var entries []tarEntry
	entries = append(entries, tarEntry{name: "usr/", typ: tar.TypeDir}, tarEntry{name: "usr/lib/", typ: tar.TypeDir},
		tarEntry{name: "usr/bin/", typ: tar.TypeDir})
	for i := range 8 {
		entries = append(entries, tarEntry{name: "usr/lib/cold" + itoa(i) + ".so", size: 150 << 10})
	}
	entries = append(entries,
		tarEntry{name: "usr/bin/app", size: 300 << 10},
		tarEntry{name: "usr/lib/modules", size: big})
	for i := range 8 {
		entries = append(entries, tarEntry{name: "usr/lib/z" + itoa(i) + ".dat", size: 200 << 10})
	}
	entries = append(entries, tarEntry{name: "usr/lib/libhot-link.so", typ: tar.TypeSymlink, link: "libhot.so"},
		tarEntry{name: "usr/lib/libhot.so", size: 700 << 10}, tarEntry{name: "usr/lib/conf", size: 3000})
	for i := range 4 {
		entries = append(entries, tarEntry{name: "usr/share/doc" + itoa(i), size: 180 << 10})
	}
	return makeTar(t, entries)
}

// bigProfile reads 1 MiB of usr/lib/modules at two places (plus its
// first 8 KiB), the small hot files whole or nearly, and paths the layer
// does not hold.
func bigProfile(big int64) *profile.Profile {
	return &profile.Profile{Version: profile.Version, Files: []profile.File{
		{Path: "/usr/bin/app", Ranges: []profile.Range{{Offset: 0, Length: 300 << 10}}},
		{Path: "/proc/self/maps", Ranges: []profile.Range{{Offset: 0, Length: 4096}}},
		{Path: "/usr/lib/modules", Ranges: []profile.Range{{Offset: 0, Length: 8192}, {Offset: big / 4, Length: 1 << 20}, {Offset: big*3/4 + 12345, Length: 1 << 20}}},
		{Path: "/usr/lib/libhot-link.so", Ranges: []profile.Range{{Offset: 0, Length: 4096}, {Offset: 65536, Length: 500 << 10}}},
		{Path: "/usr/lib/conf", Ranges: []profile.Range{{Offset: 0, Length: 1 << 20}}}, // past EOF: cut to the file
		{Path: "/etc/nope", Ranges: []profile.Range{{Offset: 0, Length: 10}}},
	}}
}

// prefetchBytes returns the uncompressed and compressed bytes of spans.
func prefetchBytes(t *testing.T, z *ztoc.Ztoc, spans []soci.PrefetchSpan) (u, c int64) {
	t.Helper()
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		for id := s.StartSpan; id <= s.EndSpan; id++ {
			sp := ix.Spans()[id]
			u += sp.UncompressedEnd - sp.UncompressedStart
			c += sp.CompressedEnd - sp.CompressedStart
		}
	}
	return u, c
}

// covered reports whether every byte of [off, off+n) lies in spans.
func covered(ix *ztoc.Index, spans []soci.PrefetchSpan, off, n int64) bool {
	first, last := ix.SpansOf(off, n)
	for id := first; id <= last; id++ {
		if !slices.ContainsFunc(spans, func(s soci.PrefetchSpan) bool { return s.StartSpan <= id && id <= s.EndSpan }) {
			return false
		}
	}
	return true
}

// TestProfileBigFile checks byte-range profiles on a layer with a big file
// read at two places: the prefetch spans cover the hot ranges and hold
// less than twice the hot bytes (uncompressed), where a whole-file list
// prefetches all of the big file; reordering leaves the big file after
// the fully read ones; the output is deterministic; absent paths are
// reported.
func TestProfileBigFile(t *testing.T) {
	t.Parallel()
	big := 40 << 20
	if testing.Short() {
		big = 8 << 20
	}
	in := bigLayer(t, big)
	p := bigProfile(int64(big))
	hot := int64(8192 + 2<<20 + 300<<10 + (4096 + 500<<10) + 3000) // the hot bytes, cut to the files
	wantMissing := []string{"/proc/self/maps", "/etc/nope"}
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		stream bool
		opts   []Option
	}{
		{"auto", false, []Option{WithProfile(p)}},
		{"reorder", false, []Option{WithProfile(p), WithReorder(true)}},
		{"stream", true, []Option{WithProfile(p)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			build := func(opts ...Option) (*LayerResult, []byte) {
				t.Helper()
				opts = append(slices.Clone(opts), WithCompressionLevel(1))
				var blob bytes.Buffer
				var res *LayerResult
				var err error
				if tt.stream {
					res, err = BuildLayerStream(ctx, &blob, bytes.NewReader(in), opts...)
				} else {
					res, err = BuildLayer(ctx, &blob, bytes.NewReader(in), int64(len(in)), opts...)
				}
				if err != nil {
					t.Fatal(err)
				}
				return res, blob.Bytes()
			}
			res, blob := build(tt.opts...)
			// Deterministic, whatever the parallelism.
			res2, blob2 := build(append(slices.Clone(tt.opts), WithJobs(3))...)
			if res.Digest != res2.Digest || res.DiffID != res2.DiffID || !bytes.Equal(res.ZtocBlob, res2.ZtocBlob) || !bytes.Equal(blob, blob2) {
				t.Errorf("second build differs: %s %s, %s %s", res.Digest, res.DiffID, res2.Digest, res2.DiffID)
			}
			if diff := cmp.Diff(wantMissing, res.Missing); diff != "" {
				t.Errorf("missing (-want +got):\n%s", diff)
			}
			// The layer reads back whole through the zTOC.
			r, err := ztoc.NewReader(res.Ztoc, bytes.NewReader(blob))
			if err != nil {
				t.Fatal(err)
			}
			all, err := r.ReadRange(0, res.Ztoc.UncompressedArchiveSize)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Reordered) > 0 {
				entries, _ := rawEntries(t, all)
				var names []string
				for _, e := range entries {
					if e.IsReg() {
						names = append(names, e.Name)
					}
				}
				if want := []string{"usr/bin/app", "usr/lib/libhot.so", "usr/lib/conf", "usr/lib/modules"}; !slices.Equal(names[:4], want) {
					t.Errorf("first files %v, want %v (the big file read in part after the others)", names[:4], want)
				}
			} else if !bytes.Equal(all, in[:len(all)]) {
				t.Fatal("layer changed without reordering")
			}
			// Prefetch: the hot ranges, and not much more.
			ix, err := ztoc.NewIndex(res.Ztoc)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := PrefetchRanges(res.Ztoc, p)
			if err != nil || !cmp.Equal(want, res.Prefetch) {
				t.Errorf("LayerResult.Prefetch %v, PrefetchRanges %v (%v)", res.Prefetch, want, err)
			}
			for _, f := range p.Files {
				zf := res.Ztoc.Lookup(f.Path)
				if zf == nil {
					continue
				}
				if zf = followZtoc(res.Ztoc, zf); zf == nil {
					t.Fatalf("%s: no data", f.Path)
				}
				for _, rg := range clipRanges(f.Ranges, zf.UncompressedSize) {
					if !covered(ix, res.Prefetch, zf.UncompressedOffset+rg.Offset, rg.Length) {
						t.Errorf("%s: range %v not prefetched", f.Path, rg)
					}
				}
			}
			u, c := prefetchBytes(t, res.Ztoc, res.Prefetch)
			t.Logf("%s: %v, %d spans; prefetch %d spans, %d B uncompressed (%.2f × the %d hot bytes), %d B compressed",
				tt.name, res.Spans, res.Ztoc.MaxSpanID+1, len(res.Prefetch), u, float64(u)/float64(hot), hot, c)
			if u >= 2*hot {
				t.Errorf("prefetch %d B uncompressed, not under twice the %d hot bytes", u, hot)
			}
			// The whole-file list of the same paths prefetches the whole
			// big file.
			wres, _ := build(WithStartupFiles(p.Paths()), WithReorder(tt.name == "reorder"))
			wu, _ := prefetchBytes(t, wres.Ztoc, wres.Prefetch)
			t.Logf("%s, whole files: %v; prefetch %d B uncompressed", tt.name, wres.Spans, wu)
			if wu < int64(big) {
				t.Errorf("whole-file list prefetches %d B, less than the big file", wu)
			}
		})
	}
}

// TestPlannerDataCuts checks that Compress with a Planner whose cuts lie
// inside file data ends spans exactly where simulate predicts: at every
// cut, and in chunks of the span size between them, with no piece before
// a cut shorter than a quarter span.
func TestPlannerDataCuts(t *testing.T) {
	t.Parallel()
	in := bigLayer(t, 5<<20)
	l, err := Scan(bytes.NewReader(in), int64(len(in)))
	if err != nil {
		t.Fatal(err)
	}
	var m *Entry
	for i := range l.Entries {
		if l.Entries[i].Name == "usr/lib/modules" {
			m = &l.Entries[i]
		}
	}
	for _, size := range []int64{256 << 10, 1 << 20, 8 << 20} {
		p := &Planner{Size: size, Cuts: []int64{m.DataOffset + 1<<20, m.DataOffset + 1<<20 + 300<<10, m.DataOffset + 4<<20 + 77}}
		var blob bytes.Buffer
		z, err := ztoc.Compress(&blob, bytes.NewReader(in), ztoc.WithSpanPlanner(p), ztoc.WithSpanSize(size), ztoc.WithCompressionLevel(1))
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
			t.Errorf("size %d: span starts: simulate (-) vs Compress (+):\n%s", size, diff)
		}
		for _, c := range p.Cuts {
			k, ok := slices.BinarySearch(got, c)
			if !ok {
				t.Errorf("size %d: no span starts at cut %d", size, c)
			} else if got[k]-got[k-1] < min(size/4, 300<<10) {
				t.Errorf("size %d: span %d of %d bytes before cut %d", size, k-1, got[k]-got[k-1], c)
			}
		}
		r, err := ztoc.NewReader(z, bytes.NewReader(blob.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		all, err := r.ReadRange(0, z.UncompressedArchiveSize)
		if err != nil || !bytes.Equal(all, in[:len(all)]) {
			t.Fatalf("size %d: read through the zTOC: %v", size, err)
		}
	}
}

func TestClusterRanges(t *testing.T) {
	const G = HotGranule
	rg := func(o, n int64) profile.Range { return profile.Range{Offset: o, Length: n} }
	for _, tt := range []struct {
		name       string
		rs         []profile.Range
		size, gap  int64
		want       []profile.Range
		wantCutsIn int // clusters
	}{
		{"rounded out", []profile.Range{rg(10*G+5, 100)}, 100 * G, G, []profile.Range{rg(10*G, G)}, 1},
		{"across a granule", []profile.Range{rg(10*G-5, 10)}, 100 * G, G, []profile.Range{rg(9*G, 2*G)}, 1},
		{"near the start: from 0", []profile.Range{rg(3*G, 10)}, 100 * G, 5 * G, []profile.Range{rg(0, 4*G)}, 1},
		{"near the end: to the end", []profile.Range{rg(97*G, 10)}, 100*G + 7, 5 * G, []profile.Range{rg(97*G, 3*G+7)}, 1},
		{"close: joined", []profile.Range{rg(10*G, 10), rg(13*G, 10)}, 100 * G, 3 * G, []profile.Range{rg(10*G, 4*G)}, 1},
		{"apart: two", []profile.Range{rg(10*G, 10), rg(14*G, 10)}, 100 * G, 3 * G, []profile.Range{rg(10*G, G), rg(14*G, G)}, 2},
	} {
		got := clusterRanges(tt.rs, tt.size, tt.gap)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	// Clipping: past the end, overflowing lengths.
	got := clipRanges([]profile.Range{{Offset: 90, Length: 1 << 62}, {Offset: 200, Length: 5}, {Offset: 0, Length: 10}, {Offset: 5, Length: 10}}, 100)
	if diff := cmp.Diff([]profile.Range{rg(0, 15), rg(90, 10)}, got); diff != "" {
		t.Errorf("clip (-want +got):\n%s", diff)
	}
}

// TestHotCutsPartial checks the cuts around a file read in part: its hot
// clusters are cut out of its data, a cluster at its start joins the run
// of hot files before it, and runs closer than maxGap are joined.
func TestHotCutsPartial(t *testing.T) {
	in := makeTar(t, []tarEntry{{name: "a", size: 100 << 10}, {name: "hot", size: 100 << 10}, {name: "big", size: 20 << 20}, {name: "cold", size: 100 << 10}, {name: "hot2", size: 100 << 10}})
	l, err := Scan(bytes.NewReader(in), int64(len(in)))
	if err != nil {
		t.Fatal(err)
	}
	const G = HotGranule
	files := []startupFile{
		{path: "hot", whole: true},
		{path: "big", ranges: []profile.Range{{Offset: 100, Length: 10}, {Offset: 10 << 20, Length: 1 << 20}}},
		{path: "hot2", ranges: []profile.Range{{Offset: 0, Length: 4096}}},
	}
	h := resolveHot(l, files, nowOptions(t, WithRequestBytes(G), WithCompressionRatio(0.5))) // joins gaps under 2 G
	bf := h.files[2]
	if bf == nil || !bf.partial || !cmp.Equal(bf.clusters, []profile.Range{{Offset: 0, Length: G}, {Offset: 10 << 20, Length: 1 << 20}}) {
		t.Fatalf("big: %+v", bf)
	}
	if !slices.Equal(h.order, []string{"hot", "hot2", "big"}) {
		t.Errorf("order %v", h.order)
	}
	e := l.Entries
	want := []int64{e[1].HeaderOffset, e[2].DataOffset + G, e[2].DataOffset + 10<<20, e[2].DataOffset + 11<<20, e[4].HeaderOffset}
	if got := hotCuts(l, h, 2*G); !slices.Equal(got, want) {
		t.Errorf("cuts %v, want %v", got, want)
	}
	// With a huge maxGap every run joins: one start, no end.
	if got := hotCuts(l, h, 1<<40); !slices.Equal(got, []int64{e[1].HeaderOffset}) {
		t.Errorf("joined: cuts %v", got)
	}
	// Model: touched spans of a plan with the cuts hold the hot bytes only
	// (plus the small files), far less than the big file.
	o := nowOptions(t, WithProfile(&profile.Profile{Version: profile.Version, Files: []profile.File{
		{Path: "/hot", Ranges: []profile.Range{{Offset: 0, Length: 100 << 10}}},
		{Path: "/big", Ranges: files[1].ranges},
		{Path: "/hot2", Ranges: files[2].ranges},
	}}))
	c := chooseSpanSize(l, o)
	if float64(c.FetchBytes)/o.ratio > 4<<20 {
		t.Errorf("choice %v", c)
	}
}

func TestPrefetchRanges(t *testing.T) {
	in := makeTar(t, []tarEntry{
		{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		{name: "usr/", typ: tar.TypeDir},
		{name: "usr/lib/", typ: tar.TypeDir},
		{name: "usr/lib/big", size: 3 << 20},
		{name: "usr/lib/small", size: 10 << 10},
		{name: "usr/lib/hard", typ: tar.TypeLink, link: "usr/lib/small"},
		{name: "usr/lib/sym", typ: tar.TypeSymlink, link: "big"},
	})
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(in), ztoc.WithSpanSize(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	spansOf := func(name string, off, n int64) soci.PrefetchSpan {
		f := z.Lookup(name)
		a, b := ix.SpansOf(f.UncompressedOffset+off, n)
		return soci.PrefetchSpan{StartSpan: a, EndSpan: b}
	}
	prof := func(fs ...profile.File) *profile.Profile {
		return &profile.Profile{Version: profile.Version, Files: fs}
	}
	rg := func(o, n int64) []profile.Range { return []profile.Range{{Offset: o, Length: n}} }
	for _, tt := range []struct {
		name    string
		p       *profile.Profile
		want    []soci.PrefetchSpan
		missing []string
	}{
		{"nil", nil, nil, nil},
		{"range of a big file", prof(profile.File{Path: "/usr/lib/big", Ranges: rg(1<<20, 100)}), []soci.PrefetchSpan{spansOf("usr/lib/big", 1<<20, 100)}, nil},
		{"symlink", prof(profile.File{Path: "/usr/lib/sym", Ranges: rg(2<<20, 10)}), []soci.PrefetchSpan{spansOf("usr/lib/big", 2<<20, 10)}, nil},
		{"directory symlink", prof(profile.File{Path: "/lib/big", Ranges: rg(0, 10)}), []soci.PrefetchSpan{spansOf("usr/lib/big", 0, 10)}, nil},
		{"hard link", prof(profile.File{Path: "/usr/lib/hard", Ranges: rg(0, 1<<30)}), []soci.PrefetchSpan{spansOf("usr/lib/small", 0, 10<<10)}, nil},
		{"past the end", prof(profile.File{Path: "/usr/lib/small", Ranges: rg(20<<10, 10)}), nil, nil},
		{"missing", prof(profile.File{Path: "/x", Ranges: rg(0, 1)}, profile.File{Path: "/usr/lib/small", Ranges: rg(0, 1)}, profile.File{Path: "/y/z", Ranges: rg(0, 1)}),
			[]soci.PrefetchSpan{spansOf("usr/lib/small", 0, 1)}, []string{"/x", "/y/z"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, missing, err := PrefetchRanges(z, tt.p)
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
	// A profile of whole files gives PrefetchSpans.
	whole, _, _ := PrefetchSpans(z, []string{"usr/lib/big", "lib/small"})
	got, _, _ := PrefetchRanges(z, prof(profile.File{Path: "/usr/lib/big", Ranges: rg(0, 3<<20)}, profile.File{Path: "/lib/small", Ranges: rg(0, 10<<10)}))
	if !cmp.Equal(whole, got) {
		t.Errorf("whole files: PrefetchSpans %v, PrefetchRanges %v", whole, got)
	}
}

// TestImagePrefetchRanges checks that a profile path counts in the topmost
// layer holding it, that symlinks resolve through the image, that
// whiteouts and opaque directories hide lower files, and that paths no
// layer holds are reported.
func TestImagePrefetchRanges(t *testing.T) {
	mk := func(entries []tarEntry) *ztoc.Ztoc {
		z, err := ztoc.Compress(io.Discard, bytes.NewReader(makeTar(t, entries)), ztoc.WithSpanSize(64<<10))
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	base := mk([]tarEntry{
		{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		{name: "usr/lib/", typ: tar.TypeDir},
		{name: "usr/lib/libc.so", size: 300 << 10},
		{name: "usr/lib/old", size: 100 << 10},
		{name: "etc/conf", size: 1000},
		{name: "etc/gone", size: 1000},
		{name: "var/lib/x/y", size: 1000},
	})
	top := mk([]tarEntry{
		{name: "etc/.wh.gone"},                 // deletes base's etc/gone
		{name: "var/lib/x/.wh..wh..opq"},       // hides base's var/lib/x/*
		{name: "usr/lib/old", size: 200 << 10}, // replaces base's
		{name: "app/", typ: tar.TypeDir},
		{name: "app/libc", typ: tar.TypeSymlink, link: "/lib/libc.so"}, // into base, through its lib link
	})
	p := &profile.Profile{Version: profile.Version, Files: []profile.File{
		{Path: "/usr/lib/old", Ranges: []profile.Range{{Offset: 0, Length: 150 << 10}}},
		{Path: "/app/libc", Ranges: []profile.Range{{Offset: 100 << 10, Length: 10}}},
		{Path: "/etc/conf", Ranges: []profile.Range{{Offset: 0, Length: 10}}},
		{Path: "/tmp/gone", Ranges: []profile.Range{{Offset: 0, Length: 10}}},
		{Path: "/etc/gone", Ranges: []profile.Range{{Offset: 0, Length: 10}}},
		{Path: "/var/lib/x/y", Ranges: []profile.Range{{Offset: 0, Length: 10}}},
	}}
	spans, missing, err := ImagePrefetchRanges([]*ztoc.Ztoc{base, nil, top}, p)
	if err != nil {
		t.Fatal(err)
	}
	sp := func(z *ztoc.Ztoc, name string, off, n int64) soci.PrefetchSpan {
		ix, err := ztoc.NewIndex(z)
		if err != nil {
			t.Fatal(err)
		}
		f := z.Lookup(name)
		a, b := ix.SpansOf(f.UncompressedOffset+off, n)
		return soci.PrefetchSpan{StartSpan: a, EndSpan: b}
	}
	wantBase := MergeSpans([]soci.PrefetchSpan{sp(base, "usr/lib/libc.so", 100<<10, 10), sp(base, "etc/conf", 0, 10)})
	if diff := cmp.Diff(wantBase, spans[0]); diff != "" {
		t.Errorf("base (-want +got):\n%s", diff)
	}
	if spans[1] != nil {
		t.Errorf("layer without zTOC: %v", spans[1])
	}
	if diff := cmp.Diff([]soci.PrefetchSpan{sp(top, "usr/lib/old", 0, 150<<10)}, spans[2]); diff != "" {
		t.Errorf("top (-want +got):\n%s", diff)
	}
	if !slices.Equal(missing, []string{"/tmp/gone", "/etc/gone", "/var/lib/x/y"}) {
		t.Errorf("missing %v", missing)
	}
}

// TestWithProfileOptions checks the option's validation and how it
// combines with WithStartupFiles.
func TestWithProfileOptions(t *testing.T) {
	if _, err := makeOptions([]Option{WithProfile(&profile.Profile{Files: []profile.File{{Path: "rel", Ranges: []profile.Range{{Offset: 0, Length: 1}}}}})}); err == nil {
		t.Error("relative path: no error")
	}
	if _, err := makeOptions([]Option{WithProfile(&profile.Profile{Files: []profile.File{{Path: "/a", Ranges: []profile.Range{{Offset: -1, Length: 1}}}}})}); err == nil {
		t.Error("negative offset: no error")
	}
	o, err := makeOptions([]Option{WithProfile(&profile.Profile{Files: []profile.File{{Path: "/a", Ranges: []profile.Range{{Offset: 5, Length: 1}}}, {Path: "/b", Ranges: []profile.Range{{Offset: 0, Length: 1}}}}}),
		WithStartupFiles([]string{"c", "./a"})})
	if err != nil {
		t.Fatal(err)
	}
	want := []startupFile{{path: "/etc/passwd", whole: true, runtime: true}, {path: "/etc/group", whole: true, runtime: true},
		{path: "/a", whole: true}, {path: "/b", ranges: []profile.Range{{Offset: 0, Length: 1}}}, {path: "c", whole: true}}
	if diff := cmp.Diff(want, o.files, cmp.AllowUnexported(startupFile{})); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if o, _ := makeOptions(nil); o.files != nil {
		t.Error("no list, no profile: known")
	}
	if o, _ := makeOptions([]Option{WithProfile(&profile.Profile{})}); o.files == nil {
		t.Error("empty profile: unknown")
	}
}
