package cli

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/ztoc"
)

// layerFeed streams a layer from the source to the destination and to the
// indexer together, and feeds the indexer each byte once however many
// times the destination opens the layer: an upload retried by the registry
// client (go-containerregistry retries a 5xx or a broken connection from
// the start of the blob) reads the source again from the start, and only
// the bytes past those the indexer already has go on to it. Nothing is
// held in memory or spooled to disk; a retry costs one more read of the
// source, as it does for crane. The bytes fed are hashed and checked
// against the layer digest at the end, so a zTOC is never built from a
// mix of two different streams.
//
// The first error of the whole operation (reading the source, indexing,
// uploading) is kept as the cause: what follows from it (the indexer's
// view of a stream cut short, the upload's view of a failed read) is not
// what the user is told.
type layerFeed struct {
	src image.Source
	d   ocispec.Descriptor
	pw  *io.PipeWriter

	mu     sync.Mutex
	fed    int64     // bytes handed to the indexer
	h      hash.Hash // of the bytes fed
	eof    bool      // a source stream reached its verified end
	cause  error     // the first error
	failed error     // set when the indexer stopped with an error

	done chan struct{}
	z    *ztoc.Ztoc
}

// newLayerFeed starts indexing layer d with opts; the bytes come from the
// readers open returns.
func newLayerFeed(src image.Source, d ocispec.Descriptor, opts []ztoc.Option) *layerFeed {
	pr, pw := io.Pipe()
	f := &layerFeed{src: src, d: d, pw: pw, h: sha256.New(), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		z, err := ztoc.Build(pr, opts...)
		if err == nil {
			// Bytes after the end of the tar (gzip padding, further
			// members) are part of the blob: read them so the stream ends.
			_, err = io.Copy(io.Discard, pr)
		}
		if err != nil {
			// Unblock a writer first: it holds f.mu while it writes.
			pr.CloseWithError(err)
			f.mu.Lock()
			f.indexFailedLocked(err)
			f.mu.Unlock()
			return
		}
		f.z = z
	}()
	return f
}

// indexFailedLocked records that the indexer stopped with err. If no
// error came before, err is the cause: the source's bytes are not a layer.
func (f *layerFeed) indexFailedLocked(err error) {
	if f.failed == nil {
		f.failed = err
	}
	f.setCauseLocked(fmt.Errorf("index layer %s: %w", f.d.Digest, err))
}

func (f *layerFeed) setCauseLocked(err error) {
	if f.cause == nil {
		f.cause = err
	}
}

// open is the image.Opener for the destination: a new read of the source.
func (f *layerFeed) open(ctx context.Context) (io.ReadCloser, error) {
	f.mu.Lock()
	failed := f.failed
	f.mu.Unlock()
	if failed != nil {
		return nil, fmt.Errorf("layer %s: indexing failed: %v", f.d.Digest, failed)
	}
	rc, err := f.src.Blob(ctx, f.d)
	if err != nil {
		f.mu.Lock()
		f.setCauseLocked(fmt.Errorf("read layer %s from the source: %w", f.d.Digest, err))
		f.mu.Unlock()
		return nil, err
	}
	return &feedReader{f: f, rc: rc}, nil
}

// feedReader is one read of the source.
type feedReader struct {
	f      *layerFeed
	rc     io.ReadCloser
	pos    int64
	closed bool
}

func (r *feedReader) Read(p []byte) (int, error) {
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.closed {
		return 0, errors.New("read after close")
	}
	if f.failed != nil {
		// Not %w: the registry client must not retry an upload whose
		// layer cannot be indexed.
		return 0, fmt.Errorf("layer %s: indexing failed: %v", f.d.Digest, f.failed)
	}
	n, err := r.rc.Read(p)
	if end := r.pos + int64(n); end > f.fed {
		fresh := p[f.fed-r.pos : n]
		f.h.Write(fresh)
		if _, werr := f.pw.Write(fresh); werr != nil {
			// werr is what the indexer stopped with.
			f.indexFailedLocked(werr)
			return 0, fmt.Errorf("layer %s: indexing failed: %v", f.d.Digest, werr)
		}
		f.fed = end
	}
	r.pos += int64(n)
	switch {
	case errors.Is(err, io.EOF):
		f.eof = true
	case err != nil:
		f.setCauseLocked(fmt.Errorf("read layer %s from the source: %w", f.d.Digest, err))
	}
	return n, err
}

func (r *feedReader) Close() error {
	r.f.mu.Lock()
	r.closed = true
	r.f.mu.Unlock()
	return r.rc.Close()
}

// finish completes the feed after the destination is written (err is what
// writing it returned): if the destination did not read the whole layer
// (it had it already, or found it there on a retry), the rest is read from
// the source for the indexer. It returns the zTOC, or the first cause of
// failure.
func (f *layerFeed) finish(ctx context.Context, err error) (*ztoc.Ztoc, error) {
	if err != nil {
		f.mu.Lock()
		f.setCauseLocked(err)
		f.mu.Unlock()
	} else if !f.complete() {
		if rc, oerr := f.open(ctx); oerr == nil {
			_, _ = io.Copy(io.Discard, rc)
			rc.Close()
		}
	}
	f.mu.Lock()
	if f.cause == nil && !f.eof {
		f.setCauseLocked(fmt.Errorf("read layer %s from the source: stream ended early", f.d.Digest))
	}
	if f.cause == nil {
		if got := digest.NewDigest(digest.SHA256, f.h); f.d.Digest.Algorithm() == digest.SHA256 && got != f.d.Digest {
			f.setCauseLocked(fmt.Errorf("layer %s: the bytes indexed have digest %s", f.d.Digest, got))
		}
	}
	cause := f.cause
	f.mu.Unlock()
	if cause != nil {
		f.pw.CloseWithError(cause)
	} else {
		f.pw.Close()
	}
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cause != nil {
		return nil, f.cause
	}
	return f.z, nil
}

func (f *layerFeed) complete() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.eof
}
