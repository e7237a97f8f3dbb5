package spanmap

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

type entry struct {
	name, link string
	typ        byte
	size       int
}

// makeLayer tars entries (random, incompressible content) and indexes the
// tar with ztoc.Compress at 64 KiB spans.
func makeLayer(t *testing.T, seed uint64, entries []entry, prefetch []soci.PrefetchSpan) Layer {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}
		if e.typ == tar.TypeReg {
			h.Size = int64(e.size)
		}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			b := make([]byte, e.size)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if _, err := tw.Write(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, &tb, ztoc.WithSpanSize(64<<10), ztoc.WithJobs(1))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	zb, err := ztoc.Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	return Layer{Digest: digest.FromBytes(blob.Bytes()), Size: int64(blob.Len()), Index: ix, ZtocSize: int64(len(zb)), Prefetch: prefetch}
}

// testImage: two indexed layers and one without zTOC between them.
func testImage(t *testing.T) []Layer {
	t.Helper()
	l1 := makeLayer(t, 1, []entry{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/app", typ: tar.TypeReg, size: 300 << 10},
		{name: "bin/app2", typ: tar.TypeLink, link: "bin/app"},
		{name: "lib/", typ: tar.TypeDir},
		{name: "lib/libc.so", typ: tar.TypeReg, size: 100 << 10},
		{name: "lib64", typ: tar.TypeSymlink, link: "lib"},
		{name: "usr/bin/app", typ: tar.TypeSymlink, link: "../../bin/app"},
		{name: "etc/conf", typ: tar.TypeReg, size: 1000},
		{name: "opt/old", typ: tar.TypeReg, size: 2000},
		{name: "filler", typ: tar.TypeReg, size: 200 << 10},
	}, []soci.PrefetchSpan{{StartSpan: 0, EndSpan: 1}, {StartSpan: 6, EndSpan: 7}})
	l3 := makeLayer(t, 3, []entry{
		{name: "etc/.wh.conf", typ: tar.TypeReg},
		{name: "opt/.wh..wh..opq", typ: tar.TypeReg},
		{name: "opt/new", typ: tar.TypeReg, size: 5000},
		{name: "data/big", typ: tar.TypeReg, size: 400 << 10},
	}, nil)
	return []Layer{l1, {Digest: digest.FromString("small"), Size: 4096}, l3}
}

func testProfile() *profile.Profile {
	r := func(off, n int64) profile.Range { return profile.Range{Offset: off, Length: n} }
	return &profile.Profile{Version: profile.Version, Files: []profile.File{
		{Path: "/bin/app", Ranges: []profile.Range{r(0, 4096)}},
		{Path: "/lib64/libc.so", Ranges: []profile.Range{r(0, 100<<10)}},           // through a directory symlink
		{Path: "/usr/bin/app", Ranges: []profile.Range{r(200<<10, 10<<10)}},        // a relative symlink
		{Path: "/bin/app2", Ranges: []profile.Range{r(0, 10), r(1<<20, 5)}},        // a hard link; past the end
		{Path: "/etc/conf", Ranges: []profile.Range{r(0, 100)}},                    // whited out
		{Path: "/opt/old", Ranges: []profile.Range{r(0, 100)}},                     // under an opaque dir
		{Path: "/opt/new", Ranges: []profile.Range{r(0, 5000)}},                    // upper layer
		{Path: "/nope", Ranges: []profile.Range{r(0, 1)}},                          // absent
		{Path: "/data/big", Ranges: []profile.Range{r(300<<10, 1), r(300<<10, 1)}}, // one byte, twice
	}}
}

// wantSpans computes the touched spans of layer l from file name and
// ranges with the zTOC's own lookup.
func wantSpans(t *testing.T, l Layer, reads map[string][]profile.Range) (map[int32]bool, int64) {
	t.Helper()
	z := l.Index.Ztoc()
	spans := map[int32]bool{}
	var hot int64
	for name, rs := range reads {
		e := z.Lookup(name)
		if e == nil || e.Type != ztoc.TypeReg {
			t.Fatalf("no file %s", name)
		}
		for _, r := range profile.MergeRanges(rs) {
			first, last := l.Index.SpansOf(e.UncompressedOffset+r.Offset, r.Length)
			for id := first; id <= last; id++ {
				spans[id] = true
			}
			hot += r.Length
		}
	}
	return spans, hot
}

func touched(lr LayerResult) map[int32]bool {
	m := map[int32]bool{}
	for _, s := range lr.Touched {
		for id := s.StartSpan; id <= s.EndSpan; id++ {
			m[id] = true
		}
	}
	return m
}

func TestMap(t *testing.T) {
	layers := testImage(t)
	res := Map(testProfile(), layers)

	r := func(off, n int64) profile.Range { return profile.Range{Offset: off, Length: n} }
	want1, hot1 := wantSpans(t, layers[0], map[string][]profile.Range{
		"bin/app":     {r(0, 4096), r(200<<10, 10<<10), r(0, 10)},
		"lib/libc.so": {r(0, 100<<10)},
	})
	want3, hot3 := wantSpans(t, layers[2], map[string][]profile.Range{
		"opt/new":  {r(0, 5000)},
		"data/big": {r(300<<10, 1)},
	})
	for i, w := range []struct {
		spans map[int32]bool
		hot   int64
		files int
	}{{want1, hot1, 4}, {nil, 0, 0}, {want3, hot3, 2}} {
		lr := res.Layers[i]
		if got := touched(lr); len(got) != len(w.spans) || !mapsEqual(got, w.spans) {
			t.Errorf("layer %d: touched %v, want %v", i, lr.Touched, w.spans)
		}
		if lr.HotBytes != w.hot || lr.FilesFound != w.files || lr.SpansTouched != len(w.spans) {
			t.Errorf("layer %d: hot %d files %d spans %d, want %d %d %d", i, lr.HotBytes, lr.FilesFound, lr.SpansTouched, w.hot, w.files, len(w.spans))
		}
		var sum int64
		for _, h := range res.HotBytesOf(i) {
			sum += h
		}
		if sum != w.hot {
			t.Errorf("layer %d: span hot bytes sum to %d, want %d", i, sum, w.hot)
		}
		var fetch int64
		if lr.Indexed {
			for id, s := range layers[i].Index.Spans() {
				if w.spans[int32(id)] {
					fetch += s.CompressedEnd - s.CompressedStart
				}
			}
		}
		if lr.FetchBytes != fetch {
			t.Errorf("layer %d: fetch %d, want %d", i, lr.FetchBytes, fetch)
		}
	}
	if res.Layers[1].Indexed || res.Totals.WholeBytes != 4096 {
		t.Errorf("layer without zTOC: %+v, whole %d", res.Layers[1], res.Totals.WholeBytes)
	}
	if res.NotFound != 3 || !slices.Equal(res.NotFoundPaths, []string{"/etc/conf", "/opt/old", "/nope"}) {
		t.Errorf("not found: %d %v", res.NotFound, res.NotFoundPaths)
	}
	if res.ProfileFiles != 9 || res.Totals.FilesFound != 6 {
		t.Errorf("profile files %d, found %d", res.ProfileFiles, res.Totals.FilesFound)
	}
	// Prefetch: spans 0, 1, 6, 7 of layer 1; span 0 holds only headers
	// (a big file starts a span), span 1 bin/app's start.
	l1 := res.Layers[0]
	if app := layers[0].Index.SpanAt(layers[0].Index.Ztoc().Lookup("bin/app").UncompressedOffset); app != 1 {
		t.Fatalf("bin/app starts in span %d", app)
	}
	if l1.PrefetchSpans != 4 || l1.kind(0) != kindPrefetch || l1.kind(1) != kindHotPrefetch || l1.kind(2) != kindOther {
		t.Errorf("prefetch spans %d, kinds of spans 0-2: %d %d %d", l1.PrefetchSpans, l1.kind(0), l1.kind(1), l1.kind(2))
	}
	var onDemand int64
	for id, s := range layers[0].Index.Spans() {
		if want1[int32(id)] && id != 0 && id != 1 && id != 6 && id != 7 {
			onDemand += s.CompressedEnd - s.CompressedStart
		}
	}
	if l1.OnDemandBytes != onDemand {
		t.Errorf("on demand %d, want %d", l1.OnDemandBytes, onDemand)
	}
	tot := res.Totals
	if tot.ZtocBytes != layers[0].ZtocSize+layers[2].ZtocSize || tot.FetchBytes != res.Layers[0].FetchBytes+res.Layers[2].FetchBytes ||
		tot.ZtocPercent <= 0 || tot.ZtocPercent >= 100 {
		t.Errorf("totals %+v", tot)
	}
}

func mapsEqual(a, b map[int32]bool) bool {
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return len(a) == len(b)
}

// A span-wise check on a file cut into many spans: every span its range
// crosses is touched, the bytes split between them.
func TestMapSplitsRanges(t *testing.T) {
	l := makeLayer(t, 9, []entry{{name: "big", typ: tar.TypeReg, size: 1 << 20}}, nil)
	p := &profile.Profile{Version: profile.Version, Files: []profile.File{{Path: "/big", Ranges: []profile.Range{{Offset: 100 << 10, Length: 300 << 10}}}}}
	res := Map(p, []Layer{l})
	e := l.Index.Ztoc().Lookup("big")
	start, end := e.UncompressedOffset+100<<10, e.UncompressedOffset+400<<10
	for id, s := range l.Index.Spans() {
		want := max(0, min(end, s.UncompressedEnd)-max(start, s.UncompressedStart))
		if got := res.HotBytesOf(0)[id]; got != want {
			t.Errorf("span %d: hot %d, want %d", id, got, want)
		}
	}
	if res.Layers[0].SpansTouched < 5 {
		t.Errorf("spans touched %d, want the 300 KiB over 64 KiB spans", res.Layers[0].SpansTouched)
	}
}

// countCells parses an SVG and counts its rect elements by class.
func countCells(t *testing.T, b []byte) map[string]int {
	t.Helper()
	n := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local != "rect" {
				continue
			}
			for _, a := range se.Attr {
				if a.Name.Local == "class" {
					n[a.Value]++
				}
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q", root)
	}
	return n
}

func TestSVG(t *testing.T) {
	layers := testImage(t)
	meta := Meta{Image: "oci-layout:/tmp/x <&>", IndexDigest: digest.FromString("index"), IndexVersion: "v2", Platform: "linux/amd64"}
	for _, p := range []*profile.Profile{testProfile(), nil} {
		res := Map(p, layers)
		var a, b bytes.Buffer
		if err := SVG(&a, res, meta); err != nil {
			t.Fatal(err)
		}
		if err := SVG(&b, Map(p, layers), meta); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Error("the same input drew different SVGs")
		}
		cells := countCells(t, a.Bytes())
		spans, hot, pf := 0, 0, 0
		for i, l := range res.Layers {
			spans += l.Spans
			if l.Indexed {
				for id := range l.Spans {
					switch res.Layers[i].kind(id) {
					case kindHot, kindHotPrefetch:
						hot++
					case kindPrefetch:
						pf++
					}
				}
			}
		}
		total := 0
		for c, k := range cells {
			if strings.HasPrefix(c, "span ") {
				total += k
			}
		}
		if total != spans || cells["span hot"]+cells["span hot prefetch"] != hot || cells["span prefetch"] != pf || cells["whole"] != 1 {
			t.Errorf("profile %v: cells %v, want %d spans (%d hot, %d prefetch only) and one whole layer", p != nil, cells, spans, hot, pf)
		}
		if p != nil && cells["read"] != hot {
			t.Errorf("%d read bars, want %d", cells["read"], hot)
		}
		if p == nil && hot != 0 {
			t.Errorf("hot spans without a profile")
		}
		if !bytes.Contains(a.Bytes(), []byte(short(layers[0].Digest))) || !bytes.Contains(a.Bytes(), []byte("&lt;&amp;&gt;")) {
			t.Error("SVG lacks the layer digest or the escaped image name")
		}
	}
}

func TestWriteAndJSON(t *testing.T) {
	res := Map(testProfile(), testImage(t))
	var b bytes.Buffer
	if err := Write(&b, res, Meta{IndexDigest: digest.FromString("index")}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"LAYER", "TOTAL", short(res.Layers[0].Digest), "(no zTOC)", "zTOCs:", "3 in no indexed layer"} {
		if !strings.Contains(out, s) {
			t.Errorf("summary lacks %q:\n%s", s, out)
		}
	}
	j, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(j, &back); err != nil || back.Totals != res.Totals || len(back.Layers) != 3 || back.Layers[0].Touched == nil {
		t.Errorf("JSON round trip: %v %+v", err, back.Totals)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1<<20 - 1: "1.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
