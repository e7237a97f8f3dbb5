package shaping

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	const d = 60 * time.Millisecond
	var served time.Time
	h := Delay(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served = time.Now() }), d)

	start := time.Now()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v2/", nil))
	if got := served.Sub(start); got < d {
		t.Errorf("served after %v, want >= %v", got, d)
	}

	// A request whose client went away during the delay never reaches next.
	served = time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v2/", nil).WithContext(ctx))
	if !served.IsZero() {
		t.Error("canceled request was served")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		want         Class
	}{
		{"GET", "/v2/", ClassOther},
		{"GET", "/v2/a/b/blobs/sha256:00", ClassBlob},
		{"HEAD", "/v2/a/blobs/sha256:00", ClassOther},
		{"POST", "/v2/a/blobs/uploads/", ClassOther},
		{"PUT", "/v2/a/blobs/uploads/123", ClassOther},
		{"GET", "/v2/a/manifests/latest", ClassManifest},
		{"HEAD", "/v2/a/b/manifests/sha256:00", ClassManifest},
		{"PUT", "/v2/a/manifests/latest", ClassOther},
		{"GET", "/v2/a/referrers/sha256:00", ClassOther},
		{"GET", "/v2/a/tags/list", ClassOther},
	} {
		if got := Classify(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.want {
			t.Errorf("Classify(%s %s) = %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
}

// pushBlob uploads b to repository repo of the registry at base in one POST
// and returns its digest.
func pushBlob(t *testing.T, base, repo string, b []byte) string {
	t.Helper()
	dg := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/?digest="+dg, "application/octet-stream", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push blob: %s", resp.Status)
	}
	return dg
}

func get(t *testing.T, url string, hdr ...string) []byte {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Error(err)
		return nil
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	if resp.StatusCode/100 != 2 {
		t.Errorf("GET %s: %s", url, resp.Status)
	}
	return b
}

func TestRegistryCountsConcurrentRanges(t *testing.T) {
	r := NewRegistry(time.Millisecond, nil)
	srv := httptest.NewServer(r)
	defer srv.Close()

	blob := make([]byte, 1<<20)
	rand.Read(blob)
	dg := pushBlob(t, srv.URL, "bench/x", blob)
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + dg + `","size":1048576},"layers":[]}`
	req, _ := http.NewRequest("PUT", srv.URL+"/v2/bench/x/manifests/latest", strings.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest: %v %v", resp.Status, err)
	}
	if s := r.Counter.Reset(); s.Other.Requests != 2 || s.Blob.Requests != 0 {
		t.Errorf("after push: %+v", s)
	}

	const workers, perWorker = 8, 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		want int64
	)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				off := (w*perWorker + i) * 4000
				n := 1 + (w*7919+i*104729)%(64<<10)
				got := get(t, srv.URL+"/v2/bench/x/blobs/"+dg, "Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
				if !bytes.Equal(got, blob[off:off+n]) {
					t.Errorf("range %d+%d: wrong bytes (%d)", off, n, len(got))
				}
				mu.Lock()
				want += int64(n)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() { get(t, srv.URL+"/v2/bench/x/blobs/"+dg) }) // one whole blob
	if got := get(t, srv.URL+"/v2/bench/x/manifests/latest"); string(got) != manifest {
		t.Errorf("manifest: got %q", got)
	}
	wg.Wait()
	want += int64(len(blob))

	s, err := ReadStats(context.Background(), nil, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	wantBlob := ClassStats{Requests: workers*perWorker + 1, RangeRequests: workers * perWorker, Bytes: want}
	if s.Blob != wantBlob {
		t.Errorf("blob: got %+v, want %+v", s.Blob, wantBlob)
	}
	if want := (ClassStats{Requests: 1, Bytes: int64(len(manifest))}); s.Manifest != want {
		t.Errorf("manifest: got %+v, want %+v", s.Manifest, want)
	}
	if s.Other != (ClassStats{}) {
		t.Errorf("other (admin requests must not count): %+v", s.Other)
	}
	if s.Total.Bytes != s.Blob.Bytes+s.Manifest.Bytes || s.Total.Requests != s.Blob.Requests+s.Manifest.Requests {
		t.Errorf("total: %+v", s.Total)
	}

	old, err := ResetStats(context.Background(), nil, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if old.Blob != s.Blob {
		t.Errorf("reset returned %+v, want %+v", old.Blob, s.Blob)
	}
	s, err = ReadStats(context.Background(), nil, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != (ClassStats{}) || !s.Since.After(old.Since) {
		t.Errorf("after reset: %+v (previous since %v)", s, old.Since)
	}
}

func TestAdminNotDelayed(t *testing.T) {
	const d = 300 * time.Millisecond
	srv := httptest.NewServer(NewRegistry(d, nil))
	defer srv.Close()

	start := time.Now()
	if _, err := ReadStats(context.Background(), nil, srv.URL); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el >= d {
		t.Errorf("admin request took %v, delay is %v", el, d)
	}
	start = time.Now()
	get(t, srv.URL+"/v2/")
	if el := time.Since(start); el < d {
		t.Errorf("registry request took %v, want >= %v", el, d)
	}
	if resp, err := http.Post(srv.URL+AdminPrefix+"stats", "", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST stats: %v %v", resp.Status, err)
	}
}

// A reading taken while a response is being written shows the bytes already
// written.
func TestCounterCountsWhileWriting(t *testing.T) {
	release := make(chan struct{})
	wrote := make(chan struct{})
	c := NewCounter(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 3*countChunk+5))
		w.(http.Flusher).Flush()
		close(wrote)
		<-release
		w.Write(make([]byte, 10))
	}))
	srv := httptest.NewServer(c)
	defer srv.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		get(t, srv.URL+"/v2/a/blobs/sha256:00")
	}()
	<-wrote
	if s := c.Snapshot(); s.Blob != (ClassStats{Requests: 1, Bytes: 3*countChunk + 5}) {
		t.Errorf("mid-response: %+v", s.Blob)
	}
	close(release)
	<-done
	if s := c.Snapshot(); s.Blob.Bytes != 3*countChunk+15 {
		t.Errorf("after response: %+v", s.Blob)
	}
}

// TestEventLog: the admin endpoint lists each request with its class,
// range, status and body bytes, in a period that a reset starts afresh.
func TestEventLog(t *testing.T) {
	r := NewRegistry(0, nil)
	srv := httptest.NewServer(r)
	defer srv.Close()
	blob := make([]byte, 200000)
	rand.Read(blob)
	dg := pushBlob(t, srv.URL, "bench/ev", blob)
	if _, err := ResetStats(context.Background(), nil, srv.URL); err != nil {
		t.Fatal(err)
	}
	if got := get(t, srv.URL+"/v2/bench/ev/blobs/"+dg, "Range", "bytes=1000-1999"); len(got) != 1000 {
		t.Fatalf("range read %d bytes", len(got))
	}
	get(t, srv.URL+"/v2/bench/ev/blobs/"+dg)
	resp, err := http.Head(srv.URL + "/v2/bench/ev/manifests/missing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ev, err := ReadEvents(context.Background(), nil, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Events) != 3 || ev.Dropped != 0 {
		t.Fatalf("events %+v, want 3", ev)
	}
	want := []Event{
		{Class: "blob", Method: "GET", Range: "bytes=1000-1999", Status: 206, Bytes: 1000},
		{Class: "blob", Method: "GET", Status: 200, Bytes: int64(len(blob))},
		{Class: "manifest", Method: "HEAD", Status: 404},
	}
	last := 0.0
	for i, e := range ev.Events {
		w := want[i]
		if e.Class != w.Class || e.Method != w.Method || e.Range != w.Range || e.Status != w.Status || e.Bytes != w.Bytes {
			t.Errorf("event %d: %+v, want %+v", i, e, w)
		}
		if e.StartMS < last || e.EndMS < e.StartMS {
			t.Errorf("event %d: times %.3f..%.3f after %.3f", i, e.StartMS, e.EndMS, last)
		}
		last = e.StartMS
	}
	if _, err := ResetStats(context.Background(), nil, srv.URL); err != nil {
		t.Fatal(err)
	}
	if ev, err := ReadEvents(context.Background(), nil, srv.URL); err != nil || len(ev.Events) != 0 {
		t.Errorf("after reset: %+v, %v", ev, err)
	}
}
