package ztoc

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
)

var genFuzzCorpus = flag.Bool("gen-fuzz-corpus", false, "write seed corpora to testdata/fuzz")

func spanDigest(i int) digest.Digest {
	return digest.FromString(fmt.Sprintf("span %d", i))
}

// sampleZtoc returns a valid zTOC with n regular files of 1000 bytes each.
func sampleZtoc(n int) *Ztoc {
	z := &Ztoc{
		Version:             Version09,
		BuildToolIdentifier: UpstreamBuildTool,
		Compression:         Gzip,
		MaxSpanID:           1,
		SpanDigests:         []digest.Digest{spanDigest(0), spanDigest(1)},
		Checkpoints:         []byte{1, 2, 3, 4, 5},
	}
	var off int64
	for i := range n {
		off += 512 // header
		e := FileEntry{
			Name:               fmt.Sprintf("usr/share/doc/pkg%05d/file%d.txt", i/10, i),
			Type:               TypeReg,
			UncompressedOffset: off,
			UncompressedSize:   1000,
			Mode:               0o644,
			UID:                uint32(i % 3),
			GID:                uint32(i % 5),
			Uname:              "root",
			Gname:              "root",
			ModTime:            time.Date(2024, 1, 2, 3, 4, 5, i, time.UTC),
		}
		if i%7 == 0 {
			e.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v", "path": e.Name}
		}
		z.Files = append(z.Files, e)
		off = align512(off + 1000)
	}
	z.UncompressedArchiveSize = off + 1024
	z.CompressedArchiveSize = off / 3
	return z
}

func mustMarshal(t testing.TB, z *Ztoc) []byte {
	t.Helper()
	b, err := Marshal(z)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	return b
}

// ztocCmp compares zTOCs; times must be equal instants with the same
// MarshalText (so the same zone offset).
var ztocCmp = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool {
		ta, _ := a.MarshalText()
		tb, _ := b.MarshalText()
		return a.Equal(b) && bytes.Equal(ta, tb)
	}),
}

func roundTripCases() map[string]*Ztoc {
	plus2 := time.FixedZone("", 2*3600)
	cases := map[string]*Ztoc{
		"sample": sampleZtoc(20),
		"empty toc": {
			Version: Version09, BuildToolIdentifier: "socikit", Compression: Gzip,
			MaxSpanID: 0, SpanDigests: []digest.Digest{spanDigest(0)}, Checkpoints: []byte{0},
			CompressedArchiveSize: 100, UncompressedArchiveSize: 1024,
		},
		"empty strings and no checkpoints": {
			Version: Version09, Compression: Gzip,
			MaxSpanID: 0, SpanDigests: []digest.Digest{spanDigest(0)},
			Files:                   []FileEntry{{Type: TypeDir, UncompressedOffset: 512, ModTime: time.Unix(0, 0).UTC()}},
			UncompressedArchiveSize: 2048,
		},
		"uncompressed": {
			Version: Version09, BuildToolIdentifier: "x", Compression: Uncompressed,
			MaxSpanID: 2, SpanDigests: []digest.Digest{spanDigest(0), spanDigest(1), spanDigest(2)},
			Checkpoints:           mustTar(&TarCheckpoints{SpanSize: 1024, Size: 3000}),
			CompressedArchiveSize: 3000, UncompressedArchiveSize: 3000,
			Files: []FileEntry{{Name: "a", Type: TypeReg, UncompressedOffset: 512, UncompressedSize: 1500, ModTime: time.Date(2020, 1, 1, 0, 0, 0, 0, plus2)}},
		},
		"sha512 digests": {
			Version: Version09, Compression: Gzip, MaxSpanID: 0,
			SpanDigests:             []digest.Digest{digest.SHA512.FromString("x")},
			UncompressedArchiveSize: 0,
		},
	}
	// All entry types, PAX records, unicode and non-UTF-8 names, links,
	// devices, large and negative-free numbers.
	all := &Ztoc{
		Version: Version09, BuildToolIdentifier: UpstreamBuildTool, Compression: Gzip,
		MaxSpanID: 0, SpanDigests: []digest.Digest{spanDigest(0)}, Checkpoints: bytes.Repeat([]byte{0xAB}, 100),
	}
	var off int64
	add := func(e FileEntry) {
		off += 512
		e.UncompressedOffset = off
		all.Files = append(all.Files, e)
		off = align512(off + e.UncompressedSize)
	}
	mt := time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	add(FileEntry{Name: "./", Type: TypeDir, Mode: 0o40755, ModTime: mt})
	add(FileEntry{Name: "./dir/", Type: TypeDir, Mode: 0o755, UID: 1000, GID: 1000, Uname: "user", Gname: "group", ModTime: mt})
	add(FileEntry{Name: "./dir/файл-日本語-😀.txt", Type: TypeReg, UncompressedSize: 12345, Mode: 0o100644, ModTime: time.Date(2023, 6, 1, 12, 0, 0, 5000, plus2)})
	add(FileEntry{Name: "bad\xff\xfe-utf8\x00nul", Type: TypeReg, UncompressedSize: 1, Uname: "\xc3\x28", ModTime: mt})
	add(FileEntry{Name: "link", Type: TypeSymlink, Linkname: "./dir/файл", Mode: 0o777, ModTime: mt})
	add(FileEntry{Name: "hard", Type: TypeHardlink, Linkname: "bad\xff", ModTime: mt})
	add(FileEntry{Name: "dev/null", Type: TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666, ModTime: mt})
	add(FileEntry{Name: "dev/sda", Type: TypeBlock, Devmajor: 8, Devminor: 1 << 40, ModTime: mt})
	add(FileEntry{Name: "fifo", Type: TypeFifo, UID: 1<<32 - 1, GID: 1<<32 - 1, Mode: -1, ModTime: mt})
	add(FileEntry{Name: "pax", Type: TypeReg, UncompressedSize: 4096, ModTime: mt, PAXRecords: map[string]string{
		"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20",
		"SCHILY.xattr.user.empty":          "",
		"path":                             strings.Repeat("long/", 100) + "name",
		"mtime":                            "1234.5",
		"":                                 "empty key",
		"zz":                               "ünïcödé",
	}})
	add(FileEntry{Name: "zero-time", Type: TypeReg, ModTime: time.Time{}})
	all.UncompressedArchiveSize = off + 1024
	all.CompressedArchiveSize = 1 << 40
	cases["all types"] = all
	return cases
}

func mustTar(t *TarCheckpoints) []byte {
	b, err := t.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for name, z := range roundTripCases() {
		t.Run(name, func(t *testing.T) {
			b := mustMarshal(t, z)
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if diff := cmp.Diff(z, got, ztocCmp); diff != "" {
				t.Errorf("Unmarshal(Marshal(z)) mismatch (-want +got):\n%s", diff)
			}
			b2 := mustMarshal(t, got)
			if !bytes.Equal(b, b2) {
				t.Errorf("re-marshalled bytes differ")
			}
			// The independent decoder (flatbuffers' own runtime) agrees.
			if diff := cmp.Diff(z, refDecode(t, b), ztocCmp); diff != "" {
				t.Errorf("reference decode mismatch (-want +got):\n%s", diff)
			}
			// The builder's initial size does not change the output.
			b0, err := marshal(z, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, b0) {
				t.Errorf("output depends on the builder's initial size")
			}
		})
	}
}

func TestMarshalDefaults(t *testing.T) {
	z := sampleZtoc(2)
	want := mustMarshal(t, z)
	z2 := sampleZtoc(2)
	z2.Version = ""
	z2.Compression = 0
	for i := range z2.Files {
		if z2.Files[i].PAXRecords == nil {
			z2.Files[i].PAXRecords = map[string]string{}
		}
	}
	if got := mustMarshal(t, z2); !bytes.Equal(got, want) {
		t.Errorf("empty version / zero compression / empty maps change the output")
	}

	bad := sampleZtoc(1)
	bad.Version = "1.0"
	if _, err := Marshal(bad); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("Marshal version 1.0: got %v, want ErrUnsupportedVersion", err)
	}
	bad = sampleZtoc(1)
	bad.Files[0].Type = 0
	if _, err := Marshal(bad); err == nil {
		t.Errorf("Marshal with type 0 succeeded")
	}
	bad = sampleZtoc(1)
	bad.Compression = 3
	if _, err := Marshal(bad); err == nil {
		t.Errorf("Marshal with compression 3 succeeded")
	}
	if _, err := Marshal(nil); err == nil {
		t.Errorf("Marshal(nil) succeeded")
	}
}

// Upstream writes "" when MarshalText fails; we read that back as the zero
// time.
func TestMarshalUnrepresentableTime(t *testing.T) {
	z := sampleZtoc(1)
	z.Files[0].ModTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	b := mustMarshal(t, z)
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Files[0].ModTime.IsZero() {
		t.Errorf("ModTime = %v, want zero", got.Files[0].ModTime)
	}
	tab := refTable(b, 0)
	ent := refEntries(b, tab)[0]
	if s := refStr(ent, fmSlotModTime); s != "" {
		t.Errorf("mod_time stored as %q, want empty", s)
	}
}

// TestLayout checks byte-level facts of the encoding that upstream
// readers rely on, using flatbuffers' own runtime to read.
func TestLayout(t *testing.T) {
	z := roundTripCases()["all types"]
	b := mustMarshal(t, z)
	root := refTable(b, 0)
	// No file identifier: the root offset is followed directly by data.
	if got := refStr(root, ztocSlotVersion); got != "0.9" {
		t.Errorf("version = %q", got)
	}
	if got := root.GetInt64(root.Pos + flatbuffers.UOffsetT(root.Offset(vt(ztocSlotCompressedSize)))); got != 1<<40 {
		t.Errorf("compressed_archive_size = %d", got)
	}
	ci := refSub(root, ztocSlotCompressionInfo)
	// Gzip is the schema default: the field is absent.
	if o := ci.Offset(vt(ciSlotAlgorithm)); o != 0 {
		t.Errorf("compression_algorithm written for gzip")
	}
	ents := refEntries(b, root)
	// Every string field and the xattrs vector are always present.
	for i, e := range ents {
		for _, slot := range []int{fmSlotName, fmSlotType, fmSlotLinkname, fmSlotUname, fmSlotGname, fmSlotModTime, fmSlotXattrs} {
			if e.Offset(vt(slot)) == 0 {
				t.Errorf("entry %d: field %d absent", i, slot)
			}
		}
	}
	// PAX records are stored sorted by key.
	pax := ents[len(ents)-2]
	xo := fo(pax, fmSlotXattrs)
	n := pax.VectorLen(xo)
	var keys []string
	for j := range n {
		x := flatbuffers.Table{Bytes: b, Pos: pax.Indirect(pax.Vector(xo) + flatbuffers.UOffsetT(4*j))}
		keys = append(keys, refStr(x, xattrSlotKey))
	}
	if want := []string{"", "SCHILY.xattr.security.capability", "SCHILY.xattr.user.empty", "mtime", "path", "zz"}; !cmp.Equal(keys, want) {
		t.Errorf("xattr keys %q, want %q", keys, want)
	}
	// Entries are built last to first, so entry 0 has the lowest address.
	for i := 1; i < len(ents); i++ {
		if ents[i].Pos <= ents[i-1].Pos {
			t.Errorf("entry %d at %d is not after entry %d at %d", i, ents[i].Pos, i-1, ents[i-1].Pos)
		}
	}
	// Uncompressed: the enum byte is written.
	u := roundTripCases()["uncompressed"]
	ub := mustMarshal(t, u)
	uci := refSub(refTable(ub, 0), ztocSlotCompressionInfo)
	if got := uci.GetInt8(uci.Pos + flatbuffers.UOffsetT(uci.Offset(vt(ciSlotAlgorithm)))); got != 2 {
		t.Errorf("compression_algorithm = %d, want 2", got)
	}
}

// TestGolden pins the encoding of a small zTOC so that accidental changes
// to the builder call order show up. (Parity with upstream's own builder is
// checked by the interop suite.)
func TestGolden(t *testing.T) {
	z := &Ztoc{
		Version: Version09, BuildToolIdentifier: UpstreamBuildTool, Compression: Gzip,
		CompressedArchiveSize: 100, UncompressedArchiveSize: 2048, MaxSpanID: 0,
		SpanDigests: []digest.Digest{"sha256:0000000000000000000000000000000000000000000000000000000000000000"},
		Checkpoints: []byte{7},
		Files: []FileEntry{{Name: "a", Type: TypeReg, UncompressedOffset: 512, UncompressedSize: 1, Mode: 0o644,
			Uname: "root", Gname: "root", ModTime: time.Unix(0, 0).UTC(), PAXRecords: map[string]string{"k": "v"}}},
	}
	b := mustMarshal(t, z)
	const want = "841ec27d7e39c5aa994696b233f01bad02f32c26d77785aedeea561df8ef39f3"
	got := fmt.Sprintf("%x", sha256.Sum256(b))
	if got != want {
		t.Logf("golden zTOC (%d bytes):\n%x", len(b), b)
		t.Errorf("sha256 = %s, want %s", got, want)
	}
}

// --- reference decoder: flatbuffers' runtime, trusted input only ---

func vt(slot int) flatbuffers.VOffsetT { return flatbuffers.VOffsetT(4 + 2*slot) }

func fo(t flatbuffers.Table, slot int) flatbuffers.UOffsetT {
	return flatbuffers.UOffsetT(t.Offset(vt(slot)))
}

func refStr(t flatbuffers.Table, slot int) string {
	if o := fo(t, slot); o != 0 {
		return t.String(t.Pos + o)
	}
	return ""
}

func refTable(b []byte, pos flatbuffers.UOffsetT) flatbuffers.Table {
	return flatbuffers.Table{Bytes: b, Pos: flatbuffers.GetUOffsetT(b[pos:]) + pos}
}

func refSub(t flatbuffers.Table, slot int) flatbuffers.Table {
	o := t.Offset(vt(slot))
	return flatbuffers.Table{Bytes: t.Bytes, Pos: t.Indirect(t.Pos + flatbuffers.UOffsetT(o))}
}

func refEntries(b []byte, root flatbuffers.Table) []flatbuffers.Table {
	toc := refSub(root, ztocSlotTOC)
	mo := fo(toc, tocSlotMetadata)
	var out []flatbuffers.Table
	for i := range toc.VectorLen(mo) {
		out = append(out, flatbuffers.Table{Bytes: b, Pos: toc.Indirect(toc.Vector(mo) + flatbuffers.UOffsetT(4*i))})
	}
	return out
}

func refDecode(t *testing.T, b []byte) *Ztoc {
	root := refTable(b, 0)
	str := func(tb flatbuffers.Table, slot int) string {
		return refStr(tb, slot)
	}
	i64 := func(tb flatbuffers.Table, slot int) int64 {
		return tb.GetInt64Slot(vt(slot), 0)
	}
	z := &Ztoc{
		Version:                 str(root, ztocSlotVersion),
		BuildToolIdentifier:     str(root, ztocSlotBuildTool),
		CompressedArchiveSize:   i64(root, ztocSlotCompressedSize),
		UncompressedArchiveSize: i64(root, ztocSlotUncompressedSize),
	}
	ci := refSub(root, ztocSlotCompressionInfo)
	z.Compression = Compression(ci.GetInt8Slot(vt(ciSlotAlgorithm), 1))
	z.MaxSpanID = ci.GetInt32Slot(vt(ciSlotMaxSpanID), 0)
	do := fo(ci, ciSlotSpanDigests)
	for i := range ci.VectorLen(do) {
		z.SpanDigests = append(z.SpanDigests, digest.Digest(ci.String(ci.Vector(do)+flatbuffers.UOffsetT(4*i))))
	}
	if co := fo(ci, ciSlotCheckpoints); co != 0 {
		if cb := ci.ByteVector(co + ci.Pos); len(cb) > 0 {
			z.Checkpoints = append([]byte(nil), cb...)
		}
	}
	for _, e := range refEntries(b, root) {
		typ, err := ParseEntryType(str(e, fmSlotType))
		if err != nil {
			t.Fatal(err)
		}
		fe := FileEntry{
			Name: str(e, fmSlotName), Type: typ,
			UncompressedOffset: i64(e, fmSlotOffset), UncompressedSize: i64(e, fmSlotSize),
			Linkname: str(e, fmSlotLinkname), Mode: i64(e, fmSlotMode),
			UID: e.GetUint32Slot(vt(fmSlotUID), 0), GID: e.GetUint32Slot(vt(fmSlotGID), 0),
			Uname: str(e, fmSlotUname), Gname: str(e, fmSlotGname),
			Devmajor: i64(e, fmSlotDevmajor), Devminor: i64(e, fmSlotDevminor),
		}
		if s := str(e, fmSlotModTime); s != "" {
			if err := fe.ModTime.UnmarshalText([]byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		xo := fo(e, fmSlotXattrs)
		for j := range e.VectorLen(xo) {
			x := flatbuffers.Table{Bytes: b, Pos: e.Indirect(e.Vector(xo) + flatbuffers.UOffsetT(4*j))}
			if fe.PAXRecords == nil {
				fe.PAXRecords = map[string]string{}
			}
			fe.PAXRecords[str(x, xattrSlotKey)] = str(x, xattrSlotValue)
		}
		z.Files = append(z.Files, fe)
	}
	return z
}

// --- corrupt input ---

func TestUnmarshalCorrupt(t *testing.T) {
	valid := mustMarshal(t, sampleZtoc(3))
	root := refTable(valid, 0)
	patch := func(f func(b []byte)) []byte {
		b := bytes.Clone(valid)
		f(b)
		return b
	}
	fieldPos := func(tb flatbuffers.Table, slot int) int {
		return int(tb.Pos) + int(tb.Offset(vt(slot)))
	}
	ci := refSub(root, ztocSlotCompressionInfo)
	ents := refEntries(valid, root)
	tocTab := refSub(root, ztocSlotTOC)
	metaVec := int(tocTab.Indirect(flatbuffers.UOffsetT(fieldPos(tocTab, tocSlotMetadata))))

	type tc struct {
		in      []byte
		corrupt bool
		is      error
	}
	cases := map[string]tc{
		"empty":        {in: nil, corrupt: true},
		"three bytes":  {in: []byte{1, 2, 3}, corrupt: true},
		"zero root":    {in: make([]byte, 64), corrupt: true},
		"bad root":     {in: patch(func(b []byte) { binary.LittleEndian.PutUint32(b, 0xFFFFFFF0) }), corrupt: true},
		"root at end":  {in: patch(func(b []byte) { binary.LittleEndian.PutUint32(b, uint32(len(b)-2)) }), corrupt: true},
		"vtable oob":   {in: patch(func(b []byte) { binary.LittleEndian.PutUint32(b[root.Pos:], 0x80000000) }), corrupt: true},
		"vtable oob 2": {in: patch(func(b []byte) { binary.LittleEndian.PutUint32(b[root.Pos:], uint32(int32(-len(b)))) }), corrupt: true},
		"vtable size": {in: patch(func(b []byte) {
			vtab := int(root.Pos) - int(int32(binary.LittleEndian.Uint32(b[root.Pos:])))
			binary.LittleEndian.PutUint16(b[vtab:], 0xFFFE)
		}), corrupt: true},
		"table size": {in: patch(func(b []byte) {
			vtab := int(root.Pos) - int(int32(binary.LittleEndian.Uint32(b[root.Pos:])))
			binary.LittleEndian.PutUint16(b[vtab+2:], 2)
		}), corrupt: true},
		"field outside table": {in: patch(func(b []byte) {
			vtab := int(root.Pos) - int(int32(binary.LittleEndian.Uint32(b[root.Pos:])))
			binary.LittleEndian.PutUint16(b[vtab+4+2*ztocSlotCompressedSize:], 0xFFF0)
		}), corrupt: true},
		"metadata vector length overflow": {in: patch(func(b []byte) { binary.LittleEndian.PutUint32(b[metaVec:], 0xFFFFFFFF) }), corrupt: true},
		"metadata vector length too many": {in: patch(func(b []byte) { binary.LittleEndian.PutUint32(b[metaVec:], uint32(len(b)/4-metaVec/4-2)) }), corrupt: true},
		"string length overflow": {in: patch(func(b []byte) {
			p := root.Indirect(flatbuffers.UOffsetT(fieldPos(root, ztocSlotBuildTool)))
			binary.LittleEndian.PutUint32(b[p:], 0x7FFFFFFF)
		}), corrupt: true},
		"offset past end": {in: patch(func(b []byte) {
			binary.LittleEndian.PutUint32(b[fieldPos(root, ztocSlotTOC):], uint32(len(b)))
		}), corrupt: true},
		"wrong version": {in: patch(func(b []byte) {
			p := root.Indirect(flatbuffers.UOffsetT(fieldPos(root, ztocSlotVersion)))
			copy(b[p+4:], "1.0")
		}), is: ErrUnsupportedVersion},
		"no version": {in: patch(func(b []byte) {
			vtab := int(root.Pos) - int(int32(binary.LittleEndian.Uint32(b[root.Pos:])))
			binary.LittleEndian.PutUint16(b[vtab+4:], 0)
		}), is: ErrUnsupportedVersion},
		"bad type": {in: patch(func(b []byte) {
			p := ents[1].Indirect(flatbuffers.UOffsetT(fieldPos(ents[1], fmSlotType)))
			copy(b[p+4:], "rex")
		}), corrupt: true},
		"bad mod_time": {in: patch(func(b []byte) {
			p := ents[1].Indirect(flatbuffers.UOffsetT(fieldPos(ents[1], fmSlotModTime)))
			b[p+4] = 'x'
		}), corrupt: true},
		"negative size": {in: patch(func(b []byte) {
			binary.LittleEndian.PutUint64(b[fieldPos(ents[0], fmSlotSize):], uint64(1<<64-1))
		}), corrupt: true},
		"overlapping entries": {in: patch(func(b []byte) {
			binary.LittleEndian.PutUint64(b[fieldPos(ents[0], fmSlotSize):], 100000)
		}), corrupt: true},
		"bad digest count": {in: patch(func(b []byte) { b[fieldPos(ci, ciSlotMaxSpanID)] = 2 }), corrupt: true},
		"negative max span": {in: patch(func(b []byte) {
			binary.LittleEndian.PutUint32(b[fieldPos(ci, ciSlotMaxSpanID):], 0xFFFFFFFF)
		}), corrupt: true},
		"bad digest": {in: patch(func(b []byte) {
			p := ci.Indirect(flatbuffers.UOffsetT(fieldPos(ci, ciSlotSpanDigests)))
			s := ci.Indirect(p + 4)
			b[s+4+10] = 'X'
		}), corrupt: true},
	}
	// A few zTOCs that Marshal writes but Unmarshal must reject.
	mk := func(f func(z *Ztoc)) []byte {
		z := sampleZtoc(3)
		f(z)
		return mustMarshal(t, z)
	}
	{
		u := mustMarshal(t, roundTripCases()["uncompressed"])
		r := refTable(u, 0)
		c := refSub(r, ztocSlotCompressionInfo)
		u[int(c.Pos)+int(c.Offset(vt(ciSlotAlgorithm)))] = 3
		cases["bad compression"] = tc{in: u, corrupt: true}
	}
	cases["digest count"] = tc{in: mk(func(z *Ztoc) { z.MaxSpanID = 5 }), corrupt: true}
	cases["no spans"] = tc{in: mk(func(z *Ztoc) { z.MaxSpanID = -1; z.SpanDigests = nil }), corrupt: true}
	cases["negative archive size"] = tc{in: mk(func(z *Ztoc) { z.UncompressedArchiveSize = -1 }), corrupt: true}
	cases["negative compressed size"] = tc{in: mk(func(z *Ztoc) { z.CompressedArchiveSize = -5 }), corrupt: true}
	cases["beyond archive"] = tc{in: mk(func(z *Ztoc) { z.UncompressedArchiveSize = 2000 }), corrupt: true}
	cases["offset overflow"] = tc{in: mk(func(z *Ztoc) {
		z.Files = z.Files[:1]
		z.Files[0].UncompressedOffset = 1 << 62
		z.Files[0].UncompressedSize = 1<<63 - 1
		z.UncompressedArchiveSize = 1<<63 - 1
	}), corrupt: true}
	cases["duplicate offset"] = tc{in: mk(func(z *Ztoc) { z.Files[1].UncompressedOffset = z.Files[0].UncompressedOffset }), corrupt: true}
	cases["digest not a digest"] = tc{in: mk(func(z *Ztoc) { z.SpanDigests[1] = "md5:abc" }), corrupt: true}

	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			z, err := Unmarshal(c.in)
			if err == nil {
				t.Fatalf("Unmarshal succeeded: %+v", z)
			}
			if z != nil {
				t.Errorf("non-nil Ztoc with error")
			}
			var ce *CorruptError
			if c.corrupt && !errors.As(err, &ce) {
				t.Errorf("error %v (%T) is not a *CorruptError", err, err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			t.Log(err)
		})
	}
}

func TestUnmarshalTooLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 1 GiB")
	}
	_, err := Unmarshal(make([]byte, MaxZtocSize+1))
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("got %v, want ErrTooLarge", err)
	}
}

// Entries stored out of order are sorted stably by offset.
func TestUnmarshalSorts(t *testing.T) {
	z := sampleZtoc(5)
	want := bytes.Clone(mustMarshal(t, z))
	z.Files[1], z.Files[3] = z.Files[3], z.Files[1]
	got, err := Unmarshal(mustMarshal(t, z))
	if err != nil {
		t.Fatal(err)
	}
	if b := mustMarshal(t, got); !bytes.Equal(b, want) {
		t.Errorf("sorted zTOC differs from the one built in order")
	}
	offs := got.TarHeaderOffsets()
	for i, e := range got.Files {
		if offs[i] != e.UncompressedOffset-512 {
			t.Errorf("header %d at %d, data at %d", i, offs[i], e.UncompressedOffset)
		}
	}
}

// Every prefix and every single-byte change of a valid zTOC is either
// rejected with a typed error or decodes to something Marshal can
// reproduce.
func TestUnmarshalMutations(t *testing.T) {
	valid := mustMarshal(t, roundTripCases()["all types"])
	check := func(b []byte) {
		z, err := Unmarshal(b)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		roundTripProperty(t, z)
	}
	for n := range len(valid) {
		check(valid[:n])
	}
	step := 1
	if testing.Short() {
		step = 7
	}
	b := bytes.Clone(valid)
	for i := 0; i < len(b); i += step {
		for _, v := range []byte{0x00, 0xFF, b[i] ^ 0x80, b[i] + 1} {
			old := b[i]
			b[i] = v
			check(b)
			b[i] = old
		}
	}
}

// Strings, tables and vectors shared by many entries must not decode to
// more memory than a proportional bound.
func TestUnmarshalSharedBomb(t *testing.T) {
	bl := flatbuffers.NewBuilder(0)
	name := bl.CreateString(strings.Repeat("n", 4096))
	typ := bl.CreateString("reg")
	bl.StartObject(fmNumFields)
	bl.PrependUOffsetTSlot(fmSlotName, name, 0)
	bl.PrependUOffsetTSlot(fmSlotType, typ, 0)
	ent := bl.EndObject()
	const n = 20000
	bl.StartVector(4, n, 4)
	for range n {
		bl.PrependUOffsetT(ent)
	}
	meta := bl.EndVector(n)
	bl.StartObject(tocNumFields)
	bl.PrependUOffsetTSlot(tocSlotMetadata, meta, 0)
	toc := bl.EndObject()
	d := bl.CreateString(string(spanDigest(0)))
	bl.StartVector(4, 1, 4)
	bl.PrependUOffsetT(d)
	ds := bl.EndVector(1)
	bl.StartObject(ciNumFields)
	bl.PrependUOffsetTSlot(ciSlotSpanDigests, ds, 0)
	ci := bl.EndObject()
	v := bl.CreateString("0.9")
	bl.StartObject(ztocNumFields)
	bl.PrependUOffsetTSlot(ztocSlotVersion, v, 0)
	bl.PrependUOffsetTSlot(ztocSlotTOC, toc, 0)
	bl.PrependUOffsetTSlot(ztocSlotCompressionInfo, ci, 0)
	bl.Finish(bl.EndObject())
	_, err := Unmarshal(bl.FinishedBytes())
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want *CorruptError", err)
	}
	t.Log(err)
}

// roundTripProperty checks that z, which Unmarshal returned, marshals and
// reads back to an equal zTOC with stable bytes.
func roundTripProperty(t testing.TB, z *Ztoc) {
	t.Helper()
	b, err := Marshal(z)
	if err != nil {
		t.Fatalf("Marshal of an unmarshalled zTOC: %v", err)
	}
	z2, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal(Marshal(z)): %v", err)
	}
	if diff := cmp.Diff(z, z2, ztocCmp); diff != "" {
		t.Fatalf("round trip mismatch (-want +got):\n%s", diff)
	}
	b2, err := Marshal(z2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("marshal not stable")
	}
}

func fuzzZtocSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	small := sampleZtoc(2)
	small.Checkpoints = nil
	seeds = append(seeds, mustMarshal(t, small))
	for _, name := range []string{"empty toc", "uncompressed", "empty strings and no checkpoints"} {
		seeds = append(seeds, mustMarshal(t, roundTripCases()[name]))
	}
	a := roundTripCases()["all types"]
	a.Checkpoints = []byte{1}
	seeds = append(seeds, mustMarshal(t, a))
	return seeds
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range fuzzZtocSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		z, err := Unmarshal(b)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		roundTripProperty(t, z)
	})
}

// TestGenFuzzCorpus writes the seed corpora to testdata/fuzz when run with
// -gen-fuzz-corpus.
func TestGenFuzzCorpus(t *testing.T) {
	if !*genFuzzCorpus {
		t.Skip("run with -gen-fuzz-corpus to write testdata/fuzz")
	}
	write := func(fuzzer string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			if len(s) > 4096 {
				continue // large seeds stay in f.Add only
			}
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzUnmarshal", fuzzZtocSeeds(t))
	write("FuzzParseTarCheckpoints", tarSeeds())
	write("FuzzParseGzipCheckpoints", gzipSeeds(t))
}

func bigZtoc(n int) *Ztoc {
	z := sampleZtoc(n)
	z.Checkpoints = make([]byte, 100*zinfoRecordSize)
	return z
}

func BenchmarkMarshal(b *testing.B) {
	z := bigZtoc(50000)
	size := len(mustMarshal(b, z))
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Marshal(z); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	buf := mustMarshal(b, bigZtoc(50000))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Unmarshal(buf); err != nil {
			b.Fatal(err)
		}
	}
}
