package httprange

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
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// Range is a byte range of a blob and the buffer it is read into: Buf
// receives bytes [Off, Off+len(Buf)).
type Range struct {
	Off int64
	Buf []byte

	notify func(off, n int64) // ReadRangesNotify's, on the pieces of a request
}

// HTTPBlob reads a blob by HTTP range requests: one request per range, or
// one multi-range request for several when the server honours them.
// Failed requests are retried with backoff and jitter (5xx, 429 and 503
// after their Retry-After, connection errors, short bodies), each attempt
// bounded by a timeout; a request that makes no progress for the stall
// deadline is cut and asked again for what is still missing, and one slow
// to answer is hedged (see DefaultStallFloor, DefaultHedgeDelay). A 200
// with the whole blob is read up to the range asked. Retries and slow
// fetches are logged, at most one line of a kind per host every 5
// seconds; its errors carry no credentials and no URL query strings (blob
// storage redirects sign them).
type HTTPBlob struct {
	client *http.Client
	url    string
	host   string // for log lines
	size   int64
	o      options
	stats  *hostStats

	noMultiRange atomic.Bool // set once the server answered a multi-range request badly
}

// NewHTTPBlob returns an HTTPBlob reading url (which must answer range
// requests) of size bytes through client. The client does any
// authentication, so WithTransport and WithKeychain are errors here.
func NewHTTPBlob(client *http.Client, url string, size int64, opts ...Option) (*HTTPBlob, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.transport != nil || o.keychainSet {
		return nil, errors.New("WithTransport and WithKeychain apply to NewRegistryBlob only")
	}
	return newHTTPBlob(client, url, size, o)
}

func newHTTPBlob(client *http.Client, url string, size int64, o options) (*HTTPBlob, error) {
	if size <= 0 {
		return nil, fmt.Errorf("blob size %d is not positive", size)
	}
	host := "(url)"
	if u, err := neturl.Parse(url); err == nil {
		host = u.Host
	}
	return &HTTPBlob{client: client, url: url, host: host, size: size, o: o, stats: statsFor(host)}, nil
}

func (b *HTTPBlob) faults() FaultMetrics { return b.o.metrics }

// keychainCarrier is a transport that carries the keychain to use and the
// transport under it (internal/image.KeychainTransport, which the daemon
// gives every registry client).
type keychainCarrier interface {
	BaseTransport() http.RoundTripper
	RegistryKeychain() authn.Keychain
}

// NewRegistryBlob returns an HTTPBlob reading blob d (size bytes) of repo
// from its registry, with token or basic authentication from the keychain
// (WithKeychain, else the one a WithTransport transport carries, else the
// docker config). Use name.Insecure when making repo for a plain-HTTP
// registry. ctx bounds the authentication handshake only.
func NewRegistryBlob(ctx context.Context, repo name.Repository, d digest.Digest, size int64, opts ...Option) (*HTTPBlob, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob digest %q: %w", d, err)
	}
	base, kc := o.transport, o.keychain
	if kt, ok := base.(keychainCarrier); ok && !o.keychainSet {
		base, kc = kt.BaseTransport(), kt.RegistryKeychain()
	}
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, fmt.Errorf("resolve credentials for %s: %w", repo, err)
	}
	if base == nil {
		base = defaultTransport
	}
	rt, err := registryTransports.get(ctx, repo, auth, base)
	if err != nil {
		return nil, fmt.Errorf("authenticate to %s: %w", repo, redact(err))
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d)
	return newHTTPBlob(&http.Client{Transport: rt}, u, size, o)
}

// Size returns the blob's size in bytes.
func (b *HTTPBlob) Size() int64 { return b.size }

// ReadRanges fills every range's buffer or returns an error. Ranges are
// sorted by offset and do not overlap; they are split into requests of at
// most WithMaxRequestSize bytes and WithMultiRange ranges, sent WithJobs at
// a time.
func (b *HTTPBlob) ReadRanges(ctx context.Context, ranges []Range) error {
	return b.ReadRangesNotify(ctx, ranges, nil)
}

// ReadRangesNotify is ReadRanges calling notify(off, n), when notify is
// not nil, each time blob bytes [off, off+n) have been written into the
// ranges' buffers, as the responses arrive: a caller can use the start of
// a range before its end is in. Each byte is reported once. notify is
// called from the goroutines reading responses, several at once, and
// should not block.
func (b *HTTPBlob) ReadRangesNotify(ctx context.Context, ranges []Range, notify func(off, n int64)) error {
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
			piece := Range{Off: r.Off, Buf: r.Buf[:n], notify: notify}
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
	left, err := b.retry(ctx, rs)
	if errors.Is(err, errNoMultiRange) {
		b.noMultiRange.Store(true)
		if b.o.noRangeByRange {
			return fmt.Errorf("%w: %w", ErrMultiRangeRefused, err)
		}
		for _, r := range left {
			if _, err := b.retry(ctx, []Range{r}); err != nil {
				return err
			}
		}
		return nil
	}
	return err
}

// ErrMultiRangeRefused: the server refused a multi-range request of a
// blob made WithoutRangeByRange.
var ErrMultiRangeRefused = errors.New("multi-range request refused")

var (
	errNoMultiRange = errors.New("server does not answer multi-range requests")
	errWholeBlob    = errors.New("range request answered with the whole blob")
)

// maxBackoff caps the delay between two attempts (Retry-After aside).
const maxBackoff = 10 * time.Second

// retry reads rs with up to b.o.retries retries, each asking only for the
// bytes still missing. It returns the ranges (or parts of ranges) not
// read.
func (b *HTTPBlob) retry(ctx context.Context, rs []Range) ([]Range, error) {
	left := slices.Clone(rs)
	start := time.Now()
	delay := b.o.backoff
	for attempt := 0; ; attempt++ {
		err := b.do(ctx, left, attempt)
		left = slices.DeleteFunc(left, func(r Range) bool { return len(r.Buf) == 0 })
		if err == nil && len(left) > 0 {
			err = fmt.Errorf("range request: %d ranges not read", len(left))
		}
		if err == nil {
			b.slow(ctx, start, attempt, nil)
			return nil, nil
		}
		reason, ok := classify(err)
		if !ok || attempt >= b.o.retries || ctx.Err() != nil {
			if ok && ctx.Err() == nil {
				if log1, n := b.stats.logOK("giveup"); log1 {
					log.G(ctx).WithError(err).WithField("host", b.host).WithField("attempts", attempt+1).
						WithField("suppressed", n).Warn("range request failed, giving up")
				}
			}
			b.slow(ctx, start, attempt, err)
			return left, err
		}
		var wait time.Duration
		if reason != RetryStall { // a stall has waited its deadline already
			wait = delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1))
			delay = min(2*delay, maxBackoff)
		}
		var se *statusError
		if errors.As(err, &se) && se.retryAfter > 0 {
			wait = max(wait, min(se.retryAfter, b.o.maxRetryAfter))
		}
		b.faults().Retried(reason)
		if log1, n := b.stats.logOK("retry"); log1 {
			var missing int64
			for _, r := range left {
				missing += int64(len(r.Buf))
			}
			log.G(ctx).WithError(err).WithField("host", b.host).WithField("reason", reason.String()).
				WithField("attempt", attempt+1).WithField("wait", wait.Round(time.Millisecond).String()).
				WithField("bytes", missing).WithField("suppressed", n).Warn("range request failed, retrying")
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return left, errors.Join(err, ctx.Err())
			case <-t.C:
			}
		}
	}
}

// slow counts and logs a request that took longer than b.o.slowFetch.
func (b *HTTPBlob) slow(ctx context.Context, start time.Time, attempt int, err error) {
	d := time.Since(start)
	if d <= b.o.slowFetch {
		return
	}
	b.faults().SlowFetch()
	if log1, n := b.stats.logOK("slow"); log1 {
		e := log.G(ctx).WithField("host", b.host).WithField("took", d.Round(time.Millisecond).String()).
			WithField("attempts", attempt+1).WithField("suppressed", n)
		if err != nil {
			e = e.WithError(err)
		}
		e.Warn("slow range fetch")
	}
}

type statusError struct {
	code       int
	msg        string
	retryAfter time.Duration
}

func (e *statusError) Error() string { return e.msg }

// classify tells whether err is worth another attempt, and why.
func classify(err error) (RetryReason, bool) {
	var stall *stallError
	if errors.As(err, &stall) {
		return RetryStall, true
	}
	var se *statusError
	if errors.As(err, &se) {
		switch {
		case se.code == http.StatusTooManyRequests:
			return Retry429, true
		case se.code == http.StatusRequestTimeout:
			return RetryTimeout, true
		case se.code >= 500:
			return Retry5xx, true
		}
		return 0, false
	}
	switch {
	case errors.Is(err, errWholeBlob):
		return RetryWholeBlob, true
	case errors.Is(err, errNoMultiRange) || errors.Is(err, context.Canceled):
		return 0, false
	case errors.Is(err, context.DeadlineExceeded):
		return RetryTimeout, true
	case errors.Is(err, errShortBody) || errors.Is(err, io.ErrUnexpectedEOF):
		return RetryShortBody, true
	}
	var ne net.Error
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.As(err, &ne) {
		return RetryConnection, true
	}
	return 0, false
}

// retryable tells whether err is worth another attempt.
func retryable(err error) bool {
	_, ok := classify(err)
	return ok
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

// do makes one attempt at reading rs in one request (hedged if slow to
// answer). The bytes read are taken off rs's elements (Off advanced, Buf
// shortened) even when it fails, so that the next attempt asks only for
// the rest.
func (b *HTTPBlob) do(ctx context.Context, rs []Range, attempt int) error {
	stall, hedge := b.stats.deadlines(&b.o, attempt)
	resp, w, err := b.send(ctx, rangeHeader(rs), stall, hedge)
	if err != nil {
		return err
	}
	defer w.close()
	defer resp.Body.Close()
	if err := b.read(resp, &progressReader{r: resp.Body, w: w}, rs, attempt); err != nil {
		if se := w.stallErr(); se != nil {
			b.faults().Stalled()
			return se
		}
		return err
	}
	if w.maxGap > 0 {
		b.stats.observe(w.maxGap, false)
	}
	return nil
}

// sent is one request of an attempt: its response or error.
type sent struct {
	resp  *http.Response
	w     *watch
	err   error
	hedge bool
}

func (s sent) discard() {
	if s.resp != nil {
		s.resp.Body.Close()
	}
	s.w.close()
}

// answered tells whether a status is an answer (not one to retry).
func answered(code int) bool {
	return code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout
}

// send sends the request and returns its response and watch (the caller
// closes both). If no answer came after hedgeAfter (0: never), it sends a
// second, identical request; the first answer wins and the other request
// is cancelled. Each request is cut after stall without its headers.
func (b *HTTPBlob) send(ctx context.Context, rh string, stall, hedgeAfter time.Duration) (*http.Response, *watch, error) {
	results := make(chan sent, 2)
	var ws []*watch
	launch := func(hedge bool) {
		b.stats.requests.Add(1)
		w := newWatch(ctx, stall, b.o.timeout)
		ws = append(ws, w)
		go func() {
			resp, err := b.roundTrip(w.ctx, rh)
			if err == nil {
				w.headers.Store(true)
				b.stats.observe(w.progress(), true)
			} else if se := w.stallErr(); se != nil {
				b.faults().Stalled()
				err = se
			}
			results <- sent{resp: resp, w: w, err: err, hedge: hedge}
		}()
	}
	launch(false)
	pending, hedged := 1, false
	var hedgeC <-chan time.Time
	if hedgeAfter > 0 {
		t := time.NewTimer(hedgeAfter)
		defer t.Stop()
		hedgeC = t.C
	}
	var fallback *sent // the first non-answer
	for pending > 0 {
		select {
		case <-hedgeC:
			hedgeC = nil
			if b.stats.allowHedge() {
				launch(true)
				pending++
				hedged = true
			}
		case r := <-results:
			pending--
			if r.err == nil && answered(r.resp.StatusCode) {
				if hedged {
					b.faults().Hedged(r.hedge)
				}
				if fallback != nil {
					fallback.discard()
				}
				for _, w := range ws {
					if w != r.w {
						w.cancel(context.Canceled)
					}
				}
				if pending > 0 {
					go func() { (<-results).discard() }()
				}
				return r.resp, r.w, nil
			}
			if fallback == nil {
				fallback = &r
			} else {
				r.discard()
			}
		}
	}
	if hedged {
		b.faults().Hedged(false)
	}
	if fallback.err != nil {
		fallback.w.close()
		return nil, nil, fallback.err
	}
	return fallback.resp, fallback.w, nil
}

func (b *HTTPBlob) roundTrip(ctx context.Context, rh string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return nil, redact(err)
	}
	req.Header.Set("Range", rh)
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("range request: %w", redact(err))
	}
	return resp, nil
}

// read reads a response to a request for rs into rs.
func (b *HTTPBlob) read(resp *http.Response, body io.Reader, rs []Range, attempt int) error {
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		if len(rs) > 1 {
			_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10)) // best effort: lets the connection be reused
			return errNoMultiRange
		}
		// The whole blob: read up to the range, unless that is much more
		// than asked and another attempt may do better.
		if resp.ContentLength >= 0 && resp.ContentLength != b.size {
			return fmt.Errorf("range request: status 200 with %d bytes, blob is %d", resp.ContentLength, b.size)
		}
		b.faults().WholeBlob()
		if rs[0].Off > b.o.maxRequest && attempt < b.o.retries {
			return fmt.Errorf("range request bytes %d-: %w", rs[0].Off, errWholeBlob)
		}
		return fill(body, 0, rs)
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10)) // best effort: lets the connection be reused
		return &statusError{code: resp.StatusCode, retryAfter: retryAfter(resp.Header, time.Now()),
			msg: fmt.Sprintf("range request %s: status %s (want 206)", resp.Request.Header.Get("Range"), resp.Status)}
	}
	mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "multipart/byteranges" {
		err := readParts(multipart.NewReader(body, params["boundary"]), rs, b.size)
		if err != nil && len(rs) > 1 && !retryable(err) {
			return fmt.Errorf("%w: %w", errNoMultiRange, err)
		}
		return err
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
	return fill(body, start, rs)
}

// fill reads body, holding blob bytes from start on, into the ranges,
// taking what it read off each range (Off advanced, Buf shortened).
func fill(body io.Reader, start int64, rs []Range) error {
	pos := start
	for i := range rs {
		r := &rs[i]
		if len(r.Buf) == 0 {
			continue
		}
		if r.Off < pos {
			return fmt.Errorf("range %d overlaps the previous one", r.Off)
		}
		if _, err := io.CopyN(io.Discard, body, r.Off-pos); err != nil {
			return fmt.Errorf("range response: %w: %w", errShortBody, err)
		}
		pos = r.Off
		for len(r.Buf) > 0 {
			n, err := body.Read(r.Buf)
			if n > 0 && r.notify != nil {
				r.notify(r.Off, int64(n))
			}
			r.Off += int64(n)
			r.Buf = r.Buf[n:]
			pos += int64(n)
			if len(r.Buf) > 0 && err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("range response: %w: %w", errShortBody, err)
			}
		}
	}
	return nil
}

// readParts reads a multipart/byteranges body into rs, taking what it
// read off each range as fill does.
func readParts(mr *multipart.Reader, rs []Range, size int64) error {
	for {
		left := 0
		for _, r := range rs {
			if len(r.Buf) > 0 {
				left++
			}
		}
		if left == 0 {
			return nil
		}
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
		// A part may cover several ranges; take all it covers.
		i := slices.IndexFunc(rs, func(r Range) bool {
			return len(r.Buf) > 0 && r.Off >= start && r.Off+int64(len(r.Buf))-1 <= end
		})
		if i < 0 {
			return fmt.Errorf("multipart response: unexpected part %d-%d", start, end)
		}
		j := i + 1
		for j < len(rs) && rs[j].Off+int64(len(rs[j].Buf))-1 <= end {
			j++
		}
		if err := fill(p, start, rs[i:j]); err != nil {
			return err
		}
	}
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
	var ue *neturl.Error
	if errors.As(err, &ue) {
		if u, perr := neturl.Parse(ue.URL); perr == nil {
			u.RawQuery, u.User, u.Fragment = "", nil, ""
			ue.URL = u.String()
		} else {
			ue.URL = "(url)"
		}
	}
	return err
}
