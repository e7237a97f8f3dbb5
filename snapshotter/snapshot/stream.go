package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff/apply"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The streaming unpack: a layer is decompressed and applied as its body
// arrives, with no copy of the blob on disk and no wait for its end; the
// compressed bytes are hashed on the way and the unpack fails, before
// anything is committed, unless they are exactly the descriptor's.

// applyVerified unpacks layer l onto mounts with containerd's applier and
// returns its diff ID (the digest of the uncompressed tar). It fails unless
// the body has exactly the size and digest of l.Desc, read to its end.
func applyVerified(ctx context.Context, l LayerBlob, mounts []mount.Mount) (digest.Digest, error) {
	d := l.Desc
	if err := d.Digest.Validate(); err != nil {
		return "", fmt.Errorf("layer digest %q: %w", d.Digest, err)
	}
	if d.Size <= 0 {
		return "", fmt.Errorf("layer %s: size %d", d.Digest, d.Size)
	}
	v := &verifier{r: l.Body, desc: d, h: d.Digest.Verifier()}
	tr, err := decompress(v)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	defer tr.Close()
	// The applier reads the tar from our stream; with a plain tar media
	// type it does not decompress again, and it hashes what it reads.
	tarDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d.Digest, Size: d.Size}
	out, err := apply.NewFileSystemApplier(streamProvider{tarDesc, tr}).Apply(ctx, tarDesc, mounts)
	if err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", d.Digest, err)
	}
	// The tar ended; the blob may have bytes after it (gzip members, zstd
	// frames, padding) that the decompressor read or not: every byte is
	// read and hashed before the layer counts.
	if _, err := io.Copy(io.Discard, v); err != nil {
		return "", fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	if !v.verified {
		return "", fmt.Errorf("layer %s: body not verified", d.Digest)
	}
	return out.Digest, nil
}

// verifier reads a layer body, failing at its end unless the body had the
// descriptor's size and digest; it never returns more than Size bytes.
type verifier struct {
	r        io.Reader
	desc     ocispec.Descriptor
	h        digest.Verifier
	n        int64
	verified bool
}

// errLayerDigest reports a layer body that is not what its descriptor says.
var errLayerDigest = errors.New("layer content does not match its digest")

func (v *verifier) Read(p []byte) (int, error) {
	if v.verified {
		return 0, io.EOF
	}
	n, err := v.r.Read(p)
	if v.n+int64(n) > v.desc.Size {
		return 0, fmt.Errorf("fetch layer: more than its %d bytes: %w", v.desc.Size, errLayerDigest)
	}
	v.n += int64(n)
	_, _ = v.h.Write(p[:n]) // a hash never fails
	switch {
	case errors.Is(err, io.EOF):
		if v.n != v.desc.Size {
			return n, fmt.Errorf("fetch layer: %d bytes of %d: %w", v.n, v.desc.Size, io.ErrUnexpectedEOF)
		}
		if !v.h.Verified() {
			return n, errLayerDigest
		}
		v.verified = true
		return n, io.EOF
	case err != nil:
		return n, fmt.Errorf("fetch layer: %w", err)
	}
	return n, nil
}

// decompress returns the tar in r, compressed or not (detected from its
// first bytes, as containerd's DecompressStream does): gzip decompressed by
// klauspost/compress in a goroutine of its own, so that inflating overlaps
// writing files; zstd by klauspost/compress's decoder, concurrent itself.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(10)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch compression.DetectCompression(head) {
	case compression.Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return newAsyncReader(zr), nil
	case compression.Zstd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	case compression.Uncompressed:
		return io.NopCloser(br), nil
	}
	return nil, errors.New("unsupported compression")
}

// asyncReader reads its source ahead in a goroutine, a few blocks at a
// time; Close stops it.
type asyncReader struct {
	blocks chan []byte // filled blocks, in order
	free   chan []byte
	done   chan struct{}
	err    error // the source's error, after blocks is closed
	cur    []byte
	buf    []byte
	closed bool
}

const (
	asyncBlock  = 256 << 10
	asyncBlocks = 8
)

func newAsyncReader(src io.Reader) *asyncReader {
	a := &asyncReader{blocks: make(chan []byte, asyncBlocks), free: make(chan []byte, asyncBlocks), done: make(chan struct{})}
	for range asyncBlocks {
		a.free <- make([]byte, asyncBlock)
	}
	go func() {
		defer close(a.blocks)
		for {
			var b []byte
			select {
			case b = <-a.free:
			case <-a.done:
				return
			}
			n, err := io.ReadFull(src, b)
			if n > 0 {
				a.blocks <- b[:n] // never blocks: at most asyncBlocks buffers exist
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = io.EOF
				}
				a.err = err
				return
			}
		}
	}()
	return a
}

func (a *asyncReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)]
			a.buf = nil
		}
		b, ok := <-a.blocks
		if !ok {
			return 0, a.err
		}
		a.buf, a.cur = b, b
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close makes the goroutine stop before its next block; one blocked in a
// read of the source ends when that read does (the layer body's Close
// ends it).
func (a *asyncReader) Close() error {
	if !a.closed {
		a.closed = true
		close(a.done)
	}
	return nil
}

// streamProvider is the content.Provider containerd's applier reads one
// layer's tar from: a stream, read once from its start (content.NewReader
// takes a ReaderAt's Reader method when it has one).
type streamProvider struct {
	desc ocispec.Descriptor
	r    io.Reader
}

var _ content.Provider = streamProvider{}

func (p streamProvider) ReaderAt(_ context.Context, d ocispec.Descriptor) (content.ReaderAt, error) {
	if d.Digest != p.desc.Digest {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, errdefs.ErrNotFound)
	}
	return streamReaderAt{p}, nil
}

type streamReaderAt struct{ p streamProvider }

// Reader is what content.NewReader returns for it.
func (s streamReaderAt) Reader() io.Reader { return s.p.r }

func (s streamReaderAt) ReadAt([]byte, int64) (int, error) {
	return 0, fmt.Errorf("layer %s is a stream: %w", s.p.desc.Digest, errdefs.ErrNotImplemented)
}

func (s streamReaderAt) Size() int64  { return s.p.desc.Size }
func (s streamReaderAt) Close() error { return nil }
