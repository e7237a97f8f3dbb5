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

// NotifyBlob is a Blob that tells which bytes have arrived while a read
// is under way, so that a Fetcher stores and serves each span of a long
// range as soon as its bytes are in, not when the whole range is.
type NotifyBlob interface {
	Blob
	// ReadRangesNotify is ReadRanges calling notify(off, n) once for
	// each part [off, off+n) of the ranges as it is written into their
	// buffers, from any goroutine.
	ReadRangesNotify(ctx context.Context, ranges []Range, notify func(off, n int64)) error
}

var _ NotifyBlob = (*httprange.HTTPBlob)(nil)
