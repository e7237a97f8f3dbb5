// Package cache is the snapshotter's on-disk cache of decompressed spans.
//
// Spans are stored one file per span, content-addressed by the layer digest
// and the span id:
//
//	DIR/<algorithm>/<hex>/<span id>
//
// A span file holds the span's verified, decompressed bytes and an 8-byte
// trailer (CRC-32C of the bytes, magic), so a read through the cache is one
// pread. Files are written to a temporary name, synced and renamed into
// place, so a span file is either absent or complete, and the cache
// survives restarts: Open scans DIR and a layer acquired again finds its
// spans without fetching them. The first open of a span file by a process
// checks it against its trailer, and every open checks its size: a file
// truncated, grown or damaged on disk is dropped and ReadAt returns an
// error wrapping ErrCorrupt (the caller fetches the span again), never its
// bytes.
//
// A full disk (ENOSPC, EDQUOT) while writing a span removes layers nobody
// has acquired, least recently used first, and tries once more; if it
// still fails, Put stores nothing and returns the error, and later Puts
// succeed once space returns.
//
// Lifecycle:
//
//	c, err := cache.Open(dir, cache.WithMaxSize(10<<30))
//	l, err := c.Acquire(layerDigest) // the layer is in use until Release
//	if _, ok := l.Has(id); !ok {
//		err = l.Put(id, data) // verified, decompressed span bytes
//	}
//	n, err := l.ReadAt(id, p, offInSpan)
//	err = l.Release()
//
// The size limit holds for mounted layers too. When a Put or PutFile takes
// the cache over it, whole layers that nobody has acquired are removed,
// least recently used first; if that is not enough, span and content
// files of layers in use go one by one, least recently read first (an
// evicted span is fetched again at its next read). Readers pin the spans
// they are about to fetch and read (Pin; the fetcher does), so an
// eviction never comes between a fetch and its read, and a descriptor
// open on an evicted file reads the same bytes until it is closed. The
// cache exceeds the limit by at most the pinned spans and the file just
// written; content files are limited to a quarter of the limit
// (FileFits).
//
// Content files (PutFile, OpenFile) hold bytes copied from cached spans,
// for FUSE passthrough (the data of one regular file of the layer), under
// DIR/<algorithm>/<hex>/files/<key>. They count in the size limit and go
// with their layer. They are not synced, so they last one process: Open
// removes those left by an earlier one.
//
// The cache does not know span sizes; callers compare Has' size with the
// span's and treat a mismatch as absent (Put replaces the file).
package cache
