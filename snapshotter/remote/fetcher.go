package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/snapshotter/cache"
	"github.com/socikit/socikit/ztoc"
)

// SpanID identifies a span of a layer.
type SpanID = ztoc.SpanID

// ErrClosed is returned by a Fetcher after Close.
var ErrClosed = errors.New("fetcher closed")

// Fetcher makes a layer's spans available in the cache: it fetches missing
// spans' compressed bytes from the blob (adjacent missing spans coalesced
// into one range, concurrent fetches bounded, one fetch per span however
// many readers wait for it), verifies each against its digest, decompresses
// it from its checkpoint and stores the result. It is safe for concurrent
// use.
type Fetcher struct {
	ix    *ztoc.Index
	blob  Blob
	cache *cache.Layer
	o     options

	life  context.Context // fetches run under it, not under a reader's ctx
	close context.CancelFunc
	wg    sync.WaitGroup
	sem   chan struct{}

	mu       sync.Mutex
	inflight map[SpanID]*call

	foreground atomic.Int32 // on-demand reads waiting: background fetch yields

	raMu    sync.Mutex
	raNext  SpanID              // the span after the last read's: a read starting there is sequential
	raWin   int                 // spans fetched ahead of the next sequential read (0: not sequential)
	raRun   int                 // spans the current sequential stream has moved into
	raMarks map[SpanID]struct{} // spans read ahead and not read yet
	// prefetched are the spans named by Prefetch: a read moving into one
	// while it is still on its way is not a stream to read ahead of (the
	// start-up reading its prefetched files in order).
	prefetched map[SpanID]struct{}
}

// Read-ahead: reads that continue where the previous one ended make the
// fetcher fetch the spans after them before they are asked for, as the
// kernel's read-ahead does for block devices. Once a stream has moved into
// readAheadAfter spans in a row, the window starts at
// readAheadFirst spans and doubles with each read that moves on to the
// next span, up to WithReadAhead compressed bytes: reading a whole layer (a
// checksum of every file, a copy) then costs one round trip per window
// instead of one per span, while a start-up's scattered reads fetch no
// more than they ask for.
const (
	readAheadFirst = 2
	readAheadAfter = 3
)

type call struct {
	done chan struct{}
	err  error
}

// NewFetcher returns a Fetcher of the spans of ix, read from blob, stored
// in c. ctx gives the fetches their values (logger); its cancellation does
// not stop them (Close does).
func NewFetcher(ctx context.Context, ix *ztoc.Index, blob Blob, c *cache.Layer, opts ...Option) (*Fetcher, error) {
	o, err := makeOptions(opts)
	if err != nil {
		return nil, err
	}
	if blob.Size() != ix.Ztoc().CompressedArchiveSize {
		return nil, fmt.Errorf("blob is %d bytes, ztoc says %d", blob.Size(), ix.Ztoc().CompressedArchiveSize)
	}
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &Fetcher{ix: ix, blob: blob, cache: c, o: o, life: life, close: cancel,
		sem: make(chan struct{}, o.fetchJobs), inflight: make(map[SpanID]*call), raMarks: make(map[SpanID]struct{}),
		prefetched: make(map[SpanID]struct{})}, nil
}

// Index returns the fetcher's span index.
func (f *Fetcher) Index() *ztoc.Index { return f.ix }

// Close stops fetches in flight and waits for them. Waiting readers get
// errors.
func (f *Fetcher) Close() error {
	f.close()
	f.wg.Wait()
	return nil
}

// Progress returns how many of the layer's spans are cached, and the total.
func (f *Fetcher) Progress() (cached, total int) {
	for id := range f.ix.Spans() {
		if f.cached(SpanID(id)) {
			cached++
		}
	}
	return cached, len(f.ix.Spans())
}

func spanLen(s ztoc.Span) int64 { return s.UncompressedEnd - s.UncompressedStart }

func (f *Fetcher) cached(id SpanID) bool {
	size, ok := f.cache.Has(id)
	return ok && size == spanLen(f.ix.Spans()[id])
}

// Fetch makes spans first..last cached, fetching the missing ones as
// on-demand reads do.
func (f *Fetcher) Fetch(ctx context.Context, first, last SpanID) error {
	if first < 0 || last < first || int(last) >= len(f.ix.Spans()) {
		return fmt.Errorf("span range %d-%d out of 0-%d", first, last, len(f.ix.Spans())-1)
	}
	ids := make([]SpanID, 0, last-first+1)
	for id := first; id <= last; id++ {
		ids = append(ids, id)
	}
	f.foreground.Add(1)
	defer f.foreground.Add(-1)
	return f.ensure(ctx, OnDemand, ids)
}

// Prefetch makes the given spans cached and waits for them (bound the wait
// with ctx: fetches go on after it ends). Adjacent spans are coalesced;
// the fetches run one after the other in layer order, each span served as
// soon as its bytes are in, and reads moving through the spans while they
// arrive read nothing ahead of them.
func (f *Fetcher) Prefetch(ctx context.Context, spans []SpanID) error {
	for _, id := range spans {
		if id < 0 || int(id) >= len(f.ix.Spans()) {
			return fmt.Errorf("prefetch span %d out of 0-%d", id, len(f.ix.Spans())-1)
		}
	}
	f.raMu.Lock()
	for _, id := range spans {
		f.prefetched[id] = struct{}{}
	}
	f.raMu.Unlock()
	return f.ensure(ctx, Prefetch, spans)
}

// ReadAt reads uncompressed bytes [off, off+len(p)) of the layer's tar
// stream, fetching what is missing. It returns io.EOF if the stream ends
// first.
func (f *Fetcher) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	size := f.ix.Ztoc().UncompressedArchiveSize
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if rest := size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	if len(p) == 0 {
		return 0, eof
	}
	first, last := f.ix.SpansOf(off, int64(len(p)))
	f.readAhead(first, last)
	// The spans are pinned from before the fetch to the end of the read:
	// the cache's size limit evicts spans of mounted layers too, never
	// these. A span file found damaged on disk (cache.ErrCorrupt) is
	// dropped by the cache: the read fetches it again, once.
	unpin := f.cache.Pin(first, last)
	defer unpin()
	for try := 0; ; try++ {
		n, err := f.readCached(ctx, p, off, first, last)
		if err != nil && try == 0 && (errors.Is(err, cache.ErrCorrupt) || errors.Is(err, os.ErrNotExist)) {
			log.G(ctx).WithError(err).Warn("cached span damaged or gone, fetching it again")
			continue
		}
		if err != nil {
			return n, err
		}
		return n, eof
	}
}

// readCached makes spans first..last cached and copies bytes [off,
// off+len(p)) from them.
func (f *Fetcher) readCached(ctx context.Context, p []byte, off int64, first, last SpanID) (int, error) {
	if err := f.Fetch(ctx, first, last); err != nil {
		return 0, err
	}
	end := off + int64(len(p))
	n := 0
	for id := first; id <= last; id++ {
		s := f.ix.Spans()[id]
		lo, hi := max(off, s.UncompressedStart), min(end, s.UncompressedEnd)
		if lo >= hi {
			continue
		}
		m, err := f.cache.ReadAt(id, p[lo-off:hi-off], lo-s.UncompressedStart)
		n += m
		if m != int(hi-lo) {
			if err == nil || errors.Is(err, io.EOF) {
				err = fmt.Errorf("cached span %d is short", id)
			}
			return n, err
		}
	}
	return n, nil
}

// readAhead notes a read of spans first..last and, when it continues the
// previous read into a span that is missing or was itself fetched ahead,
// starts fetching the window of spans after last without waiting for
// them. Reading through spans cached for another reason (prefetched
// start-up files, say) reads nothing ahead.
func (f *Fetcher) readAhead(first, last SpanID) {
	if f.o.readAhead == 0 {
		return
	}
	spans := f.ix.Spans()
	f.raMu.Lock()
	if first == f.raNext-1 && last == first {
		// Still in the span the previous read ended in.
		f.raMu.Unlock()
		return
	}
	sequential := first == f.raNext || first == f.raNext-1
	f.raNext = last + 1
	trigger := false
	for id := first; id <= last; id++ {
		if _, ok := f.raMarks[id]; ok {
			delete(f.raMarks, id)
			trigger = true
		} else if _, pre := f.prefetched[id]; sequential && !trigger && !pre && !f.cached(id) {
			// Only a sequential read needs to know; the cache lookup
			// takes the cache's lock, on every read.
			trigger = true
		}
	}
	if !sequential {
		f.raWin, f.raRun = 0, 0
	}
	if !sequential || !trigger {
		f.raMu.Unlock()
		return
	}
	// A stream reads ahead from its readAheadAfter-th span on: reading
	// one file across a span boundary or two is not yet a stream.
	if f.raRun++; f.raRun < readAheadAfter {
		f.raMu.Unlock()
		return
	}
	f.raWin = max(readAheadFirst, 2*f.raWin)
	// The window's decompressed spans stay within a quarter of the
	// cache's size limit: a window the cache cannot hold would evict
	// its own spans before they are read.
	room := int64(math.MaxInt64)
	if n := f.cache.MaxSize(); n > 0 {
		room = n / 4
	}
	end := last
	for end+1 < SpanID(len(spans)) && int(end-last) < f.raWin &&
		spans[end+1].CompressedEnd-spans[last+1].CompressedStart <= f.o.readAhead &&
		spans[end+1].UncompressedEnd-spans[last+1].UncompressedStart <= room {
		end++
	}
	f.raWin = int(end - last)
	ids := make([]SpanID, 0, end-last)
	for id := last + 1; id <= end; id++ {
		ids = append(ids, id)
		f.raMarks[id] = struct{}{}
	}
	f.raMu.Unlock()
	if len(ids) > 0 {
		f.startMissing(ReadAhead, ids)
	}
}

// startMissing starts fetches for those of ids neither cached nor in
// flight, and does not wait for them.
func (f *Fetcher) startMissing(kind FetchKind, ids []SpanID) {
	if f.life.Err() != nil {
		return
	}
	var miss []SpanID
	f.mu.Lock()
	for _, id := range ids {
		if f.inflight[id] != nil || f.cached(id) {
			continue
		}
		f.inflight[id] = &call{done: make(chan struct{})}
		miss = append(miss, id)
	}
	f.mu.Unlock()
	if len(miss) > 0 {
		f.start(kind, miss)
	}
}

// ensure makes ids cached: it starts fetches for the missing spans no one
// fetches yet and waits for those and the ones in flight.
func (f *Fetcher) ensure(ctx context.Context, kind FetchKind, ids []SpanID) error {
	if f.life.Err() != nil {
		return ErrClosed
	}
	var wait []*call
	var miss []SpanID
	hits := 0
	f.mu.Lock()
	for _, id := range ids {
		if c := f.inflight[id]; c != nil {
			wait = append(wait, c)
			continue
		}
		if f.cached(id) {
			hits++
			continue
		}
		c := &call{done: make(chan struct{})}
		f.inflight[id] = c
		wait = append(wait, c)
		miss = append(miss, id)
	}
	f.mu.Unlock()
	if hits > 0 {
		f.o.metrics.CacheHit(hits)
	}
	if len(wait) > 0 {
		f.o.metrics.CacheMiss(len(wait))
	}
	if len(miss) > 0 {
		f.start(kind, miss)
	}
	var errs []error
	for _, c := range wait {
		select {
		case <-c.done:
			if c.err != nil {
				errs = append(errs, c.err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// start fetches the missing spans miss (sorted, registered in inflight):
// runs of adjacent spans become one range each, and the runs of one call
// go to the blob together (one multi-range request where the server
// allows).
func (f *Fetcher) start(kind FetchKind, miss []SpanID) {
	spans := f.ix.Spans()
	var runs [][]SpanID
	for i, id := range miss {
		if i > 0 {
			run := runs[len(runs)-1]
			prev := run[len(run)-1]
			if id == prev+1 && spans[id].CompressedEnd-spans[run[0]].CompressedStart <= f.o.maxFetchSize {
				runs[len(runs)-1] = append(run, id)
				continue
			}
		}
		runs = append(runs, []SpanID{id})
	}
	const runsPerBatch = httprange.DefaultMultiRange
	var batches [][][]SpanID
	for len(runs) > 0 {
		// A batch holds at most runsPerBatch runs and, past its first
		// run, maxFetchSize compressed bytes: the bytes a fetch holds
		// in memory are bounded (fetchJobs × maxFetchSize per Fetcher).
		n, bytes := 0, int64(0)
		for n < min(len(runs), runsPerBatch) {
			run := runs[n]
			b := spans[run[len(run)-1]].CompressedEnd - spans[run[0]].CompressedStart
			if n > 0 && bytes+b > f.o.maxFetchSize {
				break
			}
			n, bytes = n+1, bytes+b
		}
		batches = append(batches, runs[:n])
		runs = runs[n:]
	}
	if kind == Prefetch {
		// One batch after the other, in layer order: a start-up reads
		// its prefetched spans in about the order the layer holds them
		// (reordered layers put them in first-access order), each span
		// is served as soon as its bytes are in (batch.read), and
		// batches sharing the link would delay the first spans for the
		// last ones. The next batch starts once the bytes of the one
		// before are in, not once they are stored: the link does not
		// wait for the decompression of the last spans.
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for i, batch := range batches {
				in := make(chan bool, 1) // true: its bytes are in (or failed); false: closed before it ran
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					var once sync.Once
					if !f.runBatch(kind, batch, func() { once.Do(func() { in <- true }) }) {
						in <- false
					}
				}()
				if !<-in {
					for _, rest := range batches[i+1:] {
						f.finish(rest, nil, ErrClosed)
					}
					return
				}
			}
		}()
		return
	}
	for _, batch := range batches {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.runBatch(kind, batch, func() {})
		}()
	}
}

// runBatch fetches batch once one of the fetcher's fetchJobs slots is
// free, calling in once its bytes are read or the read failed; false if
// the fetcher was closed first (the batch's waiters are told; in is not
// called).
func (f *Fetcher) runBatch(kind FetchKind, batch [][]SpanID, in func()) bool {
	select {
	case f.sem <- struct{}{}:
	case <-f.life.Done():
		f.finish(batch, nil, ErrClosed)
		return false
	}
	defer func() { <-f.sem }()
	f.fetchBatch(kind, batch, in)
	return true
}

// fetchBatch fetches, verifies and stores the spans of runs, calling in
// (exactly once, on every path) once the bytes are read or could not be.
func (f *Fetcher) fetchBatch(kind FetchKind, runs [][]SpanID, in func()) {
	spans := f.ix.Spans()
	ranges := make([]Range, len(runs))
	var bytes int64
	nspans := 0
	for _, run := range runs {
		bytes += spans[run[len(run)-1]].CompressedEnd - spans[run[0]].CompressedStart
		nspans += len(run)
	}
	// The budget shared with the daemon's other layers (WithBudget) is
	// taken before the buffers are made, and given back once the spans
	// are stored.
	release, err := f.o.budget.acquire(f.life, bytes)
	if err != nil {
		in()
		f.finish(runs, nil, errors.Join(err, ErrClosed))
		return
	}
	defer release()
	for i, run := range runs {
		start, end := spans[run[0]].CompressedStart, spans[run[len(run)-1]].CompressedEnd
		ranges[i] = Range{Off: start, Buf: make([]byte, end-start)}
	}
	last := f.o.verifyRetries == 0
	b := f.newBatch(runs, ranges, last)
	t := time.Now()
	lg := log.G(f.life).WithField("kind", kind).WithField("first", runs[0][0]).WithField("spans", nspans).WithField("bytes", bytes)
	lg.Debug("fetching spans")
	err = b.read(in)
	f.o.metrics.Fetched(kind, nspans, bytes, time.Since(t), err)
	lg.WithError(err).WithField("took", time.Since(t).Round(time.Millisecond)).Debug("spans fetched and stored")
	if err != nil {
		err = fmt.Errorf("fetch %d spans (%d bytes): %w", nspans, bytes, err)
		if f.life.Err() != nil {
			err = errors.Join(err, ErrClosed)
		}
		b.finishRest(err)
		return
	}
	b.storeRest()
	// Spans whose bytes did not match their digest are fetched again, one
	// range each: a registry, a proxy or the network may have damaged one
	// response. Bytes that never match give an error, never data.
	errs := b.errs
	for try := 1; try <= f.o.verifyRetries; try++ {
		var bad []SpanID
		for id, err := range errs {
			if errors.Is(err, ztoc.ErrDigestMismatch) {
				bad = append(bad, id)
			}
		}
		if len(bad) == 0 {
			break
		}
		slices.Sort(bad)
		ranges := make([]Range, len(bad))
		var n int64
		for i, id := range bad {
			s := spans[id]
			ranges[i] = Range{Off: s.CompressedStart, Buf: make([]byte, s.CompressedEnd-s.CompressedStart)}
			n += s.CompressedEnd - s.CompressedStart
			retried(f.o.metrics, RetryVerify)
		}
		t := time.Now()
		err := f.blob.ReadRanges(f.life, ranges)
		f.o.metrics.Fetched(kind, len(bad), n, time.Since(t), err)
		if err != nil {
			for _, id := range bad {
				errs[id] = fmt.Errorf("fetch span %d again after a digest mismatch: %w", id, err)
			}
			break
		}
		for i, id := range bad {
			delete(errs, id)
			f.store([]SpanID{id}, ranges[i].Buf, errs, try == f.o.verifyRetries)
		}
	}
	b.finishRest(nil)
}

// batch is one fetchBatch: its spans' calls, and what is stored. Over a
// NotifyBlob each span is verified, stored and its waiters released as
// soon as its bytes are in, while the rest of the range still arrives: a
// start-up reading a prefetched layer in order starts on the first spans
// of a long range instead of waiting for its end (and for the whole
// range's decompression).
type batch struct {
	f      *Fetcher
	ranges []Range // one per run, the buffers the bytes arrive in
	last   bool    // store's: no fetch again after a digest mismatch

	// Owned by read's storing goroutine until read returns, then by
	// fetchBatch.
	calls    map[SpanID]*call
	stored   map[SpanID]bool
	finished map[SpanID]bool
	errs     map[SpanID]error

	mu   sync.Mutex       // guards left (notify runs on several goroutines)
	left map[SpanID]int64 // compressed bytes of a span not in yet
	runs [][]SpanID
}

func (f *Fetcher) newBatch(runs [][]SpanID, ranges []Range, last bool) *batch {
	b := &batch{f: f, ranges: ranges, last: last, runs: runs, calls: make(map[SpanID]*call),
		stored: make(map[SpanID]bool), finished: make(map[SpanID]bool), errs: make(map[SpanID]error),
		left: make(map[SpanID]int64)}
	spans := f.ix.Spans()
	f.mu.Lock()
	for _, run := range runs {
		for _, id := range run {
			b.calls[id] = f.inflight[id]
			b.left[id] = spans[id].CompressedEnd - spans[id].CompressedStart
		}
	}
	f.mu.Unlock()
	return b
}

// span returns span id's compressed bytes in run i's buffer.
func (b *batch) span(i int, id SpanID) []byte {
	s := b.f.ix.Spans()[id]
	base := b.ranges[i].Off
	return b.ranges[i].Buf[s.CompressedStart-base : s.CompressedEnd-base]
}

type arrived struct {
	id  SpanID
	buf []byte
}

// read reads the batch's ranges. Over a NotifyBlob, a goroutine stores
// each span whose bytes are all in and releases its waiters, while the
// read goes on.
func (b *batch) read(in func()) error {
	nb, ok := b.f.blob.(NotifyBlob)
	if !ok {
		err := b.f.blob.ReadRanges(b.f.life, b.ranges)
		in()
		return err
	}
	ready := make(chan arrived, len(b.left))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for a := range ready {
			b.storeOne(a.id, a.buf)
		}
	}()
	err := nb.ReadRangesNotify(b.f.life, b.ranges, func(off, n int64) { b.notify(off, n, ready) })
	in()
	close(ready)
	<-done
	return err
}

// notify counts blob bytes [off, off+n) in and queues the spans now
// complete.
func (b *batch) notify(off, n int64, ready chan<- arrived) {
	spans := b.f.ix.Spans()
	end := off + n
	b.mu.Lock()
	defer b.mu.Unlock()
	// The run holding off: ranges are sorted and disjoint.
	i, _ := slices.BinarySearchFunc(b.ranges, off, func(r Range, off int64) int {
		switch {
		case r.Off+int64(len(r.Buf)) <= off:
			return -1
		case r.Off > off:
			return 1
		}
		return 0
	})
	for ; i < len(b.runs) && b.ranges[i].Off < end; i++ {
		for _, id := range b.runs[i] {
			s := spans[id]
			lo, hi := max(off, s.CompressedStart), min(end, s.CompressedEnd)
			if lo >= hi || b.left[id] <= 0 {
				continue
			}
			b.left[id] -= hi - lo
			if b.left[id] <= 0 {
				ready <- arrived{id: id, buf: b.span(i, id)}
			}
		}
	}
}

// storeOne stores span id from buf and, if that worked, releases its
// waiters at once.
func (b *batch) storeOne(id SpanID, buf []byte) {
	b.f.store([]SpanID{id}, buf, b.errs, b.last)
	b.stored[id] = true
	if b.errs[id] == nil {
		b.finishOne(id, nil)
	}
}

// storeRest stores the spans read did not (a blob that does not notify).
func (b *batch) storeRest() {
	for i, run := range b.runs {
		for _, id := range run {
			if !b.stored[id] {
				b.storeOne(id, b.span(i, id))
			}
		}
	}
}

// finishRest releases the waiters of every span not released yet, with
// err, or else the span's own error.
func (b *batch) finishRest(err error) {
	for _, run := range b.runs {
		for _, id := range run {
			if b.finished[id] {
				continue
			}
			e := err
			if e == nil {
				e = b.errs[id]
			}
			b.finishOne(id, e)
		}
	}
}

func (b *batch) finishOne(id SpanID, err error) {
	b.finished[id] = true
	c := b.calls[id]
	b.f.mu.Lock()
	if b.f.inflight[id] == c {
		delete(b.f.inflight, id)
	}
	c.err = err
	b.f.mu.Unlock()
	close(c.done)
}

// store decompresses and caches a run, recording per-span errors. When the
// run fails as a whole, its spans are tried one by one so that one bad
// span does not fail its neighbours. last tells that a span failing
// verification will not be fetched again.
func (f *Fetcher) store(run []SpanID, compressed []byte, errs map[SpanID]error, last bool) {
	spans := f.ix.Spans()
	first, lastID := run[0], run[len(run)-1]
	base := spans[first].CompressedStart
	if first != lastID {
		// Span by span: the memory a fetch holds is its compressed
		// bytes and one span decompressed, not the whole run
		// decompressed; one bad span does not fail its neighbours.
		for _, id := range run {
			s := spans[id]
			f.store([]SpanID{id}, compressed[s.CompressedStart-base:s.CompressedEnd-base], errs, last)
		}
		return
	}
	data, err := f.ix.Decompress(first, lastID, compressed)
	if err != nil {
		if errors.Is(err, ztoc.ErrDigestMismatch) {
			f.o.metrics.VerifyFailed(first)
			if last {
				log.G(f.life).WithError(err).WithField("span", first).Error("span failed verification")
			} else {
				log.G(f.life).WithError(err).WithField("span", first).Warn("span failed verification, fetching it again")
			}
		}
		errs[first] = fmt.Errorf("span %d: %w", first, err)
		return
	}
	u0 := spans[first].UncompressedStart
	for _, id := range run {
		s := spans[id]
		if err := f.cache.Put(id, data[s.UncompressedStart-u0:s.UncompressedEnd-u0]); err != nil {
			errs[id] = err
		}
	}
}

func (f *Fetcher) finish(runs [][]SpanID, errs map[SpanID]error, all error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, run := range runs {
		for _, id := range run {
			c := f.inflight[id]
			delete(f.inflight, id)
			if all != nil {
				c.err = all
			} else {
				c.err = errs[id]
			}
			close(c.done)
		}
	}
}

// BackgroundOptions tunes Background.
type BackgroundOptions struct {
	// Rate caps the compressed bytes per second fetched; 0 means no cap.
	Rate int64
	// Delay is waited before the first fetch.
	Delay time.Duration
	// Idle is how long on-demand reads must have stopped before a
	// background fetch starts; 0 means 20ms.
	Idle time.Duration
}

// Background fetches every span not cached yet, in order, one at a time,
// at most opts.Rate bytes per second, pausing while on-demand reads wait.
// It returns nil once the whole layer is cached, or ctx's error. The
// caller runs it in a goroutine it owns. A span that fails is retried
// after a backoff, up to three times, then skipped.
func (f *Fetcher) Background(ctx context.Context, opts BackgroundOptions) error {
	idle := opts.Idle
	if idle <= 0 {
		idle = 20 * time.Millisecond
	}
	sleep := func(d time.Duration) error {
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.life.Done():
			return ErrClosed
		case <-t.C:
			return nil
		}
	}
	if err := sleep(opts.Delay); err != nil {
		return err
	}
	var failed []error
	for id := range f.ix.Spans() {
		id := SpanID(id)
		for attempt := 0; ; attempt++ {
			for f.foreground.Load() > 0 {
				if err := sleep(idle); err != nil {
					return err
				}
			}
			if f.cached(id) {
				break
			}
			if !f.cache.Room(spanLen(f.ix.Spans()[id])) {
				// The rest of the layer does not fit: fetching it would
				// only evict spans containers read.
				log.G(ctx).WithField("span", id).Info("background fetch: span cache full, stopping")
				return errors.Join(failed...)
			}
			err := f.ensure(ctx, Background, []SpanID{id})
			if err == nil {
				if opts.Rate > 0 {
					s := f.ix.Spans()[id]
					d := time.Duration(float64(s.CompressedEnd-s.CompressedStart) / float64(opts.Rate) * float64(time.Second))
					if err := sleep(d); err != nil {
						return err
					}
				}
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if f.life.Err() != nil {
				return ErrClosed
			}
			if attempt >= 2 {
				log.G(ctx).WithError(err).WithField("span", id).Warn("background fetch: giving up on span")
				failed = append(failed, err)
				break
			}
			if err := sleep(time.Second << attempt); err != nil {
				return err
			}
		}
	}
	return errors.Join(failed...)
}
