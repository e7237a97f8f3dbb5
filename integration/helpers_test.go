//go:build integration

package interop

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	uz "github.com/awslabs/soci-snapshotter/ztoc"
	ucomp "github.com/awslabs/soci-snapshotter/ztoc/compression"
	"github.com/google/go-cmp/cmp"

	"github.com/socikit/socikit/ztoc"
)

// buildTool is given to both builders, so that parity can be byte-exact.
const buildTool = ztoc.UpstreamBuildTool

// Decompression budgets per check: above them, files are sampled (every
// file crossing a span boundary, the first and last file of each span, then
// an even stride) instead of all extracted one by one. Every span is still
// decompressed whole and compared.
const (
	inflateBudget     = 192 << 20 // uncompressed bytes inflated by per-file reads
	extractFileBudget = 256 << 20 // checkpoint bytes re-parsed plus bytes inflated by upstream's ExtractFile
	maxExtractFile    = 64        // calls of upstream's literal ExtractFile
)

func spanName(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("span=%dMiB", n>>20)
	}
	return fmt.Sprintf("span=%dKiB", n>>10)
}

// ---- builders ---------------------------------------------------------------

// upstreamBuild indexes the layer with upstream's builder and marshals the
// result with upstream's Marshal.
func upstreamBuild(path, algo string, span int64) (z *uz.Ztoc, blob []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			z, blob, err = nil, nil, fmt.Errorf("upstream panicked: %v", r)
		}
	}()
	z, err = uz.NewBuilder(buildTool).BuildZtoc(path, span, uz.WithCompression(algo))
	if err != nil {
		return nil, nil, err
	}
	r, desc, err := uz.Marshal(z)
	if err != nil {
		return nil, nil, fmt.Errorf("upstream marshal: %w", err)
	}
	blob, err = io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	if int64(len(blob)) != desc.Size {
		return nil, nil, fmt.Errorf("upstream marshal: descriptor size %d, %d bytes", desc.Size, len(blob))
	}
	return z, blob, nil
}

// errPanic marks a panic inside socikit: always a test failure.
var errPanic = errors.New("socikit panicked")

// ourBuild indexes the layer with socikit's Build, reading from an
// *os.File, and marshals the result.
func ourBuild(path string, span int64) (z *ztoc.Ztoc, blob []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			z, blob, err = nil, nil, fmt.Errorf("%w: %v\n%s", errPanic, r, debug.Stack())
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	z, err = ztoc.Build(f, ztoc.WithSpanSize(span), ztoc.WithBuildToolIdentifier(buildTool))
	if err != nil {
		return nil, nil, err
	}
	blob, err = ztoc.Marshal(z)
	if err != nil {
		return nil, nil, fmt.Errorf("socikit marshal: %w", err)
	}
	return z, blob, nil
}

func upstreamUnmarshal(b []byte) (z *uz.Ztoc, err error) {
	defer func() {
		if r := recover(); r != nil {
			z, err = nil, fmt.Errorf("upstream Unmarshal panicked: %v", r)
		}
	}()
	return uz.Unmarshal(bytes.NewReader(b))
}

func ourUnmarshal(b []byte) (z *ztoc.Ztoc, err error) {
	defer func() {
		if r := recover(); r != nil {
			z, err = nil, fmt.Errorf("%w: Unmarshal: %v\n%s", errPanic, r, debug.Stack())
		}
	}()
	return ztoc.Unmarshal(b)
}

// ---- the oracle ----------------------------------------------------------------

// ent is a TOC entry reduced to what is checked against the tar.
type ent struct {
	Name, Type, Linkname string
	Off, Size            int64
}

func upstreamEnts(z *uz.Ztoc) []ent {
	es := make([]ent, len(z.FileMetadata))
	for i, m := range z.FileMetadata {
		es[i] = ent{Name: m.Name, Type: m.Type, Linkname: m.Linkname, Off: int64(m.UncompressedOffset), Size: int64(m.UncompressedSize)}
	}
	return es
}

func ourEnts(z *ztoc.Ztoc) []ent {
	es := make([]ent, len(z.Files))
	for i, f := range z.Files {
		es[i] = ent{Name: f.Name, Type: f.Type.String(), Linkname: f.Linkname, Off: f.UncompressedOffset, Size: f.UncompressedSize}
	}
	return es
}

var tarTypeNames = map[byte]string{
	tar.TypeReg: "reg", tar.TypeDir: "dir", tar.TypeSymlink: "symlink", tar.TypeLink: "hardlink",
	tar.TypeChar: "char", tar.TypeBlock: "block", tar.TypeFifo: "fifo",
}

// verifyTOC checks a TOC against archive/tar's reading of the tar: the
// same entries in the same order, and every regular file's content at its
// offset in the uncompressed stream. An error means the TOC mis-indexes the
// layer.
func verifyTOC(ti *tarInfo, es []ent, uncompressedSize int64) error {
	if ti.readErr != nil {
		return fmt.Errorf("archive/tar cannot read the tar (%v), yet it was indexed", ti.readErr)
	}
	if len(es) != len(ti.entries) {
		return fmt.Errorf("%d TOC entries, archive/tar reads %d", len(es), len(ti.entries))
	}
	if uncompressedSize > int64(len(ti.raw)) {
		return fmt.Errorf("uncompressed archive size %d beyond the tar's %d bytes", uncompressedSize, len(ti.raw))
	}
	prevEnd := int64(512) // the first header comes before the first data
	for i, e := range es {
		te := ti.entries[i]
		h := te.hdr
		want, ok := tarTypeNames[h.Typeflag]
		if !ok {
			return fmt.Errorf("entry %d %q: tar type %q indexed as %q", i, h.Name, h.Typeflag, e.Type)
		}
		if e.Name != h.Name || e.Type != want || e.Linkname != h.Linkname {
			return fmt.Errorf("entry %d: TOC has %q %s -> %q, tar has %q %s -> %q", i, e.Name, e.Type, e.Linkname, h.Name, want, h.Linkname)
		}
		if e.Off < prevEnd || e.Off%512 != 0 || e.Off > uncompressedSize {
			return fmt.Errorf("entry %d %q: offset %d (previous entry ends at %d, archive size %d)", i, e.Name, e.Off, prevEnd, uncompressedSize)
		}
		if h.Typeflag != tar.TypeReg {
			prevEnd = e.Off + 512
			continue
		}
		if e.Size != h.Size {
			return fmt.Errorf("entry %d %q: size %d, tar header says %d", i, e.Name, e.Size, h.Size)
		}
		if te.sparse {
			return fmt.Errorf("entry %d %q: sparse file indexed as the contiguous range [%d, %d)", i, e.Name, e.Off, e.Off+e.Size)
		}
		if e.Off+e.Size > uncompressedSize {
			return fmt.Errorf("entry %d %q: range [%d, %d) beyond the archive size %d", i, e.Name, e.Off, e.Off+e.Size, uncompressedSize)
		}
		if te.contentErr != nil {
			return fmt.Errorf("entry %d %q: archive/tar cannot read its content (%v), yet it was indexed", i, e.Name, te.contentErr)
		}
		if te.content != nil && !bytes.Equal(ti.raw[e.Off:e.Off+e.Size], te.content) {
			return fmt.Errorf("entry %d %q: bytes [%d, %d) of the tar are not its content", i, e.Name, e.Off, e.Off+e.Size)
		}
		prevEnd = alignTar(e.Off+e.Size) + 512
	}
	return nil
}

func alignTar(x int64) int64 { return (x + 511) &^ 511 }

// ---- file selection ---------------------------------------------------------------

// selectFiles returns the indexes of the regular, non-empty entries to read
// one by one: all of them when their total cost fits budget, otherwise
// those crossing a span boundary, the first and last of each span, and an
// even stride of the rest up to the budget.
func selectFiles(es []ent, spanOf func(off int64) int64, cost func(e ent) int64, budget int64) (sel []int, all bool) {
	var regs []int
	var total int64
	for i, e := range es {
		if e.Type == "reg" && e.Size > 0 {
			regs = append(regs, i)
			total += cost(e)
		}
	}
	if total <= budget {
		return regs, true
	}
	picked := map[int]bool{}
	var spent int64
	take := func(i int) {
		if !picked[i] {
			picked[i] = true
			spent += cost(es[i])
		}
	}
	first := map[int64]int{}
	last := map[int64]int{}
	for _, i := range regs {
		e := es[i]
		s := spanOf(e.Off)
		if spanOf(e.Off+e.Size-1) != s {
			take(i)
		}
		if _, ok := first[s]; !ok {
			first[s] = i
		}
		last[s] = i
	}
	for _, i := range first {
		take(i)
	}
	for _, i := range last {
		take(i)
	}
	if rest := budget - spent; rest > 0 {
		var restCost int64
		for _, i := range regs {
			if !picked[i] {
				restCost += cost(es[i])
			}
		}
		stride := int(restCost/rest) + 1
		for k, i := range regs {
			if k%stride == 0 {
				take(i)
			}
		}
	}
	for i := range picked {
		sel = append(sel, i)
	}
	sort.Ints(sel)
	return sel, false
}

// ---- upstream reading our zTOCs ---------------------------------------------------

// upstreamExtractEntry is upstream's ExtractFile for an entry rather than a
// name (ExtractFile takes the first entry of a name and re-parses all
// checkpoints on every call): the same span arithmetic and the same
// ExtractDataFromBuffer, with one Zinfo.
func upstreamExtractEntry(zinfo ucomp.Zinfo, sr *io.SectionReader, compressedSize ucomp.Offset, off, size int64) ([]byte, error) {
	o, s := ucomp.Offset(off), ucomp.Offset(size)
	first := zinfo.UncompressedOffsetToSpanID(o)
	last := zinfo.UncompressedOffsetToSpanID(o + s)
	start := zinfo.StartCompressedOffset(first)
	end := zinfo.EndCompressedOffset(last, compressedSize)
	buf := make([]byte, end-start)
	if n, err := sr.ReadAt(buf, int64(start)); n != len(buf) {
		return nil, fmt.Errorf("read blob [%d, %d): %d bytes, %v", start, end, n, err)
	}
	return zinfo.ExtractDataFromBuffer(buf, s, o, first)
}

type upstreamReadStats struct {
	spans, files, regFiles, extractFileCalls int
	sampled                                  bool
	// clamped counts spans (socikit's Index) ending past the uncompressed
	// archive size, read only up to it.
	clamped int
}

func (s upstreamReadStats) String() string {
	mode := "all"
	if s.sampled {
		mode = "sampled"
	}
	r := fmt.Sprintf("%d spans decompressed whole; %d/%d files read one by one (%s), %d of them through ExtractFile",
		s.spans, s.files, s.regFiles, mode, s.extractFileCalls)
	if s.clamped > 0 {
		r += fmt.Sprintf("; %d span(s) end past UncompressedArchiveSize, read up to it", s.clamped)
	}
	return r
}

// checkUpstreamReads makes upstream read the layer through zt (a zTOC
// upstream unmarshalled): every span whole, then files one by one, with
// ExtractDataFromBuffer and, for a share, the literal ExtractFile.
func checkUpstreamReads(path string, ti *tarInfo, zt *uz.Ztoc) (st upstreamReadStats, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("upstream panicked reading: %v", r)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, err
	}
	if fi.Size() != int64(zt.CompressedArchiveSize) {
		return st, fmt.Errorf("compressed archive size %d, blob has %d bytes", zt.CompressedArchiveSize, fi.Size())
	}
	sr := io.NewSectionReader(f, 0, fi.Size())
	zinfo, err := zt.Zinfo()
	if err != nil {
		return st, fmt.Errorf("upstream Zinfo: %w", err)
	}
	defer zinfo.Close()
	if zinfo.MaxSpanID() != zt.MaxSpanID || len(zt.SpanDigests) != int(zt.MaxSpanID)+1 {
		return st, fmt.Errorf("zinfo has max span id %d, zTOC %d with %d digests", zinfo.MaxSpanID(), zt.MaxSpanID, len(zt.SpanDigests))
	}
	raw := ti.raw
	usize := zt.UncompressedArchiveSize
	for id := ucomp.SpanID(0); id <= zt.MaxSpanID; id++ {
		us, ue := zinfo.StartUncompressedOffset(id), zinfo.EndUncompressedOffset(id, usize)
		cs, ce := zinfo.StartCompressedOffset(id), zinfo.EndCompressedOffset(id, zt.CompressedArchiveSize)
		if us > ue || ue > ucomp.Offset(len(raw)) || cs > ce || ce > zt.CompressedArchiveSize {
			return st, fmt.Errorf("span %d: uncompressed [%d, %d) compressed [%d, %d)", id, us, ue, cs, ce)
		}
		comp := make([]byte, ce-cs)
		if n, err := sr.ReadAt(comp, int64(cs)); n != len(comp) {
			return st, fmt.Errorf("span %d: read blob: %v", id, err)
		}
		if got := sha256Digest(comp); got != zt.SpanDigests[id].String() {
			return st, fmt.Errorf("span %d: digest of compressed [%d, %d) is %s, zTOC says %s", id, cs, ce, got, zt.SpanDigests[id])
		}
		if ue == us {
			continue
		}
		data, err := zinfo.ExtractDataFromBuffer(comp, ue-us, us, id)
		if err != nil {
			return st, fmt.Errorf("span %d [%d, %d): ExtractDataFromBuffer: %w", id, us, ue, err)
		}
		if !bytes.Equal(data, raw[us:ue]) {
			return st, fmt.Errorf("span %d [%d, %d): upstream decompressed the wrong bytes (first difference at %d)", id, us, ue, int64(us)+firstDiff(data, raw[us:ue]))
		}
		st.spans++
	}

	es := upstreamEnts(zt)
	spanOf := func(off int64) int64 { return int64(zinfo.UncompressedOffsetToSpanID(ucomp.Offset(off))) }
	cost := func(e ent) int64 {
		return e.Off - int64(zinfo.StartUncompressedOffset(zinfo.UncompressedOffsetToSpanID(ucomp.Offset(e.Off)))) + e.Size
	}
	sel, all := selectFiles(es, spanOf, cost, inflateBudget)
	st.sampled = !all
	st.regFiles = ti.regCount()
	firstOfName := map[string]int{}
	for i, e := range es {
		if _, ok := firstOfName[e.Name]; !ok {
			firstOfName[e.Name] = i
		}
	}
	for _, i := range sel {
		e := es[i]
		want := ti.entries[i].content
		if want == nil {
			continue
		}
		got, err := upstreamExtractEntry(zinfo, sr, zt.CompressedArchiveSize, e.Off, e.Size)
		if err != nil {
			return st, fmt.Errorf("entry %d %q: ExtractDataFromBuffer: %w", i, e.Name, err)
		}
		if !bytes.Equal(got, want) {
			return st, fmt.Errorf("entry %d %q: upstream extracted wrong content (%d bytes, want %d, first difference at %d)", i, e.Name, len(got), len(want), firstDiff(got, want))
		}
		st.files++
	}
	// Upstream's public path, ExtractFile: by name (the first entry of that
	// name, following links) and re-parsing all checkpoints on each call, so
	// only for a share: entries crossing span boundaries first.
	var cands []int
	for pass := 0; pass < 2; pass++ {
		for _, i := range sel {
			e := es[i]
			crosses := spanOf(e.Off) != spanOf(e.Off+e.Size-1)
			if crosses == (pass == 0) && firstOfName[e.Name] == i && e.Linkname == "" && ti.entries[i].content != nil {
				cands = append(cands, i)
			}
		}
	}
	left := int64(extractFileBudget)
	for _, i := range cands {
		e := es[i]
		c := int64(len(zt.Checkpoints)) + cost(e)
		if st.extractFileCalls >= maxExtractFile || c > left {
			break
		}
		left -= c
		got, err := zt.ExtractFile(sr, e.Name)
		if err != nil {
			return st, fmt.Errorf("entry %d %q: ExtractFile: %w", i, e.Name, err)
		}
		if want := ti.entries[i].content; !bytes.Equal(got, want) {
			return st, fmt.Errorf("entry %d %q: ExtractFile returned wrong content (%d bytes, want %d)", i, e.Name, len(got), len(want))
		}
		st.extractFileCalls++
	}
	return st, nil
}

// ---- socikit reading upstream's zTOCs ----------------------------------------

func checkOurReads(path string, ti *tarInfo, z *ztoc.Ztoc) (st upstreamReadStats, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w reading: %v\n%s", errPanic, r, debug.Stack())
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	r, err := ztoc.NewReader(z, f)
	if err != nil {
		return st, fmt.Errorf("NewReader: %w", err)
	}
	spans := r.Index().Spans()
	for _, s := range spans {
		if s.UncompressedEnd > int64(len(ti.raw)) {
			return st, fmt.Errorf("span %d ends at %d, beyond the tar's %d bytes", s.ID, s.UncompressedEnd, len(ti.raw))
		}
		// ReadRange serves only [0, UncompressedArchiveSize): the end of the
		// tar's last record, while an uncompressed layer's last span runs to
		// the end of the blob (tar padding past the end-of-archive blocks).
		end := min(s.UncompressedEnd, z.UncompressedArchiveSize)
		if end < s.UncompressedEnd {
			st.clamped++
		}
		if end <= s.UncompressedStart {
			continue
		}
		data, err := r.ReadRange(s.UncompressedStart, end-s.UncompressedStart)
		if err != nil {
			return st, fmt.Errorf("span %d: ReadRange: %w", s.ID, err)
		}
		if !bytes.Equal(data, ti.raw[s.UncompressedStart:end]) {
			return st, fmt.Errorf("span %d: wrong bytes (first difference at %d)", s.ID, s.UncompressedStart+firstDiff(data, ti.raw[s.UncompressedStart:end]))
		}
		st.spans++
	}
	es := ourEnts(z)
	ix := r.Index()
	spanOf := func(off int64) int64 { return int64(ix.SpanAt(off)) }
	cost := func(e ent) int64 {
		a, b := ix.SpansOf(e.Off, e.Size)
		return spans[b].UncompressedEnd - spans[a].UncompressedStart
	}
	sel, all := selectFiles(es, spanOf, cost, inflateBudget)
	st.sampled = !all
	st.regFiles = ti.regCount()
	for _, i := range sel {
		want := ti.entries[i].content
		if want == nil {
			continue
		}
		got, err := r.ReadFile(&z.Files[i])
		if err != nil {
			return st, fmt.Errorf("entry %d %q: ReadFile: %w", i, z.Files[i].Name, err)
		}
		if !bytes.Equal(got, want) {
			return st, fmt.Errorf("entry %d %q: ReadFile returned wrong content (%d bytes, want %d, first difference at %d)", i, z.Files[i].Name, len(got), len(want), firstDiff(got, want))
		}
		st.files++
	}
	return st, nil
}

// ---- parity diagnosis ----------------------------------------------------------

func sha256Digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func firstDiff(a, b []byte) int64 {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return int64(i)
		}
	}
	return int64(n)
}

// describeDiff explains how two marshalled zTOCs differ, field by field,
// reading both with upstream's Unmarshal.
func describeDiff(ours, up []byte) string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	add("sizes: socikit %d bytes, upstream %d bytes; first differing byte at %d", len(ours), len(up), firstDiff(ours, up))
	a, err := upstreamUnmarshal(ours)
	if err != nil {
		add("upstream cannot unmarshal socikit's zTOC: %v", err)
		return strings.Join(out, "\n")
	}
	b, err := upstreamUnmarshal(up)
	if err != nil {
		add("upstream cannot unmarshal its own zTOC: %v", err)
		return strings.Join(out, "\n")
	}
	n := len(out)
	if a.Version != b.Version {
		add("Version: %q vs %q", a.Version, b.Version)
	}
	if a.BuildToolIdentifier != b.BuildToolIdentifier {
		add("BuildToolIdentifier: %q vs %q", a.BuildToolIdentifier, b.BuildToolIdentifier)
	}
	if a.CompressedArchiveSize != b.CompressedArchiveSize {
		add("CompressedArchiveSize: %d vs %d", a.CompressedArchiveSize, b.CompressedArchiveSize)
	}
	if a.UncompressedArchiveSize != b.UncompressedArchiveSize {
		add("UncompressedArchiveSize: %d vs %d", a.UncompressedArchiveSize, b.UncompressedArchiveSize)
	}
	if a.MaxSpanID != b.MaxSpanID {
		add("MaxSpanID: %d vs %d", a.MaxSpanID, b.MaxSpanID)
	}
	if a.CompressionAlgorithm != b.CompressionAlgorithm {
		add("CompressionAlgorithm: %q vs %q", a.CompressionAlgorithm, b.CompressionAlgorithm)
	}
	if len(a.SpanDigests) != len(b.SpanDigests) {
		add("SpanDigests: %d vs %d", len(a.SpanDigests), len(b.SpanDigests))
	}
	for i := 0; i < min(len(a.SpanDigests), len(b.SpanDigests)); i++ {
		if a.SpanDigests[i] != b.SpanDigests[i] {
			add("SpanDigests[%d] (first difference): %s vs %s", i, a.SpanDigests[i], b.SpanDigests[i])
			break
		}
	}
	if !bytes.Equal(a.Checkpoints, b.Checkpoints) {
		add("Checkpoints: %s", describeCheckpointDiff(a.CompressionAlgorithm, a.Checkpoints, b.Checkpoints))
	}
	if len(a.FileMetadata) != len(b.FileMetadata) {
		add("TOC: %d vs %d entries", len(a.FileMetadata), len(b.FileMetadata))
	}
	shown := 0
	diffs := 0
	for i := 0; i < min(len(a.FileMetadata), len(b.FileMetadata)); i++ {
		ma, mb := a.FileMetadata[i], b.FileMetadata[i]
		ta, _ := ma.ModTime.MarshalText()
		tb, _ := mb.ModTime.MarshalText()
		if ma.Equal(mb) && bytes.Equal(ta, tb) {
			continue
		}
		diffs++
		if shown < 5 {
			shown++
			d := cmp.Diff(mb, ma)
			if !bytes.Equal(ta, tb) {
				d += fmt.Sprintf("\nmod_time text: socikit %q, upstream %q", ta, tb)
			}
			add("TOC entry %d %q differs (-upstream +socikit):\n%s", i, mb.Name, d)
		}
	}
	if diffs > 0 {
		add("%d TOC entries differ", diffs)
	}
	if len(out) == n {
		add("every field upstream reads is equal: the flatbuffer encodings differ")
	}
	return strings.Join(out, "\n")
}

const packedCheckpoint = 8 + 8 + 1 + 32768

func describeCheckpointDiff(algo string, a, b []byte) string {
	if algo != "gzip" || len(a) < 12 || len(b) < 12 {
		return fmt.Sprintf("%d vs %d bytes, first difference at %d", len(a), len(b), firstDiff(a, b))
	}
	le32 := func(p []byte) int64 {
		return int64(int32(uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24))
	}
	le64 := func(p []byte) int64 {
		var x uint64
		for i := 7; i >= 0; i-- {
			x = x<<8 | uint64(p[i])
		}
		return int64(x)
	}
	var s []string
	if le32(a) != le32(b) {
		s = append(s, fmt.Sprintf("count %d vs %d", le32(a), le32(b)))
	}
	if le64(a[4:]) != le64(b[4:]) {
		s = append(s, fmt.Sprintf("span size %d vs %d", le64(a[4:]), le64(b[4:])))
	}
	pa, pb := a[12:], b[12:]
	for i := 0; len(pa) >= packedCheckpoint && len(pb) >= packedCheckpoint; i++ {
		ca, cb := pa[:packedCheckpoint], pb[:packedCheckpoint]
		if !bytes.Equal(ca, cb) {
			s = append(s, fmt.Sprintf("checkpoint %d (first difference): in %d vs %d, out %d vs %d, bits %d vs %d, window equal %v",
				i, le64(ca), le64(cb), le64(ca[8:]), le64(cb[8:]), ca[16], cb[16], bytes.Equal(ca[17:], cb[17:])))
			break
		}
		pa, pb = pa[packedCheckpoint:], pb[packedCheckpoint:]
	}
	if len(s) == 0 {
		s = append(s, fmt.Sprintf("%d vs %d bytes, first difference at %d", len(a), len(b), firstDiff(a, b)))
	}
	return strings.Join(s, "; ")
}
