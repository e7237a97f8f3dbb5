package exporter

import (
	"fmt"
	"slices"
	"strings"

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
	return prefetchSpans(ix, files)
}

func prefetchSpans(ix *ztoc.Index, files []string) ([]soci.PrefetchSpan, []string, error) {
	z := ix.Ztoc()
	var spans []soci.PrefetchSpan
	var missing []string
	for _, p := range files {
		f := z.Lookup(p)
		if f == nil {
			missing = append(missing, p)
			continue
		}
		f = followZtoc(z, f)
		if f == nil || f.Type != ztoc.TypeReg || f.UncompressedSize == 0 {
			continue
		}
		first, last := ix.SpansOf(f.UncompressedOffset, f.UncompressedSize)
		spans = append(spans, soci.PrefetchSpan{StartSpan: first, EndSpan: last})
	}
	return MergeSpans(spans), missing, nil
}

// followZtoc follows hard links and in-layer symlinks from f to the entry
// holding the data, or nil.
func followZtoc(z *ztoc.Ztoc, f *ztoc.FileEntry) *ztoc.FileEntry {
	for hops := 0; f != nil && hops < maxLinkHops; hops++ {
		switch f.Type {
		case ztoc.TypeHardlink:
			f = z.Lookup(f.Linkname)
		case ztoc.TypeSymlink:
			next := f.Linkname
			if !strings.HasPrefix(next, "/") {
				dir := cleanName(f.Name)
				if k := strings.LastIndexByte(dir, '/'); k >= 0 {
					next = dir[:k+1] + next
				}
			}
			f = z.Lookup(cleanPath(next))
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
