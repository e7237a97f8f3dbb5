package ztoc_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"hash/fnv"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"

	"github.com/socikit/socikit/ztoc"
)

// rng returns a random source seeded from the test's name.
func rng(t testing.TB) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return rand.New(rand.NewPCG(h.Sum64(), 1))
}

type tarFile struct {
	hdr  tar.Header
	data []byte
}

// synthTar makes a tar with every entry type upstream knows, PAX records,
// long names, empty, small, compressible and incompressible files, and
// large files that span many spans.
func synthTar(t testing.TB, large int) ([]byte, []tarFile) {
	r := rng(t)
	mt := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	var files []tarFile
	add := func(h tar.Header, data []byte) {
		h.ModTime = mt
		h.Size = int64(len(data))
		files = append(files, tarFile{hdr: h, data: data})
	}
	add(tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, nil)
	add(tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, Uid: 1, Gid: 2, Uname: "u", Gname: "g"}, nil)
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/empty", Mode: 0o644}, nil)
	add(tar.Header{Typeflag: tar.TypeReg, Name: "etc/xattr", Mode: 0o600, PAXRecords: map[string]string{
		"SCHILY.xattr.user.foo": "bar", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}, Format: tar.FormatPAX}, []byte("hello xattrs\n"))
	add(tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/link", Linkname: "xattr"}, nil)
	add(tar.Header{Typeflag: tar.TypeLink, Name: "etc/hard", Linkname: "etc/xattr"}, nil)
	add(tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3, Mode: 0o666}, nil)
	add(tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Devmajor: 8, Devminor: 0, Mode: 0o660}, nil)
	add(tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o644}, nil)
	add(tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("long/", 40) + "name\xff\xfe.txt", Mode: 0o644}, []byte("long and not UTF-8\n"))
	words := []string{"alpha ", "beta ", "gamma ", "delta\n", "func main() {}\n", "import \"os\"\n"}
	for i := range 300 {
		n := r.IntN(20000)
		b := make([]byte, 0, n)
		for len(b) < n {
			if i%7 == 0 {
				b = append(b, byte(r.IntN(256)))
			} else {
				b = append(b, words[r.IntN(len(words))]...)
			}
		}
		add(tar.Header{Typeflag: tar.TypeReg, Name: "usr/share/f" + string(rune('a'+i%26)) + "/" + strings.Repeat("x", i%13) + ".dat", Mode: 0o644}, b)
	}
	for i := range 2 {
		b := make([]byte, large)
		for j := range b {
			if j%3 == 0 {
				b[j] = byte(r.IntN(256))
			} else {
				b[j] = byte(j >> 10)
			}
		}
		add(tar.Header{Typeflag: tar.TypeReg, Name: "usr/lib/big" + string(rune('0'+i)), Mode: 0o755}, b)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := f.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	// Pad to a 10240-byte record, as tar(1) does: padding after the
	// end-of-archive blocks is part of the blob but not of the archive.
	buf.Write(make([]byte, 10240-buf.Len()%10240))
	return buf.Bytes(), files
}

// goSrcTar tars a part of the Go tree: real, varied content.
func goSrcTar(t testing.TB, dir string) []byte {
	b, err := makeGoSrcTar(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func makeGoSrcTar(dir string) ([]byte, error) {
	root := filepath.Join(runtime.GOROOT(), "src", dir)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gzipStd(t testing.TB, b []byte, level int) []byte {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipKlauspost(t testing.TB, b []byte, level int) []byte {
	var buf bytes.Buffer
	w, err := kgzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkZtoc checks z against the tar it indexes: the TOC lists every entry
// with its header fields and the offset of its data, every span decompresses
// from the blob to the tar's bytes, and files (those that cross a span end,
// and a sample of the rest) read back through the zTOC.
func checkZtoc(t *testing.T, z *ztoc.Ztoc, blob, tarball []byte) {
	t.Helper()
	if z.CompressedArchiveSize != int64(len(blob)) {
		t.Errorf("compressed size %d, blob has %d", z.CompressedArchiveSize, len(blob))
	}
	// Round trip through the wire format first: readers see that.
	b, err := ztoc.Marshal(z)
	if err != nil {
		t.Fatal(err)
	}
	z2, err := ztoc.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ztoc.NewReader(z2, bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	ix := r.Index()
	for _, s := range ix.Spans() {
		end := min(s.UncompressedEnd, z2.UncompressedArchiveSize)
		if s.UncompressedStart >= end {
			continue
		}
		got, err := r.ReadRange(s.UncompressedStart, end-s.UncompressedStart)
		if err != nil {
			t.Fatalf("span %d: %v", s.ID, err)
		}
		if !bytes.Equal(got, tarball[s.UncompressedStart:end]) {
			t.Fatalf("span %d decompresses to other bytes", s.ID)
		}
	}
	tr := tar.NewReader(bytes.NewReader(tarball))
	i := 0
	for ; ; i++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(z2.Files) {
			t.Fatalf("toc has %d entries, tar has more", len(z2.Files))
		}
		e := &z2.Files[i]
		if e.Name != h.Name || e.Linkname != h.Linkname || e.Mode != h.Mode || e.UncompressedSize != h.Size ||
			!e.ModTime.Equal(h.ModTime) || e.Devmajor != h.Devmajor || e.Devminor != h.Devminor || int(e.UID) != h.Uid {
			t.Errorf("entry %d: toc %+v, tar %+v", i, e, h)
		}
		if len(h.PAXRecords) != len(e.PAXRecords) {
			t.Errorf("entry %d: pax %v, want %v", i, e.PAXRecords, h.PAXRecords)
		}
		if e.Type != ztoc.TypeReg {
			continue
		}
		want, _ := io.ReadAll(tr)
		if !bytes.Equal(tarball[e.UncompressedOffset:e.UncompressedOffset+e.UncompressedSize], want) {
			t.Fatalf("%s: the tar's bytes at the toc offset are not the file", e.Name)
		}
		first, last := ix.SpansOf(e.UncompressedOffset, e.UncompressedSize)
		if first == last && i%17 != 0 {
			continue
		}
		got, err := r.ReadFile(e)
		if err != nil {
			t.Fatalf("read %s: %v", e.Name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %s: content differs (%d bytes, want %d)", e.Name, len(got), len(want))
		}
	}
	if i != len(z2.Files) {
		t.Errorf("toc has %d entries, tar %d", len(z2.Files), i)
	}
}

// sizes returns the size of the large synthetic files and the Go source
// directory to tar: smaller with -short, since -race slows inflation down
// tenfold.
func sizes() (large int, gosrc string) {
	if testing.Short() {
		return 1 << 20, "encoding/json"
	}
	return 3 << 20, "encoding"
}

func TestBuildGzip(t *testing.T) {
	large, dir := sizes()
	tarball, _ := synthTar(t, large)
	gosrc := goSrcTar(t, dir)
	multi := append(gzipStd(t, tarball[:len(tarball)/2], 6), gzipStd(t, tarball[len(tarball)/2:], 1)...)
	cases := []struct {
		name      string
		tar, blob []byte
		span      int64
	}{
		{"stdlib-6", tarball, gzipStd(t, tarball, 6), 64 << 10},
		{"stdlib-1", tarball, gzipStd(t, tarball, 1), 256 << 10},
		{"stdlib-9", tarball, gzipStd(t, tarball, 9), 1 << 20},
		{"stored", tarball, gzipStd(t, tarball, 0), 128 << 10},
		{"huffman-only", tarball, gzipStd(t, tarball, gzip.HuffmanOnly), 128 << 10},
		{"klauspost-5", tarball, gzipKlauspost(t, tarball, 5), 64 << 10},
		{"multi-member", tarball, multi, 64 << 10},
		{"gosrc", gosrc, gzipStd(t, gosrc, 6), 4 << 20},
		{"gosrc-small-spans", gosrc, gzipKlauspost(t, gosrc, 6), 32 << 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			z, err := ztoc.Build(bytes.NewReader(c.blob), ztoc.WithSpanSize(c.span))
			if err != nil {
				t.Fatal(err)
			}
			if z.Compression != ztoc.Gzip {
				t.Fatalf("compression %v", z.Compression)
			}
			if want := int64(len(c.blob)) / 1000; int64(z.MaxSpanID) > 0 && c.span < 1<<20 && int64(z.MaxSpanID)+1 < 2 && want > 0 {
				t.Errorf("only %d spans", z.MaxSpanID+1)
			}
			checkZtoc(t, z, c.blob, c.tar)
			// Deterministic.
			z2, err := ztoc.Build(bytes.NewReader(c.blob), ztoc.WithSpanSize(c.span))
			if err != nil {
				t.Fatal(err)
			}
			b1, _ := ztoc.Marshal(z)
			b2, _ := ztoc.Marshal(z2)
			if !bytes.Equal(b1, b2) {
				t.Error("two builds differ")
			}
		})
	}
}

func TestBuildTar(t *testing.T) {
	tarball, _ := synthTar(t, 1<<20)
	z, err := ztoc.Build(bytes.NewReader(tarball), ztoc.WithSpanSize(100<<10))
	if err != nil {
		t.Fatal(err)
	}
	if z.Compression != ztoc.Uncompressed {
		t.Fatalf("compression %v", z.Compression)
	}
	if want := int32((len(tarball) - 1) / (100 << 10)); z.MaxSpanID != want {
		t.Errorf("max span id %d, want %d", z.MaxSpanID, want)
	}
	checkZtoc(t, z, tarball, tarball)
}

func TestCompress(t *testing.T) {
	large, dir := sizes()
	tarball, _ := synthTar(t, large)
	gosrc := goSrcTar(t, dir)
	for _, c := range []struct {
		name  string
		tar   []byte
		span  int64
		level int
	}{
		{"synth-64k", tarball, 64 << 10, 6},
		{"synth-1m", tarball, 1 << 20, 1},
		{"gosrc-256k", gosrc, 256 << 10, 6},
		{"gosrc-4m", gosrc, 4 << 20, 9},
		{"gosrc-32k", gosrc, 32 << 10, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var blob bytes.Buffer
			z, err := ztoc.Compress(&blob, bytes.NewReader(c.tar), ztoc.WithSpanSize(c.span), ztoc.WithCompressionLevel(c.level), ztoc.WithJobs(1))
			if err != nil {
				t.Fatal(err)
			}
			// A standard gzip stream of the whole input.
			zr, err := gzip.NewReader(bytes.NewReader(blob.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, c.tar) {
				t.Fatal("blob does not decompress to the tar")
			}
			checkZtoc(t, z, blob.Bytes(), c.tar)
			g, err := ztoc.ParseGzipCheckpoints(z.Checkpoints)
			if err != nil {
				t.Fatal(err)
			}
			ix, err := ztoc.NewIndex(z)
			if err != nil {
				t.Fatal(err)
			}
			// Spans end at entry boundaries or inside large files only, at
			// byte boundaries, and are not much larger than asked.
			starts := map[int64]bool{}
			for _, e := range z.Files {
				starts[e.UncompressedOffset] = true
			}
			for i, p := range g.Points {
				if p.Bits != 0 {
					t.Errorf("checkpoint %d has %d bits", i, p.Bits)
				}
				s := ix.Spans()[i]
				if s.UncompressedEnd-s.UncompressedStart > 2*c.span+(64<<10) {
					t.Errorf("span %d is %d bytes", i, s.UncompressedEnd-s.UncompressedStart)
				}
			}
			// Compressed size stays close to a plain gzip of the same tar.
			plain := gzipKlauspost(t, c.tar, c.level)
			// Independent spans cost a little: more when they are tiny.
			limit := 1.01
			if c.span < 256<<10 {
				limit = 1.05
			}
			if ratio := float64(blob.Len()) / float64(len(plain)); ratio > limit {
				t.Errorf("blob %d bytes is %.3f× plain gzip (%d)", blob.Len(), ratio, len(plain))
			}
			// Building the index from the blob finds the same files.
			z2, err := ztoc.Build(bytes.NewReader(blob.Bytes()), ztoc.WithSpanSize(c.span))
			if err != nil {
				t.Fatal(err)
			}
			checkZtoc(t, z2, blob.Bytes(), c.tar)
			// Deterministic, whatever the parallelism.
			var blob2 bytes.Buffer
			z3, err := ztoc.Compress(&blob2, bytes.NewReader(c.tar), ztoc.WithSpanSize(c.span), ztoc.WithCompressionLevel(c.level), ztoc.WithJobs(5))
			if err != nil {
				t.Fatal(err)
			}
			b1, _ := ztoc.Marshal(z)
			b3, _ := ztoc.Marshal(z3)
			if !bytes.Equal(blob.Bytes(), blob2.Bytes()) || !bytes.Equal(b1, b3) {
				t.Error("two runs differ")
			}
		})
	}
}

func TestCorruptSpanIsAnError(t *testing.T) {
	tarball, files := synthTar(t, 1<<20)
	blob := gzipStd(t, tarball, 6)
	z, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(blob)
	e := z.Lookup(files[len(files)-1].hdr.Name)
	ix, _ := ztoc.NewIndex(z)
	s := ix.Spans()[ix.SpanAt(e.UncompressedOffset+e.UncompressedSize/2)]
	bad[(s.CompressedStart+s.CompressedEnd)/2] ^= 0x40
	r, err := ztoc.NewReader(z, bytes.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFile(e); !errors.Is(err, ztoc.ErrDigestMismatch) {
		t.Fatalf("read of a corrupted span: %v, want ErrDigestMismatch", err)
	}
}

func TestBuildBadInput(t *testing.T) {
	tarball, _ := synthTar(t, 1<<18)
	blob := gzipStd(t, tarball, 6)
	bad := bytes.Clone(blob)
	bad[len(bad)/2] ^= 0xff
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"truncated-gzip", blob[:len(blob)/2]},
		{"corrupt-gzip", bad},
		{"trailing-garbage", append(bytes.Clone(blob), "garbage"...)},
		{"not-tar", gzipStd(t, []byte(strings.Repeat("not a tar ", 1000)), 6)},
		{"empty", nil},
		{"truncated-tar", tarball[:700]},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ztoc.Build(bytes.NewReader(c.in)); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestBuildRejectsSparse(t *testing.T) {
	f, err := os.Open(filepath.Join(runtime.GOROOT(), "src/archive/tar/testdata/pax-sparse-big.tar"))
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	if _, err := ztoc.Build(f); err == nil || !strings.Contains(err.Error(), "sparse") {
		t.Fatalf("sparse file: %v, want an error", err)
	}
}

// TestGoTarTestdata indexes the edge cases of Go's archive/tar: each is
// either refused with an error or indexed so that every file reads back as
// archive/tar reads it. Nothing is mis-indexed.
func TestGoTarTestdata(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(runtime.GOROOT(), "src/archive/tar/testdata/*.tar"))
	if len(paths) == 0 {
		t.Skip("no archive/tar testdata in GOROOT")
	}
	indexed := 0
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			tarball, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, blob := range [][]byte{tarball, gzipStd(t, tarball, 6)} {
				z, err := ztoc.Build(bytes.NewReader(blob), ztoc.WithSpanSize(64<<10))
				if err != nil {
					t.Logf("refused: %v", err)
					return
				}
				checkZtoc(t, z, blob, tarball)
			}
			indexed++
		})
	}
	t.Logf("%d of %d indexed", indexed, len(paths))
}
