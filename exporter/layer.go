package exporter

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// LayerResult describes a layer written by BuildLayer.
type LayerResult struct {
	// Digest and Size are those of the gzip blob written.
	Digest digest.Digest
	Size   int64
	// DiffID is the sha256 of the uncompressed tar as written (after any
	// reordering), UncompressedSize its size.
	DiffID           digest.Digest
	UncompressedSize int64
	// Ztoc is the zTOC of the blob; ZtocBlob its serialized form.
	Ztoc     *ztoc.Ztoc
	ZtocBlob []byte
	// Spans is the span plan used (for a fixed size, Size with no cuts and
	// no cost estimate).
	Spans SpanChoice
	// Reordered lists the entries moved to the front (WithReorder);
	// Missing the start-up paths (list or profile) this layer does not
	// hold: not an error, another layer may hold them.
	Reordered, Missing []string
	// Prefetch is the merged span ranges holding the start-up files' hot
	// bytes: whole listed files, the profile's ranges (nil without
	// WithStartupFiles or WithProfile, or when none is in the layer).
	Prefetch []soci.PrefetchSpan
}

// BuildLayer gzips the tar stream src[0:size) into dst and returns its
// zTOC, digests and prefetch spans:
//
//  1. the tar headers are read (Scan: file data is skipped);
//  2. with WithReorder, the start-up files are moved to the front (Reorder),
//     streamed straight into the compressor; with a profile (WithProfile),
//     files read in part (PartialMinSize) follow the others;
//  3. the span plan is chosen from the headers (ChooseSpanSize), unless
//     WithSpanSize fixes it;
//  4. ztoc.Compress compresses the tar in one pass, spans in parallel,
//     while the diffID and the blob digest are computed on the way.
//
// The file data is read once. The same input and options give the same
// bytes: nothing is timestamped (reordered entries keep their headers).
func BuildLayer(ctx context.Context, dst io.Writer, src io.ReaderAt, size int64, opts ...Option) (*LayerResult, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.reorder && o.files == nil {
		return nil, errors.New("build layer: reordering needs start-up files (WithStartupFiles or WithProfile)")
	}
	l, err := Scan(src, size)
	if err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	res := &LayerResult{UncompressedSize: size}

	// Plan: reordering is decided from headers alone, so the new layout is
	// known before a byte is written.
	var order []int
	orig := l
	if o.reorder {
		var rr *ReorderResult
		order, rr, err = planReorder(l, resolveHot(l, o.files, o).order)
		if err != nil {
			return nil, fmt.Errorf("build layer: %w", err)
		}
		res.Reordered, res.Missing = rr.Moved, withoutRuntime(o.files, rr.Missing)
		l = relayout(l, order)
	}
	if o.spanSize > 0 {
		res.Spans = SpanChoice{Size: o.spanSize, StartupKnown: o.files != nil}
		res.Spans.Spans = len(simulate(l, &Planner{Size: o.spanSize}))
	} else {
		res.Spans = chooseSpanSize(l, o)
	}

	g, gctx := errgroup.WithContext(ctx)
	var in io.Reader = io.NewSectionReader(src, 0, size)
	if o.reorder {
		pr, pw := io.Pipe()
		g.Go(func() error {
			err := writeOrder(pw, src, orig, order)
			pw.CloseWithError(err)
			return err
		})
		in = pr
		defer pr.Close()
	}
	diff := sha256.New()
	blob := &hashWriter{w: dst, h: sha256.New()}
	var z *ztoc.Ztoc
	fr := &firstErrReader{r: &ctxReader{ctx: gctx, r: in}}
	g.Go(func() error {
		var err error
		z, err = ztoc.Compress(blob, io.TeeReader(fr, diff),
			ztoc.WithSpanPlanner(res.Spans.Planner()), ztoc.WithSpanSize(res.Spans.Size),
			ztoc.WithCompressionLevel(o.level), ztoc.WithJobs(o.jobs), ztoc.WithBuildToolIdentifier(o.buildTool))
		if err != nil {
			if c, ok := in.(io.Closer); ok {
				c.Close()
			}
			// A read that failed is the cause, not what the tar
			// reader made of the bytes before it.
			if fr.err != nil && !errors.Is(fr.err, context.Canceled) {
				return fmt.Errorf("read the tar: %w", fr.err)
			}
		}
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	res.Ztoc = z
	res.Digest = digest.NewDigest(digest.SHA256, blob.h)
	res.Size = blob.n
	res.DiffID = digest.NewDigest(digest.SHA256, diff)
	if res.ZtocBlob, err = ztoc.Marshal(z); err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	if o.files != nil {
		ix, err := ztoc.NewIndex(z)
		if err != nil {
			return nil, fmt.Errorf("build layer: %w", err)
		}
		var missing []string
		res.Prefetch, missing = prefetchFiles(ix, o.files)
		if !o.reorder {
			res.Missing = withoutRuntime(o.files, missing)
		}
	}
	return res, nil
}

// relayout returns the header list of l's entries written in order.
func relayout(l *Layer, order []int) *Layer {
	out := &Layer{Entries: make([]Entry, 0, len(order)), Size: l.Size}
	var pos int64
	for _, i := range order {
		e := l.Entries[i]
		n := e.End() - e.HeaderOffset
		e.DataOffset = pos + e.DataOffset - e.HeaderOffset
		e.HeaderOffset = pos
		pos += n
		out.Entries = append(out.Entries, e)
	}
	out.TrailerOffset = pos
	return out
}

// writeOrder copies l's entries from src to w in order, then the end of
// the archive.
func writeOrder(w io.Writer, src io.ReaderAt, l *Layer, order []int) error {
	buf := make([]byte, 256<<10)
	for _, i := range order {
		e := &l.Entries[i]
		if _, err := io.CopyBuffer(w, io.NewSectionReader(src, e.HeaderOffset, e.End()-e.HeaderOffset), buf); err != nil {
			return fmt.Errorf("reorder: copy %s: %w", e.Name, err)
		}
	}
	if _, err := io.CopyBuffer(w, io.NewSectionReader(src, l.TrailerOffset, l.Size-l.TrailerOffset), buf); err != nil {
		return fmt.Errorf("reorder: copy end of archive: %w", err)
	}
	return nil
}

// hashWriter hashes and counts what it writes through.
type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// firstErrReader remembers the first error other than io.EOF its reader
// returned: the cause, when what reads it reports the failure in its own
// terms.
type firstErrReader struct {
	r   io.Reader
	err error
}

func (r *firstErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && r.err == nil && !errors.Is(err, io.EOF) {
		r.err = err
	}
	return n, err
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
