package layer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/snapshotter/fs"
	"github.com/socikit/socikit/ztoc"
)

// contentSource is the fs.ContentSource of a mounted layer: content files
// in the span cache, keyed by the data's offset in the uncompressed tar
// stream (a property of the layer blob, whatever zTOC indexes it) and made
// from cached spans only. A span is cached only after its compressed bytes
// matched the zTOC's digest, so a content file holds verified bytes.
type contentSource struct {
	ix *ztoc.Index
	cl *cache.Layer

	mu     sync.Mutex
	making map[int64]*making // content files being made, by key
}

type making struct {
	done chan struct{}
	err  error
}

var _ fs.ContentSource = (*contentSource)(nil)

func newContentSource(ix *ztoc.Index, cl *cache.Layer) *contentSource {
	return &contentSource{ix: ix, cl: cl, making: make(map[int64]*making)}
}

// Local implements fs.ContentSource: every span of the range is cached
// with its full size.
func (s *contentSource) Local(off, n int64) bool {
	if n <= 0 {
		return true
	}
	if off < 0 || off+n > s.ix.Ztoc().UncompressedArchiveSize {
		return false
	}
	spans := s.ix.Spans()
	first, last := s.ix.SpansOf(off, n)
	for id := first; id <= last; id++ {
		sp := spans[id]
		size, ok := s.cl.Has(id)
		if !ok || size != sp.UncompressedEnd-sp.UncompressedStart {
			return false
		}
	}
	return true
}

// extents returns the pieces of cached spans that make [off, off+n).
func (s *contentSource) extents(off, n int64) []cache.Extent {
	spans := s.ix.Spans()
	first, last := s.ix.SpansOf(off, n)
	end := off + n
	parts := make([]cache.Extent, 0, last-first+1)
	for id := first; id <= last; id++ {
		sp := spans[id]
		lo, hi := max(off, sp.UncompressedStart), min(end, sp.UncompressedEnd)
		if lo < hi {
			parts = append(parts, cache.Extent{Span: id, Off: lo - sp.UncompressedStart, Len: hi - lo})
		}
	}
	return parts
}

// Content implements fs.ContentSource. The first caller for a key copies
// the cached spans' bytes into the content file; concurrent callers wait
// for it.
func (s *contentSource) Content(ctx context.Context, off, n int64) (*os.File, error) {
	if !s.cl.FileFits(n) {
		// Too large a share of the cache's size limit: read through
		// the spans.
		return nil, nil
	}
	for try := 0; ; try++ {
		f, err := s.cl.OpenFile(off, n)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return f, err
		}
		if try == 3 {
			// Evicted as soon as made (the cache is under pressure):
			// read through the spans.
			return nil, nil
		}
		if !s.Local(off, n) {
			return nil, nil
		}
		s.mu.Lock()
		m := s.making[off]
		if m != nil {
			s.mu.Unlock()
			select {
			case <-m.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if m.err != nil && !errors.Is(m.err, os.ErrNotExist) {
				return nil, m.err
			}
			continue
		}
		m = &making{done: make(chan struct{})}
		s.making[off] = m
		s.mu.Unlock()

		m.err = s.cl.PutFile(off, s.extents(off, n))
		if m.err != nil {
			m.err = fmt.Errorf("make content file for tar bytes %d+%d: %w", off, n, m.err)
		}
		s.mu.Lock()
		delete(s.making, off)
		s.mu.Unlock()
		close(m.done)
		// A span evicted meanwhile (os.ErrNotExist): the next turn finds
		// the bytes not local.
		if m.err != nil && !errors.Is(m.err, os.ErrNotExist) {
			return nil, m.err
		}
	}
}
