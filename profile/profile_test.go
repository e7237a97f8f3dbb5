package profile

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

func TestBuilderOrderAndMerge(t *testing.T) {
	var b Builder
	b.Add("/a", 0, 100)
	b.Add("/b", 4096, 10)
	b.Add("/a", 100, 50)  // continues the first range
	b.Add("/a", 1000, 10) // new range
	b.Add("/a", 990, 20)  // overlaps it
	b.Add("rel", 0, 10)   // not absolute: ignored
	b.Add("/c", 0, 0)     // empty: ignored
	p := b.Profile()
	if got := strings.Join(p.Paths(), ","); got != "/a,/b" {
		t.Fatalf("paths %s", got)
	}
	want := []Range{{0, 150}, {990, 20}}
	if got := p.Files[0].Ranges; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ranges %v, want %v", got, want)
	}
	if p.Bytes() != 180 {
		t.Fatalf("bytes %d", p.Bytes())
	}
}

func TestRoundTripDeterministic(t *testing.T) {
	p := &Profile{Version: Version, Platform: "linux/amd64", Source: SourceBuild,
		Files: []File{{Path: "/usr/bin/x", Ranges: []Range{{8192, 4096}, {0, 4096}}}}}
	b1, err := Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := Marshal(p)
	if !bytes.Equal(b1, b2) {
		t.Fatal("not deterministic")
	}
	want := `{"version":"socikit.profile.v1","platform":"linux/amd64","source":"build","files":[{"path":"/usr/bin/x","ranges":[[8192,4096],[0,4096]]}]}` + "\n"
	if string(b1) != want {
		t.Fatalf("got %s", b1)
	}
	q, err := Decode(bytes.NewReader(b1))
	if err != nil {
		t.Fatal(err)
	}
	if q.Files[0].Ranges[1] != (Range{0, 4096}) {
		t.Fatalf("decoded %+v", q)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b1)
	zw.Close()
	if _, err := Decode(&z); err != nil {
		t.Fatalf("gzip: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":       "",
		"not json":    "hello",
		"version":     `{"version":"v0","files":[]}`,
		"relative":    `{"version":"socikit.profile.v1","files":[{"path":"a","ranges":[]}]}`,
		"dotdot":      `{"version":"socikit.profile.v1","files":[{"path":"/a/../b","ranges":[]}]}`,
		"negative":    `{"version":"socikit.profile.v1","files":[{"path":"/a","ranges":[[-1,5]]}]}`,
		"zero length": `{"version":"socikit.profile.v1","files":[{"path":"/a","ranges":[[0,0]]}]}`,
		"three":       `{"version":"socikit.profile.v1","files":[{"path":"/a","ranges":[[0,1,2]]}]}`,
		"twice":       `{"version":"socikit.profile.v1","files":[{"path":"/a","ranges":[]},{"path":"/a","ranges":[]}]}`,
		"unknown":     `{"version":"socikit.profile.v1","files":[],"x":1}`,
	} {
		if _, err := Decode(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMerge(t *testing.T) {
	a := &Profile{Version: Version, Files: []File{{Path: "/x", Ranges: []Range{{0, 10}}}, {Path: "/y", Ranges: []Range{{0, 1}}}}}
	b := &Profile{Version: Version, Files: []File{{Path: "/z", Ranges: []Range{{0, 1}}}, {Path: "/x", Ranges: []Range{{10, 10}}}}}
	m := Merge(a, b)
	if got := strings.Join(m.Paths(), ","); got != "/x,/y,/z" {
		t.Fatalf("paths %s", got)
	}
	if m.Files[0].Ranges[0] != (Range{0, 20}) {
		t.Fatalf("ranges %v", m.Files[0].Ranges)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":"socikit.profile.v1","files":[{"path":"/a","ranges":[[0,4096]]}]}`))
	f.Add([]byte(`{"version":"socikit.profile.v1","files":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(bytes.NewReader(b))
		if err != nil {
			return
		}
		out, err := Marshal(p)
		if err != nil {
			t.Fatalf("decoded profile does not encode: %v", err)
		}
		if _, err := Unmarshal(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		_ = Merge(p, p)
	})
}
