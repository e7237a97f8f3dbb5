// Package fstest builds layer tars with tricky content for the tests of the
// lazy layer filesystem (snapshotter/fs, snapshotter/layer) and describes
// what a mount of them must show.
package fstest

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"path"
	"strings"
	"time"
)

// Entry is one tar entry: its header and, for regular files, its data.
type Entry struct {
	Hdr  tar.Header
	Data []byte
}

// LongName is a path longer than the 100 bytes of a ustar name field.
var LongName = "long/" + strings.Repeat("d", 120) + "/" + strings.Repeat("n", 140)

// BadUTF8 is a name that is not valid UTF-8.
const BadUTF8 = "bad\xff\xfename"

// Random returns n bytes seeded from seed.
func Random(seed string, n int) []byte {
	h := fnv.New64a()
	h.Write([]byte(seed))
	r := rand.New(rand.NewPCG(h.Sum64(), 1))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// Tricky returns a layer with every kind of entry the filesystem must
// present: directories with and without entries of their own, empty,
// small and large files (large spans many spans at small span sizes),
// hard links, symlinks, devices, a fifo, setuid bits, xattrs, sub-second
// times, long and non-UTF-8 names, a whiteout, an opaque directory and a
// name given twice (the later entry wins).
func Tricky(seed string, bigSize int) []Entry {
	t0 := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	dir := func(name string, mode int64, uid int) Entry {
		return Entry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: uid, Gid: uid, ModTime: t0, Format: tar.FormatPAX}}
	}
	reg := func(name string, mode int64, data []byte) Entry {
		return Entry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: t0.Add(time.Duration(len(name)) * time.Second), Format: tar.FormatPAX}, Data: data}
	}
	e := []Entry{
		dir("./", 0o755, 0),
		dir("a/", 0o750, 1000),
		reg("a/file", 0o644, []byte("hello, lazy world\n")),
		reg("a/empty", 0o600, nil),
		reg("a/big", 0o644, Random(seed+"big", bigSize)),
		// The target's attributes, as archive/tar's FileInfoHeader and GNU
		// tar write a link header (the last header sets the inode's).
		{Hdr: tar.Header{Typeflag: tar.TypeLink, Name: "a/hard", Linkname: "a/file", Mode: 0o644, ModTime: t0.Add(6 * time.Second), Format: tar.FormatPAX}},
		{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "a/sym", Linkname: "file", Mode: 0o777, ModTime: t0, Format: tar.FormatPAX}},
		{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "a/dangling", Linkname: "/nowhere/at/all", Mode: 0o777, ModTime: t0, Format: tar.FormatPAX}},
		{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: t0, Format: tar.FormatPAX}},
		{Hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 300, ModTime: t0, Format: tar.FormatPAX}},
		{Hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o644, ModTime: t0, Format: tar.FormatPAX}},
		reg("bin/su", 0o4755, []byte("#!/bin/sh\necho su\n")),
		reg("etc/shadow", 0, []byte("root:*:19000:0:99999:7:::\n")),
		dir("tmp/", 0o1777, 0),
		reg(LongName, 0o644, []byte("long name\n")),
		reg(BadUTF8, 0o644, []byte("not utf-8\n")),
		reg("implicit/deep/file", 0o640, Random(seed+"implicit", 70000)),
		reg("dup", 0o600, []byte("first version\n")),
		{Hdr: tar.Header{Typeflag: tar.TypeChar, Name: "a/.wh.gone", ModTime: t0, Format: tar.FormatPAX}},
		dir("opq/", 0o755, 0),
		{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: "opq/.wh..wh..opq", ModTime: t0, Format: tar.FormatPAX}},
		reg("opq/kept", 0o644, []byte("kept\n")),
		reg("dup", 0o640, []byte("second version wins\n")),
	}
	x := reg("a/xattr", 0o644, []byte("with xattrs\n"))
	x.Hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.checksum": "abc123", "SCHILY.xattr.user.empty": ""}
	e = append(e, x)
	for i := range 40 {
		e = append(e, reg(fmt.Sprintf("many/f%03d", i), 0o644, Random(fmt.Sprint(seed, i), i*997)))
	}
	return e
}

// Tar writes entries as a tar stream.
func Tar(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Hdr
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("write header %q: %w", h.Name, err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			return nil, fmt.Errorf("write %q: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Clean returns the path of a tar name relative to the layer root ("." for
// the root).
func Clean(name string) string {
	p := path.Clean("/" + name)
	if p == "/" {
		return "."
	}
	return p[1:]
}

// Final returns what a mount shows for each path: the last entry of each
// name, whiteout and opaque markers excluded (see Whiteouts and Opaque).
func Final(entries []Entry) map[string]Entry {
	m := make(map[string]Entry)
	for _, e := range entries {
		base := path.Base(Clean(e.Hdr.Name))
		if strings.HasPrefix(base, ".wh.") {
			continue
		}
		m[Clean(e.Hdr.Name)] = e
	}
	return m
}

// Whiteouts returns the paths whiteouts hide.
func Whiteouts(entries []Entry) []string {
	var w []string
	for _, e := range entries {
		p := Clean(e.Hdr.Name)
		base := path.Base(p)
		if strings.HasPrefix(base, ".wh.") && base != ".wh..wh..opq" {
			w = append(w, path.Join(path.Dir(p), strings.TrimPrefix(base, ".wh.")))
		}
	}
	return w
}

// Opaque returns the directories marked opaque.
func Opaque(entries []Entry) []string {
	var o []string
	for _, e := range entries {
		p := Clean(e.Hdr.Name)
		if path.Base(p) == ".wh..wh..opq" {
			o = append(o, path.Dir(p))
		}
	}
	return o
}
