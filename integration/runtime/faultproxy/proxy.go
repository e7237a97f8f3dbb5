// Package faultproxy is an HTTP proxy for tests that sits in front of a
// registry on loopback and injects faults into the requests it forwards:
// connection resets, 500/502/503 (503 sometimes with Retry-After), 429
// with Retry-After, short bodies, stalls (before the headers or in the
// middle of the body), a 200 with the whole blob instead of a 206, and
// corrupted bytes, each at its own rate.
//
// Which fault a request gets is a function of the seed, the request
// (method, path, Range header) and how many times that same request came
// before, so a run is reproducible whatever the order in which concurrent
// requests arrive; the same request asked again draws again. By default
// only range requests for blobs (GET .../blobs/... with a Range header) get
// faults; everything else is forwarded untouched. The proxy counts the
// faults it injected.
//
//	p, err := faultproxy.New(faultproxy.Config{Target: "http://127.0.0.1:5000", Seed: 1,
//		Rates: faultproxy.Mix(0.10), Stall: 30 * time.Second})
//	defer p.Close()
//	ref := p.Host() + "/repo:tag"   // pull through the proxy
//	p.Counts()                      // map[Fault]int64
//
// It listens on 127.0.0.1 only and forwards to loopback targets only.
package faultproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is one kind of injected fault.
type Fault int

// The faults.
const (
	// None forwards the request and its answer untouched.
	None Fault = iota
	// Reset closes the connection with a TCP RST: before the headers or
	// after part of the body (drawn per request).
	Reset
	// Status500, Status502 and Status503 answer that status; a 503 carries
	// Retry-After: 1 every other draw.
	Status500
	Status502
	Status503
	// TooMany answers 429 with Retry-After (Config.RetryAfter).
	TooMany
	// ShortBody sends the headers of the real answer and part of its body,
	// then closes the connection.
	ShortBody
	// Stall sends nothing for Config.Stall (before the headers, or after
	// part of the body: drawn per request), then the real answer, unless
	// the client has gone.
	Stall
	// WholeBlob answers 200 with the whole blob (the request is forwarded
	// without its Range header).
	WholeBlob
	// Corrupt flips one byte of the real answer's body.
	Corrupt

	numFaults = iota
)

var faultNames = [...]string{None: "none", Reset: "reset", Status500: "500", Status502: "502", Status503: "503",
	TooMany: "429", ShortBody: "short-body", Stall: "stall", WholeBlob: "whole-blob", Corrupt: "corrupt"}

func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Faults returns every fault but None.
func Faults() []Fault {
	var fs []Fault
	for f := Fault(1); f < numFaults; f++ {
		fs = append(fs, f)
	}
	return fs
}

// ParseFault parses the String form of a fault.
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if n == s {
			return Fault(i), nil
		}
	}
	return 0, fmt.Errorf("unknown fault %q (want one of %s)", s, strings.Join(faultNames[1:], ", "))
}

// Mix returns rates summing to total, spread evenly over every fault.
func Mix(total float64) map[Fault]float64 {
	m := map[Fault]float64{}
	fs := Faults()
	for _, f := range fs {
		m[f] = total / float64(len(fs))
	}
	return m
}

// ParseRates parses "mix=0.1" (Mix), "stall=0.05,500=0.02" (fault=rate,
// comma-separated; "mix" may be combined with others) or "none".
func ParseRates(s string) (map[Fault]float64, error) {
	m := map[Fault]float64{}
	if s == "" || s == "none" {
		return m, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("rate %q: want fault=rate", kv)
		}
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("rate %q: want a number in [0, 1]", kv)
		}
		if k == "mix" {
			for f, x := range Mix(r) {
				m[f] += x
			}
			continue
		}
		f, err := ParseFault(k)
		if err != nil {
			return nil, err
		}
		m[f] += r
	}
	return m, nil
}

// Config configures a Proxy.
type Config struct {
	// Target is the registry's base URL: http://127.0.0.1:PORT (loopback
	// only).
	Target string
	// Seed makes the draws reproducible.
	Seed uint64
	// Rates is each fault's probability per matching request; their sum
	// must be at most 1.
	Rates map[Fault]float64
	// Stall is how long a Stall lasts (default 30 s).
	Stall time.Duration
	// RetryAfter is the Retry-After of a 429 (default 1 s; whole seconds).
	RetryAfter time.Duration
	// Match selects the requests that may get a fault (default: GETs of
	// blobs with a Range header).
	Match func(*http.Request) bool
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	c      Config
	target *url.URL
	ln     net.Listener
	srv    *http.Server
	client *http.Client
	closed chan struct{}

	mu       sync.Mutex
	seen     map[string]uint64 // request key → times seen
	counts   [numFaults]int64
	log      []Injection
	requests atomic.Int64 // all requests
	matched  atomic.Int64 // requests that could get a fault
}

// Injection is one request that matched, and what it got.
type Injection struct {
	Method, Path, Range string
	Fault               Fault
}

// DefaultMatch selects GETs of blobs with a Range header.
func DefaultMatch(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && r.Header.Get("Range") != ""
}

// New starts a proxy on 127.0.0.1 in front of c.Target.
func New(c Config) (*Proxy, error) {
	u, err := url.Parse(c.Target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q: want http://HOST:PORT", c.Target)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); !(host == "localhost" || ip != nil && ip.IsLoopback()) {
		return nil, fmt.Errorf("faultproxy: target %q is not on loopback", c.Target)
	}
	var sum float64
	for f, r := range c.Rates {
		if f <= None || f >= numFaults || r < 0 {
			return nil, fmt.Errorf("faultproxy: bad rate %v for %v", r, f)
		}
		sum += r
	}
	if sum > 1+1e-9 {
		return nil, fmt.Errorf("faultproxy: rates sum to %v > 1", sum)
	}
	if c.Stall <= 0 {
		c.Stall = 30 * time.Second
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = time.Second
	}
	if c.Match == nil {
		c.Match = DefaultMatch
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{c: c, target: u, ln: ln, closed: make(chan struct{}), seen: map[string]uint64{},
		client: &http.Client{
			Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}}
	p.srv = &http.Server{Handler: p, ErrorLog: nil}
	go p.srv.Serve(ln) //nolint:errcheck // ends with Close
	return p, nil
}

// Host returns the proxy's host:port.
func (p *Proxy) Host() string { return p.ln.Addr().String() }

// URL returns the proxy's base URL.
func (p *Proxy) URL() string { return "http://" + p.Host() }

// Close stops the proxy: stalls end, connections close.
func (p *Proxy) Close() error {
	select {
	case <-p.closed:
		return nil
	default:
	}
	close(p.closed)
	err := p.srv.Close()
	p.client.CloseIdleConnections()
	return err
}

// Counts returns how many times each fault was injected (None: matching
// requests forwarded untouched).
func (p *Proxy) Counts() map[Fault]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[Fault]int64{}
	for f, n := range p.counts {
		if n > 0 {
			m[Fault(f)] = n
		}
	}
	return m
}

// Injected returns the faults injected in all (None excluded).
func (p *Proxy) Injected() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for f, c := range p.counts {
		if Fault(f) != None {
			n += c
		}
	}
	return n
}

// Log returns every matching request so far and its fault, in arrival
// order.
func (p *Proxy) Log() []Injection {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// Requests returns how many requests the proxy got, and how many of them
// could get a fault.
func (p *Proxy) Requests() (all, matched int64) { return p.requests.Load(), p.matched.Load() }

// Summary is a one-line account of the counts: "412 requests, 380
// matched, 38 faults: 500=4 reset=5 ...".
func (p *Proxy) Summary() string {
	all, matched := p.Requests()
	counts := p.Counts()
	var parts []string
	for _, f := range slices.Sorted(maps.Keys(counts)) {
		if f != None {
			parts = append(parts, fmt.Sprintf("%s=%d", f, counts[f]))
		}
	}
	return fmt.Sprintf("%d requests, %d matched, %d faults: %s", all, matched, p.Injected(), strings.Join(parts, " "))
}

// draw returns a uniform number in [0, 1) for the n-th occurrence of key,
// and a second one for the fault's details.
func (p *Proxy) draw(key string, n uint64) (float64, float64) {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], p.c.Seed)
	binary.LittleEndian.PutUint64(b[8:], n)
	h.Write(b[:])
	h.Write([]byte(key))
	x := splitmix(h.Sum64())
	y := splitmix(x)
	return float64(x>>11) / (1 << 53), float64(y>>11) / (1 << 53)
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// choose picks the fault of a request.
func (p *Proxy) choose(r *http.Request) (Fault, float64) {
	key := r.Method + " " + r.URL.Path + " " + r.Header.Get("Range")
	p.mu.Lock()
	n := p.seen[key]
	p.seen[key] = n + 1
	p.mu.Unlock()
	u, detail := p.draw(key, n)
	acc := 0.0
	for f := Fault(1); f < numFaults; f++ {
		acc += p.c.Rates[f]
		if u < acc {
			return f, detail
		}
	}
	return None, detail
}

func (p *Proxy) record(r *http.Request, f Fault) {
	p.mu.Lock()
	p.counts[f]++
	p.log = append(p.log, Injection{Method: r.Method, Path: r.URL.Path, Range: r.Header.Get("Range"), Fault: f})
	p.mu.Unlock()
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	fault, detail := None, 0.0
	if p.c.Match(r) {
		p.matched.Add(1)
		fault, detail = p.choose(r)
		p.record(r, fault)
	}
	switch fault {
	case Status500, Status502, Status503:
		code := map[Fault]int{Status500: 500, Status502: 502, Status503: 503}[fault]
		if fault == Status503 && detail < 0.5 {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "faultproxy: injected "+fault.String(), code)
		return
	case TooMany:
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(p.c.RetryAfter/time.Second))))
		http.Error(w, "faultproxy: injected 429", http.StatusTooManyRequests)
		return
	case Reset:
		if detail < 0.5 {
			p.reset(w)
			return
		}
	case Stall:
		if detail < 0.5 && !p.sleep(r.Context(), p.c.Stall) {
			return
		}
	}
	// Forward.
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.target.Scheme, p.target.Host
	out.Host = p.target.Host
	if fault == WholeBlob {
		out.Header.Del("Range")
	}
	resp, err := p.client.Do(out)
	if err != nil {
		if r.Context().Err() == nil {
			http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		}
		return
	}
	defer resp.Body.Close()
	if fault == None || resp.StatusCode >= 300 && resp.StatusCode < 400 {
		copyHeader(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		// Errors writing to the client (it went away) end the response
		// either way; the client sees them.
		_, _ = io.Copy(w, resp.Body)
		return
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, "faultproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	// Where in the body a mid-body fault strikes: between a tenth and
	// nine tenths.
	cut := int(float64(len(body)) * (0.1 + 0.8*detail))
	switch fault {
	case Reset: // mid-body
		p.resetAfter(w, resp, body[:cut])
		return
	case Corrupt:
		if len(body) > 0 {
			body = bytes.Clone(body)
			body[min(cut, len(body)-1)] ^= 0x40
		}
	}
	copyHeader(w.Header(), resp.Header)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	// Errors writing to the client are the client's to see, as above.
	switch fault {
	case ShortBody:
		_, _ = w.Write(body[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the server closes the connection
	case Stall: // mid-body (a stall before the headers slept above)
		if detail >= 0.5 {
			_, _ = w.Write(body[:cut])
			w.(http.Flusher).Flush()
			if !p.sleep(r.Context(), p.c.Stall) {
				panic(http.ErrAbortHandler)
			}
			_, _ = w.Write(body[cut:])
			return
		}
	}
	_, _ = w.Write(body)
}

// sleep waits d; false if the client went away or the proxy closed first.
func (p *Proxy) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-p.closed:
		return false
	}
}

// reset closes the client's connection with a RST, nothing sent.
func (p *Proxy) reset(w http.ResponseWriter) {
	c, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // best effort: without it the close is a FIN
	}
	c.Close()
}

// resetAfter sends the status line, the headers and part of the body,
// then resets the connection.
func (p *Proxy) resetAfter(w http.ResponseWriter, resp *http.Response, part []byte) {
	c, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	// Best effort, as in writeHead: the connection is reset next.
	writeHead(buf.Writer, resp)
	_, _ = buf.Write(part)
	buf.Flush()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // best effort: without it the close is a FIN
	}
	c.Close()
}

func writeHead(w *bufio.Writer, resp *http.Response) {
	fmt.Fprintf(w, "HTTP/1.1 %s\r\n", resp.Status)
	h := resp.Header.Clone()
	h.Del("Transfer-Encoding")
	h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	if resp.ContentLength < 0 {
		h.Del("Content-Length")
	}
	h.Write(w) //nolint:errcheck // best effort: the connection is reset next
	_, _ = w.WriteString("\r\n")
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer"}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = slices.Clone(v)
	}
	for _, h := range hopHeaders {
		dst.Del(h)
	}
}
