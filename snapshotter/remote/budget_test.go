package remote

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/ztoc"
)

// slowBlob is a Blob in memory whose reads take a while, counting the
// bytes of the reads in flight and their peak.
type slowBlob struct {
	b         []byte
	now, peak atomic.Int64
	peakMu    sync.Mutex
}

func (s *slowBlob) Size() int64 { return int64(len(s.b)) }

func (s *slowBlob) ReadRanges(ctx context.Context, ranges []Range) error {
	var n int64
	for _, r := range ranges {
		n += int64(len(r.Buf))
	}
	cur := s.now.Add(n)
	s.peakMu.Lock()
	s.peak.Store(max(s.peak.Load(), cur))
	s.peakMu.Unlock()
	defer s.now.Add(-n)
	time.Sleep(5 * time.Millisecond)
	for _, r := range ranges {
		copy(r.Buf, s.b[r.Off:])
	}
	return nil
}

// TestBudget prefetches every span of four layers at once, with and
// without a shared budget: with it, the compressed bytes in flight never
// exceed it; without it they do (the test can fail).
func TestBudget(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(r.IntN(16)) // compressible, not trivially
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "data", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(tb.Bytes()), ztoc.WithSpanSize(64<<10), ztoc.WithCompressionLevel(1))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		t.Fatal(err)
	}
	all := make([]SpanID, len(ix.Spans()))
	for i := range all {
		all[i] = SpanID(i)
	}
	const budget = 256 << 10
	run := func(b *Budget) int64 {
		c, err := cache.Open(t.TempDir(), cache.WithNoSync())
		if err != nil {
			t.Fatal(err)
		}
		sb := &slowBlob{b: blob.Bytes()}
		var wg sync.WaitGroup
		for l := range 4 {
			cl, err := c.Acquire(digest.FromString(fmt.Sprint("layer", l)))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Release()
			opts := []Option{WithMaxFetchSize(96 << 10), WithFetchJobs(4)}
			if b != nil {
				opts = append(opts, WithBudget(b))
			}
			f, err := NewFetcher(context.Background(), ix, sb, cl, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			wg.Go(func() {
				if err := f.Prefetch(context.Background(), all); err != nil {
					t.Error(err)
				}
				if n, total := f.Progress(); n != total {
					t.Errorf("%d of %d spans cached", n, total)
				}
			})
		}
		wg.Wait()
		return sb.peak.Load()
	}
	b, err := NewBudget(budget)
	if err != nil {
		t.Fatal(err)
	}
	with, without := run(b), run(nil)
	t.Logf("peak compressed bytes in flight: %d with a %d-byte budget, %d without", with, budget, without)
	if with > budget {
		t.Errorf("%d bytes in flight, over the budget of %d", with, budget)
	}
	if without <= budget {
		t.Errorf("without a budget only %d bytes were in flight: the test does not exercise the budget", without)
	}
	if _, err := NewBudget(0); err == nil {
		t.Error("NewBudget(0) accepted")
	}
}
