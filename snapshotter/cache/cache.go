package cache

import (
	"bytes"
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// SpanID identifies a span of a layer (ztoc.SpanID).
type SpanID = int32

// ErrReleased is returned by the methods of a Layer after Release.
var ErrReleased = errors.New("cache layer released")

// ErrCorrupt is returned, wrapped, by ReadAt when a span file is not what
// Put wrote: truncated, grown, or with bytes that do not match its
// checksum. The span is dropped from the cache (Has reports it absent), so
// the caller fetches it again.
var ErrCorrupt = errors.New("cached span corrupt")

// A span file is the span's bytes followed by a trailer: the CRC-32C
// (Castagnoli) of the bytes and a magic number, little-endian. A file is
// checked against its trailer the first time this process opens it (a
// read of the whole file, cheap beside the fetch it saves); later reads
// check only that the file is still as long, so a file truncated or
// damaged on disk is detected, dropped and fetched again, never served.
// Files of the earlier format (no trailer) fail the check and are fetched
// again.
const (
	trailerSize  = SpanOverhead
	trailerMagic = 0x31636b73 // "skc1"
)

// SpanOverhead is the bytes a span file holds beyond the span's own (its
// trailer); Size counts them.
const SpanOverhead = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// trailer returns the trailer of data.
func trailer(data []byte) []byte {
	var t [trailerSize]byte
	binary.LittleEndian.PutUint32(t[:4], crc32.Checksum(data, castagnoli))
	binary.LittleEndian.PutUint32(t[4:], trailerMagic)
	return t[:]
}

// maxOpenFiles caps the span files a Layer keeps open for reads. Reads of
// a mounted layer cluster on few spans; more than this are reopened.
const maxOpenFiles = 64

// tmpSuffix marks files being written; Open removes leftovers.
const tmpSuffix = ".tmp"

// Option configures Open.
type Option func(*options) error

type options struct {
	maxSize    int64
	maxSizeSet bool
	noSync     bool
	now        func() time.Time
	// create makes a span file's temporary file (os.CreateTemp; tests
	// inject write errors through it).
	create func(dir, pattern string) (file, error)
}

// file is what writeSpan writes to.
type file interface {
	io.Writer
	Name() string
	Sync() error
	Close() error
}

func createTemp(dir, pattern string) (file, error) { return os.CreateTemp(dir, pattern) }

// WithMaxSize sets the size limit of the cache in bytes (span and
// content file bytes on disk); 0 means no limit. Default: the smaller of
// DefaultMaxSizeCap (10 GiB) and half the filesystem holding the cache.
func WithMaxSize(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("cache size limit %d is negative", n)
		}
		o.maxSize, o.maxSizeSet = n, true
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
	// lru holds every span and content file (*entry), most recently
	// used first.
	lru     list.List
	evicted Evicted
}

type layerState struct {
	dir   string
	size  int64 // span and content file bytes
	refs  int
	used  time.Time
	live  *Layer           // the acquired Layer, shared by all acquirers
	spans map[SpanID]int64 // span bytes (without the trailer) by id
	files map[int64]int64  // content files by key
	ents  map[entryKey]*entry
	// pins counts the readers of each span (Pin): a pinned span is not
	// evicted.
	pins map[SpanID]int
	// checked holds the spans whose file was checked against its
	// trailer by this process (or written by it).
	checked map[SpanID]bool
}

func newLayerState(dir string) *layerState {
	return &layerState{dir: dir, spans: make(map[SpanID]int64), files: make(map[int64]int64),
		ents: make(map[entryKey]*entry), pins: make(map[SpanID]int), checked: make(map[SpanID]bool)}
}

// entryKey names a span file (file false, key the span id) or a content
// file (file true) of a layer.
type entryKey struct {
	file bool
	key  int64
}

// entry is a span or content file in the cache's LRU list. A file put
// again gets a new entry, so a reader holding the old one can tell.
type entry struct {
	st   *layerState
	k    entryKey
	size int64 // bytes on disk
	elem *list.Element
}

func (e *entry) path() string {
	if e.k.file {
		return filepath.Join(e.st.dir, filesDir, strconv.FormatInt(e.k.key, 10))
	}
	return filepath.Join(e.st.dir, strconv.FormatInt(e.k.key, 10))
}

// addLocked records file k of st (size bytes on disk) as the most
// recently used, replacing any entry of that name.
func (c *Cache) addLocked(st *layerState, k entryKey, size int64) *entry {
	if old := st.ents[k]; old != nil {
		c.lru.Remove(old.elem)
	}
	e := &entry{st: st, k: k, size: size}
	e.elem = c.lru.PushFront(e)
	st.ents[k] = e
	return e
}

// touchLocked makes file k of st the most recently used and returns its
// entry, or nil.
func (c *Cache) touchLocked(st *layerState, k entryKey) *entry {
	e := st.ents[k]
	if e != nil {
		c.lru.MoveToFront(e.elem)
	}
	return e
}

// forgetLocked removes e from the accounting (not its file).
func (c *Cache) forgetLocked(e *entry) {
	st := e.st
	if st.ents[e.k] != e {
		return
	}
	c.lru.Remove(e.elem)
	delete(st.ents, e.k)
	if e.k.file {
		delete(st.files, e.k.key)
	} else {
		delete(st.spans, SpanID(e.k.key))
		delete(st.checked, SpanID(e.k.key))
	}
	st.size -= e.size
	c.size -= e.size
}

// Evicted counts what the size limit evicted from layers in use (spans
// and content files one by one; whole unused layers are not counted).
type Evicted struct {
	Spans, Files int64
	Bytes        int64
}

// Evicted returns what the size limit evicted from layers in use since
// Open.
func (c *Cache) Evicted() Evicted {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evicted
}

// DefaultMaxSizeCap caps the size limit of a cache opened without
// WithMaxSize: the limit is this or half the size of the filesystem
// holding the cache, whichever is smaller. A node's disk also holds
// images, containers' writable layers and logs; 10 GiB keeps the spans of
// some tens of large images (a lazy start reads a fraction of each).
const DefaultMaxSizeCap = 10 << 30

// defaultMaxSize returns the size limit of a cache in dir without
// WithMaxSize.
func defaultMaxSize(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil || st.Blocks == 0 {
		return DefaultMaxSizeCap
	}
	return min(DefaultMaxSizeCap, int64(st.Blocks)*st.Bsize/2)
}

// MaxSize returns the cache's size limit (0: none).
func (c *Cache) MaxSize() int64 { return c.opts.maxSize }

// MaxSize returns the size limit of the layer's cache (0: none).
func (l *Layer) MaxSize() int64 { return l.shared.c.opts.maxSize }

// Open opens (creating it if needed) the cache in dir and scans what an
// earlier process left there.
func Open(dir string, opts ...Option) (*Cache, error) {
	o := options{now: time.Now, create: createTemp}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cache dir %s: %w", dir, err)
	}
	if !o.maxSizeSet {
		o.maxSize = defaultMaxSize(dir)
	}
	c := &Cache{dir: dir, opts: o, layers: make(map[digest.Digest]*layerState)}
	var scanned []*layerState
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
			scanned = append(scanned, st)
		}
	}
	// The LRU list starts in the order the layers were last used.
	sort.SliceStable(scanned, func(i, j int) bool { return scanned[i].used.Before(scanned[j].used) })
	for _, st := range scanned {
		ids := make([]SpanID, 0, len(st.spans))
		for id := range st.spans {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids {
			c.addLocked(st, entryKey{key: int64(id)}, st.spans[id]+trailerSize)
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
	st := newLayerState(dir)
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
		if fi.Size() < trailerSize {
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		st.spans[SpanID(id)] = fi.Size() - trailerSize
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
		st = newLayerState(c.layerDir(d))
		c.layers[d] = st
	}
	if err := os.MkdirAll(c.layerDir(d), 0o700); err != nil {
		return nil, fmt.Errorf("create cache dir for %s: %w", d, err)
	}
	st.refs++
	st.used = c.opts.now()
	// The directory's mtime orders eviction after a restart. Best effort:
	// if it fails, that order is only less exact.
	_ = os.Chtimes(c.layerDir(d), st.used, st.used)
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
	for _, e := range st.ents {
		c.lru.Remove(e.elem)
	}
	c.size -= st.size
	delete(c.layers, d)
	return nil
}

// Evict brings the cache within its size limit (see Put). It is called
// after each Put, PutFile and Release.
func (c *Cache) Evict() error {
	c.mu.Lock()
	victims, err := c.evictLocked(nil)
	c.mu.Unlock()
	closeVictims(victims)
	return err
}

// evictLocked brings the cache within its size limit: it removes the
// layers nobody has acquired, least recently used first, then, if that
// is not enough, the span and content files of layers in use, least
// recently used first, except pinned spans and keep (the file just
// written). It returns the spans whose open files the caller closes once
// c.mu is unlocked (closeVictims).
func (c *Cache) evictLocked(keep *entry) ([]victim, error) {
	if c.opts.maxSize == 0 || c.size <= c.opts.maxSize {
		return nil, nil
	}
	var errs []error
	for _, k := range c.unusedLocked() {
		if c.size <= c.opts.maxSize {
			break
		}
		errs = append(errs, c.removeLocked(k.d, k.st))
	}
	var victims []victim
	for el := c.lru.Back(); el != nil && c.size > c.opts.maxSize; {
		e := el.Value.(*entry)
		el = el.Prev()
		if e == keep || e.st.refs == 0 || (!e.k.file && e.st.pins[SpanID(e.k.key)] > 0) {
			continue
		}
		// Readers that have the file open go on reading it: the
		// bytes stay until the last descriptor is closed.
		if err := os.Remove(e.path()); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("evict cached file: %w", err))
		}
		c.forgetLocked(e)
		c.evicted.Bytes += e.size
		if e.k.file {
			c.evicted.Files++
		} else {
			c.evicted.Spans++
			victims = append(victims, victim{e.st.live, SpanID(e.k.key)})
		}
	}
	return victims, errors.Join(errs...)
}

// victim is an evicted span whose file a Layer may hold open.
type victim struct {
	l  *Layer
	id SpanID
}

// closeVictims closes the files the layers hold open of evicted spans,
// after the reads in progress on them, so their blocks are freed.
func closeVictims(vs []victim) {
	for _, v := range vs {
		if v.l == nil {
			continue
		}
		v.l.fdMu.Lock()
		if f := v.l.fds[v.id]; f != nil {
			f.Close()
			delete(v.l.fds, v.id)
		}
		v.l.fdMu.Unlock()
	}
}

// Pin keeps spans first..last of the layer, cached now or later, from
// eviction until the returned function is called: a reader pins the
// spans it is about to fetch and read, so that no eviction comes between
// the fetch and the read. Pinned spans count in the cache's size; the
// limit is exceeded by at most the pinned spans (and the file a Put or
// PutFile just wrote).
func (l *Layer) Pin(first, last SpanID) (unpin func()) {
	s := l.shared
	c := s.c
	c.mu.Lock()
	for id := first; id <= last; id++ {
		s.st.pins[id]++
	}
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			for id := first; id <= last; id++ {
				if s.st.pins[id]--; s.st.pins[id] <= 0 {
					delete(s.st.pins, id)
				}
			}
			victims, _ := c.evictLocked(nil)
			c.mu.Unlock()
			closeVictims(victims)
		})
	}
}

// Room reports whether n more bytes fit in the cache without evicting
// files of layers in use (a background fetch stops when they do not).
func (l *Layer) Room(n int64) bool {
	c := l.shared.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.maxSize == 0 {
		return true
	}
	size := c.size
	for _, st := range c.layers {
		if st.refs == 0 {
			size -= st.size
		}
	}
	return size+n <= c.opts.maxSize
}

type candidate struct {
	d  digest.Digest
	st *layerState
}

// unusedLocked returns the layers nobody has acquired, least recently
// used first.
func (c *Cache) unusedLocked() []candidate {
	var cands []candidate
	for d, st := range c.layers {
		if st.refs == 0 {
			cands = append(cands, candidate{d, st})
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		if a, b := cands[i].st.used, cands[j].st.used; !a.Equal(b) {
			return a.Before(b)
		}
		return cands[i].d < cands[j].d
	})
	return cands
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
	return lookup(l, func(st *layerState) map[SpanID]int64 { return st.spans }, id)
}

// Cached returns the number of cached spans and their bytes.
func (l *Layer) Cached() (spans int, bytes int64) {
	return total(l, func(st *layerState) map[SpanID]int64 { return st.spans })
}

// lookup returns the size stored under k in one of l's size maps (spans
// or content files), under the cache's lock.
func lookup[K comparable](l *Layer, sizes func(*layerState) map[K]int64, k K) (int64, bool) {
	s := l.shared
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	n, ok := sizes(s.st)[k]
	return n, ok
}

// total returns the number of entries of one of l's size maps and their
// bytes, under the cache's lock.
func total[K comparable](l *Layer, sizes func(*layerState) map[K]int64) (count int, bytes int64) {
	s := l.shared
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	m := sizes(s.st)
	for _, n := range m {
		bytes += n
	}
	return len(m), bytes
}

func (l *Layer) spanPath(id SpanID) string {
	return filepath.Join(l.dir, strconv.FormatInt(int64(id), 10))
}

// Put stores span id's decompressed bytes, replacing any earlier file.
// When the disk is full (ENOSPC, EDQUOT), layers nobody has acquired are
// removed, least recently used first, and the write is tried once more;
// if it still fails, nothing is stored and the error wraps the errno. A
// failed Put leaves no partial file.
func (l *Layer) Put(id SpanID, data []byte) error {
	s, err := l.impl()
	if err != nil {
		return err
	}
	if id < 0 {
		return fmt.Errorf("cache span %d: negative id", id)
	}
	err = s.writeSpan(id, data)
	if isNoSpace(err) && s.c.freeSpace(int64(len(data))+trailerSize) {
		err = s.writeSpan(id, data)
	}
	if err != nil {
		return fmt.Errorf("cache span %d of %s: %w", id, s.d, err)
	}
	s.fdMu.Lock()
	if f := s.fds[id]; f != nil {
		f.Close()
		delete(s.fds, id)
	}
	s.fdMu.Unlock()

	c := s.c
	c.mu.Lock()
	k := entryKey{key: int64(id)}
	if old := s.st.ents[k]; old != nil {
		c.forgetLocked(old)
	}
	n := int64(len(data))
	s.st.spans[id] = n
	s.st.checked[id] = true
	n += trailerSize
	s.st.size += n
	if _, known := c.layers[s.d]; !known {
		c.layers[s.d] = s.st
	}
	c.size += n
	victims, err := c.evictLocked(c.addLocked(s.st, k, n))
	c.mu.Unlock()
	closeVictims(victims)
	return err
}

// writeSpan writes data and its trailer to a temporary file and renames it
// into place.
func (l *Layer) writeSpan(id SpanID, data []byte) error {
	f, err := l.c.opts.create(l.dir, strconv.FormatInt(int64(id), 10)+".*"+tmpSuffix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		_, err = f.Write(trailer(data))
	}
	if err == nil && !l.c.opts.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, l.spanPath(id))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// isNoSpace reports whether err says the filesystem or the quota is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// freeSpace removes layers nobody has acquired, least recently used first,
// until at least need bytes are freed, whatever the size limit. It
// reports whether it removed any.
func (c *Cache) freeSpace(need int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var freed int64
	for _, k := range c.unusedLocked() {
		if freed >= need {
			break
		}
		if c.removeLocked(k.d, k.st) == nil {
			freed += k.st.size
		}
	}
	return freed > 0
}

// ReadAt reads from offset off of span id's cached bytes. It returns
// io.EOF when fewer than len(p) bytes remain, an error wrapping
// os.ErrNotExist when the span is not cached, and one wrapping ErrCorrupt
// when its file is damaged (the span is then dropped: fetch it again).
func (l *Layer) ReadAt(id SpanID, p []byte, off int64) (int, error) {
	s, err := l.impl()
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("read cached span %d of %s at negative offset %d", id, s.d, off)
	}
	s.c.mu.Lock()
	e := s.c.touchLocked(s.st, entryKey{key: int64(id)})
	s.c.mu.Unlock()
	if e == nil {
		return 0, fmt.Errorf("read cached span %d of %s: %w", id, s.d, os.ErrNotExist)
	}
	size := e.size - trailerSize
	f, err := s.open(e)
	if err != nil {
		return 0, err
	}
	want := len(p)
	if off >= size {
		want = 0
	} else if rest := size - off; int64(want) > rest {
		want = int(rest)
	}
	n, err := f.ReadAt(p[:want], off)
	s.fdMu.RUnlock()
	if n < want {
		// The file is shorter than what Put wrote: truncated on disk.
		return n, s.corrupt(e, fmt.Errorf("read %d of %d bytes at %d: %v", n, want, off, err))
	}
	if want < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// open returns the open file of span entry e, checked against its
// trailer if this process has not checked it yet, with s.fdMu
// read-locked: the caller unlocks it after reading. A descriptor opened
// before the span was evicted or put again reads the same bytes: a span's
// bytes never change, and its file is replaced by a rename, never
// rewritten.
func (l *Layer) open(e *entry) (*os.File, error) {
	id, size := SpanID(e.k.key), e.size-trailerSize
	for {
		l.fdMu.RLock()
		if f := l.fds[id]; f != nil {
			return f, nil
		}
		l.fdMu.RUnlock()

		f, err := os.Open(l.spanPath(id))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Evicted, or removed behind our back.
				l.drop(e)
			}
			return nil, fmt.Errorf("read cached span %d of %s: %w", id, l.d, err)
		}
		if err := l.check(e, f, size); err != nil {
			f.Close()
			return nil, err
		}
		l.fdMu.Lock()
		// A span evicted since e was looked up is not kept open:
		// eviction closes only the descriptors it finds. One put again
		// is opened again under its new entry.
		l.c.mu.Lock()
		cur := l.st.ents[e.k]
		l.c.mu.Unlock()
		if cur != e {
			l.fdMu.Unlock()
			f.Close()
			if cur == nil {
				return nil, fmt.Errorf("read cached span %d of %s: evicted: %w", id, l.d, os.ErrNotExist)
			}
			e = cur
			continue
		}
		if l.fds[id] != nil {
			f.Close()
		} else {
			if len(l.fds) >= maxOpenFiles {
				for k, old := range l.fds {
					old.Close()
					delete(l.fds, k)
					break
				}
			}
			l.fds[id] = f
		}
		l.fdMu.Unlock()
	}
}

// check verifies f against its trailer once per process, and its size
// every time.
func (l *Layer) check(e *entry, f *os.File, size int64) error {
	id := SpanID(e.k.key)
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read cached span %d of %s: %w", id, l.d, err)
	}
	if fi.Size() != size+trailerSize {
		return l.corrupt(e, fmt.Errorf("file is %d bytes, want %d", fi.Size(), size+trailerSize))
	}
	l.c.mu.Lock()
	checked := l.st.checked[id]
	l.c.mu.Unlock()
	if checked {
		return nil
	}
	buf := make([]byte, fi.Size())
	if _, err := f.ReadAt(buf, 0); err != nil {
		return l.corrupt(e, err)
	}
	data, tr := buf[:size], buf[size:]
	if !bytes.Equal(tr, trailer(data)) {
		return l.corrupt(e, errors.New("checksum mismatch"))
	}
	l.c.mu.Lock()
	if l.st.ents[e.k] == e {
		l.st.checked[id] = true
	}
	l.c.mu.Unlock()
	return nil
}

// corrupt drops span entry e (its file and its entry) and returns an
// error wrapping ErrCorrupt and cause.
func (l *Layer) corrupt(e *entry, cause error) error {
	l.drop(e)
	return fmt.Errorf("read cached span %d of %s: %w: %v", e.k.key, l.d, ErrCorrupt, cause)
}

// drop forgets span entry e and removes its file, unless the span was
// evicted or put again since e was looked up.
func (l *Layer) drop(e *entry) {
	id := SpanID(e.k.key)
	l.fdMu.Lock()
	if f := l.fds[id]; f != nil {
		f.Close()
		delete(l.fds, id)
	}
	l.fdMu.Unlock()
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.st.ents[e.k] == e {
		c.forgetLocked(e)
		os.Remove(l.spanPath(id))
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
	victims, err := c.evictLocked(nil)
	c.mu.Unlock()
	closeVictims(victims)
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
