package exporter

import (
	"slices"

	"github.com/socikit/socikit/profile"
)

// Rules applying a byte-range start-up profile to a layer (WithProfile;
// docs/exporter.md, "Byte-range profiles").
const (
	// HotGranule is the granularity of the cuts isolating the hot ranges
	// of a file read in part: hot range starts are rounded down and ends
	// up to multiples of it (file offsets), and hot clusters less than
	// max(HotGranule, request cost / compression ratio) apart, or that
	// close to the file's start or end, are joined to each other or
	// extended to it. So no span such a cut makes is smaller than
	// HotGranule, and no cold gap is cut out that is cheaper to fetch than
	// the request a separate span would cost.
	HotGranule = 256 << 10
	// PartialMinSize is the size from which a file with hot ranges can be
	// "read in part": when its hot clusters (above) cover at most half of
	// it. Such a file is not moved whole to the front by reordering (it
	// follows the other start-up files) and span cuts isolate its hot
	// clusters. Smaller files, and files read more than half, are treated
	// as read whole for reordering and cuts; their prefetch spans are
	// still only those holding hot bytes.
	PartialMinSize = 4 << 20
)

// startupFile is one file of the start-up profile in effect: whole (a
// WithStartupFiles path) or its hot ranges (raw: unsorted, unclipped).
type startupFile struct {
	path    string
	whole   bool
	ranges  []profile.Range
	runtime bool // one of RuntimeFiles the profile did not name
}

// RuntimeFiles are read by the container runtime, not by the app, each
// time it creates a container of the image: containerd's spec options
// oci.WithAdditionalGIDs (in ctr run's and CRI's defaults) and oci.WithUser
// (a user name) read them from the root filesystem before the app starts.
// A start-up traced in the build does not see them and a hand-written
// list rarely names them, so a start-up profile in effect (WithProfile,
// WithStartupFiles) begins with them, whole, where the layer holds them:
// otherwise a lazy start waits, before the app runs, for the on-demand
// fetch of the span holding them (the python benchmark image: a 3.7 MB
// span of its base layer, 0.4 s). They are never reported missing.
var RuntimeFiles = []string{"/etc/passwd", "/etc/group"}

// withRuntimeFiles returns files with the RuntimeFiles it does not name in
// front; nil (no start-up profile) stays nil.
func withRuntimeFiles(files []startupFile) []startupFile {
	if files == nil {
		return nil
	}
	named := make(map[string]bool, len(files))
	for _, f := range files {
		named[cleanName(f.path)] = true
	}
	var out []startupFile
	for _, p := range RuntimeFiles {
		if !named[cleanName(p)] {
			out = append(out, startupFile{path: p, whole: true, runtime: true})
		}
	}
	return append(out, files...)
}

// withoutRuntime returns missing less the RuntimeFiles files added.
func withoutRuntime(files []startupFile, missing []string) []string {
	added := map[string]bool{}
	for _, f := range files {
		if f.runtime {
			added[f.path] = true
		}
	}
	if len(added) == 0 {
		return missing
	}
	return slices.DeleteFunc(missing, func(p string) bool { return added[p] })
}

// startupFiles is the start-up profile in effect: the profile's files in
// first-access order, then the listed paths it does not name (whole); a
// path in both counts whole. nil when neither is given.
func startupFiles(p *profile.Profile, paths []string) []startupFile {
	if p == nil && paths == nil {
		return nil
	}
	out := []startupFile{}
	idx := map[string]int{}
	if p != nil {
		for _, f := range p.Files {
			k := cleanName(f.Path)
			if i, ok := idx[k]; ok {
				out[i].ranges = append(out[i].ranges, f.Ranges...)
				continue
			}
			idx[k] = len(out)
			out = append(out, startupFile{path: f.Path, ranges: slices.Clone(f.Ranges)})
		}
	}
	for _, s := range paths {
		if i, ok := idx[cleanName(s)]; ok {
			out[i].whole, out[i].ranges = true, nil
			continue
		}
		out = append(out, startupFile{path: s, whole: true})
	}
	return out
}

// wholeFiles is a profile of whole files.
func wholeFiles(paths []string) []startupFile {
	out := make([]startupFile, len(paths))
	for i, p := range paths {
		out[i] = startupFile{path: p, whole: true}
	}
	return out
}

// clipRanges returns rs cut to [0, size), sorted and merged; nil if no
// byte of rs is in the file.
func clipRanges(rs []profile.Range, size int64) []profile.Range {
	var c []profile.Range
	for _, r := range rs {
		if r.Offset < 0 || r.Length <= 0 || r.Offset >= size {
			continue
		}
		n := r.Length
		if n > size-r.Offset { // no overflow: r.Offset < size
			n = size - r.Offset
		}
		c = append(c, profile.Range{Offset: r.Offset, Length: n})
	}
	return profile.MergeRanges(c)
}

func rangeBytes(rs []profile.Range) int64 {
	var n int64
	for _, r := range rs {
		n += r.Length
	}
	return n
}

// clusterRanges returns the hot clusters of a file of size bytes whose hot
// ranges are rs (sorted, merged, within the file): each range rounded out
// to HotGranule, extended to the file's start or end when closer than gap
// to it, and joined to the previous cluster when closer than gap to it.
func clusterRanges(rs []profile.Range, size, gap int64) []profile.Range {
	var out []profile.Range
	for _, r := range rs {
		s := r.Offset / HotGranule * HotGranule
		e := min(size, (r.End()+HotGranule-1)/HotGranule*HotGranule)
		if s < gap {
			s = 0
		}
		if size-e < gap {
			e = size
		}
		if n := len(out); n > 0 && s-out[n-1].End() < gap {
			out[n-1].Length = max(out[n-1].End(), e) - out[n-1].Offset
			continue
		}
		out = append(out, profile.Range{Offset: s, Length: e - s})
	}
	return out
}

// hotFile is a non-empty regular file of a layer the start-up reads.
type hotFile struct {
	// ranges are the hot bytes, sorted, merged, within the file.
	ranges []profile.Range
	// partial: read in part (PartialMinSize); clusters are then the parts
	// cuts isolate (clusterRanges), sorted.
	partial  bool
	clusters []profile.Range
}

// partialRule decides which files are read in part: at least minSize
// bytes, hot clusters at most maxShare of the file. inPlace leaves them
// where they are when reordering instead of after the other start-up
// files. The calibration and measurement tests vary it.
type partialRule struct {
	minSize  int64
	maxShare float64
	inPlace  bool
}

var defaultPartialRule = partialRule{minSize: PartialMinSize, maxShare: 0.5}

// newHotFile returns the hot file of a size-byte file read whole or at
// raw ranges; nil if no byte of it is read.
func newHotFile(whole bool, raw []profile.Range, size int64, o *options) *hotFile {
	if size <= 0 {
		return nil
	}
	if whole {
		return &hotFile{ranges: []profile.Range{{Offset: 0, Length: size}}}
	}
	rs := clipRanges(raw, size)
	if len(rs) == 0 {
		return nil
	}
	h := &hotFile{ranges: rs}
	if size >= o.partial.minSize {
		if cl := clusterRanges(rs, size, clusterGap(o)); float64(rangeBytes(cl)) <= o.partial.maxShare*float64(size) {
			h.partial, h.clusters = true, cl
		}
	}
	return h
}

// hotLayer is a start-up profile applied to one layer's entries.
type hotLayer struct {
	// files are the hot files by entry index (links resolved to the entry
	// holding the data); idx their indices, ascending.
	files map[int]*hotFile
	idx   []int
	// order is the reordering list: the profile's paths in first-access
	// order, those leading to a file read in part after all the others.
	// Absent paths stay in it (Reorder reports them); paths of regular
	// files of which no byte is read are left out.
	order []string
}

func (h *hotLayer) add(i int, f *hotFile) {
	if h.files == nil {
		h.files = map[int]*hotFile{}
	}
	h.files[i] = f
	h.idx = append(h.idx, i)
}

// clusterGap is the gap under which hot clusters of a file are joined:
// what a request is worth in uncompressed bytes, at least HotGranule.
func clusterGap(o *options) int64 { return max(HotGranule, runGap(o)) }

// runGap is the gap under which runs of hot bytes are cut as one: what a
// request is worth in uncompressed bytes.
func runGap(o *options) int64 { return int64(float64(o.requestBytes) / o.ratio) }

// resolveHot applies files to layer l.
func resolveHot(l *Layer, files []startupFile, o *options) *hotLayer {
	h := &hotLayer{files: map[int]*hotFile{}}
	r := newResolver(l.Entries)
	type acc struct {
		whole bool
		raw   []profile.Range
	}
	accs := map[int]*acc{}
	dataOf := make([]int, len(files))
	for k, f := range files {
		i, _ := r.data(f.path)
		dataOf[k] = i
		if i < 0 || l.Entries[i].Size == 0 {
			continue
		}
		a := accs[i]
		if a == nil {
			a = &acc{}
			accs[i] = a
		}
		if f.whole {
			a.whole = true
		} else {
			a.raw = append(a.raw, f.ranges...)
		}
	}
	for i := range l.Entries {
		if a := accs[i]; a != nil {
			if f := newHotFile(a.whole, a.raw, l.Entries[i].Size, o); f != nil {
				h.add(i, f)
			}
		}
	}
	var later []string
	for k, f := range files {
		if i := dataOf[k]; i >= 0 && l.Entries[i].Size > 0 {
			switch hf := h.files[i]; {
			case hf == nil:
				continue // nothing of it is read
			case hf.partial:
				if !o.partial.inPlace {
					later = append(later, f.path)
				}
				continue
			}
		}
		h.order = append(h.order, f.path)
	}
	h.order = append(h.order, later...)
	return h
}

// interval is a half-open byte range of the layer's tar stream.
type interval struct{ start, end int64 }

// intervals returns the hot bytes of l, sorted: for a file read in part,
// its hot ranges; for any other hot file, its header blocks and its hot
// ranges (a whole file: from its header to its end).
func (h *hotLayer) intervals(l *Layer) []interval {
	var out []interval
	for _, i := range h.idx {
		e, f := &l.Entries[i], h.files[i]
		for k, r := range f.ranges {
			iv := interval{e.DataOffset + r.Offset, e.DataOffset + r.End()}
			if k == 0 && !f.partial {
				if r.Offset == 0 {
					iv.start = e.HeaderOffset
				} else {
					out = append(out, interval{e.HeaderOffset, e.DataOffset})
				}
			}
			out = append(out, iv)
		}
	}
	return out
}

// hotCuts returns the span starts isolating the hot bytes of l: the start
// and end of each run of hot files (a header offset: entries without data
// neither break nor start a run), and inside a file read in part the
// start and end of each hot cluster (offsets inside its data; a cluster at
// the file's start begins at its header, one at its end runs on into what
// follows). Runs less than maxGap bytes apart are one run: fetching the
// gap costs less than the request a separate span would. The offsets are
// sorted.
func hotCuts(l *Layer, h *hotLayer, maxGap int64) []int64 {
	var cuts []int64
	in := false
	var lastEnd int64 = -1 // end of the last hot bytes
	start := func(at int64) {
		if n := len(cuts); n > 0 && lastEnd >= 0 && at-lastEnd < maxGap {
			cuts = cuts[:n-1] // join the previous run: drop its end
		} else {
			cuts = append(cuts, at)
		}
		in = true
	}
	end := func(at int64) {
		cuts = append(cuts, at)
		in = false
	}
	for i := range l.Entries {
		e := &l.Entries[i]
		f := h.files[i]
		switch {
		case f == nil:
			if in && e.IsReg() && e.Size > 0 {
				end(e.HeaderOffset)
			}
		case !f.partial:
			if !in {
				start(e.HeaderOffset)
			}
			lastEnd = e.End()
		default:
			for _, c := range f.clusters {
				if c.Offset == 0 {
					if !in {
						start(e.HeaderOffset)
					}
				} else {
					if in {
						end(e.HeaderOffset)
					}
					start(e.DataOffset + c.Offset)
				}
				if c.End() < e.Size {
					end(e.DataOffset + c.End())
					lastEnd = e.DataOffset + c.End()
				} else {
					lastEnd = e.End()
				}
			}
		}
	}
	return cuts
}

// hotRunCuts is hotCuts for whole hot entries.
func hotRunCuts(l *Layer, hot []bool, maxGap int64) []int64 {
	h := &hotLayer{}
	for i, x := range hot {
		if x && l.Entries[i].Size > 0 {
			h.add(i, &hotFile{ranges: []profile.Range{{Offset: 0, Length: l.Entries[i].Size}}})
		}
	}
	return hotCuts(l, h, maxGap)
}
