package remote

import (
	"context"

	"github.com/socikit/socikit/internal/httprange"
)

// Range is a byte range of a blob and the buffer it is read into: Buf
// receives bytes [Off, Off+len(Buf)).
type Range = httprange.Range

// Blob is random access to a layer blob's compressed bytes: what a Fetcher
// reads spans from. httprange.HTTPBlob (range requests to a registry, with
// the retry policy of docs/reliability.md) is the daemon's.
type Blob interface {
	// Size returns the blob's size in bytes.
	Size() int64
	// ReadRanges fills every range's buffer or returns an error. Ranges
	// are sorted by offset and do not overlap.
	ReadRanges(ctx context.Context, ranges []Range) error
}

var _ Blob = (*httprange.HTTPBlob)(nil)
