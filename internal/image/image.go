package image

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize caps every manifest or image index read from a source:
// 8 MiB, twice what common registries accept, so nothing legitimate is cut.
const MaxManifestSize = 8 << 20

// MaxZtocSize caps a zTOC blob read from a source. zTOCs run to a few percent
// of their layer; 256 MiB covers layers of several GiB.
const MaxZtocSize = 256 << 20

// Media types of image manifests and indexes this package tells apart.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// ErrNotFound is matched by errors for a reference, manifest or blob that the
// source does not hold.
var ErrNotFound = errors.New("not found")

// Source is where an image is read from.
type Source interface {
	// Resolve returns the descriptor and content of the manifest or image
	// index the source reference names.
	Resolve(ctx context.Context) (ocispec.Descriptor, []byte, error)
	// Manifest returns the content of the manifest or index d, at most
	// MaxManifestSize bytes, verified against d.Digest.
	Manifest(ctx context.Context, d ocispec.Descriptor) ([]byte, error)
	// Blob opens blob d. The reader fails at EOF if the content does not
	// match d.Digest.
	Blob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error)
	// Close releases the source (an extracted layout tar is removed).
	Close() error
}

// RangeSource is a Source with random access to blobs.
type RangeSource interface {
	// BlobReaderAt returns random access to blob d (d.Size must be set).
	// Bytes read are not verified: the caller verifies what it reads.
	BlobReaderAt(ctx context.Context, d ocispec.Descriptor) (ReaderAtCloser, error)
}

// ReferrerSource is a Source that can list the manifests referring to a
// manifest through their subject field.
type ReferrerSource interface {
	// Referrers returns the descriptors of the manifests whose subject is
	// subject, restricted to artifactType unless it is "".
	Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error)
}

// ReaderAtCloser is random access to a blob that must be closed.
type ReaderAtCloser interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Opener opens a blob's content for writing to a target; it is only called
// when the target lacks the blob.
type Opener func(ctx context.Context) (io.ReadCloser, error)

// Target is where an image is written.
type Target interface {
	// WriteBlob writes blob d unless the target has it. open is called
	// only when the blob is missing; what it returns is verified against
	// d's digest and size.
	WriteBlob(ctx context.Context, d ocispec.Descriptor, open Opener) error
	// PutManifest stores manifest or index body with descriptor d, and, if
	// tag is not "", names it tag (a registry tag; in a layout, the
	// org.opencontainers.image.ref.name of its index.json entry, replacing
	// any entry with that name).
	PutManifest(ctx context.Context, d ocispec.Descriptor, body []byte, tag string) error
	// PutReferrer stores a manifest with a subject so that referrer lookups
	// of subject find it: in a registry, by digest (the registry or the
	// client keeps the referrers list) plus the referrers fallback tag
	// "<alg>-<hex>" unless that tag already holds a referrers index; in a
	// layout, as an index.json entry named by that tag.
	PutReferrer(ctx context.Context, subject digest.Digest, d ocispec.Descriptor, body []byte) error
	// Commit finishes the target: an OCI layout tar is written. Directories
	// and registries are complete as soon as each call returns.
	Commit(ctx context.Context) error
	// Close releases the target. Without Commit, a layout tar is not
	// written.
	Close() error
}

// Aborter is a Target that can undo what it was given since it was opened
// (or last committed). A layout directory is one: Abort removes the files
// written and restores index.json, and removes the directory if opening
// the target created it. A registry is not: nothing pushed can be taken
// back, so callers push the tag last.
type Aborter interface {
	Abort() error
}

// ReadAll reads r to EOF, failing if it holds more than limit bytes.
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("content exceeds the %d byte limit", limit)
	}
	return b, nil
}

// ReadBlob reads blob d of src, at most limit bytes, and verifies it.
func ReadBlob(ctx context.Context, src Source, d ocispec.Descriptor, limit int64) ([]byte, error) {
	if d.Size > limit {
		return nil, fmt.Errorf("read blob %s: %d bytes exceed the %d byte limit", d.Digest, d.Size, limit)
	}
	rc, err := src.Blob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := ReadAll(rc, limit)
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d.Digest, err)
	}
	if err := Verify(d, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Verify checks b against the digest and (if set) size of d.
func Verify(d ocispec.Descriptor, b []byte) error {
	if d.Size > 0 && int64(len(b)) != d.Size {
		return fmt.Errorf("blob %s: got %d bytes, want %d", d.Digest, len(b), d.Size)
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("blob digest %q: %w", d.Digest, err)
	}
	if got := d.Digest.Algorithm().FromBytes(b); got != d.Digest {
		return fmt.Errorf("blob %s: content has digest %s", d.Digest, got)
	}
	return nil
}

// verifyingReader checks the digest (and size, if known) of what it reads
// when it reaches EOF.
type verifyingReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want digest.Digest
	size int64
	n    int64
}

// NewVerifyingReader returns a reader of r that fails at EOF unless the bytes
// read match d's digest and, if d.Size > 0, its size.
func NewVerifyingReader(r io.ReadCloser, d ocispec.Descriptor) (io.ReadCloser, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("blob digest %q: %w", d.Digest, err)
	}
	var h hash.Hash
	if d.Digest.Algorithm() == digest.SHA256 {
		h = sha256.New()
	} else {
		h = d.Digest.Algorithm().Hash()
	}
	return &verifyingReader{r: r, h: h, want: d.Digest, size: d.Size}, nil
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size > 0 && v.n > v.size {
		return n, fmt.Errorf("blob %s: more than %d bytes", v.want, v.size)
	}
	if errors.Is(err, io.EOF) {
		if v.size > 0 && v.n != v.size {
			return n, fmt.Errorf("blob %s: got %d bytes, want %d", v.want, v.n, v.size)
		}
		if got := digest.NewDigest(v.want.Algorithm(), v.h); got != v.want {
			return n, fmt.Errorf("blob %s: content has digest %s", v.want, got)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.r.Close() }
