package exporter

import (
	"archive/tar"
	"fmt"
	"io"
	"path"
	"strings"
)

// ReorderResult tells what Reorder moved.
type ReorderResult struct {
	// Moved lists the raw names of the entries written first, in their new
	// order: the listed files and what they need before them (parent
	// directories, hard-link targets, earlier entries of the same name,
	// their whiteouts and opaque markers).
	Moved []string
	// Missing lists the requested paths the layer does not hold, in request
	// order.
	Missing []string
	// Layer is the header list of the tar written.
	Layer *Layer
}

// NotInLayerError names the requested paths a layer does not hold. Reorder
// returns it after writing a complete, valid tar (the other paths first);
// callers handling several layers may ignore it when another layer holds
// the paths.
type NotInLayerError struct {
	Paths []string
}

func (e *NotInLayerError) Error() string {
	return fmt.Sprintf("not in the layer: %s", strings.Join(e.Paths, ", "))
}

// Reorder writes the tar stream src[0:size) to dst with the entries named
// by first at the front, in list order, and every other entry after them in
// its original order. Each entry's header blocks (PAX and GNU long-name
// headers included) and data are copied byte for byte, so names, modes and
// times are those of the input, and the end-of-archive blocks are copied as
// they are: the output is a standard tar of the same size, and the same
// input and list always give the same bytes.
//
// To keep the layer's meaning, an entry moved to the front is preceded by:
// the entries of its parent directories (so each directory comes before its
// children) and their opaque whiteout markers (.wh..wh..opq), earlier
// entries of the same name (a later entry replaces an earlier one) and its
// whiteout (.wh.NAME), and, for a hard link, its target. A listed
// directory moves alone, not its contents; a listed symlink brings the
// entry it points to within the layer. Hard links to a moved file stay
// where they were, after it. A PAX global header may only open the
// archive; it stays first.
//
// Listed paths the layer does not hold are reported in a *NotInLayerError,
// returned together with the result after the whole output is written.
func Reorder(dst io.Writer, src io.ReaderAt, size int64, first []string) (*ReorderResult, error) {
	l, err := Scan(src, size)
	if err != nil {
		return nil, fmt.Errorf("reorder: %w", err)
	}
	return reorder(dst, src, l, first)
}

func reorder(dst io.Writer, src io.ReaderAt, l *Layer, first []string) (*ReorderResult, error) {
	order, res, err := planReorder(l, first)
	if err != nil {
		return nil, err
	}
	if err := writeOrder(dst, src, l, order); err != nil {
		return nil, err
	}
	res.Layer = relayout(l, order)
	if len(res.Missing) > 0 {
		return res, &NotInLayerError{Paths: res.Missing}
	}
	return res, nil
}

// planReorder returns the new order of l's entries (indices) and what moved.
func planReorder(l *Layer, first []string) ([]int, *ReorderResult, error) {
	r := newResolver(l.Entries)
	n := len(l.Entries)
	state := make([]bool, n)
	order := make([]int, 0, n)
	res := &ReorderResult{}

	globals := 0
	for i := range l.Entries {
		if l.Entries[i].Typeflag == tar.TypeXGlobalHeader {
			if i != globals {
				return nil, nil, fmt.Errorf("reorder: PAX global header at offset %d is not at the start of the archive", l.Entries[i].HeaderOffset)
			}
			globals++
			state[i] = true
			order = append(order, i)
		}
	}
	// before returns the entries named name that precede entry i.
	before := func(name string, i int) []int {
		var out []int
		for _, j := range r.byName[name] {
			if j < i {
				out = append(out, j)
			}
		}
		return out
	}
	var place func(i int)
	place = func(i int) {
		if state[i] {
			return
		}
		state[i] = true // set first: a malformed cycle cannot recurse forever
		e := &l.Entries[i]
		name := cleanName(e.Name)
		var pre []int
		for _, d := range append([]string{""}, parentDirs(name)...) {
			pre = append(pre, before(d, i)...)
			pre = append(pre, before(path.Join(d, ".wh..wh..opq"), i)...)
		}
		pre = append(pre, before(name, i)...)
		dir, base := path.Split(name)
		pre = append(pre, before(dir+".wh."+base, i)...)
		if e.Typeflag == tar.TypeLink {
			pre = append(pre, before(cleanName(e.Linkname), i)...)
		}
		for _, j := range pre {
			place(j)
		}
		order = append(order, i)
		res.Moved = append(res.Moved, e.Name)
	}
	for _, p := range first {
		i := r.find(p)
		if i < 0 {
			res.Missing = append(res.Missing, p)
			continue
		}
		if e := &l.Entries[i]; e.Typeflag == tar.TypeSymlink {
			if j, _ := r.data(p); j >= 0 {
				place(j)
			}
		}
		place(i)
	}
	for i := range l.Entries {
		if !state[i] {
			order = append(order, i)
		}
	}
	return order, res, nil
}
