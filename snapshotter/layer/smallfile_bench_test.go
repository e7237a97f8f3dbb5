package layer

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/snapshotter/fs"
	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/snapshotter/remote"
)

// Size of the small-file tree of BenchmarkSmallFile.
const (
	smallFiles = 2000
	smallDirs  = 20
)

// BenchmarkSmallFile measures the per-file cost of the FUSE path (issue
// 12 item 3): a layer of 2,000 files of 1-8 KiB in 20 directories, every
// span already in the span cache (no network), against the same files in
// a directory on the same disk. One op is one file; each sub-benchmark
// after a local one reports x-local, its ns/op over that local one's.
//
// OpenReadClose: open(2), read(2) to EOF, close(2) by path. The
// fresh-mount sub-benchmarks also report the FUSE requests per op, by
// kind (fs.OpCounters).
//
//   - local: the files on disk, page cache warm (as after an unpack);
//   - mount-pagecache: the mount with its page cache and dentries warm
//     (FOPEN_KEEP_CACHE: an OPEN and a RELEASE request per file);
//   - mount-fuse: dentries warm, the mount's page cache dropped
//     (fadvise DONTNEED, outside the timer) before each pass over the
//     files: OPEN, READ, RELEASE per file;
//   - mount-fresh: a fresh mount before each pass (outside the timer), as
//     a container's first start on a node: LOOKUP as well;
//   - mount-pagecache-pt, mount-fuse-pt: the same files in a layer that
//     also has a file of 2 MiB, mounted with passthrough (the daemon's
//     default): the kernel must send an OPEN (and a RELEASE) per file for
//     passthrough to be offered, where a layer without any file
//     passthrough could serve needs none (fs.node.Open);
//   - overlay-local: a fresh overlayfs over the local files before each
//     pass (their page cache warm): a container's first start after an
//     unpack; the overlay- sub-benchmarks after it report x-local against
//     it;
//   - overlay-fresh, overlay-fresh-pt: a fresh mount and a fresh overlayfs
//     over it before each pass, as a container's first start on a lazy
//     layer: overlayfs's lookup of each file adds a GETXATTR
//     (trusted.overlay.metacopy) unless the layer has no extended
//     attributes (fs, xattrs.go).
//
// Missing: stat(2) of a name that does not exist, in a directory that
// does.
//
//   - local-new, mount-new: a name not looked up before in each op (the
//     mount answers a LOOKUP with ENOENT and the kernel keeps a negative
//     entry);
//   - local-cached, mount-cached: 2,000 names looked up once before the
//     timer, then again (negative entries in the dentry cache).
func BenchmarkSmallFile(b *testing.B) {
	requiresRoot(b)
	entries := manyFiles(smallFiles, smallDirs)
	lf := compressedLayer(b, entries)
	c := openCache(b, b.TempDir())
	warm := lf.mount(b, c)
	if err := warm.Fetcher().Background(context.Background(), remote.BackgroundOptions{}); err != nil {
		b.Fatal(err)
	}
	// The same files and one of 2 MiB, mounted with passthrough (which
	// needs the OPEN of every file: the daemon's default).
	bigEntries := append(entries[:len(entries):len(entries)], fstest.Entry{
		Hdr:  tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: 2 << 20, ModTime: entries[0].Hdr.ModTime},
		Data: fstest.Random("big", 2<<20),
	})
	lfPT := compressedLayer(b, bigEntries)
	if err := lfPT.mount(b, c).Fetcher().Background(context.Background(), remote.BackgroundOptions{}); err != nil {
		b.Fatal(err)
	}
	local := b.TempDir()
	var names []string // relative paths of the files, in tar order
	for _, e := range entries {
		p := filepath.Join(local, e.Hdr.Name)
		if e.Hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, e.Data, 0o644); err != nil {
			b.Fatal(err)
		}
		names = append(names, e.Hdr.Name)
	}
	paths := func(root string) []string {
		ps := make([]string, len(names))
		for i, n := range names {
			ps[i] = filepath.Join(root, n)
		}
		return ps
	}
	buf := make([]byte, 128<<10)
	readFile := func(b *testing.B, p string) {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatalf("open %s: %v", p, err)
		}
		for {
			n, err := unix.Read(fd, buf)
			if err != nil {
				b.Fatalf("read %s: %v", p, err)
			}
			if n == 0 {
				break
			}
		}
		unix.Close(fd)
	}
	dropPages := func(b *testing.B, ps []string) {
		for _, p := range ps {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
			unix.Close(fd)
		}
	}

	var localNs float64 // ns/op of the last local sub-benchmark run
	report := func(b *testing.B, isLocal bool) {
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if isLocal {
			localNs = ns
		} else if localNs > 0 {
			b.ReportMetric(ns/localNs, "x-local")
		}
	}

	// pass runs b.N ops over the files in turn; before each pass over all
	// files it calls setup (outside the timer) for the root to read.
	pass := func(b *testing.B, setup func(b *testing.B) string) {
		ps := paths(setup(b))
		for _, p := range ps { // dentries of the files, as in later passes
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for i := range b.N {
			j := i % len(ps)
			if j == 0 && i > 0 {
				b.StopTimer()
				ps = paths(setup(b))
				b.StartTimer()
			}
			readFile(b, ps[j])
		}
		b.StopTimer()
	}
	b.Run("OpenReadClose/local", func(b *testing.B) {
		for _, p := range paths(local) {
			readFile(b, p) // page cache warm
		}
		pass(b, func(*testing.B) string { return local })
		report(b, true)
	})
	for _, v := range []struct {
		suffix string
		lf     *layerFixture
		opts   []Option
	}{{"", lf, nil}, {"-pt", lfPT, []Option{WithPassthrough(0)}}} {
		b.Run("OpenReadClose/mount-pagecache"+v.suffix, func(b *testing.B) {
			m := v.lf.mount(b, c, v.opts...)
			for _, p := range paths(m.Dir()) {
				readFile(b, p)
			}
			pass(b, func(*testing.B) string { return m.Dir() })
			report(b, false)
		})
		b.Run("OpenReadClose/mount-fuse"+v.suffix, func(b *testing.B) {
			m := v.lf.mount(b, c, v.opts...)
			pass(b, func(b *testing.B) string {
				dropPages(b, paths(m.Dir()))
				return m.Dir()
			})
			report(b, false)
		})
	}
	// fresh runs b.N ops over the files in turn; before each pass over all
	// files it calls mount (outside the timer) for a new root to read,
	// and after it the undo mount returned.
	fresh := func(b *testing.B, mount func(b *testing.B) (string, func())) {
		var root string
		undo := func() {}
		b.ResetTimer()
		for i := range b.N {
			j := i % len(names)
			if j == 0 {
				b.StopTimer()
				undo()
				root, undo = mount(b)
				b.StartTimer()
			}
			readFile(b, filepath.Join(root, names[j]))
		}
		b.StopTimer()
		undo()
	}
	// layerMount mounts a fresh copy of the layer.
	layerMount := func(lf *layerFixture, opts ...Option) func(b *testing.B) (string, func()) {
		return func(b *testing.B) (string, func()) {
			m := lf.mount(b, c, opts...)
			return m.Dir(), func() {
				if err := m.Unmount(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	// overlayOn mounts an overlayfs whose lower directory is what mount
	// gives, as a container's root filesystem.
	overlayOn := func(mount func(b *testing.B) (string, func())) func(b *testing.B) (string, func()) {
		return func(b *testing.B) (string, func()) {
			lower, undoLower := mount(b)
			upper, work, merged := b.TempDir(), b.TempDir(), b.TempDir()
			if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
				b.Fatalf("mount overlay: %v", err)
			}
			return merged, func() {
				if err := unix.Unmount(merged, 0); err != nil {
					b.Fatal(err)
				}
				undoLower()
			}
		}
	}
	// requests reports the FUSE requests per op counted in oc, by kind.
	requests := func(b *testing.B, oc *fs.OpCounters) {
		var all int64
		for op := fs.Op(0); op < fs.NumOps; op++ {
			n := oc.Count(op)
			all += n
			if op == fs.OpLookup || op == fs.OpGetxattr || op == fs.OpOpen || op == fs.OpRead {
				b.ReportMetric(float64(n)/float64(b.N), op.String()+"/op")
			}
		}
		b.ReportMetric(float64(all)/float64(b.N), "fuse-req/op")
	}
	counted := func(oc *fs.OpCounters, opts ...Option) []Option {
		return append(opts, WithFSOptions(fs.WithOpCounters(oc)))
	}
	b.Run("OpenReadClose/mount-fresh", func(b *testing.B) {
		var oc fs.OpCounters
		fresh(b, layerMount(lf, counted(&oc)...))
		report(b, false)
		requests(b, &oc)
	})
	b.Run("OpenReadClose/overlay-local", func(b *testing.B) {
		fresh(b, overlayOn(func(*testing.B) (string, func()) { return local, func() {} }))
		report(b, true)
	})
	b.Run("OpenReadClose/overlay-fresh", func(b *testing.B) {
		var oc fs.OpCounters
		fresh(b, overlayOn(layerMount(lf, counted(&oc)...)))
		report(b, false)
		requests(b, &oc)
	})
	b.Run("OpenReadClose/overlay-fresh-pt", func(b *testing.B) {
		var oc fs.OpCounters
		fresh(b, overlayOn(layerMount(lfPT, counted(&oc, WithPassthrough(0))...)))
		report(b, false)
		requests(b, &oc)
	})

	// missingBase is the next unused name number, by root.
	missingBase := map[string]int{}
	// Readdir: open(2) a directory of 100 files, getdents(2) to the end,
	// close(2); one op per directory, listed once before the timer.
	readDir := func(b *testing.B, root string) {
		dbuf := make([]byte, 32<<10)
		list := func(d int) {
			p := filepath.Join(root, "d"+strconv.Itoa(d))
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			got := 0
			for {
				n, err := unix.Getdents(fd, dbuf)
				if err != nil {
					b.Fatalf("getdents %s: %v", p, err)
				}
				if n == 0 {
					break
				}
				got += n
			}
			unix.Close(fd)
			if got == 0 {
				b.Fatalf("%s: empty listing", p)
			}
		}
		for d := range smallDirs {
			list(d)
		}
		b.ResetTimer()
		for i := range b.N {
			list(i % smallDirs)
		}
		b.StopTimer()
	}
	b.Run("Readdir/local", func(b *testing.B) {
		readDir(b, local)
		report(b, true)
	})
	b.Run("Readdir/mount", func(b *testing.B) {
		readDir(b, lf.mount(b, c).Dir())
		report(b, false)
	})

	missing := func(b *testing.B, root string, fresh bool) {
		dirs := make([]string, smallDirs)
		for d := range dirs {
			dirs[d] = filepath.Join(root, "d"+strconv.Itoa(d))
		}
		n := smallFiles
		if fresh {
			n = b.N
		}
		// A run of the benchmark with a larger b.N reuses the names of the
		// one before: start after them.
		base := missingBase[root]
		ps := make([]string, n)
		for i := range ps {
			ps[i] = filepath.Join(dirs[i%smallDirs], "nx"+strconv.Itoa(base+i))
		}
		missingBase[root] = base + n
		var st unix.Stat_t
		if !fresh {
			for _, p := range ps {
				unix.Stat(p, &st)
			}
		}
		b.ResetTimer()
		for i := range b.N {
			if err := unix.Stat(ps[i%n], &st); err != unix.ENOENT {
				b.Fatalf("stat %s: %v, want ENOENT", ps[i%n], err)
			}
		}
		b.StopTimer()
	}
	for _, kind := range []string{"new", "cached"} {
		fresh := kind == "new"
		b.Run("Missing/local-"+kind, func(b *testing.B) {
			missing(b, local, fresh)
			report(b, true)
		})
		b.Run("Missing/mount-"+kind, func(b *testing.B) {
			missing(b, warm.Dir(), fresh)
			report(b, false)
		})
	}
}
