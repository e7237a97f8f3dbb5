//go:build integration

package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"reflect"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/ztoc"
)

// countingSource serves a zTOC blob by ranges, as a registry would, and
// counts the bytes and calls.
type countingSource struct {
	blob  []byte
	mu    sync.Mutex
	bytes int64
	calls int
}

func (s *countingSource) ReadRanges(_ context.Context, rs []ztoc.ByteRange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	for _, r := range rs {
		if r.Off < 0 || r.Off+int64(len(r.Buf)) > int64(len(s.blob)) {
			return fmt.Errorf("range %d+%d outside %d bytes", r.Off, len(r.Buf), len(s.blob))
		}
		s.bytes += int64(copy(r.Buf, s.blob[r.Off:]))
	}
	return nil
}

func (s *countingSource) read() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// memStore is a zTOC part file in memory.
type memStore struct {
	mu sync.Mutex
	b  []byte
}

func (m *memStore) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.b[off:]), nil
}

func (m *memStore) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.b[off:], p), nil
}

// TestLazyUpstreamZtoc: a zTOC built by upstream's builder (v2, and the
// same rewritten as a v1 checkpoint blob), read lazily by socikit, decodes
// to what Unmarshal of the whole gives, reads no window before the first
// span (the TOC and checkpoint headers: 37 % of this zTOC of 11,478 files
// and 1 MiB spans), serves every span and file of the layer
// byte-identical (fetching each window a span needs), and then checks as
// a whole against its digest.
func TestLazyUpstreamZtoc(t *testing.T) {
	l := gorootLayer(t, "goroot-gzip6")
	_, upBytes, err := upstreamBuild(l.path, l.algo, span1M)
	if err != nil {
		t.Fatal(err)
	}
	z, err := ztoc.Unmarshal(upBytes)
	if err != nil {
		t.Fatal(err)
	}
	v1 := *z
	const hdr, rec = 12, 8 + 8 + 1 + ztoc.WindowSize
	if in := int64(binary.LittleEndian.Uint64(z.Checkpoints[hdr:])); in != 10 {
		t.Fatalf("upstream's checkpoint 0 at %d, v1 implies 10", in)
	}
	v1.Checkpoints = append(z.Checkpoints[:hdr:hdr], z.Checkpoints[hdr+rec:]...)
	v1Bytes, err := ztoc.Marshal(&v1)
	if err != nil {
		t.Fatal(err)
	}
	for name, zb := range map[string][]byte{"v2": upBytes, "v1": v1Bytes} {
		t.Run(name, func(t *testing.T) {
			src := &countingSource{blob: zb}
			store := &memStore{b: make([]byte, len(zb))}
			ctx := context.Background()
			lz, err := ztoc.ReadLazy(ctx, tee{src, store}, digest.FromBytes(zb), int64(len(zb)))
			if err != nil {
				t.Fatal(err)
			}
			if !lz.IsLazy() {
				t.Fatal("read whole")
			}
			before := src.read()
			spans := int64(lz.Ztoc.MaxSpanID) + 1
			t.Logf("%d spans: %d of %d bytes (%.2f%%) in %d reads before the mount", spans, before, len(zb),
				100*float64(before)/float64(len(zb)), src.calls)
			// Everything but the windows (at most one of them shares the
			// first read).
			if windows := (spans - 1) * ztoc.WindowSize; before > int64(len(zb))-windows+ztoc.WindowSize {
				t.Errorf("read %d of %d bytes before the mount: windows read", before, len(zb))
			}
			whole, err := ztoc.Unmarshal(zb)
			if err != nil {
				t.Fatal(err)
			}
			whole.Checkpoints = nil
			if !reflect.DeepEqual(whole, lz.Ztoc) {
				t.Fatal("lazily read zTOC differs from Unmarshal's")
			}
			w := lz.Windows(ctx, src, store)
			ix, err := lz.NewIndex(w)
			if err != nil {
				t.Fatal(err)
			}
			st, err := checkIndexReads(l.path, l.tar, ix)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v; %d window bytes fetched", st, w.Fetched())
			if w.Fetched() == 0 || w.Fetched() > (spans-1)*ztoc.WindowSize {
				t.Errorf("%d window bytes fetched for %d spans", w.Fetched(), spans)
			}
			if err := w.Complete(ctx); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(store.b, zb) {
				t.Error("the completed store is not the zTOC")
			}
		})
	}
}

// tee writes what src reads into store, as the daemon's part file.
type tee struct {
	src   ztoc.RangeSource
	store *memStore
}

func (t tee) ReadRanges(ctx context.Context, rs []ztoc.ByteRange) error {
	if err := t.src.ReadRanges(ctx, rs); err != nil {
		return err
	}
	for _, r := range rs {
		t.store.WriteAt(r.Buf, r.Off)
	}
	return nil
}

// checkIndexReads reads every span and a selection of files of the layer
// at path through ix and compares them with the tar.
func checkIndexReads(path string, ti *tarInfo, ix *ztoc.Index) (st upstreamReadStats, err error) {
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	r := ix.Reader(f)
	z := ix.Ztoc()
	spans := ix.Spans()
	for _, s := range spans {
		end := min(s.UncompressedEnd, z.UncompressedArchiveSize)
		if end <= s.UncompressedStart {
			continue
		}
		data, err := r.ReadRange(s.UncompressedStart, end-s.UncompressedStart)
		if err != nil {
			return st, fmt.Errorf("span %d: %w", s.ID, err)
		}
		if !bytes.Equal(data, ti.raw[s.UncompressedStart:end]) {
			return st, fmt.Errorf("span %d: wrong bytes", s.ID)
		}
		st.spans++
	}
	es := ourEnts(z)
	spanOf := func(off int64) int64 { return int64(ix.SpanAt(off)) }
	cost := func(e ent) int64 {
		a, b := ix.SpansOf(e.Off, e.Size)
		return spans[b].UncompressedEnd - spans[a].UncompressedStart
	}
	sel, all := selectFiles(es, spanOf, cost, inflateBudget)
	st.sampled = !all
	st.regFiles = ti.regCount()
	for _, i := range sel {
		want := ti.entries[i].content
		if want == nil {
			continue
		}
		got, err := r.ReadFile(&z.Files[i])
		if err != nil {
			return st, fmt.Errorf("entry %d %q: %w", i, z.Files[i].Name, err)
		}
		if !bytes.Equal(got, want) {
			return st, fmt.Errorf("entry %d %q: wrong content", i, z.Files[i].Name)
		}
		st.files++
	}
	return st, nil
}
