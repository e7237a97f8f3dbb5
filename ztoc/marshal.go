package ztoc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/opencontainers/go-digest"

	// digest.Parse only accepts algorithms whose hash is linked in.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// MaxZtocSize caps the size of a serialized zTOC. Unmarshal rejects larger
// input and Marshal refuses to produce it; both wrap ErrTooLarge.
const MaxZtocSize = 1 << 30

// Field slots (field ids) of the zTOC flatbuffers schema; see docs/ztoc.md.
const (
	ztocSlotVersion = iota
	ztocSlotBuildTool
	ztocSlotCompressedSize
	ztocSlotUncompressedSize
	ztocSlotTOC
	ztocSlotCompressionInfo
	ztocNumFields
)

const (
	tocSlotMetadata = iota
	tocNumFields
)

const (
	ciSlotAlgorithm = iota
	ciSlotMaxSpanID
	ciSlotSpanDigests
	ciSlotCheckpoints
	ciNumFields
)

const (
	fmSlotName = iota
	fmSlotType
	fmSlotOffset
	fmSlotSize
	fmSlotLinkname
	fmSlotMode
	fmSlotUID
	fmSlotGID
	fmSlotUname
	fmSlotGname
	fmSlotModTime
	fmSlotDevmajor
	fmSlotDevminor
	fmSlotXattrs
	fmNumFields
)

const (
	xattrSlotKey = iota
	xattrSlotValue
	xattrNumFields
)

// Marshal encodes z as upstream SOCI's v0.9 flatbuffers zTOC.
//
// The output is byte-identical to upstream's for the same logical content:
// the builder calls are made in upstream's order. An empty z.Version is
// written as Version09; any other version is refused (ErrUnsupportedVersion).
// A zero z.Compression is treated as Gzip (upstream omits the field for
// Gzip, its default). ModTime is written as ModTime.MarshalText() gives it
// (callers choose the zone; upstream writes the empty string when
// MarshalText fails, e.g. for years beyond 9999, and so do we).
// PAXRecords are written sorted by key; a nil map is an empty vector.
func Marshal(z *Ztoc) ([]byte, error) {
	est, err := checkMarshal(z)
	if err != nil {
		return nil, err
	}
	return marshal(z, est)
}

// checkMarshal validates what Marshal cannot encode faithfully and returns
// an upper bound of the output size.
func checkMarshal(z *Ztoc) (int64, error) {
	if z == nil {
		return 0, errors.New("ztoc: marshal nil Ztoc")
	}
	if z.Version != "" && z.Version != Version09 {
		return 0, fmt.Errorf("%w: %q", ErrUnsupportedVersion, clip(z.Version))
	}
	switch z.Compression {
	case 0, Gzip, Uncompressed:
	default:
		return 0, fmt.Errorf("ztoc: cannot marshal compression %v", z.Compression)
	}
	str := func(s string) int64 { return int64(len(s)) + 8 } // length, NUL, padding
	est := int64(256) + str(Version09) + str(z.BuildToolIdentifier)
	est += int64(len(z.Checkpoints)) + 8
	for _, d := range z.SpanDigests {
		est += str(string(d)) + 4
	}
	for i := range z.Files {
		e := &z.Files[i]
		if e.Type == 0 || int(e.Type) >= len(entryTypeNames) {
			return 0, fmt.Errorf("ztoc: cannot marshal entry %d (%q): invalid type %v", i, clip(e.Name), e.Type)
		}
		// table (soffset + 14 fields of at most 8 bytes, padding), vtable,
		// vector slot, xattrs vector, and the strings.
		est += 4 + 14*8 + 8 + 32 + 4 + 8
		est += str(e.Name) + str(e.Type.String()) + str(e.Linkname) + str(e.Uname) + str(e.Gname) + str(time.RFC3339Nano) + 8
		for k, v := range e.PAXRecords {
			est += 12 + 8 + 4 + 4 + str(k) + str(v)
		}
		if est > MaxZtocSize+MaxZtocSize/2 {
			break
		}
	}
	if est > MaxZtocSize+MaxZtocSize/2 {
		return 0, fmt.Errorf("%w: ztoc would exceed %d bytes", ErrTooLarge, MaxZtocSize)
	}
	return est, nil
}

// marshal builds the flatbuffer with a builder of the given initial size.
// The output does not depend on the initial size: flatbuffers aligns
// relative to the end of the buffer.
func marshal(z *Ztoc, initialSize int64) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("ztoc: flatbuffers builder failed: %v", r)
		}
	}()
	b := flatbuffers.NewBuilder(int(initialSize))
	version := z.Version
	if version == "" {
		version = Version09
	}
	versionOff := b.CreateString(version)
	buildToolOff := b.CreateString(z.BuildToolIdentifier)

	tocOff := buildTOC(b, z.Files)

	checkpointsOff := b.CreateByteVector(z.Checkpoints)
	digestOffs := make([]flatbuffers.UOffsetT, len(z.SpanDigests))
	for i, d := range z.SpanDigests {
		digestOffs[i] = b.CreateString(string(d))
	}
	digestsOff := prependOffsets(b, digestOffs)

	b.StartObject(ciNumFields)
	b.PrependInt32Slot(ciSlotMaxSpanID, z.MaxSpanID, 0)
	b.PrependUOffsetTSlot(ciSlotSpanDigests, digestsOff, 0)
	b.PrependUOffsetTSlot(ciSlotCheckpoints, checkpointsOff, 0)
	compression := z.Compression
	if compression == 0 {
		compression = Gzip
	}
	// Default Gzip: the builder omits the field, as upstream's does.
	b.PrependInt8Slot(ciSlotAlgorithm, int8(compression), int8(Gzip))
	ciOff := b.EndObject()

	b.StartObject(ztocNumFields)
	b.PrependUOffsetTSlot(ztocSlotVersion, versionOff, 0)
	b.PrependUOffsetTSlot(ztocSlotBuildTool, buildToolOff, 0)
	b.PrependUOffsetTSlot(ztocSlotTOC, tocOff, 0)
	b.PrependInt64Slot(ztocSlotCompressedSize, z.CompressedArchiveSize, 0)
	b.PrependInt64Slot(ztocSlotUncompressedSize, z.UncompressedArchiveSize, 0)
	b.PrependUOffsetTSlot(ztocSlotCompressionInfo, ciOff, 0)
	root := b.EndObject()
	b.Finish(root)
	out = b.FinishedBytes()
	if len(out) > MaxZtocSize {
		return nil, fmt.Errorf("%w: ztoc is %d bytes (max %d)", ErrTooLarge, len(out), MaxZtocSize)
	}
	return out, nil
}

// prependOffsets writes a vector of offsets (tables or strings).
func prependOffsets(b *flatbuffers.Builder, offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	b.StartVector(4, len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

func buildTOC(b *flatbuffers.Builder, files []FileEntry) flatbuffers.UOffsetT {
	offs := make([]flatbuffers.UOffsetT, len(files))
	var keys []string
	var xoffs []flatbuffers.UOffsetT
	for i := len(files) - 1; i >= 0; i-- {
		e := &files[i]
		name := b.CreateString(e.Name)
		typ := b.CreateString(e.Type.String())
		linkname := b.CreateString(e.Linkname)
		uname := b.CreateString(e.Uname)
		gname := b.CreateString(e.Gname)
		mt, err := e.ModTime.MarshalText()
		if err != nil {
			mt = nil // upstream ignores the error and writes ""
		}
		modTime := b.CreateByteString(mt)

		keys = keys[:0]
		for k := range e.PAXRecords {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		xoffs = xoffs[:0]
		for _, k := range keys {
			ko := b.CreateString(k)
			vo := b.CreateString(e.PAXRecords[k])
			b.StartObject(xattrNumFields)
			b.PrependUOffsetTSlot(xattrSlotKey, ko, 0)
			b.PrependUOffsetTSlot(xattrSlotValue, vo, 0)
			xoffs = append(xoffs, b.EndObject())
		}
		xattrs := prependOffsets(b, xoffs)

		b.StartObject(fmNumFields)
		b.PrependUOffsetTSlot(fmSlotName, name, 0)
		b.PrependUOffsetTSlot(fmSlotType, typ, 0)
		b.PrependInt64Slot(fmSlotOffset, e.UncompressedOffset, 0)
		b.PrependInt64Slot(fmSlotSize, e.UncompressedSize, 0)
		b.PrependUOffsetTSlot(fmSlotLinkname, linkname, 0)
		b.PrependInt64Slot(fmSlotMode, e.Mode, 0)
		b.PrependUint32Slot(fmSlotUID, e.UID, 0)
		b.PrependUint32Slot(fmSlotGID, e.GID, 0)
		b.PrependUOffsetTSlot(fmSlotUname, uname, 0)
		b.PrependUOffsetTSlot(fmSlotGname, gname, 0)
		b.PrependUOffsetTSlot(fmSlotModTime, modTime, 0)
		b.PrependInt64Slot(fmSlotDevmajor, e.Devmajor, 0)
		b.PrependInt64Slot(fmSlotDevminor, e.Devminor, 0)
		b.PrependUOffsetTSlot(fmSlotXattrs, xattrs, 0)
		offs[i] = b.EndObject()
	}
	metadata := prependOffsets(b, offs)
	b.StartObject(tocNumFields)
	b.PrependUOffsetTSlot(tocSlotMetadata, metadata, 0)
	return b.EndObject()
}

// Unmarshal decodes and validates a zTOC. It never panics on any input.
//
// Every offset is bounds-checked before use; malformed input gives a
// *CorruptError carrying the byte offset of the problem. Beyond the
// flatbuffer structure it checks: version "0.9" (else ErrUnsupportedVersion),
// known entry types and compression algorithm (absent = Gzip), mod_time as
// RFC 3339 (an absent or empty mod_time is the zero time), span digests
// that parse and number max_span_id+1 (max_span_id >= 0), non-negative
// sizes, entries within uncompressed_archive_size, and upstream's TOC
// consistency rule: with entries ordered by offset, the next tar header
// align512(off+size) of an entry must not lie past the next entry's offset.
//
// Files keeps the stored order when it is sorted by UncompressedOffset (as
// zTOCs built from a tar are); otherwise Files is sorted stably by offset,
// as upstream's reader also sorts. The checkpoint blob is copied but not
// parsed; see ParseGzipCheckpoints and ParseTarCheckpoints.
//
// Decoded data is bounded relative to len(b) even when tables, vectors or
// strings are shared between entries: the decoded strings may total at
// most len(b) bytes, and entries and PAX records at most len(b)/12 and
// len(b)/8.
func Unmarshal(b []byte) (*Ztoc, error) {
	return unmarshal(b, nil)
}

// unmarshal decodes b as Unmarshal does. With hole set (a lazily read
// zTOC, lazy.go), b holds zeros in place of the checkpoint blob: no
// structure may be read from hole (the elements of the checkpoints
// vector), the vector must be exactly hole, and its bytes are not copied.
func unmarshal(b []byte, hole *[2]int64) (*Ztoc, error) {
	if len(b) > MaxZtocSize {
		return nil, fmt.Errorf("%w: ztoc is %d bytes (max %d)", ErrTooLarge, len(b), MaxZtocSize)
	}
	r := &fbReader{b: b, what: "ztoc", strBudget: int64(len(b))}
	if hole != nil {
		r.hole = *hole
	}
	return r.ztoc()
}

func (r *fbReader) ztoc() (*Ztoc, error) {
	root, err := r.root()
	if err != nil {
		return nil, err
	}
	z := new(Ztoc)
	vpos, version, err := root.str(ztocSlotVersion)
	if err != nil {
		return nil, err
	}
	if version != Version09 {
		return nil, fmt.Errorf("%w: %q (at offset %d)", ErrUnsupportedVersion, clip(version), vpos)
	}
	z.Version = Version09
	if _, z.BuildToolIdentifier, err = root.str(ztocSlotBuildTool); err != nil {
		return nil, err
	}
	if z.CompressedArchiveSize, err = root.nonNegInt64(ztocSlotCompressedSize, "compressed_archive_size"); err != nil {
		return nil, err
	}
	if z.UncompressedArchiveSize, err = root.nonNegInt64(ztocSlotUncompressedSize, "uncompressed_archive_size"); err != nil {
		return nil, err
	}

	// compression_info first: cheap checks before decoding the TOC.
	ci, ok, err := root.table(ztocSlotCompressionInfo)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, corrupt(r.what, root.pos, "missing compression_info")
	}
	if err := r.readCompressionInfo(ci, z); err != nil {
		return nil, err
	}

	toc, ok, err := root.table(ztocSlotTOC)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, corrupt(r.what, root.pos, "missing toc")
	}
	if err := r.readTOC(toc, z); err != nil {
		return nil, err
	}
	return z, nil
}

func (r *fbReader) readCompressionInfo(ci fbTable, z *Ztoc) error {
	algo, err := ci.int8(ciSlotAlgorithm, int8(Gzip))
	if err != nil {
		return err
	}
	switch Compression(algo) {
	case Gzip, Uncompressed:
		z.Compression = Compression(algo)
	default:
		p, _, _ := ci.field(ciSlotAlgorithm, 1)
		return corrupt(r.what, p, "unknown compression algorithm %d", algo)
	}
	if z.MaxSpanID, err = ci.int32(ciSlotMaxSpanID, 0); err != nil {
		return err
	}
	if z.MaxSpanID < 0 {
		p, _, _ := ci.field(ciSlotMaxSpanID, 4)
		return corrupt(r.what, p, "max_span_id %d < 0: a zTOC has at least one span", z.MaxSpanID)
	}
	vpos, start, n, err := ci.vector(ciSlotSpanDigests, 4)
	if err != nil {
		return err
	}
	if n != int64(z.MaxSpanID)+1 {
		return corrupt(r.what, vpos, "%d span digests for max_span_id %d", n, z.MaxSpanID)
	}
	z.SpanDigests = make([]digest.Digest, n)
	for i := range n {
		spos, s, err := r.strAt(r.deref(start + 4*i))
		if err != nil {
			return err
		}
		d, err := digest.Parse(s)
		if err != nil {
			return corrupt(r.what, spos, "span digest %d: %v", i, err)
		}
		z.SpanDigests[i] = d
	}
	vpos, start, n, err = ci.vector(ciSlotCheckpoints, 1)
	if err != nil {
		return err
	}
	if r.hole[1] > r.hole[0] {
		// A lazy read: the blob is the hole, not fetched.
		if start != r.hole[0] || start+n != r.hole[1] {
			return corrupt(r.what, vpos, "checkpoints at [%d, %d), read lazily as [%d, %d)", start, start+n, r.hole[0], r.hole[1])
		}
		return nil
	}
	if n > 0 {
		z.Checkpoints = slices.Clone(r.b[start : start+n])
	}
	return nil
}

// Minimum encoded sizes used to cap decoded counts when tables are shared.
const (
	minEntryBytes = 12 // vector slot, soffset, type offset
	minXattrBytes = 8  // vector slot, soffset
)

func (r *fbReader) readTOC(toc fbTable, z *Ztoc) error {
	vpos, start, n, err := toc.vector(tocSlotMetadata, 4)
	if err != nil {
		return err
	}
	if n > int64(len(r.b))/minEntryBytes {
		return corrupt(r.what, vpos, "%d toc entries is too many for a %d-byte ztoc", n, len(r.b))
	}
	if n > 0 {
		z.Files = make([]FileEntry, n)
	}
	xattrBudget := int64(len(r.b)) / minXattrBytes
	sorted := true
	for i := range n {
		t, err := r.tableAt(r.deref(start + 4*i))
		if err != nil {
			return err
		}
		e := &z.Files[i]
		if err := r.readEntry(t, i, e, z.UncompressedArchiveSize, &xattrBudget); err != nil {
			return err
		}
		if i > 0 && e.UncompressedOffset < z.Files[i-1].UncompressedOffset {
			sorted = false
		}
	}
	if !sorted {
		slices.SortStableFunc(z.Files, func(a, b FileEntry) int {
			switch {
			case a.UncompressedOffset < b.UncompressedOffset:
				return -1
			case a.UncompressedOffset > b.UncompressedOffset:
				return 1
			}
			return 0
		})
	}
	var next int64 // the first tar header is at offset 0
	for i := range z.Files {
		e := &z.Files[i]
		if next > e.UncompressedOffset {
			return corrupt(r.what, -1, "toc entry %d (%q): data offset %d precedes the end of the previous entry's data (next header at %d)",
				i, clip(e.Name), e.UncompressedOffset, next)
		}
		next = align512(e.UncompressedOffset + e.UncompressedSize)
	}
	return nil
}

func (r *fbReader) readEntry(t fbTable, i int64, e *FileEntry, archiveSize int64, xattrBudget *int64) error {
	var err error
	if _, e.Name, err = t.str(fmSlotName); err != nil {
		return err
	}
	tpos, typ, err := t.str(fmSlotType)
	if err != nil {
		return err
	}
	if e.Type, err = ParseEntryType(typ); err != nil {
		return corrupt(r.what, tpos, "toc entry %d: %v", i, err)
	}
	if e.UncompressedOffset, err = t.nonNegInt64(fmSlotOffset, "uncompressed_offset"); err != nil {
		return err
	}
	if e.UncompressedSize, err = t.nonNegInt64(fmSlotSize, "uncompressed_size"); err != nil {
		return err
	}
	if e.UncompressedOffset > archiveSize || e.UncompressedSize > archiveSize-e.UncompressedOffset {
		p, _, _ := t.field(fmSlotOffset, 8)
		return corrupt(r.what, p, "toc entry %d: data [%d, +%d) lies beyond uncompressed_archive_size %d",
			i, e.UncompressedOffset, e.UncompressedSize, archiveSize)
	}
	if _, e.Linkname, err = t.str(fmSlotLinkname); err != nil {
		return err
	}
	if e.Mode, err = t.int64(fmSlotMode, 0); err != nil {
		return err
	}
	if e.UID, err = t.uint32(fmSlotUID, 0); err != nil {
		return err
	}
	if e.GID, err = t.uint32(fmSlotGID, 0); err != nil {
		return err
	}
	if _, e.Uname, err = t.str(fmSlotUname); err != nil {
		return err
	}
	if _, e.Gname, err = t.str(fmSlotGname); err != nil {
		return err
	}
	mpos, mt, err := t.rawStr(fmSlotModTime)
	if err != nil {
		return err
	}
	if len(mt) > 0 {
		if err := e.ModTime.UnmarshalText(mt); err != nil {
			return corrupt(r.what, mpos, "toc entry %d: mod_time: %v", i, err)
		}
	}
	if e.Devmajor, err = t.int64(fmSlotDevmajor, 0); err != nil {
		return err
	}
	if e.Devminor, err = t.int64(fmSlotDevminor, 0); err != nil {
		return err
	}
	vpos, start, n, err := t.vector(fmSlotXattrs, 4)
	if err != nil {
		return err
	}
	if *xattrBudget -= n; *xattrBudget < 0 {
		return corrupt(r.what, vpos, "toc entry %d: too many xattrs for a %d-byte ztoc", i, len(r.b))
	}
	if n > 0 {
		e.PAXRecords = make(map[string]string, n)
	}
	for j := range n {
		x, err := r.tableAt(r.deref(start + 4*j))
		if err != nil {
			return err
		}
		_, k, err := x.str(xattrSlotKey)
		if err != nil {
			return err
		}
		_, v, err := x.str(xattrSlotValue)
		if err != nil {
			return err
		}
		e.PAXRecords[k] = v
	}
	return nil
}

// TarHeaderOffsets returns the offset of each entry's tar header in the
// uncompressed archive, recomputed as upstream does: the first header is at
// 0 and each next one at align512(off+size) of the previous entry. Files
// must be sorted by offset, as Unmarshal leaves them. The header offset
// given is that of the entry's own ustar header block or, when the entry
// has PAX or GNU long-name headers, of the first of those.
func (z *Ztoc) TarHeaderOffsets() []int64 {
	offs := make([]int64, len(z.Files))
	var next int64
	for i := range z.Files {
		offs[i] = next
		next = align512(z.Files[i].UncompressedOffset + z.Files[i].UncompressedSize)
	}
	return offs
}

// align512 rounds x up to a multiple of 512 (saturating).
func align512(x int64) int64 {
	if x > math.MaxInt64-511 {
		return math.MaxInt64
	}
	return (x + 511) &^ 511
}

// clip shortens s for error messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// fbReader reads flatbuffers from untrusted bytes: every offset, vtable,
// vector length and string is bounds-checked before use. Alignment is not
// required. Errors are *CorruptError with What set to what.
type fbReader struct {
	b    []byte
	what string
	// strBudget caps the total bytes of strings decoded, so that strings
	// shared by many tables cannot blow up memory.
	strBudget int64
	// hole is a range [hole[0], hole[1]) of b not read (a lazily read
	// zTOC's checkpoint blob): in reports any range touching it as out of
	// bounds. Empty when hole[1] <= hole[0].
	hole [2]int64
}

// fbTable is a bounds-checked table: its vtable and inline size lie within
// the buffer.
type fbTable struct {
	r      *fbReader
	pos    int64 // table start (its soffset)
	vt     int64 // vtable start
	vtSize int64
	size   int64 // inline size of the table
}

func (r *fbReader) in(off, n int64) bool {
	if off < 0 || n < 0 || off > int64(len(r.b)) || n > int64(len(r.b))-off {
		return false
	}
	return r.hole[1] <= r.hole[0] || off >= r.hole[1] || off+n <= r.hole[0]
}

func (r *fbReader) u32(off int64) uint32 {
	return binary.LittleEndian.Uint32(r.b[off:])
}

func (r *fbReader) u16(off int64) int64 {
	return int64(binary.LittleEndian.Uint16(r.b[off:]))
}

// root returns the root table.
func (r *fbReader) root() (fbTable, error) {
	if !r.in(0, 4) {
		return fbTable{}, corrupt(r.what, 0, "truncated: %d bytes", len(r.b))
	}
	return r.tableAt(r.deref(0))
}

// deref follows the uoffset stored at off. It returns the position it
// points to and the offset it was read from, or an error.
func (r *fbReader) deref(off int64) (int64, int64, error) {
	if !r.in(off, 4) {
		return 0, off, corrupt(r.what, off, "offset out of bounds")
	}
	target := off + int64(r.u32(off))
	if target >= int64(len(r.b)) {
		return 0, off, corrupt(r.what, off, "offset %d points past the end (%d bytes)", target, len(r.b))
	}
	return target, off, nil
}

// tableAt checks the table at pos (as returned by deref).
func (r *fbReader) tableAt(pos, _ int64, err error) (fbTable, error) {
	if err != nil {
		return fbTable{}, err
	}
	if !r.in(pos, 4) {
		return fbTable{}, corrupt(r.what, pos, "table out of bounds")
	}
	vt := pos - int64(int32(r.u32(pos)))
	if !r.in(vt, 4) {
		return fbTable{}, corrupt(r.what, pos, "vtable at %d out of bounds", vt)
	}
	vtSize, size := r.u16(vt), r.u16(vt+2)
	if vtSize < 4 || vtSize%2 != 0 || !r.in(vt, vtSize) {
		return fbTable{}, corrupt(r.what, vt, "bad vtable size %d", vtSize)
	}
	if size < 4 || !r.in(pos, size) {
		return fbTable{}, corrupt(r.what, vt, "bad table size %d", size)
	}
	return fbTable{r: r, pos: pos, vt: vt, vtSize: vtSize, size: size}, nil
}

// field returns the position of field slot of n bytes, or ok=false when
// the field is absent.
func (t fbTable) field(slot int, n int64) (pos int64, ok bool, err error) {
	idx := 4 + 2*int64(slot)
	if idx+2 > t.vtSize {
		return 0, false, nil
	}
	o := t.r.u16(t.vt + idx)
	if o == 0 {
		return 0, false, nil
	}
	if o < 4 || o+n > t.size {
		return 0, false, corrupt(t.r.what, t.vt+idx, "field %d at %d+%d outside its %d-byte table", slot, o, n, t.size)
	}
	return t.pos + o, true, nil
}

func (t fbTable) int64(slot int, def int64) (int64, error) {
	p, ok, err := t.field(slot, 8)
	if !ok || err != nil {
		return def, err
	}
	return int64(binary.LittleEndian.Uint64(t.r.b[p:])), nil
}

func (t fbTable) nonNegInt64(slot int, name string) (int64, error) {
	v, err := t.int64(slot, 0)
	if err == nil && v < 0 {
		p, _, _ := t.field(slot, 8)
		err = corrupt(t.r.what, p, "negative %s %d", name, v)
	}
	return v, err
}

func (t fbTable) uint32(slot int, def uint32) (uint32, error) {
	p, ok, err := t.field(slot, 4)
	if !ok || err != nil {
		return def, err
	}
	return t.r.u32(p), nil
}

func (t fbTable) int32(slot int, def int32) (int32, error) {
	v, err := t.uint32(slot, uint32(def))
	return int32(v), err
}

func (t fbTable) int8(slot int, def int8) (int8, error) {
	p, ok, err := t.field(slot, 1)
	if !ok || err != nil {
		return def, err
	}
	return int8(t.r.b[p]), nil
}

// ref returns the target of the offset field slot (ok=false if absent).
func (t fbTable) ref(slot int) (target int64, ok bool, err error) {
	p, ok, err := t.field(slot, 4)
	if !ok || err != nil {
		return 0, false, err
	}
	target, _, err = t.r.deref(p)
	return target, err == nil, err
}

// table returns the sub-table in field slot.
func (t fbTable) table(slot int) (fbTable, bool, error) {
	target, ok, err := t.ref(slot)
	if !ok || err != nil {
		return fbTable{}, false, err
	}
	sub, err := t.r.tableAt(target, 0, nil)
	return sub, err == nil, err
}

// vector returns the vector in field slot: the position of its length,
// the start of its elements and their count (0 when absent).
func (t fbTable) vector(slot int, elemSize int64) (pos, start, n int64, err error) {
	target, ok, err := t.ref(slot)
	if !ok || err != nil {
		return 0, 0, 0, err
	}
	start, n, err = t.r.vectorAt(target, elemSize)
	return target, start, n, err
}

func (r *fbReader) vectorAt(pos, elemSize int64) (start, n int64, err error) {
	if !r.in(pos, 4) {
		return 0, 0, corrupt(r.what, pos, "vector out of bounds")
	}
	n = int64(r.u32(pos))
	start = pos + 4
	if n > (int64(len(r.b))-start)/elemSize {
		return 0, 0, corrupt(r.what, pos, "vector length %d overflows the buffer", n)
	}
	return start, n, nil
}

// rawStrAt returns the bytes of the string at pos (a sub-slice, no copy),
// charging them to the string budget.
func (r *fbReader) rawStrAt(pos, _ int64, err error) (int64, []byte, error) {
	if err != nil {
		return pos, nil, err
	}
	start, n, err := r.vectorAt(pos, 1)
	if err != nil {
		return pos, nil, err
	}
	if !r.in(start, n) {
		return pos, nil, corrupt(r.what, pos, "string out of bounds")
	}
	if r.strBudget -= n; r.strBudget < 0 {
		return pos, nil, corrupt(r.what, pos, "shared strings decode to more than the input size")
	}
	return pos, r.b[start : start+n], nil
}

func (r *fbReader) strAt(pos, from int64, err error) (int64, string, error) {
	p, s, err := r.rawStrAt(pos, from, err)
	return p, string(s), err
}

// rawStr returns the string in field slot ("" when absent) and its
// position (the field's position when absent).
func (t fbTable) rawStr(slot int) (int64, []byte, error) {
	target, ok, err := t.ref(slot)
	if !ok || err != nil {
		return t.pos, nil, err
	}
	return t.r.rawStrAt(target, 0, nil)
}

func (t fbTable) str(slot int) (int64, string, error) {
	p, s, err := t.rawStr(slot)
	return p, string(s), err
}
