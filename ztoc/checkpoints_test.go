package ztoc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/google/go-cmp/cmp"
)

// bytesCmp compares byte slices as wholes (element-wise diffs of 32 KiB
// windows are slow).
var bytesCmp = cmp.Comparer(bytes.Equal)

func window(seed byte) []byte {
	w := make([]byte, WindowSize)
	for i := range w {
		w[i] = seed + byte(i*7)
	}
	return w
}

func sampleGzip() *GzipCheckpoints {
	return &GzipCheckpoints{
		SpanSize: 1 << 22,
		Version:  2,
		Points: []Checkpoint{
			{In: 10, Out: 0, Bits: 0, Window: make([]byte, WindowSize)},
			{In: 1000, Out: 5 << 20, Bits: 3, Window: window(1)},
			{In: 2000, Out: 10 << 20, Bits: 0, Window: window(2)},
			{In: 2000, Out: 10 << 20, Bits: 7, Window: window(3)},
		},
	}
}

func TestGzipCheckpointsRoundTrip(t *testing.T) {
	g := sampleGzip()
	b, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := zinfoHeaderSize + 4*zinfoRecordSize; len(b) != want {
		t.Fatalf("blob is %d bytes, want %d", len(b), want)
	}
	// Layout: count, span, then records.
	if n := binary.LittleEndian.Uint32(b); n != 4 {
		t.Errorf("count = %d", n)
	}
	if s := binary.LittleEndian.Uint64(b[4:]); s != 1<<22 {
		t.Errorf("span = %d", s)
	}
	rec1 := b[zinfoHeaderSize+zinfoRecordSize:]
	if in, out, bits := binary.LittleEndian.Uint64(rec1), binary.LittleEndian.Uint64(rec1[8:]), rec1[16]; in != 1000 || out != 5<<20 || bits != 3 {
		t.Errorf("record 1 = %d %d %d", in, out, bits)
	}
	if !bytes.Equal(rec1[17:17+WindowSize], window(1)) {
		t.Errorf("record 1 window differs")
	}
	got, err := ParseGzipCheckpoints(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, got, bytesCmp); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	if got.MaxSpanID() != 3 {
		t.Errorf("MaxSpanID = %d", got.MaxSpanID())
	}
	// Windows alias the blob.
	if &got.Points[1].Window[0] != &b[zinfoHeaderSize+zinfoRecordSize+17] {
		t.Errorf("window was copied")
	}
	// AppendBinary appends.
	pre := []byte("prefix")
	app, err := g.AppendBinary(pre)
	if err != nil || !bytes.Equal(app[:6], pre) || !bytes.Equal(app[6:], b) {
		t.Errorf("AppendBinary: %v", err)
	}
	// A nil window is written as zeros.
	g.Points[0].Window = nil
	b2, err := g.MarshalBinary()
	if err != nil || !bytes.Equal(b, b2) {
		t.Errorf("nil window: %v", err)
	}
}

func TestGzipCheckpointsV1(t *testing.T) {
	g := sampleGzip()
	v2, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// A v1 blob is the v2 blob without record 0 (count unchanged).
	v1 := append(bytes.Clone(v2[:zinfoHeaderSize]), v2[zinfoHeaderSize+zinfoRecordSize:]...)
	got, err := ParseGzipCheckpoints(v1)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleGzip()
	want.Version = 1
	if diff := cmp.Diff(want, got, bytesCmp); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	// Re-marshalled as v2.
	b, err := got.MarshalBinary()
	if err != nil || !bytes.Equal(b, v2) {
		t.Errorf("v1 re-marshal: %v", err)
	}
	// count 1 with no records: v1 with only the synthesized checkpoint.
	one := make([]byte, zinfoHeaderSize)
	binary.LittleEndian.PutUint32(one, 1)
	got, err = ParseGzipCheckpoints(one)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || len(got.Points) != 1 || got.Points[0].In != 10 || len(got.Points[0].Window) != WindowSize {
		t.Errorf("got %+v", got)
	}
}

func TestGzipCheckpointsCorrupt(t *testing.T) {
	valid, err := sampleGzip().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rec := func(i int) int { return zinfoHeaderSize + i*zinfoRecordSize }
	patch := func(f func(b []byte)) []byte {
		b := bytes.Clone(valid)
		f(b)
		return b
	}
	cases := map[string][]byte{
		"empty":           nil,
		"short header":    valid[:11],
		"zero count":      make([]byte, zinfoHeaderSize),
		"negative count":  patch(func(b []byte) { binary.LittleEndian.PutUint32(b, 0xFFFFFFFF) }),
		"huge count":      patch(func(b []byte) { binary.LittleEndian.PutUint32(b, 0x7FFFFFFF) }),
		"truncated":       valid[:len(valid)-1],
		"extra byte":      append(bytes.Clone(valid), 0),
		"two short":       valid[:rec(2)],
		"bits 8":          patch(func(b []byte) { b[rec(1)+16] = 8 }),
		"in goes back":    patch(func(b []byte) { binary.LittleEndian.PutUint64(b[rec(2):], 999) }),
		"out goes back":   patch(func(b []byte) { binary.LittleEndian.PutUint64(b[rec(2)+8:], 1) }),
		"negative in":     patch(func(b []byte) { binary.LittleEndian.PutUint64(b[rec(0):], 1<<63) }),
		"negative out":    patch(func(b []byte) { binary.LittleEndian.PutUint64(b[rec(3)+8:], 1<<63) }),
		"bits at in 0":    patch(func(b []byte) { binary.LittleEndian.PutUint64(b[rec(0):], 0); b[rec(0)+16] = 1 }),
		"negative span":   patch(func(b []byte) { binary.LittleEndian.PutUint64(b[4:], 1<<63) }),
		"v1 bits 8 first": append(bytes.Clone(valid[:zinfoHeaderSize]), patch(func(b []byte) { b[rec(1)+16] = 9 })[rec(1):]...),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			g, err := ParseGzipCheckpoints(in)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, %v; want *CorruptError", g, err)
			}
			if g != nil {
				t.Errorf("non-nil result with error")
			}
			t.Log(err)
		})
	}
}

func TestGzipCheckpointsMarshalInvalid(t *testing.T) {
	for name, f := range map[string]func(g *GzipCheckpoints){
		"no points":    func(g *GzipCheckpoints) { g.Points = nil },
		"short window": func(g *GzipCheckpoints) { g.Points[1].Window = g.Points[1].Window[:10] },
		"bits":         func(g *GzipCheckpoints) { g.Points[1].Bits = 8 },
		"order":        func(g *GzipCheckpoints) { g.Points[2].In = 5 },
		"span":         func(g *GzipCheckpoints) { g.SpanSize = -1 },
	} {
		g := sampleGzip()
		f(g)
		if _, err := g.MarshalBinary(); err == nil {
			t.Errorf("%s: MarshalBinary succeeded", name)
		}
	}
}

func TestTarCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		c     TarCheckpoints
		maxID int32
	}{
		{TarCheckpoints{SpanSize: 1 << 22, Size: 10 << 22}, 9},
		{TarCheckpoints{SpanSize: 1 << 22, Size: 10<<22 + 1}, 10},
		{TarCheckpoints{SpanSize: 1 << 22, Size: 1}, 0},
		{TarCheckpoints{SpanSize: 1, Size: 0}, -1},
		{TarCheckpoints{SpanSize: 1, Size: 1 << 40}, -1},
	} {
		b, err := tc.c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		// Read it with flatbuffers' runtime.
		tab := flatbuffers.Table{Bytes: b, Pos: flatbuffers.GetUOffsetT(b)}
		if v := tab.GetInt32Slot(vt(tarSlotVersion), 0); v != 2 {
			t.Errorf("version = %d", v)
		}
		if s := tab.GetInt64Slot(vt(tarSlotSpanSize), 0); s != tc.c.SpanSize {
			t.Errorf("span_size = %d", s)
		}
		if s := tab.GetInt64Slot(vt(tarSlotSize), 0); s != tc.c.Size {
			t.Errorf("size = %d", s)
		}
		got, err := ParseTarCheckpoints(b)
		if err != nil {
			t.Fatal(err)
		}
		if *got != tc.c {
			t.Errorf("got %+v, want %+v", got, tc.c)
		}
		if id := got.MaxSpanID(); id != tc.maxID {
			t.Errorf("%+v: MaxSpanID = %d, want %d", tc.c, id, tc.maxID)
		}
	}
	// The exact bytes: root offset, padding, vtable (3 slots), table.
	// The builder lays the fields out last-added first.
	b := mustTar(&TarCheckpoints{SpanSize: 0x10, Size: 0x20})
	want := []byte{
		0x14, 0x00, 0x00, 0x00, // root uoffset -> table at 20
		0, 0, 0, 0, 0, 0, // padding (8-byte alignment of the int64s)
		0x0a, 0x00, 0x1c, 0x00, 0x18, 0x00, 0x0c, 0x00, 0x04, 0x00, // vtable: 10 bytes, table 28, version@24, span_size@12, size@4
		0x0a, 0x00, 0x00, 0x00, // soffset: vtable at 20-10
		0x20, 0, 0, 0, 0, 0, 0, 0, // size
		0x10, 0, 0, 0, 0, 0, 0, 0, // span_size
		0, 0, 0, 0, // padding
		0x02, 0x00, 0x00, 0x00, // version
	}
	if !bytes.Equal(b, want) {
		t.Errorf("TarZinfo bytes\n got %x\nwant %x", b, want)
	}
	for _, bad := range []TarCheckpoints{{SpanSize: 0, Size: 1}, {SpanSize: -1, Size: 1}, {SpanSize: 1, Size: -1}} {
		if _, err := bad.MarshalBinary(); err == nil {
			t.Errorf("MarshalBinary(%+v) succeeded", bad)
		}
	}
}

func TestTarCheckpointsCorrupt(t *testing.T) {
	valid := mustTar(&TarCheckpoints{SpanSize: 0x10, Size: 0x20})
	build := func(version int32, span, size int64) []byte {
		b := flatbuffers.NewBuilder(0)
		b.StartObject(tarNumFields)
		b.PrependInt32Slot(tarSlotVersion, version, 0)
		b.PrependInt64Slot(tarSlotSpanSize, span, 0)
		b.PrependInt64Slot(tarSlotSize, size, 0)
		b.Finish(b.EndObject())
		return b.FinishedBytes()
	}
	cases := map[string][]byte{
		"empty":       nil,
		"truncated":   valid[:len(valid)-4],
		"bad root":    append([]byte{0xff, 0xff, 0xff, 0x7f}, valid[4:]...),
		"version 1":   build(1, 16, 32),
		"no version":  build(0, 16, 32),
		"span 0":      build(2, 0, 32),
		"span < 0":    build(2, -4, 32),
		"size < 0":    build(2, 4, -1),
		"garbage":     bytes.Repeat([]byte{0xff}, 64),
		"vtable loop": {4, 0, 0, 0, 0, 0, 0, 0},
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := ParseTarCheckpoints(in)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, %v; want *CorruptError", c, err)
			}
			t.Log(err)
		})
	}
	// Size absent (0) is allowed: an empty tar, MaxSpanID -1.
	c, err := ParseTarCheckpoints(build(2, 16, 0))
	if err != nil || c.MaxSpanID() != -1 {
		t.Errorf("size 0: %+v, %v", c, err)
	}
}

func tarSeeds() [][]byte {
	return [][]byte{
		mustTar(&TarCheckpoints{SpanSize: 1 << 22, Size: 10 << 22}),
		mustTar(&TarCheckpoints{SpanSize: 1, Size: 0}),
	}
}

func gzipSeeds(t testing.TB) [][]byte {
	one := make([]byte, zinfoHeaderSize)
	binary.LittleEndian.PutUint32(one, 1)
	g := &GzipCheckpoints{SpanSize: 100, Points: []Checkpoint{{In: 10}, {In: 20, Out: 200, Bits: 2}}}
	b, err := g.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{one, b}
}

func FuzzParseGzipCheckpoints(f *testing.F) {
	for _, s := range gzipSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseGzipCheckpoints(b)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := g.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed blob: %v", err)
		}
		if g.Version == 2 && !bytes.Equal(out, b) {
			t.Fatalf("v2 blob not reproduced")
		}
		g2, err := ParseGzipCheckpoints(out)
		if err != nil {
			t.Fatal(err)
		}
		g.Version = 2
		if diff := cmp.Diff(g, g2, bytesCmp); diff != "" {
			t.Fatalf("mismatch (-want +got):\n%s", diff)
		}
	})
}

func FuzzParseTarCheckpoints(f *testing.F) {
	for _, s := range tarSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseTarCheckpoints(b)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		_ = c.MaxSpanID()
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed blob: %v", err)
		}
		c2, err := ParseTarCheckpoints(out)
		if err != nil || *c2 != *c {
			t.Fatalf("round trip: %+v, %v", c2, err)
		}
	})
}
