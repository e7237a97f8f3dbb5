package exporter

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/socikit/socikit/ztoc"
)

// Planner is the ztoc.SpanPlanner of an auto-sized layer: ztoc.SizePlanner
// with span size Size (spans end at the first entry boundary past Size
// bytes; regular files of at least Size bytes start a span and are cut in
// Size-byte chunks), plus forced span starts at Cuts. Every span therefore
// begins at an entry's first header block or inside a regular file's data.
type Planner struct {
	Size int64
	// Cuts are offsets, sorted, at which a span must begin: entry header
	// offsets, or offsets inside a regular file's data (the edges of the
	// hot ranges of a file read in part). A file with cuts inside its data
	// is cut there, and each piece between them in Size-byte chunks from
	// the piece's start (a chunk end less than Size/4 before the next cut
	// is dropped, so no piece is tiny).
	Cuts []int64
}

var _ ztoc.SpanPlanner = (*Planner)(nil)

// Plan implements ztoc.SpanPlanner.
func (p *Planner) Plan(spanStart, hdrStart int64, e *ztoc.FileEntry) []int64 {
	_, forced := slices.BinarySearch(p.Cuts, hdrStart)
	var data []int64
	if e.Type == ztoc.TypeReg && e.UncompressedSize > 0 && len(p.Cuts) > 0 {
		lo, _ := slices.BinarySearch(p.Cuts, e.UncompressedOffset+1)
		hi, _ := slices.BinarySearch(p.Cuts, e.UncompressedOffset+e.UncompressedSize)
		data = p.Cuts[lo:hi]
	}
	return planEntry(p.Size, spanStart, hdrStart, e, forced, data)
}

// planEntry returns the span ends for entry e under span size size: those
// of ztoc.SizePlanner, plus one at its header if forceHeader, and with
// dataCuts (sorted offsets inside its data) the data cut at each and each
// piece between them chunked from its own start.
func planEntry(size, spanStart, hdrStart int64, e *ztoc.FileEntry, forceHeader bool, dataCuts []int64) []int64 {
	if len(dataCuts) == 0 {
		cuts := ztoc.SizePlanner{Size: size}.Plan(spanStart, hdrStart, e)
		if forceHeader && hdrStart > spanStart && (len(cuts) == 0 || cuts[0] != hdrStart) {
			cuts = append([]int64{hdrStart}, cuts...)
		}
		return cuts
	}
	var cuts []int64
	large := e.UncompressedSize >= size
	if hdrStart > spanStart && (forceHeader || large || hdrStart-spanStart >= size) {
		cuts = append(cuts, hdrStart)
	}
	a, end := e.UncompressedOffset, e.UncompressedOffset+e.UncompressedSize
	for k := 0; k <= len(dataCuts); k++ {
		b, last := end, k == len(dataCuts)
		if !last {
			b = dataCuts[k]
		}
		for c := a + size; c < b; c += size {
			if !last && b-c < size/4 {
				break
			}
			cuts = append(cuts, c)
		}
		if !last {
			cuts = append(cuts, b)
		}
		a = b
	}
	return cuts
}

// Cost-model constants. The zTOC is fetched whole before a layer is
// mounted (upstream's snapshotter does), so every span costs its
// checkpoint on the critical path; every span a start-up touches costs
// its compressed bytes and one HTTP range request.
const (
	// ztocBytesPerSpan is one checkpoint (8+8+1 bytes + a raw 32 KiB
	// window) plus the span's digest string in the flatbuffer (4-byte
	// length, 71 characters, NUL, padding, offset).
	ztocBytesPerSpan = 17 + ztoc.WindowSize + 80
	// ztocBytesPerFile is the mean size of a TOC entry measured on real
	// layers (name, strings, mode, times): upstream reports ~185-190.
	ztocBytesPerFile = 190
	// DefaultCompressionRatio is the compressed/uncompressed ratio assumed
	// for span bytes when choosing a span size, before the layer is
	// compressed: gzip -6 on binaries, libraries and text gives 0.3-0.5.
	DefaultCompressionRatio = 0.4
	// DefaultRequestBytes is what one HTTP range request costs, in bytes
	// of transfer: the snapshotter fetches the spans a start-up touches
	// on demand, about one request per span, and a registry round trip
	// (~20 ms) moves 500 KB at 200 Mbit/s (25 MB/s). Without this term
	// the model chose 512 KiB spans on large layers read by real
	// start-ups: 3-4 times the requests of 4 MiB spans, costing more time
	// than the bytes they saved (WithRequestBytes; 0 counts bytes only).
	DefaultRequestBytes = 500_000
	// DefaultReadFraction and DefaultReadFiles are the start-up assumed
	// when no start-up list is known: each non-empty regular file is read
	// with probability p = min(1, max(DefaultReadFraction,
	// DefaultReadFiles / files)), independently (WithReadFraction sets
	// p). Real start-ups read 0.1-16 % of a layer's files (7 of 5,214
	// for node from Debian's base layer, 2,194 of 15,022 for `go build`
	// from the Go toolchain) but clustered: whole directories (zoneinfo,
	// a package's modules) and a few large libraries, so they touch far
	// fewer spans than as many files scattered at random would. p is
	// therefore an effective share, not the real one: on the ten layers
	// and start-ups of TestCalibrateSpanSize (python, node, JVM and C
	// toolchain images, the Go toolchain), 2-3 % picks a span size within
	// 12 % of the best candidate's cost on every layer, 1.75 % or 3.5 %
	// one 1.7 times as costly on some layer; 2.5 % is the middle of that
	// range. The floor of 8 files (start-ups read as few as 2 files from
	// a layer, `go env`, or 7, node from the base layer) matters for
	// small layers and for StreamPlanner, which applies the model to
	// growing prefixes: with a floor of 32, their first thousand files
	// looked heavily read and got 8 MiB spans.
	DefaultReadFraction = 0.025
	DefaultReadFiles    = 8
)

// DefaultSpanCandidates are the span sizes auto sizing chooses from:
// 512 KiB to 8 MiB. Below 512 KiB the 32 KiB window per span is over 6 %
// of the span; above 8 MiB a single small read fetches megabytes.
var DefaultSpanCandidates = []int64{512 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20}

// SpanChoice is the span plan chosen for a layer and its estimated cost.
type SpanChoice struct {
	// Size is the span size; Cuts the extra span starts isolating the
	// start-up files (header offsets) and the hot ranges of files read in
	// part (offsets inside their data).
	Size int64
	Cuts []int64
	// Spans is the number of spans the plan makes.
	Spans int
	// ZtocBytes estimates the zTOC size, FetchBytes the compressed span
	// bytes a start-up fetches (exact span choice, estimated compression
	// ratio), Requests the number of spans it touches, each one HTTP
	// request, and RequestBytes their cost in bytes (Requests × the
	// request cost, WithRequestBytes). Without a start-up list, FetchBytes
	// and Requests are expectations under the read-fraction model.
	// Cost = ZtocBytes + FetchBytes + RequestBytes was minimised.
	ZtocBytes, FetchBytes int64
	Requests              float64
	RequestBytes          int64
	// StartupKnown tells whether a start-up file list or profile was used.
	StartupKnown bool
}

// Cost is the estimated cost of a lazy start from the layer: the bytes it
// fetches plus its requests counted as bytes.
func (c SpanChoice) Cost() int64 { return c.ZtocBytes + c.FetchBytes + c.RequestBytes }

// Planner returns the ztoc.SpanPlanner applying c.
func (c SpanChoice) Planner() *Planner { return &Planner{Size: c.Size, Cuts: c.Cuts} }

// String summarises the choice for logs.
func (c SpanChoice) String() string {
	return fmt.Sprintf("span size %d (+%d cuts): %d spans, zTOC ~%d B, start-up fetch ~%d B in ~%.0f requests", c.Size, len(c.Cuts), c.Spans, c.ZtocBytes, c.FetchBytes, c.Requests)
}

// ChooseSpanSize chooses the span plan of a layer from its headers: among
// the candidate sizes (WithSpanCandidates), each with and without extra
// cuts around the runs of start-up files, the one with the least
// estimated start-up cost:
//
//	cost = zTOC bytes (32,865 per span + 190 per entry)
//	     + ratio × uncompressed bytes of the spans a start-up touches
//	     + request cost (500,000) × number of spans it touches
//
// With a start-up list (WithStartupFiles, even an empty one) or profile
// (WithProfile), the spans touched are exactly those holding hot bytes:
// the header and data of a listed file, the header and hot ranges of a
// profiled file, only the hot ranges of a file read in part
// (PartialMinSize); hard links and symlinks inside the layer are
// followed. The extra cuts start and end each run of hot files, runs
// closer than the bytes one request is worth (request cost / ratio) being
// kept as one, and isolate the hot clusters inside files read in part
// (HotGranule). Without a list, each regular file is assumed read with
// probability WithReadFraction (default max(DefaultReadFraction,
// DefaultReadFiles / the number of non-empty regular files)) and the
// expected span bytes and spans touched are counted. Ties go to the
// larger span, then to no extra cuts. Only the WithStartupFiles,
// WithProfile, WithSpanCandidates, WithReadFraction, WithRequestBytes and
// WithCompressionRatio options are used.
func ChooseSpanSize(l *Layer, opts ...Option) (SpanChoice, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return SpanChoice{}, err
	}
	return chooseSpanSize(l, o), nil
}

func chooseSpanSize(l *Layer, o *options) SpanChoice {
	var h *hotLayer
	if o.files != nil {
		h = resolveHot(l, o.files, o)
	}
	return chooseWith(l, h, o)
}

// chooseWith is chooseSpanSize with the start-up applied to l (nil:
// unknown).
func chooseWith(l *Layer, h *hotLayer, o *options) SpanChoice {
	known := h != nil
	var runCuts []int64
	var hot []interval
	if known {
		hot = h.intervals(l)
		runCuts = hotCuts(l, h, runGap(o))
	}
	fixed := int64(len(l.Entries)) * ztocBytesPerFile
	p := o.readFraction
	if p == 0 {
		files := 0
		for i := range l.Entries {
			if l.Entries[i].IsReg() && l.Entries[i].Size > 0 {
				files++
			}
		}
		p = min(1, max(o.priorFraction, o.priorFiles/float64(max(files, 1))))
	}
	best := SpanChoice{Size: -1}
	cands := slices.Clone(o.candidates)
	slices.Sort(cands)
	slices.Reverse(cands) // larger first: ties keep the larger span
	for _, size := range cands {
		variants := [][]int64{nil}
		if len(runCuts) > 0 {
			variants = append(variants, runCuts)
		}
		for _, cuts := range variants {
			starts := simulate(l, &Planner{Size: size, Cuts: cuts})
			c := SpanChoice{Size: size, Cuts: cuts, Spans: len(starts), StartupKnown: known,
				ZtocBytes: fixed + int64(len(starts))*ztocBytesPerSpan}
			var fetch float64
			if known {
				var n int
				fetch, n = touched(l, starts, hot)
				c.Requests = float64(n)
			} else {
				fetch, c.Requests = expected(l, starts, p)
			}
			c.FetchBytes = int64(math.Round(fetch * o.ratio))
			c.RequestBytes = int64(math.Round(c.Requests * float64(o.requestBytes)))
			if best.Size < 0 || c.Cost() < best.Cost() {
				best = c
			}
		}
	}
	return best
}

// simulate returns the span starts ztoc.Compress makes with planner p: it
// calls p exactly as Compress does.
func simulate(l *Layer, p ztoc.SpanPlanner) []int64 {
	starts := []int64{0}
	var spanStart, prevEnd int64
	var fe ztoc.FileEntry
	for i := range l.Entries {
		e := &l.Entries[i]
		fe = ztoc.FileEntry{Name: e.Name, Type: ztoc.TypeDir, UncompressedOffset: e.DataOffset}
		if e.IsReg() {
			fe.Type, fe.UncompressedSize = ztoc.TypeReg, e.Size
		}
		hdrStart := align512(prevEnd)
		for _, off := range p.Plan(spanStart, hdrStart, &fe) {
			starts = append(starts, off)
			spanStart = off
		}
		prevEnd = fe.UncompressedOffset + fe.UncompressedSize
	}
	return starts
}

// spanOf returns the span holding offset off.
func spanOf(starts []int64, off int64) int {
	return sort.Search(len(starts), func(i int) bool { return starts[i] > off }) - 1
}

// spanLen is the uncompressed length of span i.
func spanLen(l *Layer, starts []int64, i int) int64 {
	if i+1 < len(starts) {
		return starts[i+1] - starts[i]
	}
	return l.Size - starts[i]
}

// touched returns the uncompressed bytes and the number of the spans
// holding hot bytes (intervals sorted by start).
func touched(l *Layer, starts []int64, hot []interval) (float64, int) {
	var n int64
	count, last := 0, -1
	for _, iv := range hot {
		if iv.end <= iv.start {
			continue
		}
		first, end := spanOf(starts, iv.start), spanOf(starts, iv.end-1)
		for s := max(first, last+1); s <= end; s++ {
			n += spanLen(l, starts, s)
			count++
		}
		last = max(last, end)
	}
	return float64(n), count
}

// expected returns the expected uncompressed bytes and number of the
// spans touched when each non-empty regular file is read with probability
// p.
func expected(l *Layer, starts []int64, p float64) (bytes, spans float64) {
	miss := make([]float64, len(starts)) // probability that no file of span i is read
	for i := range miss {
		miss[i] = 1
	}
	for i := range l.Entries {
		e := &l.Entries[i]
		if !e.IsReg() || e.Size == 0 {
			continue
		}
		first, last := spanOf(starts, e.HeaderOffset), spanOf(starts, e.DataOffset+e.Size-1)
		for s := first; s <= last; s++ {
			miss[s] *= 1 - p
		}
	}
	for i := range starts {
		bytes += (1 - miss[i]) * float64(spanLen(l, starts, i))
		spans += 1 - miss[i]
	}
	return bytes, spans
}
