package httprange

import (
	"context"
	"fmt"
	"io"
)

// ReaderAt is an io.ReaderAt over an HTTPBlob, for code that reads a blob
// as a file (a zTOC reader extracting one file): each ReadAt is one
// ReadRanges, with its retries, under the context the ReaderAt was made
// with.
type ReaderAt struct {
	ctx context.Context
	b   *HTTPBlob
}

// NewReaderAt returns a ReaderAt reading b under ctx: cancelling ctx (a
// command's --timeout) stops the reads and their retries.
func NewReaderAt(ctx context.Context, b *HTTPBlob) *ReaderAt {
	return &ReaderAt{ctx: ctx, b: b}
}

// Size returns the blob's size in bytes.
func (r *ReaderAt) Size() int64 { return r.b.Size() }

// Close does nothing: the blob holds no connection between reads.
func (r *ReaderAt) Close() error { return nil }

// ReadAt reads len(p) bytes at off, returning io.EOF if the blob ends
// first. On another error it returns 0: the bytes of a failed ReadRanges
// are not known to be complete.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("range read at negative offset %d", off)
	}
	n := int(max(0, min(int64(len(p)), r.b.Size()-off))) // what the blob has at off
	if n > 0 {
		if err := r.b.ReadRanges(r.ctx, []Range{{Off: off, Buf: p[:n]}}); err != nil {
			return 0, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
