package exporter

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/ztoc"
)

// StreamPlanner is the auto-sizing ztoc.SpanPlanner for a tar that can be
// read only once (BuildKit's compression hook hands the compressor a
// stream). It decides greedily as entries arrive: it records each entry's
// header offset and size, and re-runs the ChooseSpanSize model on the
// entries seen so far whenever their count or their bytes have doubled
// since the last choice (so O(n log n) work in all); spans from then on
// use the new choice. With start-up files it cuts around runs of them
// when the current choice does. Until the first choice (16 entries or
// 1 MiB) it uses ztoc.DefaultSpanSize.
type StreamPlanner struct {
	o       *options
	l       Layer
	hot     []bool
	names   map[string]bool // start-up data names (clean), links not followed
	cur     SpanChoice
	nextN   int
	nextB   int64
	inHot   bool
	choices int
}

var _ ztoc.SpanPlanner = (*StreamPlanner)(nil)

// NewStreamPlanner returns a StreamPlanner. Only the WithStartupFiles,
// WithSpanCandidates, WithReadFraction and WithCompressionRatio options
// are used.
func NewStreamPlanner(opts ...Option) (*StreamPlanner, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	return newStreamPlanner(o), nil
}

func newStreamPlanner(o *options) *StreamPlanner {
	p := &StreamPlanner{o: o, cur: SpanChoice{Size: ztoc.DefaultSpanSize, StartupKnown: o.startup != nil}, nextN: 16, nextB: 1 << 20}
	if o.startup != nil {
		p.names = make(map[string]bool, len(o.startup))
		for _, s := range o.startup {
			p.names[cleanName(s)] = true
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
	p.l.Entries = append(p.l.Entries, en)
	p.l.Size = en.DataOffset + en.Size
	p.l.TrailerOffset = en.End()
	hot := en.Size > 0 && p.names[cleanName(e.Name)]
	p.hot = append(p.hot, hot)
	if len(p.l.Entries) >= p.nextN || p.l.Size >= p.nextB {
		p.choose()
		p.nextN, p.nextB = 2*len(p.l.Entries), 2*p.l.Size
	}
	cuts := ztoc.SizePlanner{Size: p.cur.Size}.Plan(spanStart, hdrStart, e)
	boundary := false
	switch {
	case hot && !p.inHot:
		boundary, p.inHot = true, true
	case !hot && p.inHot && en.Size > 0:
		boundary, p.inHot = true, false
	}
	if boundary && len(p.cur.Cuts) > 0 && hdrStart > spanStart && (len(cuts) == 0 || cuts[0] != hdrStart) {
		cuts = append([]int64{hdrStart}, cuts...)
	}
	return cuts
}

// choose re-runs the model on the entries seen so far. Names are matched
// without following links (the link targets may not have arrived).
func (p *StreamPlanner) choose() {
	o := *p.o
	if p.o.startup != nil {
		o.startup = nil
		for i, h := range p.hot {
			if h {
				o.startup = append(o.startup, p.l.Entries[i].Name)
			}
		}
		if o.startup == nil {
			o.startup = []string{}
		}
	}
	p.cur = chooseSpanSize(&p.l, &o)
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
	cr := &countReader{r: &ctxReader{ctx: ctx, r: src}}
	blob := &hashWriter{w: dst, h: sha256.New()}
	z, err := ztoc.Compress(blob, io.TeeReader(cr, diff), ztoc.WithSpanPlanner(planner), ztoc.WithSpanSize(recorded),
		ztoc.WithCompressionLevel(o.level), ztoc.WithJobs(o.jobs), ztoc.WithBuildToolIdentifier(o.buildTool))
	if err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	res := &LayerResult{Ztoc: z, Digest: digest.NewDigest(digest.SHA256, blob.h), Size: blob.n,
		DiffID: digest.NewDigest(digest.SHA256, diff), UncompressedSize: cr.n}
	if sp != nil {
		res.Spans = sp.Choice()
	} else {
		res.Spans = SpanChoice{Size: o.spanSize, StartupKnown: o.startup != nil}
	}
	res.Spans.Spans = int(z.MaxSpanID) + 1
	if res.ZtocBlob, err = ztoc.Marshal(z); err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	if o.startup != nil {
		res.Prefetch, res.Missing, _ = PrefetchSpans(z, o.startup)
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
