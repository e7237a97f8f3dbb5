package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socikit/socikit/internal/httprange"
)

// orderBlob is a Blob in memory whose ranges answer out of order: each
// read waits a random while, and the read of the last chunk waits until
// release is closed (nil: no such wait).
type orderBlob struct {
	b        []byte
	lastOff  int64
	release  chan struct{}
	inFlight atomic.Int64
	peak     atomic.Int64
	reads    atomic.Int64
}

func (o *orderBlob) Size() int64 { return int64(len(o.b)) }

func (o *orderBlob) ReadRanges(ctx context.Context, rs []Range) error {
	n := o.inFlight.Add(1)
	defer o.inFlight.Add(-1)
	for {
		p := o.peak.Load()
		if n <= p || o.peak.CompareAndSwap(p, n) {
			break
		}
	}
	o.reads.Add(1)
	if o.release != nil && rs[0].Off == o.lastOff {
		select {
		case <-o.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	time.Sleep(time.Duration(mrand.IntN(3000)) * time.Microsecond)
	for _, r := range rs {
		copy(r.Buf, o.b[r.Off:])
	}
	return nil
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func tempFile(t testing.TB) *os.File {
	f, err := os.CreateTemp(t.TempDir(), "download-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestDownloadOrder: chunks answered out of order are read back in blob
// order, byte for byte, with at most Jobs requests in flight, for sizes
// around the chunk size.
func TestDownloadOrder(t *testing.T) {
	const chunk = 1000
	for _, size := range []int{1, chunk - 1, chunk, chunk + 1, 10*chunk + 7, 64 * chunk} {
		b := &orderBlob{b: randomBytes(t, size)}
		d, err := StartDownload(context.Background(), b, tempFile(t), DownloadConfig{Jobs: 4, Chunk: chunk})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(d.Reader(context.Background()))
		if err != nil || !bytes.Equal(got, b.b) {
			t.Fatalf("size %d: read %d bytes, %v; want the blob", size, len(got), err)
		}
		if err := d.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		d.Cancel()
		if p := b.peak.Load(); p > 4 {
			t.Errorf("size %d: %d requests in flight, want at most 4", size, p)
		}
		if want := int64((size + chunk - 1) / chunk); b.reads.Load() != want {
			t.Errorf("size %d: %d requests, want %d", size, b.reads.Load(), want)
		}
	}
}

// TestDownloadStreams: the start of the blob is readable while its last
// chunk is still being fetched (the reader does not wait for the end).
func TestDownloadStreams(t *testing.T) {
	const chunk = 4096
	b := &orderBlob{b: randomBytes(t, 8*chunk), lastOff: 7 * chunk, release: make(chan struct{})}
	d, err := StartDownload(context.Background(), b, tempFile(t), DownloadConfig{Jobs: 8, Chunk: chunk})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Cancel()
	r := d.Reader(context.Background())
	head := make([]byte, 7*chunk)
	if _, err := io.ReadFull(r, head); err != nil || !bytes.Equal(head, b.b[:7*chunk]) {
		t.Fatalf("head: %v", err)
	}
	close(b.release)
	tail, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(tail, b.b[7*chunk:]) {
		t.Fatalf("tail: %d bytes, %v", len(tail), err)
	}
}

// TestDownloadBudget: the bytes in flight stay within a shared budget.
func TestDownloadBudget(t *testing.T) {
	const chunk = 1000
	bud, err := NewBudget(2 * chunk)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	blobs := []*orderBlob{{b: randomBytes(t, 20*chunk)}, {b: randomBytes(t, 20*chunk)}}
	var peak atomic.Int64
	for _, b := range blobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := StartDownload(context.Background(), b, tempFile(t), DownloadConfig{Jobs: 4, Chunk: chunk, Budget: bud})
			if err != nil {
				t.Error(err)
				return
			}
			defer d.Cancel()
			if got, err := io.ReadAll(d.Reader(context.Background())); err != nil || !bytes.Equal(got, b.b) {
				t.Errorf("read %d bytes, %v", len(got), err)
			}
		}()
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := blobs[0].inFlight.Load() + blobs[1].inFlight.Load()
			if n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	wg.Wait()
	close(stop)
	if p := peak.Load(); p > 2 {
		t.Errorf("%d chunks in flight, budget 2", p)
	}
}

// TestDownloadFaults: through the registry client, transient faults (500s,
// short bodies, resets) are retried and the blob arrives whole; a
// persistent 500 fails the reader, which never returns bytes past the
// failure; Cancel ends a stalled download and its reader.
func TestDownloadFaults(t *testing.T) {
	blob := randomBytes(t, 64<<10)
	const chunk = 8 << 10
	for _, tc := range []struct {
		name   string
		script []string
		fail   bool
	}{
		{"500s", []string{f500, "", f500, "503"}, false},
		{"short bodies", []string{fShort, "", fShort}, false},
		{"reset", []string{fReset}, false},
		{"persistent 500", []string{"", f500, f500, f500, f500, f500, f500, f500, f500, f500}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, url := newFaultServer(t, blob, tc.script...)
			hb, err := httprange.NewHTTPBlob(http.DefaultClient, url, int64(len(blob)), append(faultOpts(noStall), httprange.WithRetries(2))...)
			if err != nil {
				t.Fatal(err)
			}
			d, err := StartDownload(context.Background(), hb, tempFile(t), DownloadConfig{Jobs: 1, Chunk: chunk})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Cancel()
			got, err := io.ReadAll(d.Reader(context.Background()))
			if tc.fail {
				if err == nil || len(got) > chunk || !bytes.Equal(got, blob[:len(got)]) {
					t.Fatalf("read %d bytes, %v; want an error and only right bytes", len(got), err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("read %d bytes, %v; want the blob", len(got), err)
			}
		})
	}
	t.Run("cancel", func(t *testing.T) {
		_, url := newFaultServer(t, blob, fStallHeaders, fStallHeaders)
		hb, err := httprange.NewHTTPBlob(http.DefaultClient, url, int64(len(blob)), faultOpts(noStall)...)
		if err != nil {
			t.Fatal(err)
		}
		d, err := StartDownload(context.Background(), hb, tempFile(t), DownloadConfig{Jobs: 2, Chunk: chunk})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(d.Reader(context.Background()))
			errc <- err
		}()
		d.Cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, errCanceled) {
				t.Fatalf("reader after Cancel: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reader still waiting after Cancel")
		}
	})
}

// BenchmarkDownload: a 64 MiB blob through the download and its reader,
// with requests that each take 2 ms (a nearby registry), by jobs.
func BenchmarkDownload(b *testing.B) {
	blob := randomBytes(b, 64<<20)
	for _, jobs := range []int{1, 4, 8} {
		b.Run(map[int]string{1: "jobs=1", 4: "jobs=4", 8: "jobs=8"}[jobs], func(b *testing.B) {
			b.SetBytes(int64(len(blob)))
			for range b.N {
				lb := &latencyBlob{b: blob, delay: 2 * time.Millisecond}
				d, err := StartDownload(context.Background(), lb, tempFile(b), DownloadConfig{Jobs: jobs, Chunk: 1 << 20})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, d.Reader(context.Background())); err != nil {
					b.Fatal(err)
				}
				d.Cancel()
			}
		})
	}
}

// latencyBlob answers every request after a fixed delay.
type latencyBlob struct {
	b     []byte
	delay time.Duration
}

func (l *latencyBlob) Size() int64 { return int64(len(l.b)) }

func (l *latencyBlob) ReadRanges(_ context.Context, rs []Range) error {
	time.Sleep(l.delay)
	for _, r := range rs {
		copy(r.Buf, l.b[r.Off:])
	}
	return nil
}

// TestChunkEnds: the first chunks ramp up (Chunk/8, /4, /2, at least
// 64 KiB, at most Chunk), the rest are Chunk, the last ends at the size.
func TestChunkEnds(t *testing.T) {
	const k, m = 1 << 10, 1 << 20
	for _, tc := range []struct {
		size, chunk int64
		want        []int64
	}{
		{0, 4 * m, nil},
		{100, 4 * m, []int64{100}},
		{10 * m, 4 * m, []int64{512 * k, 1536 * k, 3584 * k, 7680 * k, 10 * m}},
		{300 * k, 256 * k, []int64{64 * k, 128 * k, 256 * k, 300 * k}},
		{5000, 1000, []int64{1000, 2000, 3000, 4000, 5000}},
	} {
		if got := chunkEnds(tc.size, tc.chunk); !slices.Equal(got, tc.want) {
			t.Errorf("chunkEnds(%d, %d) = %v, want %v", tc.size, tc.chunk, got, tc.want)
		}
	}
	// Read back in order through the ramp.
	b := &orderBlob{b: randomBytes(t, 3*m+7)}
	d, err := StartDownload(context.Background(), b, tempFile(t), DownloadConfig{Jobs: 4, Chunk: m})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Cancel()
	if got, err := io.ReadAll(d.Reader(context.Background())); err != nil || !bytes.Equal(got, b.b) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if n := b.reads.Load(); n != 6 { // 128K, 256K, 512K, then 1M, 1M, 128K+7
		t.Errorf("%d requests, want 6", n)
	}
}
