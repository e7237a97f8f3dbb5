package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// Range is a byte range of a blob and the buffer it is read into: Buf
// receives bytes [Off, Off+len(Buf)).
type Range struct {
	Off int64
	Buf []byte
}

// Blob is random access to a layer blob's compressed bytes.
type Blob interface {
	// Size returns the blob's size in bytes.
	Size() int64
	// ReadRanges fills every range's buffer or returns an error. Ranges
	// are sorted by offset and do not overlap.
	ReadRanges(ctx context.Context, ranges []Range) error
}

// HTTPBlob reads a blob by HTTP range requests: one request per range, or
// one multi-range request for several when the server honours them,
// retried with backoff on 5xx, 429 and connection errors, each attempt
// bounded by a timeout. It never logs; its errors carry no credentials and
// no URL query strings (blob storage redirects sign them).
type HTTPBlob struct {
	client *http.Client
	url    string
	size   int64
	o      options

	noMultiRange atomic.Bool // set once the server answered a multi-range request badly
}

var _ Blob = (*HTTPBlob)(nil)

// NewHTTPBlob returns a Blob reading url (which must answer range
// requests) of size bytes through client. The client does any
// authentication.
func NewHTTPBlob(client *http.Client, url string, size int64, opts ...Option) (*HTTPBlob, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if size <= 0 {
		return nil, fmt.Errorf("blob size %d is not positive", size)
	}
	return &HTTPBlob{client: client, url: url, size: size, o: o}, nil
}

// NewRegistryBlob returns a Blob reading layer d (size bytes) of repo
// from its registry, with token or basic authentication from the keychain
// (WithKeychain). Use name.Insecure when making repo for a plain-HTTP
// registry. ctx bounds the authentication handshake only.
func NewRegistryBlob(ctx context.Context, repo name.Repository, d digest.Digest, size int64, opts ...Option) (*HTTPBlob, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob digest %q: %w", d, err)
	}
	auth, err := authn.Resolve(ctx, o.keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("resolve credentials for %s: %w", repo, err)
	}
	base := o.transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticate to %s: %w", repo, redact(err))
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d)
	return NewHTTPBlob(&http.Client{Transport: rt}, u, size, opts...)
}

// Size implements Blob.
func (b *HTTPBlob) Size() int64 { return b.size }

// ReadRanges implements Blob.
func (b *HTTPBlob) ReadRanges(ctx context.Context, ranges []Range) error {
	var reqs [][]Range // each element: one request
	var cur []Range
	var curSize int64
	flush := func() {
		if len(cur) > 0 {
			reqs = append(reqs, cur)
			cur, curSize = nil, 0
		}
	}
	multi := b.o.multiRange
	if b.noMultiRange.Load() {
		multi = 1
	}
	for _, r := range ranges {
		if r.Off < 0 || r.Off+int64(len(r.Buf)) > b.size {
			return fmt.Errorf("range %d+%d outside blob of %d bytes", r.Off, len(r.Buf), b.size)
		}
		for len(r.Buf) > 0 {
			n := min(int64(len(r.Buf)), b.o.maxRequest)
			piece := Range{Off: r.Off, Buf: r.Buf[:n]}
			r = Range{Off: r.Off + n, Buf: r.Buf[n:]}
			if len(cur) >= multi || curSize+n > b.o.maxRequest {
				flush()
			}
			cur = append(cur, piece)
			curSize += n
		}
	}
	flush()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.o.jobs)
	for _, rq := range reqs {
		g.Go(func() error { return b.fetch(gctx, rq) })
	}
	return g.Wait()
}

// fetch reads rs (one request) with retries, falling back to one request
// per range when a multi-range request is refused.
func (b *HTTPBlob) fetch(ctx context.Context, rs []Range) error {
	err := b.retry(ctx, rs)
	if errors.Is(err, errNoMultiRange) {
		b.noMultiRange.Store(true)
		for _, r := range rs {
			if err := b.retry(ctx, []Range{r}); err != nil {
				return err
			}
		}
		return nil
	}
	return err
}

var errNoMultiRange = errors.New("server does not answer multi-range requests")

func (b *HTTPBlob) retry(ctx context.Context, rs []Range) error {
	delay := b.o.backoff
	for attempt := 0; ; attempt++ {
		err := b.do(ctx, rs)
		if err == nil || !retryable(err) || attempt >= b.o.retries || ctx.Err() != nil {
			return err
		}
		j := time.Duration(rand.Int64N(int64(delay/2) + 1))
		t := time.NewTimer(delay/2 + j)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		delay *= 2
	}
}

type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests || se.code == http.StatusRequestTimeout
	}
	if errors.Is(err, errNoMultiRange) || errors.Is(err, context.Canceled) {
		return false
	}
	var ne net.Error
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errShortBody)
}

var errShortBody = errors.New("short response body")

func rangeHeader(rs []Range) string {
	var sb strings.Builder
	sb.WriteString("bytes=")
	for i, r := range rs {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, "%d-%d", r.Off, r.Off+int64(len(r.Buf))-1)
	}
	return sb.String()
}

// do makes one attempt at reading rs in one request.
func (b *HTTPBlob) do(ctx context.Context, rs []Range) error {
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return redact(err)
	}
	req.Header.Set("Range", rangeHeader(rs))
	resp, err := b.client.Do(req)
	if err != nil {
		return fmt.Errorf("range request: %w", redact(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode == http.StatusOK && len(rs) > 1 {
			return errNoMultiRange
		}
		return &statusError{resp.StatusCode, fmt.Sprintf("range request %s: status %s (want 206)", req.Header.Get("Range"), resp.Status)}
	}
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "multipart/byteranges" {
		if len(rs) == 1 {
			return readParts(multipart.NewReader(resp.Body, params["boundary"]), rs, b.size)
		}
		if err := readParts(multipart.NewReader(resp.Body, params["boundary"]), rs, b.size); err != nil {
			if retryable(err) {
				return err
			}
			return fmt.Errorf("%w: %w", errNoMultiRange, err)
		}
		return nil
	}
	start, end, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return err
	}
	if total >= 0 && total != b.size {
		return fmt.Errorf("range request: blob is %d bytes, expected %d", total, b.size)
	}
	// One range back: it must cover every range asked (a server may merge
	// them).
	first, last := rs[0].Off, rs[len(rs)-1].Off+int64(len(rs[len(rs)-1].Buf))-1
	if start > first || end < last {
		if len(rs) > 1 {
			return errNoMultiRange
		}
		return fmt.Errorf("range request bytes %d-%d: got Content-Range %d-%d", first, last, start, end)
	}
	return fill(resp.Body, start, end, rs)
}

// fill reads body, holding blob bytes [start, end], into the ranges.
func fill(body io.Reader, start, end int64, rs []Range) error {
	pos := start
	for _, r := range rs {
		if r.Off < pos {
			return fmt.Errorf("range %d overlaps the previous one", r.Off)
		}
		if _, err := io.CopyN(io.Discard, body, r.Off-pos); err != nil {
			return fmt.Errorf("range response: %w: %w", errShortBody, err)
		}
		if _, err := io.ReadFull(body, r.Buf); err != nil {
			return fmt.Errorf("range response: %w: %w", errShortBody, err)
		}
		pos = r.Off + int64(len(r.Buf))
	}
	_ = end
	return nil
}

// readParts reads a multipart/byteranges body into rs.
func readParts(mr *multipart.Reader, rs []Range, size int64) error {
	done := make([]bool, len(rs))
	left := len(rs)
	for left > 0 {
		p, err := mr.NextPart()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("multipart response: %d ranges missing: %w", left, errShortBody)
			}
			return fmt.Errorf("multipart response: %w", err)
		}
		start, end, total, err := parseContentRange(p.Header.Get("Content-Range"))
		if err != nil {
			return err
		}
		if total >= 0 && total != size {
			return fmt.Errorf("multipart response: blob is %d bytes, expected %d", total, size)
		}
		matched := false
		for i, r := range rs {
			if !done[i] && r.Off >= start && r.Off+int64(len(r.Buf))-1 <= end {
				// A part may cover several ranges; take all it covers.
				var sub []Range
				var idx []int
				for k := i; k < len(rs) && rs[k].Off+int64(len(rs[k].Buf))-1 <= end; k++ {
					if !done[k] {
						sub = append(sub, rs[k])
						idx = append(idx, k)
					}
				}
				if err := fill(p, start, end, sub); err != nil {
					return err
				}
				for _, k := range idx {
					done[k] = true
					left--
				}
				matched = true
				break
			}
		}
		if !matched {
			return fmt.Errorf("multipart response: unexpected part %d-%d", start, end)
		}
	}
	return nil
}

// parseContentRange parses "bytes a-b/total" (total "*" gives -1).
func parseContentRange(s string) (start, end, total int64, err error) {
	bad := fmt.Errorf("bad Content-Range %q", s)
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, 0, bad
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, 0, bad
		}
	}
	return start, end, total, nil
}

// redact removes query strings and user info from URLs in err: blob
// storage redirects carry signatures there.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.User, u.Fragment = "", nil, ""
			ue.URL = u.String()
		} else {
			ue.URL = "(url)"
		}
	}
	return err
}
