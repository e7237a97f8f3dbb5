package layer

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/snapshotter/fs"
	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/snapshotter/record"
	"github.com/socikit/socikit/ztoc"
)

// TestRecordedProfile mounts a lazy layer whose filesystem reports its reads
// to a recorder (as socikit-snapshotter wires it), reads known ranges of
// some files through the mount (no kernel read-ahead: POSIX_FADV_RANDOM),
// and checks the image's profile: the files read, in the order of their
// first read, absolute paths, each range read covered by a recorded one of
// whole pages, no file that was not read, nothing recorded outside a
// window.
func TestRecordedProfile(t *testing.T) {
	requiresRoot(t)
	big := fstest.Random("big", 1<<20)
	app := fstest.Random("app", 256<<10)
	entries := []fstest.Entry{
		{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755}},
		{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/app", Mode: 0o755, Size: int64(len(app))}, Data: app},
		{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "./data/big", Mode: 0o644, Size: int64(len(big))}, Data: big},
		{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "etc/conf", Mode: 0o644, Size: 6}, Data: []byte("a=1\nb\n")},
		{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "unread", Mode: 0o644, Size: 5}, Data: []byte("never")},
		{Hdr: tar.Header{Typeflag: tar.TypeLink, Name: "bin/app-link", Linkname: "bin/app"}},
	}
	tb, err := fstest.Tar(entries)
	if err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	z, err := ztoc.Compress(&blob, bytes.NewReader(tb), ztoc.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	reg := &registry{}
	b := blob.Bytes()
	reg.blob.Store(&b)
	reg.srv = newServer(reg)
	t.Cleanup(reg.srv.Close)
	lf := &layerFixture{entries: entries, blob: b, z: z, reg: reg, d: digestOf(b)}

	rec := record.New(record.Options{})
	obs := rec.Layer(lf.d.String())
	m := lf.mount(t, openCache(t, t.TempDir()), WithFSOptions(fs.WithReadObserver(obs)))

	type read struct {
		name    string
		off, n  int64
		content []byte
	}
	readAt := func(r read) {
		t.Helper()
		f, err := os.Open(filepath.Join(m.Dir(), r.name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, r.n)
		if _, err := f.ReadAt(buf, r.off); err != nil {
			t.Fatalf("%s at %d: %v", r.name, r.off, err)
		}
		if !bytes.Equal(buf, r.content[r.off:r.off+r.n]) {
			t.Fatalf("%s at %d: wrong bytes", r.name, r.off)
		}
	}

	// Before any start nothing is recorded.
	readAt(read{"bin/app", 128 << 10, 10, app})
	if !rec.Start("registry.example.com/app:1", "rootfs", nil, obs) {
		t.Fatal("Start refused")
	}
	reads := []read{
		{"etc/conf", 0, 6, []byte("a=1\nb\n")},
		{"data/big", 512<<10 + 100, 100, big},
		{"bin/app-link", 0, 8192, app}, // the hard link: recorded as its target
		{"data/big", 0, 4096, big},
		{"bin/app", 200000, 100, app},
	}
	for _, r := range reads {
		readAt(r)
	}
	obs.Close() // as at unmount: no more recording, the profile stays
	readAt(read{"unread", 0, 5, []byte("never")})

	p, info, ok := rec.Profile("registry.example.com/app:1")
	if !ok {
		t.Fatal("no profile")
	}
	if _, err := profile.Marshal(p); err != nil {
		t.Fatal(err)
	}
	t.Logf("profile: %+v (%+v)", p.Files, info)
	if got, want := p.Paths(), []string{"/etc/conf", "/data/big", "/bin/app"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("paths %v, want %v", got, want)
	}
	for _, r := range reads {
		name := "/" + r.name
		if r.name == "bin/app-link" {
			name = "/bin/app"
		}
		f := p.Lookup(name)
		covered := false
		for _, q := range f.Ranges {
			if q.Offset <= r.off && r.off+r.n <= q.End() {
				covered = true
				if q.Offset%4096 != 0 || (q.End()%4096 != 0 && q.End() != int64(len(r.content))) {
					t.Errorf("%s: range [%d,%d) is not whole pages", name, q.Offset, q.End())
				}
			}
		}
		if !covered {
			t.Errorf("%s: read [%d,%d) not covered by %v", name, r.off, r.off+r.n, f.Ranges)
		}
	}
	// First-access order of ranges within a file, and nothing like the
	// whole file for a few pages read.
	if f := p.Lookup("/data/big"); len(f.Ranges) != 2 || f.Ranges[0].Offset != 512<<10 || f.Ranges[1].Offset != 0 || f.Bytes() > 64<<10 {
		t.Errorf("/data/big: %v", f.Ranges)
	}
	if f := p.Lookup("/bin/app"); f.Ranges[0].Offset != 0 || f.Bytes() > 64<<10 {
		t.Errorf("/bin/app: %v (the read before the start must not be there)", f.Ranges)
	}
	if info.Starts != 1 || info.DroppedFiles+info.DroppedRanges != 0 {
		t.Errorf("info %+v", info)
	}
}

// BenchmarkCachedReadMountFUSERecording is BenchmarkCachedReadMountFUSE with
// a start-up profile recorder on the layer: "idle" outside a window (the
// daemon's usual state, recording on by default), "window" with one open
// for the whole run, so that every FUSE read is recorded.
func BenchmarkCachedReadMountFUSERecording(b *testing.B) {
	for _, open := range []bool{false, true} {
		name := "idle"
		if open {
			name = "window"
		}
		b.Run(name, func(b *testing.B) {
			rec := record.New(record.Options{Window: time.Hour})
			obs := rec.Layer("sha256:bench")
			if open {
				rec.Start("bench", "rootfs", nil, obs)
			}
			c := &countingObserver{next: obs}
			benchmarkCachedRead(b, true, true, WithFSOptions(fs.WithReadObserver(c)))
			b.ReportMetric(float64(c.n.Load())/float64(b.N), "fuse-reads/op")
			if _, info, ok := rec.Profile("bench"); open && (!ok || info.Files != 1) {
				b.Errorf("recorded %+v", info)
			}
		})
	}
}

// countingObserver counts the reads it passes on.
type countingObserver struct {
	next fs.ReadObserver
	n    atomic.Int64
}

func (c *countingObserver) ObserveRead(file int, name string, off, n int64) {
	c.n.Add(1)
	c.next.ObserveRead(file, name, off, n)
}
