package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
)

// Layout is an OCI image layout directory, usable as a Source and a Target.
type Layout struct {
	dir  string
	path layout.Path
	tag  string
	dg   digest.Digest

	mu sync.Mutex // serializes index.json updates
	j  *journal   // what a target wrote, for Abort (nil for a source)
}

// journal records what a Layout opened as a target created, so that Abort
// can remove it and leave the directory as it was.
type journal struct {
	mu       sync.Mutex
	created  []string // files and directories, in the order created
	index    []byte   // index.json as it was
	hadIndex bool
}

// created records paths that did not exist before an operation and do now.
func (j *journal) add(paths ...string) {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.created = append(j.created, paths...)
}

// missing returns those of paths that do not exist.
func missing(paths ...string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			out = append(out, p)
		}
	}
	return out
}

var (
	_ Source         = (*Layout)(nil)
	_ RangeSource    = (*Layout)(nil)
	_ ReferrerSource = (*Layout)(nil)
	_ Target         = (*Layout)(nil)
	_ Aborter        = (*Layout)(nil)
)

// OpenLayout opens the existing OCI layout dir. tag or dg select the image
// Resolve returns (see Resolve).
func OpenLayout(dir, tag string, dg digest.Digest) (*Layout, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open OCI layout %s: %w", dir, err)
	}
	return &Layout{dir: dir, path: p, tag: tag, dg: dg}, nil
}

// CreateLayout opens the OCI layout dir for writing, creating it if it
// has no index.json. What is written from then on is recorded, so that
// Abort can undo it; Commit keeps it.
func CreateLayout(dir string) (*Layout, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err == nil {
		l, err := OpenLayout(dir, "", "")
		if err != nil {
			return nil, err
		}
		l.j = &journal{index: b, hadIndex: true}
		return l, nil
	}
	j := &journal{}
	var dirs []string // the directories MkdirAll creates, outermost first
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if len(missing(d)) == 0 {
			break
		}
		dirs = append([]string{d}, dirs...)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create OCI layout %s: %w", dir, err)
	}
	j.add(dirs...)
	files := missing(filepath.Join(dir, "oci-layout"), filepath.Join(dir, "index.json"))
	p, err := layout.Write(dir, empty.Index)
	j.add(files...)
	if err != nil {
		l := &Layout{dir: dir, j: j}
		return nil, errors.Join(fmt.Errorf("create OCI layout %s: %w", dir, err), l.Abort())
	}
	return &Layout{dir: dir, path: p, j: j}, nil
}

// Abort removes what was written since CreateLayout (or the last Commit):
// new blobs, index.json restored as it was, and the layout's files and
// directories if CreateLayout created them. Files it did not create are
// never removed. A Layout opened with OpenLayout has nothing to undo.
func (l *Layout) Abort() error {
	j := l.j
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var errs []error
	if j.hadIndex {
		if err := writeFileAtomic(filepath.Join(l.dir, "index.json"), strings.NewReader(string(j.index))); err != nil {
			errs = append(errs, fmt.Errorf("restore index.json of %s: %w", l.dir, err))
		}
	}
	// Files first, then directories deepest first (concurrent writes
	// record the directories they made in any order).
	var dirs []string
	for _, p := range slices.Backward(j.created) {
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			dirs = append(dirs, p)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	slices.SortFunc(dirs, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	for _, p := range slices.Compact(dirs) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	j.created = nil
	return errors.Join(errs...)
}

// Dir returns the layout directory.
func (l *Layout) Dir() string { return l.dir }

func (l *Layout) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob digest %q: %w", d, err)
	}
	return filepath.Join(l.dir, "blobs", d.Algorithm().String(), d.Encoded()), nil
}

// Index returns the layout's index.json.
func (l *Layout) Index() (ocispec.Index, error) {
	f, err := os.Open(filepath.Join(l.dir, "index.json"))
	if err != nil {
		return ocispec.Index{}, fmt.Errorf("read index.json of %s: %w", l.dir, err)
	}
	defer f.Close()
	b, err := ReadAll(f, MaxManifestSize)
	if err != nil {
		return ocispec.Index{}, fmt.Errorf("read index.json of %s: %w", l.dir, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Index{}, fmt.Errorf("parse index.json of %s: %w", l.dir, err)
	}
	return idx, nil
}

var referrersTagRE = regexp.MustCompile(`^[a-z0-9]+-[0-9a-f]{32,}$`)

// isSociEntry reports whether an index.json entry is a SOCI index rather
// than an image.
func isSociEntry(d ocispec.Descriptor) bool {
	switch d.ArtifactType {
	case soci.MediaTypeIndexV1, soci.MediaTypeIndexV2:
		return true
	}
	return referrersTagRE.MatchString(d.Annotations[ocispec.AnnotationRefName])
}

// Resolve returns the image the layout reference selects: by digest (an
// index.json entry, or any manifest blob), by tag (the entry whose
// org.opencontainers.image.ref.name is the tag), or else the single image
// entry, or else the one named "latest".
func (l *Layout) Resolve(ctx context.Context) (ocispec.Descriptor, []byte, error) {
	desc, err := l.resolve()
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("resolve %s: %w", l.describe(), err)
	}
	b, err := l.Manifest(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if desc.MediaType == "" {
		desc.MediaType = MediaTypeOf(b)
	}
	desc.Size = int64(len(b))
	return desc, b, nil
}

func (l *Layout) describe() string {
	switch {
	case l.dg != "":
		return l.dir + "@" + l.dg.String()
	case l.tag != "":
		return l.dir + ":" + l.tag
	}
	return l.dir
}

func (l *Layout) resolve() (ocispec.Descriptor, error) {
	idx, err := l.Index()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if l.dg != "" {
		for _, d := range idx.Manifests {
			if d.Digest == l.dg {
				return d, nil
			}
		}
		p, err := l.blobPath(l.dg)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		if _, err := os.Stat(p); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("manifest %s: %w", l.dg, ErrNotFound)
		}
		return ocispec.Descriptor{Digest: l.dg}, nil
	}
	if l.tag != "" {
		for _, d := range slices.Backward(idx.Manifests) {
			if d.Annotations[ocispec.AnnotationRefName] == l.tag {
				return d, nil
			}
		}
		return ocispec.Descriptor{}, fmt.Errorf("no image named %q: %w", l.tag, ErrNotFound)
	}
	var images []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if !isSociEntry(d) {
			images = append(images, d)
		}
	}
	switch len(images) {
	case 0:
		return ocispec.Descriptor{}, fmt.Errorf("no image: %w", ErrNotFound)
	case 1:
		return images[0], nil
	}
	var names []string
	for _, d := range slices.Backward(images) {
		n := d.Annotations[ocispec.AnnotationRefName]
		if n == "latest" {
			return d, nil
		}
		if n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return ocispec.Descriptor{}, fmt.Errorf("%d images and none named \"latest\"; pick one with PATH:TAG (names: %s) or PATH@DIGEST",
		len(images), strings.Join(names, ", "))
}

// Manifest reads and verifies manifest d.
func (l *Layout) Manifest(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > MaxManifestSize {
		return nil, fmt.Errorf("read manifest %s: %d bytes exceed the %d byte limit", d.Digest, d.Size, MaxManifestSize)
	}
	p, err := l.blobPath(d.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s from %s: %w", d.Digest, l.dir, notFound(err))
	}
	defer f.Close()
	b, err := ReadAll(f, MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s from %s: %w", d.Digest, l.dir, err)
	}
	if err := Verify(d, b); err != nil {
		return nil, fmt.Errorf("read manifest from %s: %w", l.dir, err)
	}
	return b, nil
}

func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Blob opens blob d; the reader verifies its digest at EOF.
func (l *Layout) Blob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	p, err := l.blobPath(d.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open blob %s in %s: %w", d.Digest, l.dir, notFound(err))
	}
	return NewVerifyingReader(f, d)
}

type fileReaderAt struct {
	*os.File
	size int64
}

func (f fileReaderAt) Size() int64 { return f.size }

// BlobReaderAt opens blob d for random access.
func (l *Layout) BlobReaderAt(ctx context.Context, d ocispec.Descriptor) (ReaderAtCloser, error) {
	p, err := l.blobPath(d.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open blob %s in %s: %w", d.Digest, l.dir, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open blob %s in %s: %w", d.Digest, l.dir, err)
	}
	return fileReaderAt{File: f, size: fi.Size()}, nil
}

// Referrers returns the index.json entries that are manifests whose subject
// is subject (and whose artifact type, or else config media type, is
// artifactType unless that is "").
func (l *Layout) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	for _, d := range idx.Manifests {
		if d.MediaType != ocispec.MediaTypeImageManifest {
			continue
		}
		if artifactType != "" && d.ArtifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		if slices.ContainsFunc(out, func(o ocispec.Descriptor) bool { return o.Digest == d.Digest }) {
			continue
		}
		b, err := l.Manifest(ctx, d)
		if err != nil {
			return nil, err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			continue // not ours to judge: only subjects matter here
		}
		if m.Subject == nil || m.Subject.Digest != subject {
			continue
		}
		at := m.ArtifactType
		if at == "" {
			at = m.Config.MediaType
		}
		if artifactType != "" && at != artifactType {
			continue
		}
		r := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: at, Annotations: m.Annotations}
		out = append(out, r)
	}
	return out, nil
}

// WriteBlob writes blob d unless the layout has a blob of that digest and
// size. It writes to a temporary file, verifies, then renames, so a failed
// write leaves no blob behind.
func (l *Layout) WriteBlob(ctx context.Context, d ocispec.Descriptor, open Opener) error {
	p, err := l.blobPath(d.Digest)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && (d.Size <= 0 || fi.Size() == d.Size) {
		return nil
	}
	created := missing(filepath.Join(l.dir, "blobs"), filepath.Dir(p), p)
	rc, err := open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	vr, err := NewVerifyingReader(rc, d)
	if err != nil {
		return err
	}
	err = writeFileAtomic(p, vr)
	// Directories made for a failed write are recorded too.
	l.j.add(slices.DeleteFunc(created, func(c string) bool { return len(missing(c)) > 0 })...)
	if err != nil {
		return fmt.Errorf("write blob %s to %s: %w", d.Digest, l.dir, err)
	}
	return nil
}

func writeFileAtomic(p string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-"+filepath.Base(p)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

func bytesOpener(b []byte) Opener {
	return func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(b))), nil }
}

// PutManifest writes the manifest blob and, with a tag, names it in
// index.json (replacing any entry of that name).
func (l *Layout) PutManifest(ctx context.Context, d ocispec.Descriptor, body []byte, tag string) error {
	if err := Verify(d, body); err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	if err := l.WriteBlob(ctx, d, bytesOpener(body)); err != nil {
		return err
	}
	if tag == "" {
		return nil
	}
	entry := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType,
		Platform: d.Platform, Annotations: map[string]string{ocispec.AnnotationRefName: tag}}
	return l.updateIndex(func(ms []ocispec.Descriptor) []ocispec.Descriptor {
		ms = slices.DeleteFunc(ms, func(m ocispec.Descriptor) bool { return m.Annotations[ocispec.AnnotationRefName] == tag })
		return append(ms, entry)
	})
}

// PutReferrer writes the manifest blob and adds an index.json entry for it
// (artifact type set, no name) unless one exists.
func (l *Layout) PutReferrer(ctx context.Context, subject digest.Digest, d ocispec.Descriptor, body []byte) error {
	if err := Verify(d, body); err != nil {
		return fmt.Errorf("put referrer: %w", err)
	}
	if err := l.WriteBlob(ctx, d, bytesOpener(body)); err != nil {
		return err
	}
	entry := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType}
	return l.updateIndex(func(ms []ocispec.Descriptor) []ocispec.Descriptor {
		if slices.ContainsFunc(ms, func(m ocispec.Descriptor) bool { return m.Digest == d.Digest }) {
			return ms
		}
		return append(ms, entry)
	})
}

// updateIndex rewrites index.json with f applied to its manifests.
func (l *Layout) updateIndex(f func([]ocispec.Descriptor) []ocispec.Descriptor) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	idx, err := l.Index()
	if err != nil {
		return err
	}
	idx.Manifests = f(idx.Manifests)
	if idx.SchemaVersion == 0 {
		idx.SchemaVersion = 2
	}
	if idx.MediaType == "" {
		idx.MediaType = ocispec.MediaTypeImageIndex
	}
	b, err := json.MarshalIndent(idx, "", "   ")
	if err != nil {
		return fmt.Errorf("write index.json of %s: %w", l.dir, err)
	}
	if err := writeFileAtomic(filepath.Join(l.dir, "index.json"), strings.NewReader(string(b))); err != nil {
		return fmt.Errorf("write index.json of %s: %w", l.dir, err)
	}
	return nil
}

// Commit keeps what was written (a layout directory is complete after
// each call): Abort no longer undoes it.
func (l *Layout) Commit(context.Context) error {
	if l.j == nil {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(l.dir, "index.json"))
	if err != nil {
		return fmt.Errorf("commit OCI layout %s: %w", l.dir, err)
	}
	l.j.mu.Lock()
	defer l.j.mu.Unlock()
	l.j.created, l.j.index, l.j.hadIndex = nil, b, true
	return nil
}

// Close does nothing.
func (l *Layout) Close() error { return nil }

// MediaTypeOf returns the mediaType field of a manifest or index, or, when
// it is absent, what its shape says (manifests list "manifests").
func MediaTypeOf(b []byte) string {
	var m struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return ""
	}
	if m.MediaType != "" {
		return m.MediaType
	}
	if m.Manifests != nil {
		return ocispec.MediaTypeImageIndex
	}
	return ocispec.MediaTypeImageManifest
}

// IsIndex reports whether mt is an OCI image index or Docker manifest list.
func IsIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

// IsManifest reports whether mt is an OCI or Docker image manifest.
func IsManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}
