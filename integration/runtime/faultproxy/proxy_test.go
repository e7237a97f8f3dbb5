package faultproxy

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

const blobPath = "/v2/test/blobs/sha256:0123"

// backend serves a random blob at blobPath with ranges, and "ok" elsewhere.
func backend(t *testing.T) (string, []byte) {
	t.Helper()
	blob := make([]byte, 256<<10)
	rand.Read(blob)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == blobPath {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(hs.Close)
	return hs.URL, blob
}

func start(t *testing.T, c Config) *Proxy {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// get asks the proxy for bytes [a, b] of the blob (b < 0: no Range) with
// a fresh connection.
func get(t *testing.T, p *Proxy, a, b int) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.URL()+blobPath, nil)
	if b >= 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", a, b))
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestEachFault(t *testing.T) {
	target, blob := backend(t)
	const a, b = 1000, 101000
	for _, f := range Faults() {
		t.Run(f.String(), func(t *testing.T) {
			p := start(t, Config{Target: target, Seed: 1, Rates: map[Fault]float64{f: 1}, Stall: 300 * time.Millisecond, RetryAfter: 2 * time.Second})
			var seen []string
			// Several requests: the details (where in the body, Retry-After
			// or not) differ from draw to draw.
			for i := range 6 {
				begin := time.Now()
				resp, body, err := get(t, p, a+i, b)
				took := time.Since(begin)
				code := 0
				if resp != nil {
					code = resp.StatusCode
				}
				switch f {
				case Reset, ShortBody:
					if err == nil {
						t.Fatalf("request %d: no error (status %d, %d bytes)", i, code, len(body))
					}
					if f == ShortBody && resp == nil {
						t.Fatalf("request %d: no headers before the short body: %v", i, err)
					}
					seen = append(seen, fmt.Sprintf("headers=%v", resp != nil))
				case Status500, Status502, Status503, TooMany:
					wantCode := map[Fault]int{Status500: 500, Status502: 502, Status503: 503, TooMany: 429}[f]
					if err != nil || code != wantCode {
						t.Fatalf("request %d: %d, %v; want %d", i, code, err, wantCode)
					}
					ra := resp.Header.Get("Retry-After")
					if f == TooMany && ra != "2" {
						t.Fatalf("429 with Retry-After %q, want 2", ra)
					}
					seen = append(seen, "retry-after="+ra)
				case Stall:
					if err != nil || code != http.StatusPartialContent || !bytes.Equal(body, blob[a+i:b+1]) {
						t.Fatalf("request %d: %d, %v", i, code, err)
					}
					if took < 300*time.Millisecond {
						t.Fatalf("request %d took %v, want a stall of 300 ms", i, took)
					}
				case WholeBlob:
					if err != nil || code != http.StatusOK || !bytes.Equal(body, blob) {
						t.Fatalf("request %d: %d, %v, %d bytes; want 200 and the whole blob", i, code, err, len(body))
					}
				case Corrupt:
					exp := blob[a+i : b+1]
					if err != nil || code != http.StatusPartialContent || len(body) != len(exp) {
						t.Fatalf("request %d: %d, %v, %d bytes", i, code, err, len(body))
					}
					diff := 0
					for k := range body {
						if body[k] != exp[k] {
							diff++
						}
					}
					if diff != 1 {
						t.Fatalf("request %d: %d bytes differ, want 1", i, diff)
					}
				}
			}
			if f == Reset && !slices.Contains(seen, "headers=true") || f == Reset && !slices.Contains(seen, "headers=false") {
				t.Errorf("resets %v: want some before and some after the headers", seen)
			}
			if f == Status503 && (!slices.Contains(seen, "retry-after=1") || !slices.Contains(seen, "retry-after=")) {
				t.Errorf("503s %v: want some with Retry-After and some without", seen)
			}
			if got := p.Counts()[f]; got != 6 {
				t.Errorf("counted %d %v, want 6", got, f)
			}
		})
	}
}

// TestUntouched: requests that do not match, and matching ones drawn
// None, are forwarded as they are.
func TestUntouched(t *testing.T) {
	target, blob := backend(t)
	p := start(t, Config{Target: target, Seed: 1, Rates: map[Fault]float64{Status500: 1}})
	resp, body, err := get(t, p, 0, -1) // no Range: not a range request
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, blob) {
		t.Fatalf("plain GET: %v, %v", resp, err)
	}
	p2 := start(t, Config{Target: target, Seed: 1})
	resp, body, err = get(t, p2, 10, 20)
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, blob[10:21]) {
		t.Fatalf("range GET without faults: %v, %v", resp, err)
	}
	if all, matched := p.Requests(); all != 1 || matched != 0 {
		t.Errorf("requests %d, matched %d: want 1, 0", all, matched)
	}
	if p2.Counts()[None] != 1 || p2.Injected() != 0 {
		t.Errorf("counts %v", p2.Counts())
	}
}

// TestDeterministic: the same requests with the same seed get the same
// faults whatever their order; another seed gets others; the rates are
// about what was asked.
func TestDeterministic(t *testing.T) {
	target, _ := backend(t)
	rates := Mix(0.5)
	rates[Stall] = 0 // no waiting
	faults := func(seed uint64, reverse bool) map[string]Fault {
		p := start(t, Config{Target: target, Seed: seed, Rates: rates, Stall: time.Millisecond})
		idx := make([]int, 300)
		for i := range idx {
			idx[i] = i % 150 // each range twice: the second draws again
		}
		if reverse {
			slices.Reverse(idx)
		}
		for _, i := range idx {
			get(t, p, i*100, i*100+99)
		}
		m := map[string]Fault{}
		seen := map[string]int{}
		for _, in := range p.Log() {
			k := fmt.Sprintf("%s#%d", in.Range, seen[in.Range])
			seen[in.Range]++
			m[k] = in.Fault
		}
		return m
	}
	a, b, c := faults(7, false), faults(7, true), faults(8, false)
	same, differ, injected := 0, 0, 0
	for k, f := range a {
		if b[k] == f {
			same++
		}
		if c[k] != f {
			differ++
		}
		if f != None {
			injected++
		}
	}
	// Reversed order: the n-th request for a range draws the same.
	if same != len(a) {
		t.Errorf("same seed, reversed order: %d of %d requests got the same fault", same, len(a))
	}
	if differ < len(a)/5 {
		t.Errorf("another seed: only %d of %d requests got another fault", differ, len(a))
	}
	// 300 draws at 0.5 × 8/9 (stall zeroed): about 133.
	if injected < 95 || injected > 175 {
		t.Errorf("%d faults in %d requests at a rate of 0.44", injected, len(a))
	}
	t.Logf("%d requests, %d faults; another seed changed %d", len(a), injected, differ)
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{
		{Target: "http://10.1.2.3:5000"},
		{Target: "https://127.0.0.1:5000"},
		{Target: "127.0.0.1:5000"},
		{Target: "http://127.0.0.1:5000", Rates: map[Fault]float64{Stall: 0.7, Reset: 0.7}},
		{Target: "http://127.0.0.1:5000", Rates: map[Fault]float64{None: 0.1}},
	} {
		if p, err := New(c); err == nil {
			p.Close()
			t.Errorf("New(%+v) succeeded", c)
		}
	}
	r, err := ParseRates("mix=0.09,stall=0.05")
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != len(Faults()) || r[Stall] < 0.059 || r[Stall] > 0.061 || r[Reset] < 0.0099 || r[Reset] > 0.0101 {
		t.Errorf("ParseRates: %v", r)
	}
	for _, bad := range []string{"stall", "stall=2", "bogus=0.1", "stall=x"} {
		if _, err := ParseRates(bad); err == nil {
			t.Errorf("ParseRates(%q) succeeded", bad)
		}
	}
	if r, err := ParseRates("none"); err != nil || len(r) != 0 {
		t.Errorf("ParseRates(none) = %v, %v", r, err)
	}
	for _, f := range Faults() {
		if g, err := ParseFault(f.String()); err != nil || g != f {
			t.Errorf("%v: %v %v", f, g, err)
		}
	}
	if !strings.Contains(Fault(99).String(), "99") {
		t.Error("Fault(99).String()")
	}
}
