package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/ztoc"
)

const benchFileSize = 32 << 20

// benchmarkCachedRead reads one 32 MiB file with 128 KiB reads: from a
// local directory, or through the mount with every span already in the
// span cache. dropPageCache drops the file's page cache before each pass,
// so the mount's passes go through FUSE and the span cache. opts are
// options of the mount.
func benchmarkCachedRead(b *testing.B, mounted, dropPageCache bool, opts ...Option) {
	data := fstest.Random(b.Name(), benchFileSize)
	path := filepath.Join(b.TempDir(), "file")
	if mounted {
		requiresRoot(b)
		entries := []fstest.Entry{{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "file", Mode: 0o644, Size: int64(len(data))}, Data: data}}
		lf := compressedLayer(b, entries)
		m := lf.mount(b, openCache(b, b.TempDir()), opts...)
		if err := m.Fetcher().Background(context.Background(), remote.BackgroundOptions{}); err != nil {
			b.Fatal(err)
		}
		path = filepath.Join(m.Dir(), "file")
	} else if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 128<<10)
	b.SetBytes(benchFileSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if dropPageCache {
			b.StopTimer()
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			b.StartTimer()
		}
		for off := int64(0); ; off += int64(len(buf)) {
			n, err := f.ReadAt(buf, off)
			if err == io.EOF {
				break
			}
			if err != nil || n != len(buf) {
				b.Fatal(n, err)
			}
		}
	}
}

func BenchmarkCachedReadLocal(b *testing.B)          { benchmarkCachedRead(b, false, false) }
func BenchmarkCachedReadMountFUSE(b *testing.B)      { benchmarkCachedRead(b, true, true) }
func BenchmarkCachedReadMountPageCache(b *testing.B) { benchmarkCachedRead(b, true, false) }

// compressedLayer is a layer fixture of entries, compressed in 1 MiB
// spans at gzip level 1, served by a registry of its own.
func compressedLayer(t testing.TB, entries []fstest.Entry) *layerFixture {
	t.Helper()
	tb, err := fstest.Tar(entries)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	z, err := ztoc.Compress(&buf, bytes.NewReader(tb), ztoc.WithSpanSize(1<<20), ztoc.WithCompressionLevel(1))
	if err != nil {
		t.Fatal(err)
	}
	blob := buf.Bytes()
	reg := &registry{}
	reg.blob.Store(&blob)
	reg.srv = newServer(reg)
	t.Cleanup(reg.srv.Close)
	return &layerFixture{entries: entries, blob: blob, z: z, reg: reg, d: digestOf(blob)}
}

// BenchmarkCachedReadPassthrough reads one 32 MiB file with 128 KiB preads,
// every byte already local, by each path a container's read can take, in
// one run (ratios are logged at the end):
//
//   - local: the file on the cache's filesystem (ext4 here), page cache warm;
//   - overlay: the same file through an overlayfs whose lowerdir holds it
//     (containerd's overlayfs snapshotter after an unpack);
//   - fuse: through the mount without passthrough, the mount's page cache
//     dropped before each pass (a FUSE request per 128 KiB, pread of span
//     files whose page cache is warm);
//   - fuse-pagecache: the same with the mount's page cache kept
//     (FOPEN_KEEP_CACHE);
//   - passthrough: through a mount with passthrough (the kernel reads the
//     content file, page cache warm);
//   - overlay-fuse, overlay-passthrough: the two mounts as an overlayfs
//     lowerdir, as a container reads them;
//   - interleaved: all of the above in turn in each iteration, reporting
//     each path's MB/s, the ratios, and the time of the first passthrough
//     open (it copies the file from the span files into a content file).
func BenchmarkCachedReadPassthrough(b *testing.B) {
	requiresRoot(b)
	data := fstest.Random(b.Name(), benchFileSize)
	entries := []fstest.Entry{{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "file", Mode: 0o644, Size: int64(len(data))}, Data: data}}
	lf := compressedLayer(b, entries)
	c, err := cache.Open(b.TempDir(), cache.WithNoSync())
	if err != nil {
		b.Fatal(err)
	}
	plain := lf.mount(b, c)
	pt := lf.mount(b, c, WithPassthrough(0))
	if err := plain.Fetcher().Background(context.Background(), remote.BackgroundOptions{}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	ptFile := openPassthrough(b, pt, filepath.Join(pt.Dir(), "file"))
	firstOpen := time.Since(start)
	defer ptFile.Close()

	local := b.TempDir()
	if err := os.WriteFile(filepath.Join(local, "file"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	overlay := func(lower string) string {
		upper, work, merged := b.TempDir(), b.TempDir(), b.TempDir()
		if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
			b.Fatalf("mount overlay: %v", err)
		}
		b.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
		return merged
	}
	open := func(dir string) *os.File {
		f, err := os.Open(filepath.Join(dir, "file"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		return f
	}
	ovPT := overlay(pt.Dir())
	ovPTFile := openPassthrough(b, pt, filepath.Join(ovPT, "file"))
	defer ovPTFile.Close()
	paths := []struct {
		name string
		f    *os.File
		drop bool
	}{
		{"local", open(local), false},
		{"overlay", open(overlay(local)), false},
		{"fuse", open(plain.Dir()), true},
		{"fuse-pagecache", open(plain.Dir()), false},
		{"passthrough", ptFile, false},
		{"overlay-fuse", open(overlay(plain.Dir())), true},
		{"overlay-passthrough", ovPTFile, false},
	}
	buf := make([]byte, 128<<10)
	// pass reads the whole file once, the mount's page cache dropped
	// first where the path says so, and returns the time of the reads.
	pass := func(b *testing.B, f *os.File, drop bool) time.Duration {
		if drop {
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		}
		t0 := time.Now()
		for off := int64(0); ; off += int64(len(buf)) {
			n, err := f.ReadAt(buf, off)
			if err == io.EOF {
				break
			}
			if err != nil || n != len(buf) {
				b.Fatal(n, err)
			}
		}
		return time.Since(t0)
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(benchFileSize)
			for range b.N {
				if p.drop {
					b.StopTimer()
					unix.Fadvise(int(p.f.Fd()), 0, 0, unix.FADV_DONTNEED)
					b.StartTimer()
				}
				pass(b, p.f, false)
			}
		})
	}
	// The same paths interleaved, each iteration reading the file once by
	// every path (in a rotating order), so that the machine's load weighs
	// on all alike: MB/s per path and the ratios, as metrics.
	b.Run("interleaved", func(b *testing.B) {
		spent := make([]time.Duration, len(paths))
		for i := range b.N {
			for k := range paths {
				j := (i + k) % len(paths)
				spent[j] += pass(b, paths[j].f, paths[j].drop)
			}
		}
		mbps := map[string]float64{}
		for j, p := range paths {
			mbps[p.name] = float64(benchFileSize) * float64(b.N) / spent[j].Seconds() / 1e6
			b.ReportMetric(mbps[p.name], p.name+"-MB/s")
		}
		b.ReportMetric(mbps["passthrough"]/mbps["local"], "passthrough/local")
		b.ReportMetric(mbps["passthrough"]/mbps["fuse"], "passthrough/fuse")
		b.ReportMetric(mbps["overlay-passthrough"]/mbps["overlay"], "overlay-passthrough/overlay")
		b.ReportMetric(mbps["overlay-fuse"]/mbps["overlay"], "overlay-fuse/overlay")
		b.ReportMetric(float64(firstOpen.Microseconds())/1000, "first-open-ms")
		b.ReportMetric(0, "ns/op")
	})
	if st := pt.Stats(); st.FallbackReads != 0 || st.Reads != 0 {
		b.Fatalf("passthrough mount served reads: %+v", st)
	}
}

// BenchmarkOpenReadPassthrough opens, reads whole (128 KiB reads) and
// closes files of one size, every byte local, through: a local directory,
// the mount without passthrough (the mount's page cache dropped at each
// open), and the mount with passthrough for every size (content files
// made before the timing). It shows from which size passthrough pays for
// its open/release round trips and backing-file registration.
func BenchmarkOpenReadPassthrough(b *testing.B) {
	requiresRoot(b)
	const perSize = 8
	sizes := []int{64 << 10, 256 << 10, 1 << 20, 4 << 20}
	var entries []fstest.Entry
	name := func(size, i int) string { return fmt.Sprintf("f%d-%d", size, i) }
	for _, size := range sizes {
		for i := range perSize {
			n := name(size, i)
			entries = append(entries, fstest.Entry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(size)}, Data: fstest.Random(n, size)})
		}
	}
	lf := compressedLayer(b, entries)
	c := openCache(b, b.TempDir())
	plain := lf.mount(b, c)
	pt := lf.mount(b, c, WithPassthrough(1))
	if err := plain.Fetcher().Background(context.Background(), remote.BackgroundOptions{}); err != nil {
		b.Fatal(err)
	}
	local := b.TempDir()
	for _, e := range entries {
		if err := os.WriteFile(filepath.Join(local, e.Hdr.Name), e.Data, 0o644); err != nil {
			b.Fatal(err)
		}
		openPassthrough(b, pt, filepath.Join(pt.Dir(), e.Hdr.Name)).Close()
	}
	buf := make([]byte, 128<<10)
	for _, size := range sizes {
		for _, p := range []struct {
			name string
			dir  string
			drop bool
		}{{"local", local, false}, {"fuse", plain.Dir(), true}, {"passthrough", pt.Dir(), false}} {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, p.name), func(b *testing.B) {
				b.SetBytes(int64(size))
				for i := range b.N {
					f, err := os.Open(filepath.Join(p.dir, name(size, i%perSize)))
					if err != nil {
						b.Fatal(err)
					}
					if p.drop {
						b.StopTimer()
						unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
						b.StartTimer()
					}
					for off := int64(0); off < int64(size); off += int64(len(buf)) {
						if n, err := f.ReadAt(buf, off); n != min(len(buf), size-int(off)) || (err != nil && err != io.EOF) {
							b.Fatal(n, err)
						}
					}
					f.Close()
				}
			})
		}
	}
	if st := pt.Stats(); st.Reads != 0 {
		b.Fatalf("passthrough mount served reads: %+v", st)
	}
}
