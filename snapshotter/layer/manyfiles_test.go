package layer

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/snapshotter/remote"
)

// manyFiles returns a layer of n small files (1-8 KiB) in dirs
// directories, each directory's files together in the tar (as an image
// build writes them).
func manyFiles(n, dirs int) []fstest.Entry {
	data := fstest.Random("manyfiles", 8<<10)
	var entries []fstest.Entry
	mt := time.Unix(1700000000, 0)
	for d := range dirs {
		entries = append(entries, fstest.Entry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: "d" + strconv.Itoa(d) + "/", Mode: 0o755, ModTime: mt}})
	}
	for i := range n {
		size := 1<<10 + (i*7919)%(7<<10)
		entries = append(entries, fstest.Entry{
			Hdr:  tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%d/f%d", i*dirs/n, i), Mode: 0o644, Size: int64(size), ModTime: mt},
			Data: data[:size],
		})
	}
	return entries
}

// readTree opens, fstats, reads to EOF and closes every regular file
// under root, as `find -type f | xargs cat` does, and returns the count.
func readTree(t testing.TB, root string) (files int, bytes int64) {
	buf := make([]byte, 128<<10)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		unix.Fstat(int(f.Fd()), &st)
		for {
			n, err := f.Read(buf)
			bytes += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return err
			}
		}
		files++
		return f.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, bytes
}

// TestManySmallFilesTiming times reading every file of a layer of many
// small files, every span already cached: (a) through a fresh mount, (b)
// through an overlayfs over a fresh mount, (c) the same tree on local disk
// and (d) an overlayfs over it. Set SOCIKIT_MANYFILES=1 to run it.
func TestManySmallFilesTiming(t *testing.T) {
	if os.Getenv("SOCIKIT_MANYFILES") == "" {
		t.Skip("SOCIKIT_MANYFILES not set")
	}
	requiresRoot(t)
	n := 20000
	if s := os.Getenv("SOCIKIT_MANYFILES_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	entries := manyFiles(n, 300)
	lf := compressedLayer(t, entries)
	c := openCache(t, t.TempDir())
	warm := lf.mount(t, c)
	if err := warm.Fetcher().Background(context.Background(), remote.BackgroundOptions{}); err != nil {
		t.Fatal(err)
	}

	local := t.TempDir()
	for _, e := range entries {
		p := filepath.Join(local, e.Hdr.Name)
		if e.Hdr.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		if err := os.WriteFile(p, e.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	overlay := func(lower string) string {
		upper, work, merged := t.TempDir(), t.TempDir(), t.TempDir()
		if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
			t.Fatalf("mount overlay: %v", err)
		}
		t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
		return merged
	}
	readTree(t, local) // warm the page cache, as after an unpack
	passes := 3
	res := map[string]time.Duration{}
	cpu := map[string]time.Duration{}
	rusage := func() time.Duration {
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	kinds := []string{"fuse", "overlay-fuse", "local", "overlay-local"}
	for range passes {
		for _, kind := range kinds {
			var dir string
			switch kind {
			case "fuse":
				dir = lf.mount(t, c).Dir()
			case "overlay-fuse":
				dir = overlay(lf.mount(t, c).Dir())
			case "local":
				dir = local
			case "overlay-local":
				dir = overlay(local)
			}
			start, c0 := time.Now(), rusage()
			files, _ := readTree(t, dir)
			d := time.Since(start)
			cpu[kind] += rusage() - c0
			if files != n {
				t.Fatalf("%s: %d files, want %d", kind, files, n)
			}
			res[kind] += d
		}
	}
	for _, kind := range kinds {
		d := res[kind] / time.Duration(passes)
		c := cpu[kind] / time.Duration(passes)
		t.Logf("%-14s %8v  %6.1f us/file wall, %6.1f us/file CPU (test process: walker and FUSE server)", kind, d.Round(time.Millisecond),
			float64(d.Microseconds())/float64(n), float64(c.Microseconds())/float64(n))
	}
}
