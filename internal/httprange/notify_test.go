package httprange

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestReadRangesNotify: every byte read is reported once, whatever the
// split into requests (pieces of WithMaxRequestSize, multi-range, one
// request per range), a retry that asks for the rest included, and the
// bytes reported are in the buffers.
func TestReadRangesNotify(t *testing.T) {
	blob := testBlob(t, 1<<20)
	for _, tc := range []struct {
		name   string
		script []string
		opts   []Option
	}{
		{"multi-range", nil, nil},
		{"pieces", nil, []Option{WithMaxRequestSize(10000), WithJobs(3)}},
		{"range by range", nil, []Option{WithMultiRange(1)}},
		{"after a 503", []string{"503"}, nil},
		{"whole blob", []string{"whole"}, []Option{WithMultiRange(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScriptServer(t, blob, tc.script...)
			b, err := NewHTTPBlob(http.DefaultClient, s.url, int64(len(blob)),
				append([]Option{WithBackoff(time.Millisecond), WithHedgeDelay(0)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			rs := []Range{{Off: 10, Buf: make([]byte, 30000)}, {Off: 70000, Buf: make([]byte, 5)}, {Off: 200000, Buf: make([]byte, 100000)}}
			bufs := make([][]byte, len(rs))
			for i, r := range rs {
				bufs[i] = r.Buf
			}
			var mu sync.Mutex
			var got [][2]int64
			err = b.ReadRangesNotify(context.Background(), rs, func(off, n int64) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, [2]int64{off, off + n})
				// The bytes reported are in the buffer already.
				for i, r := range rs {
					if off >= r.Off && off+n <= r.Off+int64(len(bufs[i])) {
						if !bytes.Equal(bufs[i][off-r.Off:off+n-r.Off], blob[off:off+n]) {
							t.Errorf("bytes %d+%d reported before they were in the buffer", off, n)
						}
						return
					}
				}
				t.Errorf("bytes %d+%d reported, outside the ranges", off, n)
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(got, func(a, b [2]int64) int { return int(a[0] - b[0]) })
			// Merge what was reported: it must be the ranges exactly,
			// no byte twice.
			var merged [][2]int64
			for _, g := range got {
				if n := len(merged); n > 0 && g[0] < merged[n-1][1] {
					t.Fatalf("bytes from %d reported twice", g[0])
				} else if n > 0 && g[0] == merged[n-1][1] {
					merged[n-1][1] = g[1]
					continue
				}
				merged = append(merged, g)
			}
			want := [][2]int64{{10, 30010}, {70000, 70005}, {200000, 300000}}
			if !slices.Equal(merged, want) {
				t.Fatalf("reported %v, want %v", merged, want)
			}
			for i, r := range rs {
				if !bytes.Equal(bufs[i], blob[r.Off:r.Off+int64(len(bufs[i]))]) {
					t.Fatalf("range %d: wrong bytes", i)
				}
			}
		})
	}
}

// TestReadRangesNotifyEarly: the start of a response is reported while its
// end has not been sent.
func TestReadRangesNotifyEarly(t *testing.T) {
	blob := testBlob(t, 256<<10)
	const cut = 100 << 10
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-262143/262144")
		w.Header().Set("Content-Length", "262144")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(blob[:cut])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
			return
		}
		w.Write(blob[cut:])
	}))
	defer hs.Close()
	b, err := NewHTTPBlob(http.DefaultClient, hs.URL, int64(len(blob)), WithHedgeDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var in int64
	early := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.ReadRangesNotify(context.Background(), []Range{{Off: 0, Buf: make([]byte, len(blob))}}, func(off, n int64) {
			mu.Lock()
			defer mu.Unlock()
			if in < cut && in+n >= cut {
				close(early)
			}
			in += n
		})
	}()
	select {
	case <-early:
	case err := <-done:
		t.Fatalf("read ended (%v) before the first %d bytes were reported", err, cut)
	case <-time.After(8 * time.Second):
		t.Fatalf("the first %d bytes, sent, were not reported while the rest was held back", cut)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
