package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// MaxRangeSize caps one range request: a read larger than this is split.
const MaxRangeSize = 64 << 20

// RangeReader is an io.ReaderAt over a registry blob URL: each ReadAt
// issues "Range: bytes=a-b" GETs (redirects are followed, as to blob
// storage) and requires 206 with a matching Content-Range.
type RangeReader struct {
	ctx    context.Context
	client *http.Client
	url    string
	size   int64
}

// Size returns the blob size.
func (r *RangeReader) Size() int64 { return r.size }

// Close does nothing.
func (r *RangeReader) Close() error { return nil }

// ReadAt reads len(p) bytes at off, returning io.EOF if the blob ends first.
func (r *RangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("range read at negative offset %d", off)
	}
	if off >= r.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := p
	var eof error
	if rest := r.size - off; int64(len(want)) > rest {
		want, eof = want[:rest], io.EOF
	}
	n := 0
	for n < len(want) {
		chunk := want[n:min(len(want), n+MaxRangeSize)]
		m, err := r.readRange(chunk, off+int64(n))
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, eof
}

func (r *RangeReader) readRange(p []byte, off int64) (int, error) {
	end := off + int64(len(p)) - 1
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("range read %s: %w", r.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return 0, fmt.Errorf("range read %s bytes %d-%d: status %s (want 206 Partial Content)", r.url, off, end, resp.Status)
	}
	start, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return 0, fmt.Errorf("range read %s: %w", r.url, err)
	}
	if start != off || last != end || (total >= 0 && total != r.size) {
		return 0, fmt.Errorf("range read %s: asked bytes %d-%d/%d, got Content-Range %q", r.url, off, end, r.size,
			resp.Header.Get("Content-Range"))
	}
	n, err := io.ReadFull(io.LimitReader(resp.Body, int64(len(p))), p)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = fmt.Errorf("range read %s: short body: %d of %d bytes", r.url, n, len(p))
		}
		return n, err
	}
	return n, nil
}

// parseContentRange parses "bytes a-b/total" (total "*" gives -1).
func parseContentRange(s string) (start, end, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	if start, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("bad Content-Range %q", s)
		}
	}
	return start, end, total, nil
}
