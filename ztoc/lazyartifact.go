package ztoc

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
)

// A lazy zTOC is what ReadLazy assembles before a mount, as a blob of its
// own: the zTOC blob with every checkpoint window's 32 KiB zeroed,
// gzip-compressed (zeros compress about 1000:1, the TOC several-fold). A
// SOCI index names it by digest beside its zTOC (soci.LazyZtoc), so a
// runtime reads it in one request, checked by that digest, instead of
// range-reading the zTOC, and the TOC and span digests it mounts with are
// checked before the mount (docs/ztoc.md, "The lazy zTOC").

// LazyLevel is the gzip level of EncodeLazy (fixed: the bytes are
// deterministic for one klauspost/compress version).
const LazyLevel = gzip.BestCompression

// ErrNotLazy is returned by EncodeLazy for a zTOC not in upstream's
// layout (not gzip, or its checkpoint blob not records after a header):
// it has no lazy zTOC and is read whole.
var ErrNotLazy = errors.New("ztoc: not in the layout of a lazily read zTOC")

// LazyBuffer returns a copy of the zTOC blob with every checkpoint window
// zeroed: the buffer a lazy read assembles.
func LazyBuffer(blob []byte) ([]byte, error) {
	size := int64(len(blob))
	if size <= 0 || size > MaxZtocSize {
		return nil, fmt.Errorf("%w: ztoc of %d bytes (max %d)", ErrTooLarge, size, MaxZtocSize)
	}
	cp, ok := locateCheckpoints(blob, size)
	if !ok || cp.n == 0 {
		return nil, ErrNotLazy
	}
	b := bytes.Clone(blob)
	recs := cp.pos + 4 + zinfoHeaderSize
	for k := range (cp.n - zinfoHeaderSize) / zinfoRecordSize {
		w := recs + k*zinfoRecordSize + zinfoRecordSize - WindowSize
		clear(b[w : w+WindowSize])
	}
	return b, nil
}

// EncodeLazy returns the lazy zTOC of a zTOC blob: LazyBuffer's bytes,
// gzip at LazyLevel, with no name or time in the header. It checks that
// DecodeLazy decodes it.
func EncodeLazy(blob []byte) ([]byte, error) {
	b, err := LazyBuffer(blob)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, LazyLevel)
	if err != nil {
		return nil, fmt.Errorf("ztoc: lazy zTOC: %w", err)
	}
	if _, err := zw.Write(b); err != nil {
		return nil, fmt.Errorf("ztoc: lazy zTOC: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("ztoc: lazy zTOC: %w", err)
	}
	if _, err := DecodeLazy(out.Bytes(), digest.FromBytes(blob), int64(len(blob))); err != nil {
		return nil, fmt.Errorf("ztoc: lazy zTOC does not decode: %w", err)
	}
	return out.Bytes(), nil
}

// DecodeLazy decodes the lazy zTOC gz of the zTOC d of size bytes: it
// inflates at most size bytes (a larger or smaller output is an error)
// and decodes them as ReadLazy decodes what it read, validated as
// Unmarshal validates a whole blob. The caller checked gz against the
// digest its SOCI index names, so the result is Checked; its windows come
// from the zTOC blob (Windows), and LazyWindows.Complete still checks
// the whole blob, and so the windows, against d.
func DecodeLazy(gz []byte, d digest.Digest, size int64) (*Lazy, error) {
	l, _, err := DecodeLazyBuffer(gz, d, size)
	return l, err
}

// DecodeLazyBuffer is DecodeLazy, returning the inflated bytes too: the
// zTOC blob's but its windows (zeros), for the caller's store of the
// blob (LazyWindows' store).
func DecodeLazyBuffer(gz []byte, d digest.Digest, size int64) (*Lazy, []byte, error) {
	if err := d.Validate(); err != nil {
		return nil, nil, fmt.Errorf("ztoc digest: %w", err)
	}
	if size <= 0 || size > MaxZtocSize {
		return nil, nil, fmt.Errorf("%w: ztoc of %d bytes (max %d)", ErrTooLarge, size, MaxZtocSize)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, nil, fmt.Errorf("lazy zTOC of %s: %w", d, err)
	}
	zr.Multistream(false)
	b := make([]byte, size)
	if _, err := io.ReadFull(zr, b); err != nil {
		return nil, nil, fmt.Errorf("lazy zTOC of %s: shorter than the zTOC's %d bytes: %w", d, size, err)
	}
	if n, err := zr.Read(make([]byte, 1)); n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
		return nil, nil, fmt.Errorf("lazy zTOC of %s: longer than the zTOC's %d bytes (%v)", d, size, err)
	}
	cp, ok := locateCheckpoints(b, size)
	if !ok || cp.n == 0 {
		return nil, nil, fmt.Errorf("lazy zTOC of %s: %w", d, ErrNotLazy)
	}
	l := &Lazy{Digest: d, Size: size, Fetched: int64(len(gz)), Reads: 1, Checked: true}
	if _, err := l.decode(b, cp); err != nil {
		return nil, nil, fmt.Errorf("lazy zTOC of %s: %w", d, err)
	}
	return l, b, nil
}
