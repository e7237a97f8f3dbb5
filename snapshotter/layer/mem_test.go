package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/fs/fstest"
	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/ztoc"
)

// bigLayer returns a layer of n small files (0.5-3.5 KiB) in n/40
// directories with 256 KiB spans, as a marshalled zTOC and the blob: the
// shape of a language runtime's layer (many small files, the span size
// socikit's exporter picks for them).
func bigLayer(t testing.TB, n int) (zb, blob []byte) {
	t.Helper()
	data := fstest.Random("biglayer", 4<<10)
	mt := time.Unix(1700000000, 0)
	dirs := max(1, n/40)
	var entries []fstest.Entry
	for d := range dirs {
		entries = append(entries, fstest.Entry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("usr/lib/pkg%d/", d), Mode: 0o755, ModTime: mt}})
	}
	for i := range n {
		size := 512 + (i*7919)%(3<<10)
		entries = append(entries, fstest.Entry{
			Hdr:  tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("usr/lib/pkg%d/module_%d.py", i*dirs/n, i), Mode: 0o644, Size: int64(size), ModTime: mt, Uname: "root", Gname: "root"},
			Data: data[:size],
		})
	}
	tb, err := fstest.Tar(entries)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	z, err := ztoc.Compress(&b, bytes.NewReader(tb), ztoc.WithSpanSize(256<<10), ztoc.WithCompressionLevel(1))
	if err != nil {
		t.Fatal(err)
	}
	if zb, err = ztoc.Marshal(z); err != nil {
		t.Fatal(err)
	}
	return zb, b.Bytes()
}

// memBlob is a remote.Blob in memory.
type memBlob []byte

func (b memBlob) Size() int64 { return int64(len(b)) }

func (b memBlob) ReadRanges(_ context.Context, ranges []remote.Range) error {
	for _, r := range ranges {
		if r.Off < 0 || r.Off+int64(len(r.Buf)) > int64(len(b)) {
			return fmt.Errorf("range %d+%d outside the blob", r.Off, len(r.Buf))
		}
		copy(r.Buf, b[r.Off:])
	}
	return nil
}

// liveHeap returns the bytes of live heap objects.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// memoryFigures are what measureMountMemory measured.
type memoryFigures struct {
	perLayer     int64 // live heap per mounted layer, before any read
	perLayerRead int64 // the same after every entry was looked up and some files read
	files, spans int
}

// measureMountMemory mounts the same big layer layers times (as distinct
// layers: each has its own cache entry, zTOC decoded anew, as the daemon
// does), then stats every entry of every mount and reads every 20th file,
// and measures the live heap each mounted layer costs.
func measureMountMemory(t *testing.T, layers, files int) memoryFigures {
	requiresRoot(t)
	zb, blob := bigLayer(t, files)
	c, err := cache.Open(t.TempDir(), cache.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	var fig memoryFigures
	var mounts []*Mounted
	defer func() {
		for _, m := range mounts {
			m.Unmount()
		}
	}()
	h0 := liveHeap()
	for i := range layers {
		z, err := ztoc.Unmarshal(zb)
		if err != nil {
			t.Fatal(err)
		}
		fig.files, fig.spans = len(z.Files), int(z.MaxSpanID)+1
		d := digest.FromString("layer-" + strconv.Itoa(i))
		b := memBlob(blob)
		dir := filepath.Join(t.TempDir(), "mnt")
		os.Mkdir(dir, 0o755)
		m, err := Mount(context.Background(), dir, Source{Digest: d, Ztoc: z, Blob: b}, c)
		if err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, m)
	}
	h1 := liveHeap()
	fig.perLayer = (h1 - h0) / int64(layers)
	buf := make([]byte, 64<<10)
	for _, m := range mounts {
		n := 0
		err := filepath.WalkDir(m.Dir(), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if _, err := e.Info(); err != nil {
				return err
			}
			if e.Type().IsRegular() {
				if n++; n%20 == 0 {
					b, err := os.ReadFile(p)
					if err != nil {
						return err
					}
					if !strings.HasSuffix(p, ".py") || len(b) < 512 {
						return fmt.Errorf("%s: %d bytes", p, len(b))
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != files {
			t.Fatalf("walked %d files, want %d", n, files)
		}
	}
	_ = buf
	h2 := liveHeap()
	fig.perLayerRead = (h2 - h0) / int64(layers)
	runtime.KeepAlive(mounts)
	return fig
}

// TestMountMemory measures the live heap a mounted layer costs, with the
// checkpoint windows in memory (as before) and offloaded to a file (now),
// on a layer of 20,000 files and 215 spans, and bounds it.
func TestMountMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts 20 layers of 20,000 files")
	}
	debug.FreeOSMemory()
	const layers, files = 10, 20000
	windowsInMemory = true
	before := measureMountMemory(t, layers, files)
	windowsInMemory = false
	after := measureMountMemory(t, layers, files)
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	t.Logf("layer of %d files, %d spans (%s of checkpoint windows); per mounted layer: windows in memory %s (%s after lookups and reads), offloaded %s (%s); %d B/file",
		before.files, before.spans, mb(int64(before.spans)*ztoc.WindowSize), mb(before.perLayer), mb(before.perLayerRead),
		mb(after.perLayer), mb(after.perLayerRead), after.perLayerRead/int64(after.files))
	if saved := before.perLayer - after.perLayer; saved < int64(before.spans)*ztoc.WindowSize*9/10 {
		t.Errorf("offloading saved %s per layer, want about the windows' %s", mb(saved), mb(int64(before.spans)*ztoc.WindowSize))
	}
}
