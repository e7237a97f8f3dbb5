package exporter

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Entry is one tar entry of a layer as Scan found it: where its header
// blocks and data lie in the uncompressed tar stream.
type Entry struct {
	// Name is the raw header name ("dir/" keeps its slash, "./" is kept).
	Name     string
	Linkname string
	Typeflag byte
	// HeaderOffset is the offset of the entry's first header block (PAX and
	// GNU long-name headers included), DataOffset that of its data, Size the
	// size of its data.
	HeaderOffset, DataOffset, Size int64
}

// End is the offset just past the entry's data padding: where the next
// header begins.
func (e *Entry) End() int64 { return align512(e.DataOffset + e.Size) }

// IsReg reports whether e is a regular file.
func (e *Entry) IsReg() bool { return e.Typeflag == tar.TypeReg }

// IsDir reports whether e is a directory.
func (e *Entry) IsDir() bool { return e.Typeflag == tar.TypeDir }

// Layer is the header list of a tar layer.
type Layer struct {
	Entries []Entry
	// TrailerOffset is where the last entry ends and the end-of-archive
	// blocks (and any padding) begin; Size is the size of the whole stream.
	TrailerOffset, Size int64
}

// Scan reads the headers of the tar stream in r[0:size), skipping file
// data by seeking, so it reads about 512 bytes per entry. GNU sparse
// entries are refused (SOCI cannot index them either). A PAX global header
// is kept as an entry of its own.
func Scan(r io.ReaderAt, size int64) (*Layer, error) {
	sr := io.NewSectionReader(r, 0, size)
	tr := tar.NewReader(sr)
	l := &Layer{Size: size}
	var next int64 // where the next header begins
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("scan tar at offset %d: %w", next, err)
		}
		if h.Typeflag == tar.TypeGNUSparse || h.PAXRecords["GNU.sparse.major"] != "" {
			return nil, fmt.Errorf("scan tar: %s: sparse files are not supported", h.Name)
		}
		pos, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		e := Entry{Name: h.Name, Linkname: h.Linkname, Typeflag: h.Typeflag, HeaderOffset: next, DataOffset: pos, Size: h.Size}
		if e.Size < 0 || e.End() > size {
			return nil, fmt.Errorf("scan tar: %s: data [%d, %d) beyond the %d byte stream", h.Name, pos, pos+h.Size, size)
		}
		l.Entries = append(l.Entries, e)
		next = e.End()
	}
	l.TrailerOffset = next
	return l, nil
}

// align512 rounds x up to a multiple of the tar block size.
func align512(x int64) int64 { return (x + 511) &^ 511 }

// cleanName is the name a layer path is matched by: no leading "./" or
// "/", no trailing "/" (as ztoc.Ztoc.Lookup matches).
func cleanName(s string) string {
	for {
		switch {
		case strings.HasPrefix(s, "./"):
			s = s[2:]
		case strings.HasPrefix(s, "/"):
			s = s[1:]
		default:
			return strings.TrimSuffix(s, "/")
		}
	}
}

// parentDirs returns the ancestors of clean name n, outermost first
// ("a/b/c" → "a", "a/b").
func parentDirs(n string) []string {
	var out []string
	for i := 0; i < len(n); i++ {
		if n[i] == '/' {
			out = append(out, n[:i])
		}
	}
	return out
}

// resolver finds entries by clean name.
type resolver struct {
	entries []Entry
	byName  map[string][]int // clean name → entry indices, in archive order
}

func newResolver(entries []Entry) *resolver {
	r := &resolver{entries: entries, byName: make(map[string][]int, len(entries))}
	for i := range entries {
		n := cleanName(entries[i].Name)
		r.byName[n] = append(r.byName[n], i)
	}
	return r
}

// lookup returns the entry that wins for name (the last one), or -1.
func (r *resolver) lookup(name string) int {
	ix := r.byName[cleanName(name)]
	if len(ix) == 0 {
		return -1
	}
	return ix[len(ix)-1]
}

// find is lookup, also through leading directories that are symlinks
// inside the layer ("lib/x" with lib → usr/lib finds "usr/lib/x").
func (r *resolver) find(name string) int {
	if i := r.lookup(name); i >= 0 {
		return i
	}
	n, ok := throughDirLinks(name, func(dir string) (string, bool) {
		if i := r.lookup(dir); i >= 0 && r.entries[i].Typeflag == tar.TypeSymlink {
			return linkTarget(r.entries[i].Name, r.entries[i].Linkname), true
		}
		return "", false
	})
	if !ok {
		return -1
	}
	return r.lookup(n)
}

// linkTarget is the clean layer path a symlink named name pointing to
// link leads to (a relative link is resolved against name's directory).
func linkTarget(name, link string) string {
	if !strings.HasPrefix(link, "/") {
		dir := cleanName(name)
		if k := strings.LastIndexByte(dir, '/'); k >= 0 {
			link = dir[:k+1] + link
		}
	}
	return cleanPath(link)
}

// throughDirLinks rewrites name while one of its leading directories is a
// symlink (linkOf returns its clean target), at most maxLinkHops times;
// ok tells whether it rewrote anything.
func throughDirLinks(name string, linkOf func(dir string) (string, bool)) (string, bool) {
	name = cleanName(name)
	changed := false
	for hops := 0; hops < maxLinkHops; hops++ {
		found := false
		for i := 0; i < len(name); i++ {
			if name[i] != '/' {
				continue
			}
			if t, ok := linkOf(name[:i]); ok {
				name, found, changed = cleanPath(t+name[i:]), true, true
				break
			}
		}
		if !found {
			break
		}
	}
	return name, changed
}

// maxLinkHops bounds symlink and hard-link resolution.
const maxLinkHops = 8

// data returns the regular file entry whose data a read of name reads:
// name itself, or the target of a hard link or of a symlink inside the
// layer (resolved relative to the link's directory). ok is false if the
// name is absent; i is -1 when it is present but leads to no file data
// here (a directory, a device, a link leaving the layer).
func (r *resolver) data(name string) (i int, ok bool) {
	i = r.find(name)
	if i < 0 {
		return -1, false
	}
	for hops := 0; hops < maxLinkHops; hops++ {
		e := &r.entries[i]
		var next string
		switch e.Typeflag {
		case tar.TypeReg:
			return i, true
		case tar.TypeLink:
			next = e.Linkname
		case tar.TypeSymlink:
			next = linkTarget(e.Name, e.Linkname)
		default:
			return -1, true
		}
		j := r.find(next)
		if j < 0 {
			return -1, true
		}
		i = j
	}
	return -1, true
}

// cleanPath resolves "." and ".." in a slash path, staying at the root.
func cleanPath(p string) string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		switch s {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
		}
	}
	return strings.Join(out, "/")
}
