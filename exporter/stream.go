package exporter

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/ztoc"
)

// StreamPlanner is the auto-sizing ztoc.SpanPlanner for a tar that can be
// read only once (BuildKit's compression hook hands the compressor a
// stream). It decides greedily as entries arrive: it records each entry's
// header offset and size, and re-runs the ChooseSpanSize model on the
// entries seen so far whenever their count or their bytes have doubled
// since the last choice (so O(n log n) work in all); spans from then on
// use the new choice. With start-up files or a profile it cuts around runs
// of hot files, and around the hot clusters inside files read in part
// (PartialMinSize, HotGranule: each such file's clusters are known from its
// size and the profile when its header arrives), when the current choice
// does. A hot symlink makes its target hot when the target comes later in
// the tar; a target that came before it was not known to be hot
// (two-pass BuildLayer follows links both ways). Until the first choice
// (16 entries or 1 MiB) it uses ztoc.DefaultSpanSize.
type StreamPlanner struct {
	o       *options
	l       Layer
	h       hotLayer                // hot files seen so far
	names   map[string]*startupFile // start-up files by clean name, links not followed
	cur     SpanChoice
	nextN   int
	nextB   int64
	inHot   bool
	choices int
}

var _ ztoc.SpanPlanner = (*StreamPlanner)(nil)

// NewStreamPlanner returns a StreamPlanner. Only the WithStartupFiles,
// WithProfile, WithSpanCandidates, WithReadFraction, WithRequestBytes and
// WithCompressionRatio options are used.
func NewStreamPlanner(opts ...Option) (*StreamPlanner, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	return newStreamPlanner(o), nil
}

func newStreamPlanner(o *options) *StreamPlanner {
	p := &StreamPlanner{o: o, cur: SpanChoice{Size: ztoc.DefaultSpanSize, StartupKnown: o.files != nil}, nextN: 16, nextB: 1 << 20}
	if o.files != nil {
		p.names = make(map[string]*startupFile, len(o.files))
		for _, f := range o.files {
			k := cleanName(f.path)
			if g := p.names[k]; g != nil {
				m := *g
				m.whole = m.whole || f.whole
				m.ranges = append(slices.Clone(m.ranges), f.ranges...)
				p.names[k] = &m
				continue
			}
			p.names[k] = &f
		}
	}
	return p
}

// Plan implements ztoc.SpanPlanner.
func (p *StreamPlanner) Plan(spanStart, hdrStart int64, e *ztoc.FileEntry) []int64 {
	en := Entry{Name: e.Name, Linkname: e.Linkname, Typeflag: '5', HeaderOffset: hdrStart, DataOffset: e.UncompressedOffset}
	if e.Type == ztoc.TypeReg {
		en.Typeflag, en.Size = '0', e.UncompressedSize
	}
	idx := len(p.l.Entries)
	p.l.Entries = append(p.l.Entries, en)
	p.l.Size = en.DataOffset + en.Size
	p.l.TrailerOffset = en.End()
	var hf *hotFile
	if f := p.names[cleanName(e.Name)]; f != nil && e.Type == ztoc.TypeSymlink {
		// A hot symlink ahead of its target: the target is hot too.
		if t := linkTarget(e.Name, e.Linkname); p.names[t] == nil {
			p.names[t] = f
		}
	}
	if f := p.names[cleanName(e.Name)]; f != nil && en.Size > 0 {
		if hf = newHotFile(f.whole, f.ranges, en.Size, p.o); hf != nil {
			p.h.add(idx, hf)
		}
	}
	if len(p.l.Entries) >= p.nextN || p.l.Size >= p.nextB {
		p.choose()
		p.nextN, p.nextB = 2*len(p.l.Entries), 2*p.l.Size
	}
	// Is the entry's header in hot bytes, and are its last bytes?
	hotHead := hf != nil && (!hf.partial || hf.clusters[0].Offset == 0)
	boundary := false
	switch {
	case hotHead && !p.inHot:
		boundary = true
	case !hotHead && p.inHot && en.Size > 0:
		boundary = true
	}
	switch {
	case hf != nil:
		p.inHot = !hf.partial || hf.clusters[len(hf.clusters)-1].End() == en.Size
	case en.Size > 0:
		p.inHot = false
	}
	cut := len(p.cur.Cuts) > 0
	var data []int64
	if cut && hf != nil && hf.partial {
		for _, c := range hf.clusters {
			if c.Offset > 0 {
				data = append(data, en.DataOffset+c.Offset)
			}
			if c.End() < en.Size {
				data = append(data, en.DataOffset+c.End())
			}
		}
	}
	return planEntry(p.cur.Size, spanStart, hdrStart, e, boundary && cut, data)
}

// choose re-runs the model on the entries seen so far. Names are matched
// without following links backwards: a hot symlink makes its target hot
// only if the target comes after it (a hard link always follows its
// target).
func (p *StreamPlanner) choose() {
	var h *hotLayer
	if p.names != nil {
		h = &p.h
	}
	p.cur = chooseWith(&p.l, h, p.o)
	p.choices++
}

// Choice returns the model's choice for all the entries seen, as it would
// be made now (what a two-pass BuildLayer would have used, had it seen the
// same entries).
func (p *StreamPlanner) Choice() SpanChoice {
	p.choose()
	return p.cur
}

// BuildLayerStream is BuildLayer for a tar that can be read only once:
// span sizes are chosen greedily by a StreamPlanner (unless WithSpanSize
// fixes them) and reordering is not possible (WithReorder is an error).
// The span size recorded in the zTOC's checkpoint blob is
// ztoc.DefaultSpanSize for auto sizing; LayerResult.Spans.Size is the
// final choice, to use in the index annotation.
func BuildLayerStream(ctx context.Context, dst io.Writer, src io.Reader, opts ...Option) (*LayerResult, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.reorder {
		return nil, errors.New("build layer: reordering needs random access to the tar (use BuildLayer)")
	}
	var planner ztoc.SpanPlanner
	var sp *StreamPlanner
	recorded := o.spanSize
	if o.spanSize > 0 {
		planner = ztoc.SizePlanner{Size: o.spanSize}
	} else {
		sp = newStreamPlanner(o)
		planner, recorded = sp, ztoc.DefaultSpanSize
	}
	diff := sha256.New()
	fr := &firstErrReader{r: &ctxReader{ctx: ctx, r: src}}
	cr := &countReader{r: fr}
	blob := &hashWriter{w: dst, h: sha256.New()}
	z, err := ztoc.Compress(blob, io.TeeReader(cr, diff), ztoc.WithSpanPlanner(planner), ztoc.WithSpanSize(recorded),
		ztoc.WithCompressionLevel(o.level), ztoc.WithJobs(o.jobs), ztoc.WithBuildToolIdentifier(o.buildTool))
	if err != nil {
		// A read that failed is the cause, not what the tar reader
		// made of the bytes before it ("corrupt tar at offset N").
		if fr.err != nil {
			return nil, fmt.Errorf("build layer: read the tar at offset %d: %w", cr.n, fr.err)
		}
		return nil, fmt.Errorf("build layer: %w", err)
	}
	res := &LayerResult{Ztoc: z, Digest: digest.NewDigest(digest.SHA256, blob.h), Size: blob.n,
		DiffID: digest.NewDigest(digest.SHA256, diff), UncompressedSize: cr.n}
	if sp != nil {
		res.Spans = sp.Choice()
	} else {
		res.Spans = SpanChoice{Size: o.spanSize, StartupKnown: o.files != nil}
	}
	res.Spans.Spans = int(z.MaxSpanID) + 1
	if res.ZtocBlob, err = ztoc.Marshal(z); err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	if o.files != nil {
		ix, err := ztoc.NewIndex(z)
		if err != nil {
			return nil, fmt.Errorf("build layer: %w", err)
		}
		res.Prefetch, res.Missing = prefetchFiles(ix, o.files)
		res.Missing = withoutRuntime(o.files, res.Missing)
	}
	return res, nil
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
