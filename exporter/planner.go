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
// Size-byte chunks), plus forced span starts before the headers at Cuts.
// Every span therefore begins at an entry's first header block or inside
// a large file's data.
type Planner struct {
	Size int64
	// Cuts are header offsets, sorted, before which a span must begin.
	Cuts []int64
}

var _ ztoc.SpanPlanner = (*Planner)(nil)

// Plan implements ztoc.SpanPlanner.
func (p *Planner) Plan(spanStart, hdrStart int64, e *ztoc.FileEntry) []int64 {
	cuts := ztoc.SizePlanner{Size: p.Size}.Plan(spanStart, hdrStart, e)
	if hdrStart > spanStart && (len(cuts) == 0 || cuts[0] != hdrStart) {
		if _, forced := slices.BinarySearch(p.Cuts, hdrStart); forced {
			cuts = append([]int64{hdrStart}, cuts...)
		}
	}
	return cuts
}

// Cost-model constants. The zTOC is fetched whole before a layer is
// mounted (upstream's snapshotter does), so every span costs its
// checkpoint on the critical path.
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
	// DefaultReadFiles is how many of a layer's non-empty regular files a
	// start-up is assumed to read, each file equally likely, when no
	// start-up list is known: each is read with probability
	// min(1, DefaultReadFiles/files). Start-ups measured read from 2
	// (`go env`: the binary and go.env) to a few thousand files (`go
	// build`); 32 makes the model pick 1 MiB spans on a Go toolchain
	// layer, the best fixed size for the `go build` start-up.
	DefaultReadFiles = 32
)

// DefaultSpanCandidates are the span sizes auto sizing chooses from:
// 512 KiB to 8 MiB. Below 512 KiB the 32 KiB window per span is over 6 %
// of the span; above 8 MiB a single small read fetches megabytes.
var DefaultSpanCandidates = []int64{512 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20}

// SpanChoice is the span plan chosen for a layer and its estimated cost.
type SpanChoice struct {
	// Size is the span size; Cuts the extra span starts (header offsets)
	// isolating the start-up files.
	Size int64
	Cuts []int64
	// Spans is the number of spans the plan makes.
	Spans int
	// ZtocBytes estimates the zTOC size, FetchBytes the compressed span
	// bytes a start-up fetches (exact span choice, estimated compression
	// ratio; an expectation under the read-fraction model when no start-up
	// list is known). Cost = ZtocBytes + FetchBytes was minimised.
	ZtocBytes, FetchBytes int64
	// StartupKnown tells whether a start-up file list was used.
	StartupKnown bool
}

// Cost is the estimated bytes a lazy start fetches from the layer.
func (c SpanChoice) Cost() int64 { return c.ZtocBytes + c.FetchBytes }

// Planner returns the ztoc.SpanPlanner applying c.
func (c SpanChoice) Planner() *Planner { return &Planner{Size: c.Size, Cuts: c.Cuts} }

// String summarises the choice for logs.
func (c SpanChoice) String() string {
	return fmt.Sprintf("span size %d (+%d cuts): %d spans, zTOC ~%d B, start-up fetch ~%d B", c.Size, len(c.Cuts), c.Spans, c.ZtocBytes, c.FetchBytes)
}

// ChooseSpanSize chooses the span plan of a layer from its headers: among
// the candidate sizes (WithSpanCandidates), each with and without extra
// cuts before and after each run of start-up files, the one with the least
// estimated start-up cost:
//
//	cost = zTOC bytes (32,865 per span + 190 per entry)
//	     + ratio × uncompressed bytes of the spans a start-up touches
//
// With a start-up list (WithStartupFiles, even an empty one), the spans
// touched are exactly those holding the header or data of a listed file
// (hard links and symlinks inside the layer followed). Without one, each
// regular file is assumed read with probability WithReadFraction (default
// DefaultReadFiles divided by the number of non-empty regular files) and
// the expected span bytes are counted. Ties go to the larger span, then to no
// extra cuts. Only the WithStartupFiles, WithSpanCandidates,
// WithReadFraction and WithCompressionRatio options are used.
func ChooseSpanSize(l *Layer, opts ...Option) (SpanChoice, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return SpanChoice{}, err
	}
	return chooseSpanSize(l, o), nil
}

func chooseSpanSize(l *Layer, o *options) SpanChoice {
	known := o.startup != nil
	hot := make([]bool, len(l.Entries))
	if known {
		r := newResolver(l.Entries)
		for _, p := range o.startup {
			if i, _ := r.data(p); i >= 0 && l.Entries[i].Size > 0 {
				hot[i] = true
			}
		}
	}
	var runCuts []int64
	if known {
		runCuts = hotRunCuts(l, hot)
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
		p = min(1, DefaultReadFiles/float64(max(files, 1)))
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
				fetch = float64(touched(l, starts, hot))
			} else {
				fetch = expected(l, starts, p)
			}
			c.FetchBytes = int64(math.Round(fetch * o.ratio))
			if best.Size < 0 || c.Cost() < best.Cost() {
				best = c
			}
		}
	}
	return best
}

// hotRunCuts returns the header offsets that start and end each run of hot
// entries (entries without data neither break nor start a run).
func hotRunCuts(l *Layer, hot []bool) []int64 {
	var cuts []int64
	in := false
	for i := range l.Entries {
		e := &l.Entries[i]
		switch {
		case hot[i] && !in:
			cuts = append(cuts, e.HeaderOffset)
			in = true
		case !hot[i] && in && e.IsReg() && e.Size > 0:
			cuts = append(cuts, e.HeaderOffset)
			in = false
		}
	}
	return cuts
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

// touched returns the uncompressed bytes of the spans holding the header
// or data of a hot entry.
func touched(l *Layer, starts []int64, hot []bool) int64 {
	seen := make(map[int]bool)
	var n int64
	for i, h := range hot {
		if !h {
			continue
		}
		e := &l.Entries[i]
		first, last := spanOf(starts, e.HeaderOffset), spanOf(starts, max(e.DataOffset+e.Size-1, e.HeaderOffset))
		for s := first; s <= last; s++ {
			if !seen[s] {
				seen[s] = true
				n += spanLen(l, starts, s)
			}
		}
	}
	return n
}

// expected returns the expected uncompressed bytes of the spans touched
// when each non-empty regular file is read with probability p.
func expected(l *Layer, starts []int64, p float64) float64 {
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
	var n float64
	for i := range starts {
		n += (1 - miss[i]) * float64(spanLen(l, starts, i))
	}
	return n
}
