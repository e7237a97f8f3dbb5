package ztoc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	flatbuffers "github.com/google/flatbuffers/go"
)

// Gzip checkpoint blob ("zinfo") layout, little-endian:
//
//	header: int32 count, int64 span_size                 (12 bytes)
//	record: int64 in, int64 out, uint8 bits, [32768]byte window (32,785 bytes)
//
// Version 2 stores count records; version 1 stores count-1, omitting
// checkpoint 0. See docs/ztoc.md.
const (
	zinfoHeaderSize = 4 + 8
	zinfoRecordSize = 8 + 8 + 1 + WindowSize
	// gzipHeaderMinSize is where a v1 blob's implicit checkpoint 0 begins:
	// just after a gzip header without optional fields.
	gzipHeaderMinSize = 10
)

// Checkpoint is a point where inflation of a gzip layer can resume.
type Checkpoint struct {
	In   int64 // compressed offset of the first full byte
	Out  int64 // uncompressed offset
	Bits uint8 // 0, or 1..7 bits taken from the byte at In-1
	// Window is the WindowSize bytes of uncompressed data before Out (zeros
	// for the first checkpoint). On parse, a sub-slice of the blob (no
	// copy), except for a v1 blob's synthesized checkpoint 0. MarshalBinary
	// writes zeros for a nil Window.
	Window []byte
}

// GzipCheckpoints is the "zinfo" blob of a gzip zTOC.
type GzipCheckpoints struct {
	SpanSize int64
	Points   []Checkpoint
	// Version is the blob version read (1 or 2). MarshalBinary always
	// writes version 2. (Upstream rewrites a v1 blob as v1, but the blob is
	// stored raw in Ztoc.Checkpoints, so a zTOC read and re-marshalled
	// keeps its bytes either way.)
	Version int
}

// ParseGzipCheckpoints parses a gzip checkpoint blob.
//
// The version is told from the length, as upstream's blob_to_zinfo does:
// 12+count*32785 bytes is version 2; 12+(count-1)*32785 is version 1, whose
// checkpoint 0 is synthesized as In=10, Out=0, Bits=0 with a zero window.
// It checks count >= 1, span_size >= 0, Bits <= 7, In >= 1 when Bits != 0,
// In >= 0 and Out >= 0, and In and Out non-decreasing. (Out is not strictly
// increasing: a checkpoint is taken at every block end while out == 0, so
// leading checkpoints may share Out == 0.)
func ParseGzipCheckpoints(blob []byte) (*GzipCheckpoints, error) {
	const what = "checkpoints"
	if len(blob) > MaxZtocSize {
		return nil, fmt.Errorf("%w: checkpoint blob is %d bytes (max %d)", ErrTooLarge, len(blob), MaxZtocSize)
	}
	if len(blob) < zinfoHeaderSize {
		return nil, corrupt(what, 0, "truncated header: %d bytes", len(blob))
	}
	count := int64(int32(binary.LittleEndian.Uint32(blob)))
	span := int64(binary.LittleEndian.Uint64(blob[4:]))
	if count < 1 {
		return nil, corrupt(what, 0, "checkpoint count %d < 1", count)
	}
	g := &GzipCheckpoints{SpanSize: span}
	size := int64(len(blob))
	claimed := zinfoHeaderSize + count*zinfoRecordSize
	first := int64(0)
	switch size {
	case claimed:
		g.Version = 2
	case claimed - zinfoRecordSize:
		g.Version = 1
		first = 1
	default:
		return nil, corrupt(what, 0, "%d bytes do not hold %d checkpoints (want %d or %d)",
			size, count, claimed, claimed-zinfoRecordSize)
	}
	if span < 0 {
		return nil, corrupt(what, 4, "negative span size %d", span)
	}
	g.Points = make([]Checkpoint, count)
	if first == 1 {
		g.Points[0] = Checkpoint{In: gzipHeaderMinSize, Window: make([]byte, WindowSize)}
	}
	off := int64(zinfoHeaderSize)
	for i := first; i < count; i++ {
		rec := blob[off : off+zinfoRecordSize]
		p := Checkpoint{
			In:     int64(binary.LittleEndian.Uint64(rec)),
			Out:    int64(binary.LittleEndian.Uint64(rec[8:])),
			Bits:   rec[16],
			Window: rec[17:zinfoRecordSize:zinfoRecordSize],
		}
		var prev *Checkpoint
		if i > 0 {
			prev = &g.Points[i-1]
		}
		if err := p.check(prev); err != nil {
			return nil, corrupt(what, off, "checkpoint %d: %v", i, err)
		}
		g.Points[i] = p
		off += zinfoRecordSize
	}
	return g, nil
}

func (p *Checkpoint) check(prev *Checkpoint) error {
	switch {
	case p.In < 0 || p.Out < 0:
		return fmt.Errorf("negative offset in=%d out=%d", p.In, p.Out)
	case p.Bits > 7:
		return fmt.Errorf("bits %d > 7", p.Bits)
	case p.Bits != 0 && p.In < 1:
		return fmt.Errorf("%d bits at in=0", p.Bits)
	case prev != nil && (p.In < prev.In || p.Out < prev.Out):
		return fmt.Errorf("in=%d out=%d goes back from in=%d out=%d", p.In, p.Out, prev.In, prev.Out)
	}
	return nil
}

// MaxSpanID returns the id of the last span: one span per checkpoint.
func (g *GzipCheckpoints) MaxSpanID() int32 {
	return int32(len(g.Points) - 1)
}

// MarshalBinary encodes g as a version 2 blob (whatever g.Version says).
func (g *GzipCheckpoints) MarshalBinary() ([]byte, error) {
	return g.AppendBinary(nil)
}

// AppendBinary appends the version 2 blob of g to b.
func (g *GzipCheckpoints) AppendBinary(b []byte) ([]byte, error) {
	n := int64(len(g.Points))
	if n < 1 {
		return b, errors.New("ztoc: gzip checkpoints: need at least one checkpoint")
	}
	if n > math.MaxInt32 || zinfoHeaderSize+n*zinfoRecordSize > MaxZtocSize {
		return b, fmt.Errorf("%w: %d checkpoints", ErrTooLarge, n)
	}
	if g.SpanSize < 0 {
		return b, fmt.Errorf("ztoc: gzip checkpoints: negative span size %d", g.SpanSize)
	}
	for i := range g.Points {
		p := &g.Points[i]
		var prev *Checkpoint
		if i > 0 {
			prev = &g.Points[i-1]
		}
		if err := p.check(prev); err != nil {
			return b, fmt.Errorf("ztoc: gzip checkpoint %d: %v", i, err)
		}
		if p.Window != nil && len(p.Window) != WindowSize {
			return b, fmt.Errorf("ztoc: gzip checkpoint %d: window is %d bytes, want %d", i, len(p.Window), WindowSize)
		}
	}
	b = slices.Grow(b, int(zinfoHeaderSize+n*zinfoRecordSize))
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint64(b, uint64(g.SpanSize))
	for i := range g.Points {
		p := &g.Points[i]
		b = binary.LittleEndian.AppendUint64(b, uint64(p.In))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Out))
		b = append(b, p.Bits)
		if p.Window == nil {
			b = append(b, make([]byte, WindowSize)...)
		} else {
			b = append(b, p.Window...)
		}
	}
	return b, nil
}

// tarZinfoVersion is the version upstream writes in a TarZinfo (it follows
// the gzip blob version).
const tarZinfoVersion = 2

// TarZinfo field slots.
const (
	tarSlotVersion = iota
	tarSlotSpanSize
	tarSlotSize
	tarNumFields
)

// TarCheckpoints is the TarZinfo blob of an uncompressed tar zTOC: fixed
// spans [i*SpanSize, min((i+1)*SpanSize, Size)).
type TarCheckpoints struct{ SpanSize, Size int64 }

// ParseTarCheckpoints reads the flatbuffer table TarZinfo {version:int32;
// span_size:int64; size:int64} from blob with bounds checks. The version
// must be 2 (the only one upstream writes), span_size > 0 and size >= 0.
func ParseTarCheckpoints(blob []byte) (*TarCheckpoints, error) {
	const what = "checkpoints"
	if len(blob) > MaxZtocSize {
		return nil, fmt.Errorf("%w: checkpoint blob is %d bytes (max %d)", ErrTooLarge, len(blob), MaxZtocSize)
	}
	r := &fbReader{b: blob, what: what}
	t, err := r.root()
	if err != nil {
		return nil, err
	}
	v, err := t.int32(tarSlotVersion, 0)
	if err != nil {
		return nil, err
	}
	if v != tarZinfoVersion {
		p, _, _ := t.field(tarSlotVersion, 4)
		return nil, corrupt(what, p, "tar zinfo version %d, want %d", v, tarZinfoVersion)
	}
	tc := new(TarCheckpoints)
	if tc.SpanSize, err = t.int64(tarSlotSpanSize, 0); err != nil {
		return nil, err
	}
	if tc.SpanSize <= 0 {
		p, _, _ := t.field(tarSlotSpanSize, 8)
		return nil, corrupt(what, p, "span size %d <= 0", tc.SpanSize)
	}
	if tc.Size, err = t.nonNegInt64(tarSlotSize, "size"); err != nil {
		return nil, err
	}
	return tc, nil
}

// MarshalBinary encodes t as upstream's TarZinfo.Bytes() does, byte for
// byte (version 2).
func (t *TarCheckpoints) MarshalBinary() ([]byte, error) {
	if t.SpanSize <= 0 || t.Size < 0 {
		return nil, fmt.Errorf("ztoc: tar checkpoints: invalid span size %d or size %d", t.SpanSize, t.Size)
	}
	b := flatbuffers.NewBuilder(0)
	b.StartObject(tarNumFields)
	b.PrependInt32Slot(tarSlotVersion, tarZinfoVersion, 0)
	b.PrependInt64Slot(tarSlotSpanSize, t.SpanSize, 0)
	b.PrependInt64Slot(tarSlotSize, t.Size, 0)
	b.Finish(b.EndObject())
	return b.FinishedBytes(), nil
}

// MaxSpanID returns the id of the last span as upstream computes it:
// Size/SpanSize, minus one when SpanSize divides Size. For Size 0 that is
// -1, i.e. no span at all: such a layer must not be given a zTOC (Unmarshal
// rejects max_span_id < 0), and builders must refuse an empty tar. It also
// returns -1 when SpanSize <= 0 or the id does not fit an int32.
func (t *TarCheckpoints) MaxSpanID() int32 {
	if t.SpanSize <= 0 || t.Size < 0 {
		return -1
	}
	id := t.Size / t.SpanSize
	if t.Size%t.SpanSize == 0 {
		id--
	}
	if id > math.MaxInt32 {
		return -1
	}
	return int32(id)
}
