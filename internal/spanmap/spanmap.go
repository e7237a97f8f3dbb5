// Package spanmap maps a start-up profile onto the spans of an image's
// indexed layers and draws the result: which spans a lazy start has to
// fetch because the start-up reads bytes in them, which spans the SOCI
// index lists for prefetch, and what that costs in compressed bytes.
//
// The profile's paths are resolved in the image's merged view of its
// indexed layers (topmost layer first; whiteouts and opaque directories of
// higher layers hide lower ones; symbolic links, also in leading
// directories, and hard links are followed as the zTOCs' TOCs allow), and
// each read range of a file is mapped through the file's uncompressed
// offset in its layer to the spans holding it. `socikit inspect --profile`
// prints the result (Write, or the Result as JSON) and `--svg` draws it
// (SVG).
package spanmap

import (
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// Layer is one layer of the image, in image-layer order.
type Layer struct {
	Digest digest.Digest
	// Size is the compressed size of the layer blob.
	Size int64
	// Index is the layer's span index (ztoc.NewIndex); nil for a layer
	// the SOCI index does not index (a lazy start pulls it whole).
	Index *ztoc.Index
	// ZtocSize is the size of the zTOC blob.
	ZtocSize int64
	// Prefetch are the spans the SOCI index's prefetch artifact lists.
	Prefetch []soci.PrefetchSpan
}

// MaxNotFound is how many paths not found Result.NotFoundPaths keeps.
const MaxNotFound = 10

// Result is a profile mapped onto the layers. Field names are stable
// (`socikit inspect --profile --json`).
type Result struct {
	// Profile tells whether a profile was mapped (else only prefetch is).
	Profile bool `json:"profile"`
	// ProfileFiles and ProfileBytes are the profile's files and the bytes
	// they read (ranges merged).
	ProfileFiles int   `json:"profile_files"`
	ProfileBytes int64 `json:"profile_bytes"`
	// NotFound counts the profile's paths found in no indexed layer (or
	// leading to no file data); NotFoundPaths are the first MaxNotFound.
	NotFound      int           `json:"not_found"`
	NotFoundPaths []string      `json:"not_found_paths,omitempty"`
	Layers        []LayerResult `json:"layers"`
	Totals        Totals        `json:"totals"`
}

// LayerResult is one layer's share of the result.
type LayerResult struct {
	Digest  digest.Digest `json:"digest"`
	Indexed bool          `json:"indexed"`
	// Size is the compressed size of the layer; UncompressedSize that of
	// its tar (indexed layers only).
	Size             int64 `json:"size"`
	UncompressedSize int64 `json:"uncompressed_size,omitempty"`
	ZtocSize         int64 `json:"ztoc_size,omitempty"`
	Spans            int   `json:"spans"`
	// FilesFound counts the profile's paths whose data is in this layer.
	FilesFound int `json:"files_found"`
	// HotBytes are the (uncompressed) bytes the start-up reads here.
	HotBytes int64 `json:"hot_bytes"`
	// SpansTouched are the spans holding hot bytes and FetchBytes their
	// compressed size: what a lazy start fetches of the layer (all of
	// it for a layer without zTOC).
	SpansTouched int                 `json:"spans_touched"`
	Touched      []soci.PrefetchSpan `json:"touched,omitempty"`
	FetchBytes   int64               `json:"fetch_bytes"`
	// OnDemandBytes are the compressed bytes of touched spans that are not
	// prefetched: fetched while the start-up waits.
	OnDemandBytes int64 `json:"on_demand_bytes"`
	// PrefetchSpans and PrefetchBytes are the prefetch artifact's spans
	// and their compressed size; PrefetchUnread the bytes of those the
	// start-up does not read.
	PrefetchSpans  int   `json:"prefetch_spans"`
	PrefetchBytes  int64 `json:"prefetch_bytes"`
	PrefetchUnread int64 `json:"prefetch_unread_bytes"`

	// Per span (indexed layers): hot bytes and prefetch flag.
	hot      []int64
	prefetch []bool
	spans    []ztoc.Span
}

// Totals sum the layers.
type Totals struct {
	Layers        int   `json:"layers"`
	IndexedLayers int   `json:"indexed_layers"`
	Size          int64 `json:"size"`
	FilesFound    int   `json:"files_found"`
	HotBytes      int64 `json:"hot_bytes"`
	SpansTouched  int   `json:"spans_touched"`
	// FetchBytes are the compressed bytes of touched spans of indexed
	// layers; WholeBytes those of the layers without zTOC (pulled whole).
	FetchBytes     int64 `json:"fetch_bytes"`
	WholeBytes     int64 `json:"whole_bytes"`
	OnDemandBytes  int64 `json:"on_demand_bytes"`
	PrefetchBytes  int64 `json:"prefetch_bytes"`
	PrefetchUnread int64 `json:"prefetch_unread_bytes"`
	// ZtocBytes are the zTOCs' sizes, all fetched by a lazy start;
	// ZtocPercent is their share of ZtocBytes + FetchBytes, what a lazy
	// start fetches of the indexed layers (one decimal).
	ZtocBytes   int64   `json:"ztoc_bytes"`
	ZtocPercent float64 `json:"ztoc_percent"`
}

// Map maps p (nil: no profile) onto layers.
func Map(p *profile.Profile, layers []Layer) *Result {
	res := &Result{Layers: make([]LayerResult, len(layers))}
	views := make([]*view, len(layers))
	for i, l := range layers {
		lr := LayerResult{Digest: l.Digest, Size: l.Size, Indexed: l.Index != nil}
		if l.Index != nil {
			z := l.Index.Ztoc()
			lr.UncompressedSize, lr.ZtocSize = z.UncompressedArchiveSize, l.ZtocSize
			lr.spans = l.Index.Spans()
			lr.Spans = len(lr.spans)
			lr.hot = make([]int64, lr.Spans)
			lr.prefetch = make([]bool, lr.Spans)
			for _, s := range l.Prefetch {
				for id := max(s.StartSpan, 0); id <= s.EndSpan && int(id) < lr.Spans; id++ {
					lr.prefetch[id] = true
				}
			}
			views[i] = newView(z)
		}
		res.Layers[i] = lr
	}
	if p != nil {
		res.Profile = true
		res.mapProfile(p, views)
	}
	res.sum()
	return res
}

// dataKey is a regular file entry of a layer.
type dataKey struct{ layer, entry int }

func (res *Result) mapProfile(p *profile.Profile, views []*view) {
	m := &merged{views: views}
	ranges := map[dataKey][]profile.Range{}
	var order []dataKey
	for _, f := range p.Files {
		res.ProfileFiles++
		res.ProfileBytes += f.Bytes()
		k, ok := m.resolve(f.Path)
		if !ok {
			res.NotFound++
			if len(res.NotFoundPaths) < MaxNotFound {
				res.NotFoundPaths = append(res.NotFoundPaths, f.Path)
			}
			continue
		}
		res.Layers[k.layer].FilesFound++
		if _, seen := ranges[k]; !seen {
			order = append(order, k)
			ranges[k] = nil
		}
		ranges[k] = append(ranges[k], f.Ranges...)
	}
	for _, k := range order {
		lr := &res.Layers[k.layer]
		e := &views[k.layer].z.Files[k.entry]
		for _, r := range clip(ranges[k], e.UncompressedSize) {
			lr.HotBytes += r.Length
			lr.addHot(e.UncompressedOffset+r.Offset, e.UncompressedOffset+r.End())
		}
	}
}

// addHot counts the tar bytes [start, end) as hot in the spans holding them.
func (lr *LayerResult) addHot(start, end int64) {
	// The first span ending after start (spans are in offset order).
	lo, hi := 0, len(lr.spans)
	for lo < hi {
		mid := (lo + hi) / 2
		if lr.spans[mid].UncompressedEnd > start {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	for id := lo; id < len(lr.spans) && lr.spans[id].UncompressedStart < end; id++ {
		s := lr.spans[id]
		if n := min(end, s.UncompressedEnd) - max(start, s.UncompressedStart); n > 0 {
			lr.hot[id] += n
		}
	}
}

// clip returns rs cut to [0, size), sorted and merged.
func clip(rs []profile.Range, size int64) []profile.Range {
	var c []profile.Range
	for _, r := range rs {
		if r.Offset < 0 || r.Length <= 0 || r.Offset >= size {
			continue
		}
		c = append(c, profile.Range{Offset: r.Offset, Length: min(r.Length, size-r.Offset)})
	}
	return profile.MergeRanges(c)
}

func (res *Result) sum() {
	t := &res.Totals
	for i := range res.Layers {
		lr := &res.Layers[i]
		t.Layers++
		t.Size += lr.Size
		if !lr.Indexed {
			t.WholeBytes += lr.Size
			continue
		}
		t.IndexedLayers++
		for id, s := range lr.spans {
			n := s.CompressedEnd - s.CompressedStart
			if lr.hot[id] > 0 {
				lr.SpansTouched++
				lr.FetchBytes += n
				if !lr.prefetch[id] {
					lr.OnDemandBytes += n
				}
				if k := len(lr.Touched); k > 0 && lr.Touched[k-1].EndSpan == int32(id-1) {
					lr.Touched[k-1].EndSpan = int32(id)
				} else {
					lr.Touched = append(lr.Touched, soci.PrefetchSpan{StartSpan: int32(id), EndSpan: int32(id)})
				}
			}
			if lr.prefetch[id] {
				lr.PrefetchSpans++
				lr.PrefetchBytes += n
				if lr.hot[id] == 0 {
					lr.PrefetchUnread += n
				}
			}
		}
		t.FilesFound += lr.FilesFound
		t.HotBytes += lr.HotBytes
		t.SpansTouched += lr.SpansTouched
		t.FetchBytes += lr.FetchBytes
		t.OnDemandBytes += lr.OnDemandBytes
		t.PrefetchBytes += lr.PrefetchBytes
		t.PrefetchUnread += lr.PrefetchUnread
		t.ZtocBytes += lr.ZtocSize
	}
	if d := t.ZtocBytes + t.FetchBytes; d > 0 {
		t.ZtocPercent = float64(int64(float64(t.ZtocBytes)/float64(d)*1000+0.5)) / 10
	}
}

// Span kinds, as drawn.
const (
	kindOther = iota
	kindPrefetch
	kindHotPrefetch
	kindHot
)

func (lr *LayerResult) kind(id int) int {
	switch {
	case lr.hot[id] > 0 && lr.prefetch[id]:
		return kindHotPrefetch
	case lr.hot[id] > 0:
		return kindHot
	case lr.prefetch[id]:
		return kindPrefetch
	}
	return kindOther
}

// HotBytesOf returns the hot bytes of each span of layer i (nil for a
// layer without zTOC). The slice must not be modified.
func (res *Result) HotBytesOf(i int) []int64 { return res.Layers[i].hot }

// view is one indexed layer's TOC by clean name.
type view struct {
	z        *ztoc.Ztoc
	byName   map[string]int  // the last entry of each name
	whiteout map[string]bool // paths a .wh. entry deletes in lower layers
	opaque   map[string]bool // directories a .wh..wh..opq entry empties
}

const (
	whiteoutPrefix = ".wh."
	opaqueName     = ".wh..wh..opq"
	maxHops        = 40 // symbolic links followed, as Linux's limit
)

func newView(z *ztoc.Ztoc) *view {
	v := &view{z: z, byName: make(map[string]int, len(z.Files)), whiteout: map[string]bool{}, opaque: map[string]bool{}}
	for i := range z.Files {
		n := clean(z.Files[i].Name)
		dir, base := path.Split(n)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case base == opaqueName:
			v.opaque[dir] = true
		case strings.HasPrefix(base, whiteoutPrefix):
			v.whiteout[path.Join(dir, base[len(whiteoutPrefix):])] = true
		default:
			v.byName[n] = i
		}
	}
	return v
}

// clean makes a TOC or profile name relative and clean ("" is the root).
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// merged is the image's merged view of its indexed layers.
type merged struct{ views []*view }

// lookup returns the entry a path (clean) names in the merged view.
func (m *merged) lookup(name string) (dataKey, bool) {
	for li := len(m.views) - 1; li >= 0; li-- {
		v := m.views[li]
		if v == nil {
			continue
		}
		if i, ok := v.byName[name]; ok {
			return dataKey{li, i}, true
		}
		// Deleted here for the layers below?
		if v.whiteout[name] {
			return dataKey{}, false
		}
		for d := name; d != ""; {
			k := strings.LastIndexByte(d, '/')
			if k < 0 {
				d = ""
			} else {
				d = d[:k]
			}
			if v.whiteout[d] || v.opaque[d] {
				return dataKey{}, false
			}
			// An ancestor that is no directory here hides what is below.
			if i, ok := v.byName[d]; ok && d != "" {
				if t := v.z.Files[i].Type; t != ztoc.TypeDir && t != ztoc.TypeSymlink {
					return dataKey{}, false
				}
			}
		}
	}
	return dataKey{}, false
}

// resolve returns the regular file entry whose data a read of name reads.
func (m *merged) resolve(name string) (dataKey, bool) {
	name = clean(name)
	for hops := 0; hops <= maxHops; hops++ {
		// A leading directory that is a symbolic link?
		relinked := false
		for i := 0; i < len(name); i++ {
			if name[i] != '/' {
				continue
			}
			k, ok := m.lookup(name[:i])
			if !ok {
				continue
			}
			if e := &m.views[k.layer].z.Files[k.entry]; e.Type == ztoc.TypeSymlink {
				name, relinked = clean(linkTarget(name[:i], e.Linkname)+name[i:]), true
				break
			}
		}
		if relinked {
			continue
		}
		k, ok := m.lookup(name)
		if !ok {
			return dataKey{}, false
		}
		v := m.views[k.layer]
		e := &v.z.Files[k.entry]
		switch e.Type {
		case ztoc.TypeReg:
			return k, true
		case ztoc.TypeSymlink:
			name = clean(linkTarget(name, e.Linkname))
		case ztoc.TypeHardlink:
			// A hard link's target is in the same layer.
			for range maxHops {
				i, ok := v.byName[clean(e.Linkname)]
				if !ok {
					return dataKey{}, false
				}
				k.entry, e = i, &v.z.Files[i]
				if e.Type != ztoc.TypeHardlink {
					break
				}
			}
			return k, e.Type == ztoc.TypeReg
		default:
			return dataKey{}, false
		}
	}
	return dataKey{}, false
}

// linkTarget is the path a symbolic link at name (clean) pointing to link
// leads to.
func linkTarget(name, link string) string {
	if strings.HasPrefix(link, "/") {
		return link
	}
	return path.Join(path.Dir("/"+name), link)
}
