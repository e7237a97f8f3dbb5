package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/ztoc"
)

const benchFileSize = 32 << 20

// benchmarkCachedRead reads one 32 MiB file with 128 KiB reads: from a
// local directory, or through the mount with every span already in the
// span cache. dropPageCache drops the file's page cache before each pass,
// so the mount's passes go through FUSE and the span cache.
func benchmarkCachedRead(b *testing.B, mounted, dropPageCache bool) {
	data := fstest.Random(b.Name(), benchFileSize)
	path := filepath.Join(b.TempDir(), "file")
	if mounted {
		requiresRoot(b)
		entries := []fstest.Entry{{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "file", Mode: 0o644, Size: int64(len(data))}, Data: data}}
		tb, err := fstest.Tar(entries)
		if err != nil {
			b.Fatal(err)
		}
		var blob bytes.Buffer
		z, err := ztoc.Compress(&blob, bytes.NewReader(tb), ztoc.WithSpanSize(1<<20), ztoc.WithCompressionLevel(1))
		if err != nil {
			b.Fatal(err)
		}
		lf := newLayerFrom(b, entries, blob.Bytes(), z)
		m := lf.mount(b, openCache(b, b.TempDir()))
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

func newLayerFrom(b *testing.B, entries []fstest.Entry, blob []byte, z *ztoc.Ztoc) *layerFixture {
	reg := &registry{}
	reg.blob.Store(&blob)
	reg.srv = newServer(reg)
	b.Cleanup(reg.srv.Close)
	return &layerFixture{entries: entries, blob: blob, z: z, reg: reg, d: digestOf(blob)}
}
