package exporter

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// PrefetchSpans returns the spans of the layer indexed by z that hold the
// data of the given files, as sorted, merged inclusive ranges for a
// soci.Prefetch blob. Paths are matched as ztoc.Ztoc.Lookup matches them
// (the last entry of a name wins; a leading "/" or "./" is ignored); a
// hard link or a symlink inside the layer counts as its target. Directories
// and empty files have no data and add no span. missing lists the paths
// the layer does not hold, in the given order; the spans of the others
// are returned all the same.
func PrefetchSpans(z *ztoc.Ztoc, files []string) (spans []soci.PrefetchSpan, missing []string, err error) {
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		return nil, nil, fmt.Errorf("prefetch spans: %w", err)
	}
	spans, missing = prefetchFiles(ix, wholeFiles(files))
	return spans, missing, nil
}

// PrefetchRanges returns the spans of the layer indexed by z that hold
// the hot bytes of profile p: for each file, the spans holding its ranges
// (cut to the file's size), as sorted, merged inclusive ranges for a
// soci.Prefetch blob. Paths are matched and links followed as by
// PrefetchSpans. missing lists the profile's paths the layer does not
// hold, in profile order: callers warn about them (another layer may hold
// them, or the start-up read files outside the image such as /proc); they
// are not an error. A nil profile gives nothing.
func PrefetchRanges(z *ztoc.Ztoc, p *profile.Profile) (spans []soci.PrefetchSpan, missing []string, err error) {
	if p == nil {
		return nil, nil, nil
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		return nil, nil, fmt.Errorf("prefetch ranges: %w", err)
	}
	spans, missing = prefetchFiles(ix, startupFiles(p, nil))
	return spans, missing, nil
}

// ImagePrefetchRanges applies profile p to the indexed layers of one image,
// given bottom to top (manifest order; nil for a layer without a zTOC):
// each profile path counts in the topmost layer holding it, as the
// container's root filesystem resolves it (a whiteout or an opaque
// directory in a layer above hides it), and symlinks are followed through
// the image. It returns the
// prefetch spans of each layer (same order) and the profile's paths that
// no layer holds, in profile order (to warn about, not an error).
func ImagePrefetchRanges(layers []*ztoc.Ztoc, p *profile.Profile) (spans [][]soci.PrefetchSpan, missing []string, err error) {
	spans = make([][]soci.PrefetchSpan, len(layers))
	if p == nil {
		return spans, nil, nil
	}
	img := make([]*zLayer, len(layers))
	for i, z := range layers {
		if z == nil {
			continue
		}
		ix, err := ztoc.NewIndex(z)
		if err != nil {
			return nil, nil, fmt.Errorf("prefetch ranges: layer %d: %w", i, err)
		}
		img[i] = newZLayer(ix)
	}
	// entry returns the topmost layer holding name and its entry there;
	// none if a layer above deletes it (a whiteout of it or an opaque
	// marker in one of its directories).
	entry := func(name string) (int, *ztoc.FileEntry) {
		name = cleanName(name)
		for i := len(img) - 1; i >= 0; i-- {
			if img[i] == nil {
				continue
			}
			if f := img[i].entry(name); f != nil {
				return i, f
			}
			if img[i].deletes(name) {
				return -1, nil
			}
		}
		return -1, nil
	}
	// find is entry, also through leading directories that are symlinks.
	find := func(name string) (int, *ztoc.FileEntry) {
		if i, f := entry(name); f != nil {
			return i, f
		}
		n, ok := throughDirLinks(name, func(dir string) (string, bool) {
			if _, f := entry(dir); f != nil && f.Type == ztoc.TypeSymlink {
				return symlinkTarget(f), true
			}
			return "", false
		})
		if !ok {
			return -1, nil
		}
		return entry(n)
	}
	for _, sf := range startupFiles(p, nil) {
		li, f := find(sf.path)
		if f == nil {
			missing = append(missing, sf.path)
			continue
		}
		// Hard links stay in their layer; symlinks resolve in the image.
		for hops := 0; f != nil && f.Type != ztoc.TypeReg && hops < maxLinkHops; hops++ {
			switch f.Type {
			case ztoc.TypeHardlink:
				f = img[li].lookup(f.Linkname)
			case ztoc.TypeSymlink:
				li, f = find(symlinkTarget(f))
			default:
				f = nil
			}
		}
		if f == nil || f.Type != ztoc.TypeReg {
			continue
		}
		spans[li] = append(spans[li], img[li].fileSpans(f, sf)...)
	}
	for i := range spans {
		spans[i] = MergeSpans(spans[i])
	}
	return spans, missing, nil
}

// prefetchFiles returns the merged spans of ix holding the start-up
// files' hot bytes, and the paths the layer does not hold.
func prefetchFiles(ix *ztoc.Index, files []startupFile) ([]soci.PrefetchSpan, []string) {
	return newZLayer(ix).prefetch(files)
}

// prefetch is prefetchFiles on the layer.
func (zl *zLayer) prefetch(files []startupFile) ([]soci.PrefetchSpan, []string) {
	var spans []soci.PrefetchSpan
	var missing []string
	for _, sf := range files {
		f := zl.lookup(sf.path)
		if f == nil {
			missing = append(missing, sf.path)
			continue
		}
		if f = zl.follow(f); f != nil {
			spans = append(spans, zl.fileSpans(f, sf)...)
		}
	}
	return MergeSpans(spans), missing
}

// zLayer looks names up in one layer's zTOC (the last entry of a name
// wins, as ztoc.Ztoc.Lookup).
type zLayer struct {
	ix    *ztoc.Index
	names map[string]int
}

func newZLayer(ix *ztoc.Index) *zLayer {
	z := ix.Ztoc()
	l := &zLayer{ix: ix, names: make(map[string]int, len(z.Files))}
	for i := range z.Files {
		l.names[cleanName(z.Files[i].Name)] = i
	}
	return l
}

// lookup returns the entry named name, also through leading directories
// that are symlinks inside the layer; nil if absent.
func (l *zLayer) lookup(name string) *ztoc.FileEntry {
	if f := l.entry(name); f != nil {
		return f
	}
	n, ok := throughDirLinks(name, func(dir string) (string, bool) {
		if f := l.entry(dir); f != nil && f.Type == ztoc.TypeSymlink {
			return symlinkTarget(f), true
		}
		return "", false
	})
	if !ok {
		return nil
	}
	return l.entry(n)
}

// deletes reports whether the layer hides name of the layers below it: a
// whiteout of name or of one of its directories, or an opaque marker in
// one of its directories.
func (l *zLayer) deletes(name string) bool {
	for {
		dir, base := path.Split(name)
		if l.entry(dir+".wh."+base) != nil || dir != "" && l.entry(dir+".wh..wh..opq") != nil {
			return true
		}
		if dir == "" {
			return false
		}
		name = strings.TrimSuffix(dir, "/")
	}
}

func (l *zLayer) entry(name string) *ztoc.FileEntry {
	if i, ok := l.names[cleanName(name)]; ok {
		return &l.ix.Ztoc().Files[i]
	}
	return nil
}

// follow follows hard links and in-layer symlinks from f to the entry
// holding the data; nil if they lead nowhere in the layer.
func (l *zLayer) follow(f *ztoc.FileEntry) *ztoc.FileEntry { return followLinks(f, l.lookup) }

// fileSpans returns the span ranges holding the hot bytes of sf in the
// data of regular file f.
func (l *zLayer) fileSpans(f *ztoc.FileEntry, sf startupFile) []soci.PrefetchSpan {
	if f.Type != ztoc.TypeReg || f.UncompressedSize == 0 {
		return nil
	}
	rs := []profile.Range{{Offset: 0, Length: f.UncompressedSize}}
	if !sf.whole {
		rs = clipRanges(sf.ranges, f.UncompressedSize)
	}
	out := make([]soci.PrefetchSpan, 0, len(rs))
	for _, r := range rs {
		first, last := l.ix.SpansOf(f.UncompressedOffset+r.Offset, r.Length)
		out = append(out, soci.PrefetchSpan{StartSpan: first, EndSpan: last})
	}
	return out
}

// symlinkTarget is the layer path a symlink entry points to (relative
// targets resolved against its directory).
func symlinkTarget(f *ztoc.FileEntry) string { return linkTarget(f.Name, f.Linkname) }

// followZtoc follows hard links and in-layer symlinks from f to the entry
// holding the data, or nil, with the zTOC's own name lookup.
func followZtoc(z *ztoc.Ztoc, f *ztoc.FileEntry) *ztoc.FileEntry { return followLinks(f, z.Lookup) }

// followLinks follows hard links and symlinks from f, looking names up
// with lookup, to the entry holding the data; nil if they lead nowhere or
// past maxLinkHops.
func followLinks(f *ztoc.FileEntry, lookup func(string) *ztoc.FileEntry) *ztoc.FileEntry {
	for hops := 0; f != nil && hops < maxLinkHops; hops++ {
		switch f.Type {
		case ztoc.TypeHardlink:
			f = lookup(f.Linkname)
		case ztoc.TypeSymlink:
			f = lookup(symlinkTarget(f))
		default:
			return f
		}
	}
	return nil
}

// MergeSpans sorts inclusive span ranges and merges the overlapping and
// adjacent ones. The input slice is reordered; nil gives nil.
func MergeSpans(s []soci.PrefetchSpan) []soci.PrefetchSpan {
	if len(s) == 0 {
		return nil
	}
	slices.SortFunc(s, func(a, b soci.PrefetchSpan) int {
		if a.StartSpan != b.StartSpan {
			return int(a.StartSpan) - int(b.StartSpan)
		}
		return int(a.EndSpan) - int(b.EndSpan)
	})
	out := []soci.PrefetchSpan{s[0]}
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if int64(x.StartSpan) <= int64(last.EndSpan)+1 {
			last.EndSpan = max(last.EndSpan, x.EndSpan)
			continue
		}
		out = append(out, x)
	}
	return out
}
