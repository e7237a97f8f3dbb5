package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// filesDir is the directory, inside a layer's directory, of its content
// files.
const filesDir = "files"

// Extent is Len bytes of a cached span, from offset Off of the span's
// bytes.
type Extent struct {
	Span SpanID
	Off  int64
	Len  int64
}

// A content file holds bytes assembled from a layer's cached spans (the
// data of one regular file of the layer, for FUSE passthrough), under
//
//	DIR/<algorithm>/<hex>/files/<key>
//
// Content files count in the cache's size and go with their layer. They
// are not synced (making one is on the path of an open(2)), so they last
// one process: Open removes those an earlier process left, and they are
// made again from the spans when needed.

func (l *Layer) filePath(key int64) string {
	return filepath.Join(l.dir, filesDir, strconv.FormatInt(key, 10))
}

// ErrTooLarge is returned, wrapped, by PutFile for a content file larger
// than FileFits allows.
var ErrTooLarge = errors.New("content file too large for the cache")

// maxFileShare is the largest share of the cache's size limit one content
// file may take: making one pins the spans it is copied from, so both are
// on disk at once, and a file near the limit would evict everything else.
const maxFileShare = 4

// FileFits reports whether a content file of size bytes may be made: at
// most a quarter of the cache's size limit (any size without a limit).
// Larger files are read through the spans.
func (l *Layer) FileFits(size int64) bool {
	maxSize := l.shared.c.opts.maxSize
	return maxSize == 0 || size <= maxSize/maxFileShare
}

// HasFile reports whether content file key is stored, and its size.
func (l *Layer) HasFile(key int64) (size int64, ok bool) {
	return lookup(l, func(st *layerState) map[int64]int64 { return st.files }, key)
}

// Files returns the number of content files and their bytes.
func (l *Layer) Files() (files int, bytes int64) {
	return total(l, func(st *layerState) map[int64]int64 { return st.files })
}

// OpenFile opens content file key read-only. It returns an error wrapping
// os.ErrNotExist when there is none or when its size is not size (a file
// of the wrong size is not used; PutFile replaces it).
func (l *Layer) OpenFile(key, size int64) (*os.File, error) {
	s, err := l.impl()
	if err != nil {
		return nil, err
	}
	s.c.mu.Lock()
	e := s.c.touchLocked(s.st, entryKey{file: true, key: key})
	s.c.mu.Unlock()
	if e == nil || e.size != size {
		return nil, fmt.Errorf("content file %d of %s: %w", key, s.d, os.ErrNotExist)
	}
	f, err := os.Open(s.filePath(key))
	if err != nil {
		return nil, fmt.Errorf("content file %d of %s: %w", key, s.d, err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != size || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("content file %d of %s changed on disk: %w", key, s.d, os.ErrNotExist)
	}
	return f, nil
}

// PutFile makes content file key from the bytes of cached spans named by
// parts, in order, replacing any earlier file. The file is written under a
// temporary name and renamed into place, so it is absent or complete; it
// is not synced (see above). It fails, storing nothing, when a part is not
// in a cached span (os.ErrNotExist) or the file does not fit (FileFits,
// ErrTooLarge). The spans are pinned while their bytes are copied. Bytes
// are copied in the kernel (copy_file_range) where the filesystem allows.
func (l *Layer) PutFile(key int64, parts []Extent) error {
	s, err := l.impl()
	if err != nil {
		return err
	}
	if key < 0 {
		return fmt.Errorf("content file %d: negative key", key)
	}
	var total int64
	for _, p := range parts {
		total += max(p.Len, 0)
	}
	if !l.FileFits(total) {
		return fmt.Errorf("content file %d of %s: %d bytes: %w", key, s.d, total, ErrTooLarge)
	}
	ents, unpin, err := s.pinParts(parts)
	if err != nil {
		return fmt.Errorf("content file %d of %s: %w", key, s.d, err)
	}
	defer unpin() // on the early returns; done once the bytes are copied
	dir := filepath.Join(s.dir, filesDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("content file %d of %s: %w", key, s.d, err)
	}
	f, err := os.CreateTemp(dir, strconv.FormatInt(key, 10)+".*"+tmpSuffix)
	if err != nil {
		return fmt.Errorf("content file %d of %s: %w", key, s.d, err)
	}
	tmp := f.Name()
	for i, p := range parts {
		if err = s.copySpan(f, p, ents[i]); err != nil {
			break
		}
	}
	unpin()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.filePath(key))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("content file %d of %s: %w", key, s.d, err)
	}

	c := s.c
	c.mu.Lock()
	k := entryKey{file: true, key: key}
	if old := s.st.ents[k]; old != nil {
		c.forgetLocked(old)
	}
	s.st.files[key] = total
	s.st.size += total
	if _, known := c.layers[s.d]; !known {
		c.layers[s.d] = s.st
	}
	c.size += total
	victims, err := c.evictLocked(c.addLocked(s.st, k, total))
	c.mu.Unlock()
	closeVictims(victims)
	return err
}

// pinParts pins the spans of parts and returns their entries, or fails
// with an error wrapping os.ErrNotExist when a part is not in a cached
// span.
func (l *Layer) pinParts(parts []Extent) ([]*entry, func(), error) {
	c := l.c
	c.mu.Lock()
	ents := make([]*entry, len(parts))
	for i, p := range parts {
		e := l.st.ents[entryKey{key: int64(p.Span)}]
		if e == nil || p.Off < 0 || p.Len < 0 || p.Off+p.Len > e.size-trailerSize {
			c.mu.Unlock()
			return nil, nil, fmt.Errorf("bytes %d+%d of span %d not cached: %w", p.Off, p.Len, p.Span, os.ErrNotExist)
		}
		ents[i] = c.touchLocked(l.st, e.k)
		l.st.pins[p.Span]++
	}
	c.mu.Unlock()
	var once sync.Once
	return ents, func() {
		once.Do(func() {
			c.mu.Lock()
			for _, p := range parts {
				if l.st.pins[p.Span]--; l.st.pins[p.Span] <= 0 {
					delete(l.st.pins, p.Span)
				}
			}
			c.mu.Unlock()
		})
	}, nil
}

// copySpan appends p's bytes, from span entry e, to f. The span file is
// opened on its own: its offset is moved so that io.CopyN can use
// copy_file_range.
func (l *Layer) copySpan(f *os.File, p Extent, e *entry) error {
	if p.Len == 0 {
		return nil
	}
	// The span file is checked against its trailer (once per process)
	// before its bytes are copied.
	if _, err := l.open(e); err != nil {
		return err
	}
	l.fdMu.RUnlock()
	src, err := os.Open(l.spanPath(p.Span))
	if err != nil {
		return err
	}
	defer src.Close()
	if _, err := src.Seek(p.Off, io.SeekStart); err != nil {
		return err
	}
	n, err := io.CopyN(f, src, p.Len)
	if n != p.Len {
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("span %d is short: %w", p.Span, io.ErrUnexpectedEOF)
		}
		return err
	}
	return nil
}
