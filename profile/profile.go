// Package profile is socikit's start-up profile: which byte ranges of which
// files of an image a container's start-up reads, in first-access order.
//
// A profile is made inside the build by the `# syntax=` frontend (a traced
// run of the image's start-up), or by socikit-snapshotter from the reads it
// serves to running containers (`socikit profile export`). The exporter
// reads it to put the files with hot ranges first, to cut spans around the
// hot ranges of big files and to list exactly the hot spans for prefetch.
//
// The encoding is JSON, versioned by its "version" field (see docs/profile.md):
//
//	{"version":"socikit.profile.v1","platform":"linux/amd64","source":"build",
//	 "files":[{"path":"/usr/bin/python3","ranges":[[0,4096],[8192,65536]]}]}
//
// Files are in first-access order; each file's ranges are in first-access
// order too and may overlap (Normalize merges them). Decode checks bounds
// and caps sizes: the bytes come from build results, files and registries.
package profile

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// Version is the value of the version field this package writes and reads.
const Version = "socikit.profile.v1"

// MediaType is the media type (and OCI artifact type) of an encoded profile.
const MediaType = "application/vnd.socikit.profile.v1+json"

// Limits of Decode: a profile over them is refused, not truncated.
const (
	// MaxEncodedSize caps the encoded profile (after gunzip).
	MaxEncodedSize = 64 << 20
	// MaxFiles caps the number of files.
	MaxFiles = 1 << 18
	// MaxRanges caps the number of ranges over all files.
	MaxRanges = 1 << 21
	// MaxPathLen caps one path.
	MaxPathLen = 4096
)

// Sources of a profile.
const (
	SourceBuild       = "build"       // traced start-up run inside the build
	SourceSnapshotter = "snapshotter" // reads served by socikit-snapshotter
	SourceFile        = "file"        // written by hand or converted
)

// Profile is a start-up profile of one platform's image.
type Profile struct {
	// Version is Version.
	Version string `json:"version"`
	// Platform is the image's platform ("linux/amd64"), if known.
	Platform string `json:"platform,omitempty"`
	// Source tells how the profile was made (SourceBuild, ...).
	Source string `json:"source,omitempty"`
	// Command is the start-up command that was profiled, if known.
	Command []string `json:"command,omitempty"`
	// Ready is the ready line the profile ran until, if any.
	Ready string `json:"ready,omitempty"`
	// Files are the files read, in first-access order.
	Files []File `json:"files"`
}

// File is one file's reads.
type File struct {
	// Path is absolute and clean, as seen inside the container.
	Path string `json:"path"`
	// Ranges are the byte ranges read, in first-access order.
	Ranges []Range `json:"ranges"`
}

// Range is a byte range of a file: [Offset, Offset+Length).
type Range struct {
	Offset int64
	Length int64
}

// End is the offset just past the range.
func (r Range) End() int64 { return r.Offset + r.Length }

// MarshalJSON writes a range as [offset, length].
func (r Range) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "[%d,%d]", r.Offset, r.Length), nil
}

// UnmarshalJSON reads [offset, length].
func (r *Range) UnmarshalJSON(b []byte) error {
	var a []int64
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("range: %w", err)
	}
	if len(a) != 2 {
		return fmt.Errorf("range: want [offset,length], got %d numbers", len(a))
	}
	r.Offset, r.Length = a[0], a[1]
	return nil
}

// Bytes is the total length of f's ranges after merging overlaps.
func (f File) Bytes() int64 {
	var n int64
	for _, r := range MergeRanges(f.Ranges) {
		n += r.Length
	}
	return n
}

// Paths returns the files' paths in first-access order.
func (p *Profile) Paths() []string {
	out := make([]string, len(p.Files))
	for i, f := range p.Files {
		out[i] = f.Path
	}
	return out
}

// Lookup returns the file named path (cleaned, absolute), or nil.
func (p *Profile) Lookup(name string) *File {
	name = CleanPath(name)
	for i := range p.Files {
		if p.Files[i].Path == name {
			return &p.Files[i]
		}
	}
	return nil
}

// Bytes is the total of the files' merged range lengths.
func (p *Profile) Bytes() int64 {
	var n int64
	for _, f := range p.Files {
		n += f.Bytes()
	}
	return n
}

// CleanPath makes name absolute and clean ("usr/lib/x" -> "/usr/lib/x").
func CleanPath(name string) string {
	return path.Clean("/" + strings.TrimPrefix(name, "./"))
}

// MergeRanges returns rs sorted by offset with overlapping and adjacent
// ranges merged; rs is not changed.
func MergeRanges(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Range) int {
		if a.Offset != b.Offset {
			if a.Offset < b.Offset {
				return -1
			}
			return 1
		}
		return 0
	})
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if r.Offset <= last.End() {
			if r.End() > last.End() {
				last.Length = r.End() - last.Offset
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// Builder records reads in first-access order, merging each file's
// ranges as they come (a range that touches or overlaps one already
// recorded for the file extends it, keeping the first one's position).
// The zero value is ready to use; it is not safe for concurrent use.
type Builder struct {
	files []File
	index map[string]int
	n     int // ranges recorded
}

// Add records a read of [off, off+n) of name. Reads of zero length and
// paths that are not absolute are ignored.
func (b *Builder) Add(name string, off, n int64) {
	if n <= 0 || off < 0 || !strings.HasPrefix(name, "/") {
		return
	}
	if b.index == nil {
		b.index = map[string]int{}
	}
	i, ok := b.index[name]
	if !ok {
		i = len(b.files)
		b.index[name] = i
		b.files = append(b.files, File{Path: name})
	}
	f := &b.files[i]
	r := Range{Offset: off, Length: n}
	// Most reads continue the previous one of the file: check the last
	// range first, then the others.
	for k := len(f.Ranges) - 1; k >= 0; k-- {
		q := &f.Ranges[k]
		if r.Offset <= q.End() && r.End() >= q.Offset {
			lo, hi := min(q.Offset, r.Offset), max(q.End(), r.End())
			q.Offset, q.Length = lo, hi-lo
			return
		}
	}
	f.Ranges = append(f.Ranges, r)
	b.n++
}

// Len is the number of files recorded.
func (b *Builder) Len() int { return len(b.files) }

// Ranges is the number of ranges recorded.
func (b *Builder) Ranges() int { return b.n }

// Files returns the files recorded so far (shared, not copied).
func (b *Builder) Files() []File { return b.files }

// Profile returns a profile of what was recorded.
func (b *Builder) Profile() *Profile {
	return &Profile{Version: Version, Files: slices.Clone(b.files)}
}

// Validate checks p against the format's rules and limits.
func (p *Profile) Validate() error {
	if p.Version != Version {
		return fmt.Errorf("profile: version %q is not supported (want %q)", p.Version, Version)
	}
	if len(p.Files) > MaxFiles {
		return fmt.Errorf("profile: %d files, over the limit of %d", len(p.Files), MaxFiles)
	}
	seen := make(map[string]bool, len(p.Files))
	ranges := 0
	for i, f := range p.Files {
		if len(f.Path) > MaxPathLen {
			return fmt.Errorf("profile: files[%d]: path of %d bytes, over the limit of %d", i, len(f.Path), MaxPathLen)
		}
		if !strings.HasPrefix(f.Path, "/") || path.Clean(f.Path) != f.Path {
			return fmt.Errorf("profile: files[%d]: path %q is not absolute and clean", i, f.Path)
		}
		if strings.ContainsRune(f.Path, 0) {
			return fmt.Errorf("profile: files[%d]: path contains NUL", i)
		}
		if seen[f.Path] {
			return fmt.Errorf("profile: files[%d]: path %q listed twice", i, f.Path)
		}
		seen[f.Path] = true
		ranges += len(f.Ranges)
		if ranges > MaxRanges {
			return fmt.Errorf("profile: over %d ranges", MaxRanges)
		}
		for k, r := range f.Ranges {
			if r.Offset < 0 || r.Length <= 0 || r.Offset > (1<<62) || r.Length > (1<<62) {
				return fmt.Errorf("profile: files[%d] %s: ranges[%d] [%d,%d] is out of bounds", i, f.Path, k, r.Offset, r.Length)
			}
		}
	}
	return nil
}

// Encode writes p as JSON. The same profile always gives the same bytes.
func Encode(w io.Writer, p *Profile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("profile: encode: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// Marshal is Encode to a byte slice.
func Marshal(p *Profile) ([]byte, error) {
	var buf bytes.Buffer
	if err := Encode(&buf, p); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ErrTooLarge is returned by Decode for a profile over MaxEncodedSize.
var ErrTooLarge = errors.New("profile: over the size limit")

// Decode reads a profile (JSON, optionally gzip-compressed) and validates it.
func Decode(r io.Reader) (*Profile, error) {
	br := &peekReader{r: r}
	head, err := br.peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("profile: %w", err)
	}
	var src io.Reader = br
	if len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("profile: gzip: %w", err)
		}
		src = zr
	}
	b, err := io.ReadAll(io.LimitReader(src, MaxEncodedSize+1))
	if err != nil {
		return nil, fmt.Errorf("profile: read: %w", err)
	}
	if len(b) > MaxEncodedSize {
		return nil, ErrTooLarge
	}
	return Unmarshal(b)
}

// Unmarshal is Decode of a byte slice of plain JSON.
func Unmarshal(b []byte) (*Profile, error) {
	if len(b) > MaxEncodedSize {
		return nil, ErrTooLarge
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("profile: empty")
	}
	var p Profile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("profile: not a valid profile: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

type peekReader struct {
	r   io.Reader
	buf []byte
}

func (p *peekReader) peek(n int) ([]byte, error) {
	for len(p.buf) < n {
		b := make([]byte, n-len(p.buf))
		k, err := p.r.Read(b)
		p.buf = append(p.buf, b[:k]...)
		if err != nil {
			return p.buf, err
		}
	}
	return p.buf, nil
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// Merge returns one profile holding ps's files: a file is placed where it
// was first accessed in the first profile naming it, and its ranges are
// the union of all. Used to apply profiles of several platforms, or of
// several runs, to one build.
func Merge(ps ...*Profile) *Profile {
	var b Builder
	out := &Profile{Version: Version}
	for _, p := range ps {
		if p == nil {
			continue
		}
		if out.Platform == "" {
			out.Platform = p.Platform
		}
		if out.Source == "" {
			out.Source = p.Source
		}
		for _, f := range p.Files {
			for _, r := range f.Ranges {
				b.Add(f.Path, r.Offset, r.Length)
			}
		}
	}
	out.Files = b.Profile().Files
	return out
}

// Build result metadata keys (the frontend writes them, the soci exporter
// reads them; BuildKit hands a frontend result's metadata to the exporter
// unchanged).
const (
	// MetadataKey carries the encoded profile of a single-platform result;
	// a multi-platform result has one per platform, under MetadataKey +
	// "/" + the platform ("socikit.profile/linux/arm64"), as BuildKit names
	// its own per-platform keys.
	MetadataKey = "socikit.profile"
	// AttrsMetadataKey carries the soci-* exporter attributes set in the
	// Dockerfile, a JSON object of strings: defaults that the exporter
	// attributes given on the command line override.
	AttrsMetadataKey = "socikit.attrs"
	// StatusMetadataKey carries, per platform like MetadataKey, one line
	// telling how the start-up profiling went ("ok: 412 files, ..." or the
	// warning that no profile was made).
	StatusMetadataKey = "socikit.profile.status"
)
