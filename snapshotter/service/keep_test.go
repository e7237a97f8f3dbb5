package service

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/socikit/socikit/snapshotter/fdstore"
)

// fakeFDStore is an fdstore.Store in memory.
type fakeFDStore struct {
	mu      sync.Mutex
	kept    []fdstore.Kept
	removed []string
}

func (s *fakeFDStore) Put(string, []byte, *os.File) error { return nil }
func (s *fakeFDStore) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = append(s.removed, name)
	return nil
}
func (s *fakeFDStore) Take() ([]fdstore.Kept, error) { k := s.kept; s.kept = nil; return k, nil }
func (s *fakeFDStore) Close() error                  { return nil }

func closed(f *os.File) bool { _, err := f.Stat(); return err != nil }

// TestKeeper: kept descriptors with a valid record are offered to the
// restore by mountpoint; those without one are given up at once (removed
// from the store, closed), and those the restore did not take when it is
// over.
func TestKeeper(t *testing.T) {
	open := func() *os.File {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	rec := func(mp string) []byte {
		b, _ := json.Marshal(keptRecord{Mountpoint: mp, State: []byte(`{"v":1}`)})
		return b
	}
	a, b, bad, wrong := open(), open(), open(), open()
	s := &fakeFDStore{kept: []fdstore.Kept{
		{Name: keptName("/mp/a"), Meta: rec("/mp/a"), File: a},
		{Name: keptName("/mp/b"), Meta: rec("/mp/b"), File: b},
		{Name: keptName("/mp/c"), Meta: []byte("{"), File: bad},
		{Name: keptName("/mp/d"), Meta: rec("/mp/elsewhere"), File: wrong},
	}}
	k := newKeeper(context.Background(), s)
	if !closed(bad) || !closed(wrong) || closed(a) || closed(b) {
		t.Fatal("descriptors without a valid record not given up, or valid ones closed")
	}
	if want := []string{keptName("/mp/c"), keptName("/mp/d")}; !slices.Equal(s.removed, want) {
		t.Fatalf("removed %v, want %v", s.removed, want)
	}
	if _, ok := k.take("/mp/none"); ok {
		t.Fatal("took a mount nothing was kept for")
	}
	c, ok := k.take("/mp/a")
	if !ok || c.f != a || string(c.state) != `{"v":1}` || c.name != keptName("/mp/a") {
		t.Fatalf("take /mp/a: %+v %v", c, ok)
	}
	if _, ok := k.take("/mp/a"); ok {
		t.Fatal("took /mp/a twice")
	}
	s.removed = nil
	k.dropUnclaimed(context.Background())
	if !closed(b) || !slices.Equal(s.removed, []string{keptName("/mp/b")}) {
		t.Fatalf("unclaimed /mp/b: closed %v, removed %v", closed(b), s.removed)
	}
	a.Close()
}

// TestKeptName: names fit systemd's FDNAME and the holder's limits, one
// per mountpoint.
func TestKeptName(t *testing.T) {
	n := keptName("/var/lib/socikit/snapshots/1/fs")
	if len(n) > fdstore.MaxName || n == keptName("/var/lib/socikit/snapshots/2/fs") || n != keptName("/var/lib/socikit/snapshots/1/fs") {
		t.Fatalf("name %q", n)
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f || c == ':' {
			t.Fatalf("name %q has %q", n, c)
		}
	}
}
