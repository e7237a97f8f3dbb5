package image

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
)

// Kind is the kind of place a Ref names.
type Kind int

const (
	// KindLayout is an OCI image layout directory.
	KindLayout Kind = iota + 1
	// KindArchive is an OCI image layout in a tar file.
	KindArchive
	// KindRegistry is a repository in a registry.
	KindRegistry
)

// String returns "oci-layout", "oci-archive" or "registry".
func (k Kind) String() string {
	switch k {
	case KindLayout:
		return "oci-layout"
	case KindArchive:
		return "oci-archive"
	case KindRegistry:
		return "registry"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Prefixes that force a reference to be read as a layout or a layout tar.
const (
	PrefixLayout  = "oci-layout:"
	PrefixArchive = "oci-archive:"
)

// Ref is a parsed image reference.
type Ref struct {
	Kind Kind
	// Path is the layout directory or tar file (KindLayout, KindArchive).
	Path string
	// Tag selects the image of a layout by its
	// org.opencontainers.image.ref.name annotation ("" for the default).
	Tag string
	// Digest selects the image of a layout by digest.
	Digest digest.Digest
	// Name is the registry reference (KindRegistry).
	Name name.Reference
	// Insecure allows plain HTTP to the registry.
	Insecure bool
}

// String returns the reference as the user would write it.
func (r Ref) String() string {
	switch r.Kind {
	case KindRegistry:
		return r.Name.String()
	case KindLayout, KindArchive:
		s := r.Kind.String() + ":" + r.Path
		if r.Tag != "" {
			s += ":" + r.Tag
		}
		if r.Digest != "" {
			s += "@" + r.Digest.String()
		}
		return s
	}
	return "<invalid ref>"
}

// SamePlace reports whether r and o name the same layout, layout tar or
// registry repository, so blobs present in one are present in the other.
func (r Ref) SamePlace(o Ref) bool {
	if r.Kind != o.Kind {
		return false
	}
	if r.Kind == KindRegistry {
		return r.Name.Context().Name() == o.Name.Context().Name()
	}
	a, err1 := filepath.Abs(r.Path)
	b, err2 := filepath.Abs(o.Path)
	return err1 == nil && err2 == nil && a == b
}

// refNameRE is the OCI tag grammar, used for layout ref names.
var refNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// ParseRef parses an image reference:
//
//   - "oci-layout:PATH[:TAG|@DIGEST]": an OCI layout directory;
//   - "oci-archive:PATH[:TAG|@DIGEST]": an OCI layout tar;
//   - a path to an existing directory, or to a file or a name ending in
//     ".tar", or a path starting with "/", "./" or "../", optionally
//     followed by ":TAG" or "@DIGEST": a layout (a directory unless it ends
//     in ".tar");
//   - anything else: a registry reference such as "host/repo:tag".
//
// insecure allows plain HTTP to the registry (ggcr name.Insecure).
func ParseRef(s string, insecure bool) (Ref, error) {
	if s == "" {
		return Ref{}, fmt.Errorf("empty image reference")
	}
	switch {
	case strings.HasPrefix(s, PrefixLayout):
		return parseLocal(KindLayout, strings.TrimPrefix(s, PrefixLayout), s)
	case strings.HasPrefix(s, PrefixArchive):
		return parseLocal(KindArchive, strings.TrimPrefix(s, PrefixArchive), s)
	}
	if kind, ok := localKind(s); ok {
		return Ref{Kind: kind, Path: s}, nil
	}
	path, tag, dg, err := splitSelector(s)
	if err == nil && path != s {
		if kind, ok := localKind(path); ok {
			return Ref{Kind: kind, Path: path, Tag: tag, Digest: dg}, nil
		}
	}
	if looksLikePath(s) {
		r, err := parseLocal(KindLayout, s, s)
		if err != nil {
			return Ref{}, err
		}
		r.Kind = localKindByName(r.Path)
		return r, nil
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	n, err := name.ParseReference(s, opts...)
	if err != nil {
		return Ref{}, fmt.Errorf("parse image reference %q: %w", s, err)
	}
	return Ref{Kind: KindRegistry, Name: n, Insecure: insecure}, nil
}

func parseLocal(kind Kind, rest, orig string) (Ref, error) {
	path, tag, dg, err := splitSelector(rest)
	if err != nil {
		return Ref{}, fmt.Errorf("parse image reference %q: %w", orig, err)
	}
	if path == "" {
		return Ref{}, fmt.Errorf("parse image reference %q: empty path", orig)
	}
	return Ref{Kind: kind, Path: path, Tag: tag, Digest: dg}, nil
}

// splitSelector splits "PATH:TAG" or "PATH@DIGEST". A ':' only starts a tag
// after the last '/' and when what follows is a valid tag.
func splitSelector(s string) (path, tag string, dg digest.Digest, err error) {
	if i := strings.LastIndex(s, "@"); i >= 0 && strings.Contains(s[i+1:], ":") {
		d, err := digest.Parse(s[i+1:])
		if err != nil {
			return "", "", "", fmt.Errorf("digest %q: %w", s[i+1:], err)
		}
		return s[:i], "", d, nil
	}
	slash := strings.LastIndex(s, "/")
	if i := strings.LastIndex(s, ":"); i > slash && i > 0 && refNameRE.MatchString(s[i+1:]) {
		// Keep Windows drive letters ("C:") out of the tag.
		return s[:i], s[i+1:], "", nil
	}
	return s, "", "", nil
}

func localKind(path string) (Kind, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	if fi.IsDir() {
		return KindLayout, true
	}
	if strings.HasSuffix(path, ".tar") {
		return KindArchive, true
	}
	return 0, false
}

func localKindByName(path string) Kind {
	if strings.HasSuffix(path, ".tar") {
		return KindArchive
	}
	return KindLayout
}

func looksLikePath(s string) bool {
	return strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") ||
		s == "." || s == ".." || strings.HasSuffix(s, ".tar") || strings.Contains(s, ".tar:") || strings.Contains(s, ".tar@")
}
