package record

import (
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socikit/socikit/profile"
)

// clock is a settable time source.
type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time       { return time.Unix(0, c.t.Load()) }
func (c *clock) add(d time.Duration)  { c.t.Add(int64(d)) }
func newClock() *clock                { c := &clock{}; c.t.Store(time.Unix(1700000000, 0).UnixNano()); return c }
func withClock(r *Recorder, c *clock) { r.now = c.now }

func ranges(rs ...int64) []profile.Range {
	var out []profile.Range
	for i := 0; i+1 < len(rs); i += 2 {
		out = append(out, profile.Range{Offset: rs[i], Length: rs[i+1]})
	}
	return out
}

func mustProfile(t *testing.T, r *Recorder, image string) (*profile.Profile, Info) {
	t.Helper()
	p, info, ok := r.Profile(image)
	if !ok {
		t.Fatalf("no profile for %s", image)
	}
	if _, err := profile.Marshal(p); err != nil {
		t.Fatalf("profile does not encode: %v", err)
	}
	return p, info
}

// TestOrder: files in first-access order across layers, ranges in
// first-access order within a file, touching and overlapping ranges merged,
// TOC names made absolute and clean, a path read in two layers once.
func TestOrder(t *testing.T) {
	r := New(Options{})
	l1, l2 := r.Layer("sha256:1"), r.Layer("sha256:2")
	if !r.Start("img", "c", nil, l1, l2) {
		t.Fatal("Start refused")
	}
	l2.ObserveRead(3, "./usr/bin/app", 0, 4096)
	l1.ObserveRead(0, "lib/libc.so", 8192, 4096)
	l2.ObserveRead(3, "./usr/bin/app", 4096, 4096)  // touches [0,4096): merged
	l1.ObserveRead(0, "lib/libc.so", 0, 4096)       // new range, after the first
	l1.ObserveRead(0, "lib/libc.so", 10000, 10000)  // overlaps [8192,12288)
	l1.ObserveRead(7, "/etc/../etc/passwd", 0, 100) // cleaned
	l2.ObserveRead(9, "etc/passwd", 0, 200)         // same path in an upper layer
	l1.ObserveRead(8, "zero", 0, 0)                 // nothing read: ignored
	p, info := mustProfile(t, r, "img")
	want := []profile.File{
		{Path: "/usr/bin/app", Ranges: ranges(0, 8192)},
		{Path: "/lib/libc.so", Ranges: ranges(8192, 20000-8192, 0, 4096)},
		{Path: "/etc/passwd", Ranges: ranges(0, 200)},
	}
	if !reflect.DeepEqual(p.Files, want) {
		t.Errorf("files:\n got %+v\nwant %+v", p.Files, want)
	}
	if p.Source != profile.SourceSnapshotter || p.Version != profile.Version {
		t.Errorf("source %q version %q", p.Source, p.Version)
	}
	if info.Starts != 1 || info.Files != 4 || !info.Recording || info.DroppedFiles+info.DroppedRanges != 0 {
		t.Errorf("info %+v", info)
	}
	if _, _, ok := r.Profile("other"); ok {
		t.Error("profile of an image never started")
	}
}

// TestWindow: reads before a start and after the window are not recorded;
// a new start opens it again and adds to the same profile, in order.
func TestWindow(t *testing.T) {
	c := newClock()
	r := New(Options{Window: 10 * time.Second})
	withClock(r, c)
	l := r.Layer("sha256:1")
	l.ObserveRead(0, "before", 0, 10)
	r.Start("img", "c", nil, l)
	l.ObserveRead(1, "a", 0, 10)
	c.add(10 * time.Second)
	l.ObserveRead(2, "b", 0, 10) // at the deadline: still in
	c.add(time.Nanosecond)
	l.ObserveRead(3, "late", 0, 10)
	if l.cur.Load() != nil {
		t.Error("window still open after its end")
	}
	if _, info := mustProfile(t, r, "img"); info.Recording {
		t.Error("info says recording after the window")
	}
	c.add(time.Hour)
	r.Start("img", "c2", nil, l)
	l.ObserveRead(4, "c", 0, 10)
	l.ObserveRead(1, "a", 10, 10)
	p, info := mustProfile(t, r, "img")
	if got, want := p.Paths(), []string{"/a", "/b", "/c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("paths %v, want %v", got, want)
	}
	if f := p.Lookup("/a"); f == nil || !reflect.DeepEqual(f.Ranges, ranges(0, 20)) {
		t.Errorf("/a: %+v", f)
	}
	if info.Starts != 2 {
		t.Errorf("starts %d", info.Starts)
	}

	// The same start asking again (containerd: Prepare, then Mounts when
	// it creates the task) re-opens the window but counts once.
	c.add(time.Hour)
	r.Start("img", "c3", nil, l)
	c.add(5 * time.Second)
	r.Start("img", "c3", nil, l)
	c.add(8 * time.Second)
	l.ObserveRead(5, "d", 0, 10)
	if p, info = mustProfile(t, r, "img"); info.Starts != 3 || p.Lookup("/d") == nil {
		t.Errorf("starts %d, paths %v", info.Starts, p.Paths())
	}
	for i := range recentKeys + 1 {
		r.Start("img", fmt.Sprint("k", i), nil, l)
	}
	r.Start("img", "k0", nil, l) // forgotten: counted again
	if _, info = mustProfile(t, r, "img"); info.Starts != 3+recentKeys+2 {
		t.Errorf("starts %d", info.Starts)
	}
}

// TestBounds: files and ranges per layer are capped (reads past the caps
// counted), and so are the ranges of one file; a range extending a
// recorded one is still taken at the cap.
func TestBounds(t *testing.T) {
	r := New(Options{MaxFiles: 3, MaxRanges: 5})
	l1, l2 := r.Layer("sha256:1"), r.Layer("sha256:2")
	r.Start("img", "c", nil, l1, l2)
	for i := range 5 {
		l1.ObserveRead(i, fmt.Sprintf("f%d", i), 0, 10)
	}
	l1.ObserveRead(0, "f0", 100, 10)
	l1.ObserveRead(0, "f0", 200, 10) // fifth range
	l1.ObserveRead(0, "f0", 300, 10) // over the cap
	l1.ObserveRead(0, "f0", 210, 50) // extends [200,210): taken
	l2.ObserveRead(0, "g0", 0, 10)   // another layer has its own caps
	p, info := mustProfile(t, r, "img")
	if got, want := p.Paths(), []string{"/f0", "/f1", "/f2", "/g0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("paths %v, want %v", got, want)
	}
	if f := p.Lookup("/f0"); f == nil || !reflect.DeepEqual(f.Ranges, ranges(0, 10, 100, 10, 200, 60)) {
		t.Errorf("/f0: %+v", f)
	}
	if info.DroppedFiles != 2 || info.DroppedRanges != 1 || info.Ranges != 6 {
		t.Errorf("info %+v", info)
	}

	// One file: at most maxFileRanges distinct ranges.
	r = New(Options{})
	l := r.Layer("sha256:1")
	r.Start("img", "c", nil, l)
	for i := range maxFileRanges + 10 {
		l.ObserveRead(0, "big", int64(i)*8192, 4096)
	}
	p, info = mustProfile(t, r, "img")
	if n := len(p.Files[0].Ranges); n != maxFileRanges || info.DroppedRanges != 10 {
		t.Errorf("%d ranges, %d dropped", n, info.DroppedRanges)
	}

	// Paths a profile cannot hold are skipped.
	l.ObserveRead(1, "bad\x00name", 0, 1)
	l.ObserveRead(2, "bad\xffname", 0, 1)
	if p, _ = mustProfile(t, r, "img"); len(p.Files) != 1 {
		t.Errorf("paths %v", p.Paths())
	}
}

// TestImages: at most MaxImages profiles, the one started longest ago
// dropped (its windows closed); a closed layer is not started again but its
// records stay.
func TestImages(t *testing.T) {
	c := newClock()
	r := New(Options{MaxImages: 2})
	withClock(r, c)
	la, lb, lc := r.Layer("sha256:a"), r.Layer("sha256:b"), r.Layer("sha256:c")
	r.Start("a", "c", "meta-a", la)
	la.ObserveRead(0, "a", 0, 1)
	c.add(time.Second)
	r.Start("b", "c", nil, lb)
	c.add(time.Second)
	r.Start("a", "c2", nil, la) // a is now the most recent
	c.add(time.Second)
	r.Start("c", "c", nil, lc)
	if _, _, ok := r.Profile("b"); ok {
		t.Error("b kept: it was started longest ago")
	}
	if lb.cur.Load() != nil {
		t.Error("window of the dropped image still open")
	}
	imgs := r.Images()
	if len(imgs) != 2 || imgs[0].Image != "c" || imgs[1].Image != "a" || imgs[1].Meta != "meta-a" || imgs[1].Starts != 2 {
		t.Errorf("images %+v", imgs)
	}
	la.Close()
	la.ObserveRead(1, "b", 0, 1)
	r.Start("a", "c", nil, la)
	if la.cur.Load() != nil {
		t.Error("closed layer started")
	}
	if p, _ := mustProfile(t, r, "a"); !reflect.DeepEqual(p.Paths(), []string{"/a"}) {
		t.Errorf("a: %v", p.Paths())
	}
	// A layer mounted again shares the records of its digest.
	la2 := r.Layer("sha256:a")
	r.Start("a", "c", nil, la2)
	la2.ObserveRead(0, "a", 1, 1)
	if p, info := mustProfile(t, r, "a"); len(p.Files) != 1 || info.Files != 1 || p.Files[0].Ranges[0] != (profile.Range{Offset: 0, Length: 2}) {
		t.Errorf("a after remount: %+v %+v", p.Files, info)
	}
}

// TestConcurrent reads from several goroutines and layers while profiles
// are taken (for -race) and checks nothing is lost.
func TestConcurrent(t *testing.T) {
	r := New(Options{})
	var ls []*Layer
	for i := range 4 {
		ls = append(ls, r.Layer(fmt.Sprint("sha256:", i)))
	}
	r.Start("img", "c", nil, ls...)
	var wg sync.WaitGroup
	for g, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				l.ObserveRead(i%50, fmt.Sprintf("l%d/f%d", g, i%50), int64(i/50)*4096, 4096)
				if i%100 == 0 {
					r.Profile("img")
				}
			}
		}()
	}
	wg.Wait()
	p, _ := mustProfile(t, r, "img")
	if len(p.Files) != 200 {
		t.Fatalf("%d files, want 200", len(p.Files))
	}
	for _, f := range p.Files {
		if len(f.Ranges) != 1 || f.Ranges[0] != (profile.Range{Offset: 0, Length: 20 * 4096}) {
			t.Fatalf("%s: %+v", f.Path, f.Ranges)
		}
	}
}

// BenchmarkObserveRead is the cost the read path pays per FUSE read: with
// no window open (the usual case), and recording sequential reads of a few
// files.
func BenchmarkObserveRead(b *testing.B) {
	b.Run("idle", func(b *testing.B) {
		r := New(Options{})
		l := r.Layer("sha256:1")
		for i := range b.N {
			l.ObserveRead(i&63, "usr/lib/file", int64(i)*4096, 4096)
		}
	})
	b.Run("recording", func(b *testing.B) {
		r := New(Options{})
		l := r.Layer("sha256:1")
		r.Start("img", "c", nil, l)
		b.ReportAllocs()
		for i := range b.N {
			l.ObserveRead(i&63, "usr/lib/file", int64(i>>6)*4096, 4096)
		}
	})
	b.Run("recording-parallel", func(b *testing.B) {
		r := New(Options{})
		l := r.Layer("sha256:1")
		r.Start("img", "c", nil, l)
		var g atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			base := int(g.Add(1)) * 64
			i := 0
			for pb.Next() {
				l.ObserveRead(base+i&63, "usr/lib/file", int64(i>>6)*4096, 4096)
				i++
			}
		})
	})
}
