package trace

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/socikit/socikit/profile"
)

func TestParseMaps(t *testing.T) {
	in := "" +
		"55d0c0a00000-55d0c0a28000 r--p 00000000 08:01 1234                       /usr/bin/cat\n" +
		"55d0c0a28000-55d0c0a30000 r-xp 00028000 08:01 1234                       /usr/bin/cat\n" +
		"55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]\n" +
		"7f2c1a000000-7f2c1a001000 r--s 00001000 00:2a 77                         /data/with space  (deleted)\n" +
		"7f2c1b000000-7f2c1b001000 r--s 00000000 00:2a 78                         /data/two\\012lines\n" +
		"7f2c1c000000-7f2c1c001000 rw-s 00000000 00:01 1025                       /memfd:x (deleted)\n" +
		"7f2c1d000000-7f2c1d002000 rw-p 00000000 00:00 0 \n" +
		"garbage line\n" +
		"7f2c1e000000-7f2c1d000000 r--p 00000000 08:01 9 /end/before/start\n" +
		"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]"
	got := parseMaps([]byte(in), nil)
	want := []mapping{
		{start: 0x55d0c0a00000, end: 0x55d0c0a28000, offset: 0, inode: 1234, path: "/usr/bin/cat"},
		{start: 0x55d0c0a28000, end: 0x55d0c0a30000, offset: 0x28000, inode: 1234, path: "/usr/bin/cat"},
		{start: 0x55d0c1000000, end: 0x55d0c1021000, path: "[heap]"},
		{start: 0x7f2c1a000000, end: 0x7f2c1a001000, offset: 0x1000, inode: 77, path: "/data/with space ", deleted: true},
		{start: 0x7f2c1b000000, end: 0x7f2c1b001000, inode: 78, path: "/data/two\nlines"},
		{start: 0x7f2c1c000000, end: 0x7f2c1c001000, inode: 1025, path: "/memfd:x", deleted: true},
		{start: 0x7f2c1d000000, end: 0x7f2c1d002000},
		{start: 0xffffffffff600000, end: 0xffffffffff601000, path: "[vsyscall]"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mappings, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	files := 0
	for _, m := range got {
		if m.file() {
			files++
		}
	}
	if files != 3 { // cat twice, two\nlines
		t.Errorf("%d file mappings, want 3", files)
	}
}

func TestParseFdinfo(t *testing.T) {
	for _, tc := range []struct {
		in     string
		pos    int64
		ino    uint64
		hasIno bool
		ok     bool
	}{
		{"pos:\t4096\nflags:\t0100000\nmnt_id:\t29\nino:\t1234\n", 4096, 1234, true, true},
		{"pos:\t0\nflags:\t02\nmnt_id:\t12\n", 0, 0, false, true},
		{"flags:\t02\n", 0, 0, false, false},
		{"pos:\t-1\n", 0, 0, false, false},
		{"pos:\tx\n", 0, 0, false, false},
		{"pos:\t12\nino:\tz\nlock:\t1: POSIX  ADVISORY  READ 1 00:2a:3 0 EOF\n", 12, 0, false, true},
		{"", 0, 0, false, false},
	} {
		pos, ino, hasIno, ok := parseFdinfo([]byte(tc.in))
		if pos != tc.pos || ino != tc.ino || hasIno != tc.hasIno || ok != tc.ok {
			t.Errorf("%q: got %d %d %v %v", tc.in, pos, ino, hasIno, ok)
		}
	}
}

func TestParseStatus(t *testing.T) {
	st, ok := parseStatus([]byte("Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t4242\nNgid:\t0\nPid:\t4243\nPPid:\t1\nTracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t10\t11\t12\t13\n"))
	if !ok || st.tgid != 4242 || st.uid != [3]int{1000, 1001, 1002} || st.gid != [3]int{10, 11, 12} || !st.ids {
		t.Errorf("got %+v %v", st, ok)
	}
	for _, in := range []string{"Name:\tx\n", "Tgid:\t-1\n", "Tgid:\tab\n", ""} {
		if _, ok := parseStatus([]byte(in)); ok {
			t.Errorf("%q: ok", in)
		}
	}
	if st, ok := parseStatus([]byte("Tgid:\t7\nUid:\t1\t2\n")); !ok || st.tgid != 7 || st.ids {
		t.Errorf("short Uid line: %+v", st)
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte("55d0c0a00000-55d0c0a28000 r--p 00000000 08:01 1234   /usr/bin/cat\n"))
	f.Add([]byte("7f2c1a000000-7f2c1a001000 r--s 00001000 00:2a 77 /a b (deleted)\n-\n\n"))
	f.Add([]byte("0-0 rwxp 0 0:0 0 \\012\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range parseMaps(b, nil) {
			if m.end < m.start {
				t.Fatalf("end before start: %+v", m)
			}
			if m.file() && !strings.HasPrefix(m.path, "/") {
				t.Fatalf("file mapping without an absolute path: %+v", m)
			}
		}
		parseFdinfo(b)
		parseStatus(b)
	})
}

func TestReadyWatcher(t *testing.T) {
	for _, tc := range []struct {
		chunks []string
		ready  string
		want   bool
	}{
		{[]string{"starting\nready\n"}, "ready", true},
		{[]string{"star", "ting\nre", "ad", "y to serve"}, "ready", true},
		{[]string{"listening on :8080"}, "listening on", true},
		{[]string{"rea\n", "dy\n"}, "ready", false}, // not within one line
		{[]string{"not yet\n", "almost"}, "ready", false},
		{[]string{strings.Repeat("x", 100000), "rea", "dy"}, "ready", true},
		{[]string{"ready"}, "", false},
	} {
		var out bytes.Buffer
		found := make(chan struct{})
		rw := &readyWatcher{ready: []byte(tc.ready), once: &sync.Once{}, found: found}
		rw.copy(&out, &chunkReader{chunks: slices.Clone(tc.chunks)})
		got := false
		select {
		case <-found:
			got = true
		default:
		}
		if got != tc.want {
			t.Errorf("%q in %.100q: found %v", tc.ready, tc.chunks, got)
		}
		if out.String() != strings.Join(tc.chunks, "") {
			t.Errorf("output not passed through: %.100q", out.String())
		}
	}
}

type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func TestPageSet(t *testing.T) {
	var s pageSet
	for _, p := range []int64{0, 1, 4095, 4096, 1 << 40} {
		if s.testAndSet(p) {
			t.Errorf("page %d present before it was set", p)
		}
		if !s.testAndSet(p) {
			t.Errorf("page %d absent after it was set", p)
		}
	}
	if s.testAndSet(2) {
		t.Error("page 2 present")
	}
}

func TestRecorderPagesAndOrder(t *testing.T) {
	r := newRecorder(profile.MaxFiles, profile.MaxRanges)
	r.addRead("/a", 100, 50)
	r.noteOpen("/m") // opened now, its pages found later
	r.addRead("/b", 0, 10)
	r.addPages([]pageRun{{"/m", 2, 3}, {"/a", 0, 1}}, 4096)
	r.addPages([]pageRun{{"/m", 1, 5}}, 4096) // pages 1 and 5 are new
	files, trunc := r.result()
	if trunc != "" {
		t.Error(trunc)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	if strings.Join(paths, " ") != "/a /m /b" {
		t.Errorf("order %q", paths)
	}
	m := files[1]
	if got := profile.MergeRanges(m.Ranges); len(got) != 1 || got[0] != (profile.Range{Offset: 4096, Length: 5 * 4096}) {
		t.Errorf("/m: %v", m.Ranges)
	}
	if a := files[0]; a.Bytes() != 4096 {
		t.Errorf("/a: %v", a.Ranges)
	}
	r.stop()
	r.addRead("/c", 0, 1)
	if files, _ := r.result(); len(files) != 3 {
		t.Errorf("recorded after stop: %d files", len(files))
	}
}

func TestRecorderCaps(t *testing.T) {
	r := newRecorder(10, 3)
	for i := int64(0); i < 5; i++ {
		r.addRead("/a", i*100, 10)
	}
	files, trunc := r.result()
	if len(files) != 1 || len(files[0].Ranges) != 3 || !strings.Contains(trunc, "limit of 3 ranges") {
		t.Errorf("files %v, truncated %q", files, trunc)
	}
}

func TestExcluded(t *testing.T) {
	ex := []string{"/proc", "/.socikit"}
	for p, want := range map[string]bool{
		"/proc": true, "/proc/1/maps": true, "/process": false, "/.socikit/socikit-trace": true, "/.socikit-out/x": false, "/usr/bin/x": false,
	} {
		if excluded(ex, p) != want {
			t.Errorf("%s: excluded %v", p, !want)
		}
	}
	if !excluded([]string{"/"}, "/x") {
		t.Error("/ excludes all")
	}
	for p, want := range map[string]bool{"/a/b": true, "/a/../b": false, "a": false, "/": false, "/a\x00": false, "/a/": false} {
		if validPath(p) != want {
			t.Errorf("validPath(%q) = %v", p, !want)
		}
	}
}
