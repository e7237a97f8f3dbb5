//go:build integration

package interop

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	stdgzip "compress/gzip"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
)

// Span sizes every layer is indexed with.
const (
	span64K = 64 << 10
	span1M  = 1 << 20
	span4M  = 4 << 20
)

var allSpans = []int64{span64K, span1M, span4M}

// cacheVersion is part of every cached file name: bump it when the way a
// layer is made changes.
const cacheVersion = "v1"

// maxContent is the largest entry whose content the oracle reads with
// archive/tar; larger entries (the sparse "big" testdata files claim tens of
// GiB) are only checked for their placement.
const maxContent = 64 << 20

var cacheDir string

func TestMain(m *testing.M) {
	// Upstream writes mod_time with time.Time.MarshalText, in the process's
	// local zone; socikit writes UTC. Make local UTC before anything loads
	// the zone (scripts/test-interop.sh also runs with TZ=UTC).
	os.Setenv("TZ", "UTC")
	time.Local = time.UTC

	dir := os.Getenv("SOCIKIT_TESTDATA")
	tmp := dir == ""
	if tmp {
		var err error
		if dir, err = os.MkdirTemp("", "socikit-interop-"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cacheDir = dir
	code := m.Run()
	if tmp {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// tarInfo is an uncompressed tar and archive/tar's reading of it: the
// oracle every zTOC is checked against.
type tarInfo struct {
	name    string
	raw     []byte
	entries []tarEntry
	// readErr is archive/tar's error, if it could not read the whole tar;
	// entries then holds the entries read before it.
	readErr error
}

type tarEntry struct {
	hdr *tar.Header
	// content is the entry's content as archive/tar returns it; nil when
	// the entry is larger than maxContent or not a regular file.
	content    []byte
	contentErr error
	// sparse: archive/tar expands a sparse map, so the content is not a
	// contiguous range of the tar stream and can't be indexed.
	sparse bool
}

func (ti *tarInfo) regCount() int {
	n := 0
	for _, e := range ti.entries {
		if e.hdr.Typeflag == tar.TypeReg {
			n++
		}
	}
	return n
}

func readTarInfo(name string, raw []byte) *tarInfo {
	ti := &tarInfo{name: name, raw: raw}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			ti.readErr = err
			break
		}
		e := tarEntry{hdr: hdr, sparse: hdr.Typeflag == tar.TypeGNUSparse}
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				e.sparse = true
			}
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size <= maxContent {
			e.content, e.contentErr = io.ReadAll(tr)
		}
		ti.entries = append(ti.entries, e)
	}
	return ti
}

// layer is a layer blob on disk and the tar it holds.
type layer struct {
	name  string
	path  string
	algo  string // upstream's compression name: "gzip" or "uncompressed"
	tar   *tarInfo
	large bool
	spans []int64
}

// cached returns the file cacheDir/name, making it with make unless it is
// already there (from an earlier run with SOCIKIT_TESTDATA).
func cached(name string, make func(w io.Writer) error) (string, error) {
	p := filepath.Join(cacheDir, cacheVersion+"-"+name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	f, err := os.CreateTemp(cacheDir, ".tmp-"+name)
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if err := make(f); err != nil {
		f.Close()
		return "", fmt.Errorf("make %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return p, os.Rename(f.Name(), p)
}

func gzipStd(level int, data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		zw, err := stdgzip.NewWriterLevel(w, level)
		if err != nil {
			return err
		}
		if _, err := zw.Write(data); err != nil {
			return err
		}
		return zw.Close()
	}
}

func gzipKlauspost(level int, data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		zw, err := kgzip.NewWriterLevel(w, level)
		if err != nil {
			return err
		}
		if _, err := zw.Write(data); err != nil {
			return err
		}
		return zw.Close()
	}
}

// gzip2Members gzips data as two concatenated gzip members, split at a
// point that is not on a tar block boundary so that an entry straddles the
// members.
func gzip2Members(data []byte) func(io.Writer) error {
	cut := len(data)/2 + 777
	if cut > len(data) {
		cut = len(data)
	}
	return func(w io.Writer) error {
		if err := gzipStd(6, data[:cut])(w); err != nil {
			return err
		}
		return gzipStd(6, data[cut:])(w)
	}
}

func writeRaw(data []byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(data); return err }
}

// ---- GOROOT/src -------------------------------------------------------------

var gorootOnce = sync.OnceValues(func() ([]*layer, error) {
	tarPath, err := cached("goroot-src-"+runtime.Version()+".tar", writeGorootTar)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(tarPath)
	if err != nil {
		return nil, err
	}
	ti := readTarInfo("goroot-src", raw)
	if ti.readErr != nil {
		return nil, ti.readErr
	}
	base := "goroot-src-" + runtime.Version()
	mk := []struct {
		name, file, algo string
		make             func(io.Writer) error
	}{
		{"goroot-gzip6", base + "-gzip6.tar.gz", "gzip", gzipStd(6, raw)},
		{"goroot-klauspost6", base + "-klauspost6.tar.gz", "gzip", gzipKlauspost(6, raw)},
		{"goroot-2members", base + "-2members.tar.gz", "gzip", gzip2Members(raw)},
		{"goroot-uncompressed", base + ".tar", "uncompressed", nil},
	}
	var ls []*layer
	for _, m := range mk {
		p := tarPath
		if m.make != nil {
			if p, err = cached(m.file, m.make); err != nil {
				return nil, err
			}
		}
		ls = append(ls, &layer{name: m.name, path: p, algo: m.algo, tar: ti, large: true, spans: allSpans})
	}
	return ls, nil
})

func gorootLayers(tb testing.TB) []*layer {
	tb.Helper()
	ls, err := gorootOnce()
	if err != nil {
		tb.Fatalf("make GOROOT/src layers: %v", err)
	}
	return ls
}

func gorootLayer(tb testing.TB, name string) *layer {
	for _, l := range gorootLayers(tb) {
		if l.name == name {
			return l
		}
	}
	tb.Fatalf("no layer %s", name)
	return nil
}

// writeGorootTar writes a tar of $GOROOT/src, in lexical order.
func writeGorootTar(w io.Writer) error {
	root := filepath.Join(runtime.GOROOT(), "src")
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if !info.Mode().IsRegular() && !info.IsDir() && link == "" {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(root), p)
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ---- synthetic tar ------------------------------------------------------------

var syntheticOnce = sync.OnceValues(func() ([]*layer, error) {
	raw, err := syntheticTar()
	if err != nil {
		return nil, err
	}
	ti := readTarInfo("synthetic", raw)
	if ti.readErr != nil {
		return nil, ti.readErr
	}
	gz, err := cached("synthetic.tar.gz", gzipStd(6, raw))
	if err != nil {
		return nil, err
	}
	plain, err := cached("synthetic.tar", writeRaw(raw))
	if err != nil {
		return nil, err
	}
	return []*layer{
		{name: "synthetic-gzip6", path: gz, algo: "gzip", tar: ti, spans: allSpans},
		{name: "synthetic-uncompressed", path: plain, algo: "uncompressed", tar: ti, spans: allSpans},
	}, nil
})

func syntheticLayers(tb testing.TB) []*layer {
	tb.Helper()
	ls, err := syntheticOnce()
	if err != nil {
		tb.Fatalf("make synthetic layers: %v", err)
	}
	return ls
}

// wordData returns n bytes of pseudo-random text: it compresses, but not to
// nothing, so the deflate stream has many blocks.
func wordData(seed int64, n int) []byte {
	r := rand.New(rand.NewSource(seed))
	words := []string{"soci", "ztoc", "span", "gzip", "layer", "lazy", "pull", "checkpoint",
		"window", "deflate", "tar", "header", "\n", "0123456789", "containerd", "snapshotter"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.Intn(len(words))])
		if r.Intn(7) == 0 {
			b.WriteByte(byte(r.Intn(256)))
		}
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

func randomData(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// syntheticTar makes a tar with every entry type upstream knows and the
// header features that go into the zTOC.
func syntheticTar() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	add := func(h *tar.Header, data []byte) error {
		if h.ModTime.IsZero() {
			h.ModTime = mt
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		if len(data) > 0 {
			if _, err := tw.Write(data); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
		return nil
	}
	longDir := strings.Repeat("long-directory-name/", 8)
	longName := longDir + strings.Repeat("x", 150) + ".txt"
	entries := []struct {
		h    tar.Header
		data []byte
	}{
		{tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}, nil},
		{tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, Uid: 0, Gid: 0, Uname: "root", Gname: "root"}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "etc/hello.txt", Mode: 0o644, Uid: 1000, Gid: 1000, Uname: "user", Gname: "users"}, []byte("hello, world\n")},
		{tar.Header{Typeflag: tar.TypeReg, Name: "etc/empty", Mode: 0o600}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "etc/one-byte", Mode: 0o600}, []byte{'1'}},
		{tar.Header{Typeflag: tar.TypeReg, Name: "etc/block-512", Mode: 0o600}, wordData(1, 512)},
		{tar.Header{Typeflag: tar.TypeReg, Name: "etc/block-513", Mode: 0o600}, wordData(2, 513)},
		{tar.Header{Typeflag: tar.TypeLink, Name: "etc/hardlink", Linkname: "etc/hello.txt", Mode: 0o644}, nil},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/symlink", Linkname: "hello.txt", Mode: 0o777}, nil},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/dangling", Linkname: "/nonexistent/" + strings.Repeat("y", 120), Mode: 0o777}, nil},
		{tar.Header{Typeflag: tar.TypeDir, Name: "dev/", Mode: 0o755}, nil},
		{tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o644}, nil},
		{tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil},
		{tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda1", Mode: 0o660, Devmajor: 8, Devminor: 1}, nil},
		{tar.Header{Typeflag: tar.TypeChar, Name: "dev/bigdev", Mode: 0o660, Devmajor: 4095, Devminor: 1048575, Format: tar.FormatPAX}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "xattrs/file", Mode: 0o4755, Format: tar.FormatPAX, PAXRecords: map[string]string{
			"SCHILY.xattr.user.comment":        "hello",
			"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x04\x00\x00",
			"SCHILY.xattr.trusted.empty":       "",
			"LIBARCHIVE.creationtime":          "1700000000",
		}}, []byte("file with xattrs\n")},
		{tar.Header{Typeflag: tar.TypeDir, Name: "xattrs/dir/", Mode: 0o1777, Format: tar.FormatPAX, PAXRecords: map[string]string{
			"SCHILY.xattr.trusted.overlay.opaque": "y",
		}}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: longName, Mode: 0o644}, []byte("long name\n")},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: longDir + "link", Linkname: longName, Mode: 0o777}, nil},
		{tar.Header{Typeflag: tar.TypeLink, Name: longDir + "hard", Linkname: longName, Mode: 0o644}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "unicode/héllo wörld ☃.txt", Mode: 0o644}, []byte("snowman\n")},
		{tar.Header{Typeflag: tar.TypeReg, Name: "times/nanos", Mode: 0o644, Format: tar.FormatPAX,
			ModTime: time.Date(2023, 1, 2, 3, 4, 5, 123456789, time.UTC)}, []byte("nanos\n")},
		{tar.Header{Typeflag: tar.TypeReg, Name: "times/pre-epoch", Mode: 0o644, Format: tar.FormatPAX,
			ModTime: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}, []byte("old\n")},
		{tar.Header{Typeflag: tar.TypeReg, Name: "times/epoch", Mode: 0o644, ModTime: time.Unix(0, 0)}, []byte("epoch\n")},
		{tar.Header{Typeflag: tar.TypeReg, Name: "ids/big", Mode: 0o644, Uid: 1 << 30, Gid: 1<<31 - 1, Uname: strings.Repeat("u", 40), Gname: "g", Format: tar.FormatPAX}, []byte("big ids\n")},
		{tar.Header{Typeflag: tar.TypeReg, Name: "big/words", Mode: 0o644}, wordData(3, 10<<20+12345)},
		{tar.Header{Typeflag: tar.TypeReg, Name: "big/random", Mode: 0o644}, randomData(4, 5<<20+7)},
		{tar.Header{Typeflag: tar.TypeReg, Name: "dup/file", Mode: 0o644}, []byte("first version\n")},
	}
	for i := range entries {
		if err := add(&entries[i].h, entries[i].data); err != nil {
			return nil, err
		}
	}
	// Many small files, so that spans hold many entries and span ends fall
	// inside files and headers alike.
	for i := 0; i < 400; i++ {
		data := wordData(int64(100+i), (i*7919)%20000)
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("many/%03d/file-%d", i/50, i), Mode: 0o644}, data); err != nil {
			return nil, err
		}
	}
	// A later entry with an earlier entry's name replaces it.
	if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: "dup/file", Mode: 0o600}, []byte("second version, longer\n")); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ---- Go's archive/tar testdata ------------------------------------------------

var goTestdataOnce = sync.OnceValues(func() ([]*layer, error) {
	dir := filepath.Join(runtime.GOROOT(), "src", "archive", "tar", "testdata")
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ls []*layer
	for _, de := range des {
		n := de.Name()
		var raw []byte
		var base string
		switch {
		case strings.HasSuffix(n, ".tar"):
			base = strings.TrimSuffix(n, ".tar")
			raw, err = os.ReadFile(filepath.Join(dir, n))
		case strings.HasSuffix(n, ".tar.base64"):
			base = strings.TrimSuffix(n, ".tar.base64")
			var enc []byte
			if enc, err = os.ReadFile(filepath.Join(dir, n)); err == nil {
				raw, err = base64.StdEncoding.DecodeString(string(enc))
			}
		case strings.HasSuffix(n, ".tar.bz2"):
			base = strings.TrimSuffix(n, ".tar.bz2")
			var f *os.File
			if f, err = os.Open(filepath.Join(dir, n)); err == nil {
				raw, err = io.ReadAll(bzip2.NewReader(f))
				f.Close()
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		ti := readTarInfo(base, raw)
		gz, err := cached("gotar-"+base+".tar.gz", gzipStd(6, raw))
		if err != nil {
			return nil, err
		}
		plain, err := cached("gotar-"+base+".tar", writeRaw(raw))
		if err != nil {
			return nil, err
		}
		ls = append(ls,
			&layer{name: base + "-gzip6", path: gz, algo: "gzip", tar: ti, spans: []int64{span64K, span4M}},
			&layer{name: base + "-uncompressed", path: plain, algo: "uncompressed", tar: ti, spans: []int64{span64K}},
		)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].name < ls[j].name })
	return ls, nil
})

func goTestdataLayers(tb testing.TB) []*layer {
	tb.Helper()
	ls, err := goTestdataOnce()
	if err != nil {
		tb.Fatalf("make archive/tar testdata layers: %v", err)
	}
	return ls
}
