package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// SpanID identifies a span of a layer (ztoc.SpanID).
type SpanID = int32

// ErrReleased is returned by the methods of a Layer after Release.
var ErrReleased = errors.New("cache layer released")

// maxOpenFiles caps the span files a Layer keeps open for reads. Reads of
// a mounted layer cluster on few spans; more than this are reopened.
const maxOpenFiles = 64

// tmpSuffix marks files being written; Open removes leftovers.
const tmpSuffix = ".tmp"

// Option configures Open.
type Option func(*options) error

type options struct {
	maxSize int64
	noSync  bool
	now     func() time.Time
}

// WithMaxSize sets the soft size limit of the cache in bytes (span bytes
// on disk). Default 0: no limit.
func WithMaxSize(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("cache size limit %d is negative", n)
		}
		o.maxSize = n
		return nil
	}
}

// WithNoSync skips fsync before a span file is renamed into place: faster,
// but a power loss may leave a span file with the right size and wrong
// bytes. Default: sync.
func WithNoSync() Option {
	return func(o *options) error {
		o.noSync = true
		return nil
	}
}

// Cache is an on-disk span cache. It is safe for concurrent use.
type Cache struct {
	dir  string
	opts options

	mu     sync.Mutex
	size   int64
	layers map[digest.Digest]*layerState
}

type layerState struct {
	size  int64 // span and content file bytes
	refs  int
	used  time.Time
	live  *Layer // the acquired Layer, shared by all acquirers
	spans map[SpanID]int64
	files map[int64]int64 // content files by key
}

func newLayerState() *layerState {
	return &layerState{spans: make(map[SpanID]int64), files: make(map[int64]int64)}
}

// Open opens (creating it if needed) the cache in dir and scans what an
// earlier process left there.
func Open(dir string, opts ...Option) (*Cache, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cache dir %s: %w", dir, err)
	}
	c := &Cache{dir: dir, opts: o, layers: make(map[digest.Digest]*layerState)}
	algs, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read cache dir %s: %w", dir, err)
	}
	for _, a := range algs {
		if !a.IsDir() {
			continue
		}
		hexes, err := os.ReadDir(filepath.Join(dir, a.Name()))
		if err != nil {
			return nil, fmt.Errorf("read cache dir: %w", err)
		}
		for _, h := range hexes {
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), h.Name())
			if d.Validate() != nil || !h.IsDir() {
				continue
			}
			st, err := c.scan(d)
			if err != nil {
				return nil, err
			}
			c.layers[d] = st
			c.size += st.size
		}
	}
	return c, nil
}

func (c *Cache) layerDir(d digest.Digest) string {
	return filepath.Join(c.dir, string(d.Algorithm()), d.Encoded())
}

// scan lists the span files of layer d, removing unfinished ones.
func (c *Cache) scan(d digest.Digest) (*layerState, error) {
	dir := c.layerDir(d)
	st := newLayerState()
	if fi, err := os.Stat(dir); err == nil {
		st.used = fi.ModTime()
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return st, nil
		}
		return nil, fmt.Errorf("read cache dir %s: %w", dir, err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		if e.Name() == filesDir {
			// Content files last one process: they are not synced.
			if err := os.RemoveAll(filepath.Join(dir, filesDir)); err != nil {
				return nil, fmt.Errorf("remove content files: %w", err)
			}
			continue
		}
		id, err := strconv.ParseInt(e.Name(), 10, 32)
		if err != nil || id < 0 || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		st.spans[SpanID(id)] = fi.Size()
		st.size += fi.Size()
	}
	return st, nil
}

// Dir returns the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// Size returns the bytes of span and content files in the cache.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Acquire returns layer d's spans, marking it in use until Release. Every
// Acquire needs its own Release.
func (c *Cache) Acquire(d digest.Digest) (*Layer, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("cache layer %q: %w", d, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.layers[d]
	if st == nil {
		st = newLayerState()
		c.layers[d] = st
	}
	if err := os.MkdirAll(c.layerDir(d), 0o700); err != nil {
		return nil, fmt.Errorf("create cache dir for %s: %w", d, err)
	}
	st.refs++
	st.used = c.opts.now()
	// The directory's mtime orders eviction after a restart.
	os.Chtimes(c.layerDir(d), st.used, st.used)
	if st.live == nil {
		st.live = &Layer{c: c, d: d, dir: c.layerDir(d), st: st, fds: make(map[SpanID]*os.File)}
	}
	return &Layer{shared: st.live}, nil
}

// Remove deletes layer d's spans. It fails if the layer is in use.
func (c *Cache) Remove(d digest.Digest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.layers[d]
	if st == nil {
		return nil
	}
	if st.refs > 0 {
		return fmt.Errorf("remove cached layer %s: in use", d)
	}
	return c.removeLocked(d, st)
}

func (c *Cache) removeLocked(d digest.Digest, st *layerState) error {
	if err := os.RemoveAll(c.layerDir(d)); err != nil {
		return fmt.Errorf("remove cached layer %s: %w", d, err)
	}
	c.size -= st.size
	delete(c.layers, d)
	return nil
}

// Evict removes layers not in use, least recently used first, until the
// cache is within its size limit. It is called after each Put that grows
// the cache beyond the limit.
func (c *Cache) Evict() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evictLocked()
}

func (c *Cache) evictLocked() error {
	if c.opts.maxSize == 0 || c.size <= c.opts.maxSize {
		return nil
	}
	type cand struct {
		d    digest.Digest
		st   *layerState
		used time.Time
	}
	var cands []cand
	for d, st := range c.layers {
		if st.refs == 0 {
			cands = append(cands, cand{d, st, st.used})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].used.Before(cands[j].used) })
	var errs []error
	for _, k := range cands {
		if c.size <= c.opts.maxSize {
			break
		}
		errs = append(errs, c.removeLocked(k.d, k.st))
	}
	return errors.Join(errs...)
}

// Layer is the cached spans of one layer. Methods are safe for concurrent
// use until Release.
type Layer struct {
	shared *Layer // set on handles returned by Acquire

	c   *Cache
	d   digest.Digest
	dir string
	st  *layerState // guarded by c.mu

	released bool

	fdMu sync.RWMutex
	fds  map[SpanID]*os.File
}

func (l *Layer) impl() (*Layer, error) {
	if l.released {
		return nil, ErrReleased
	}
	return l.shared, nil
}

// Digest returns the layer digest.
func (l *Layer) Digest() digest.Digest { return l.shared.d }

// Has reports whether span id is cached and the size of its file.
func (l *Layer) Has(id SpanID) (size int64, ok bool) {
	s := l.shared
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	size, ok = s.st.spans[id]
	return size, ok
}

// Cached returns the number of cached spans and their bytes.
func (l *Layer) Cached() (spans int, bytes int64) {
	s := l.shared
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	for _, n := range s.st.spans {
		bytes += n
	}
	return len(s.st.spans), bytes
}

func (l *Layer) spanPath(id SpanID) string {
	return filepath.Join(l.dir, strconv.FormatInt(int64(id), 10))
}

// Put stores span id's decompressed bytes, replacing any earlier file.
func (l *Layer) Put(id SpanID, data []byte) error {
	s, err := l.impl()
	if err != nil {
		return err
	}
	if id < 0 {
		return fmt.Errorf("cache span %d: negative id", id)
	}
	f, err := os.CreateTemp(s.dir, strconv.FormatInt(int64(id), 10)+".*"+tmpSuffix)
	if err != nil {
		return fmt.Errorf("cache span %d of %s: %w", id, s.d, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && !s.c.opts.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.spanPath(id))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cache span %d of %s: %w", id, s.d, err)
	}
	// A replaced file may be open: drop the descriptor.
	s.fdMu.Lock()
	if f := s.fds[id]; f != nil {
		f.Close()
		delete(s.fds, id)
	}
	s.fdMu.Unlock()

	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := s.st.spans[id]
	if had {
		s.st.size -= old
		c.size -= old
	}
	n := int64(len(data))
	s.st.spans[id] = n
	s.st.size += n
	if _, known := c.layers[s.d]; !known {
		// Removed while in use cannot happen (Remove refuses), but keep
		// the accounting right if it did.
		c.layers[s.d] = s.st
	}
	c.size += n
	return c.evictLocked()
}

// ReadAt reads from offset off of span id's cached bytes. It returns
// io.EOF when fewer than len(p) bytes remain, and an error wrapping
// os.ErrNotExist when the span is not cached.
func (l *Layer) ReadAt(id SpanID, p []byte, off int64) (int, error) {
	s, err := l.impl()
	if err != nil {
		return 0, err
	}
	for {
		s.fdMu.RLock()
		f := s.fds[id]
		if f != nil {
			n, err := f.ReadAt(p, off)
			s.fdMu.RUnlock()
			if err != nil && !errors.Is(err, io.EOF) {
				err = fmt.Errorf("read cached span %d of %s: %w", id, s.d, err)
			}
			return n, err
		}
		s.fdMu.RUnlock()

		f, err := os.Open(s.spanPath(id))
		if err != nil {
			return 0, fmt.Errorf("read cached span %d of %s: %w", id, s.d, err)
		}
		s.fdMu.Lock()
		if s.fds[id] != nil {
			f.Close()
		} else {
			if len(s.fds) >= maxOpenFiles {
				for k, old := range s.fds {
					old.Close()
					delete(s.fds, k)
					break
				}
			}
			s.fds[id] = f
		}
		s.fdMu.Unlock()
	}
}

// Release ends this handle's use of the layer. The last Release closes
// the files and makes the layer evictable.
func (l *Layer) Release() error {
	if l.released {
		return nil
	}
	l.released = true
	s := l.shared
	c := s.c
	c.mu.Lock()
	s.st.refs--
	last := s.st.refs == 0
	if last {
		s.st.live = nil
		s.st.used = c.opts.now()
	}
	err := c.evictLocked()
	c.mu.Unlock()
	if last {
		s.fdMu.Lock()
		for k, f := range s.fds {
			f.Close()
			delete(s.fds, k)
		}
		s.fdMu.Unlock()
	}
	return err
}
