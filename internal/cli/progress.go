package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/internal/progress"
)

// ProgressFlag adds the --progress flag of the commands that show progress
// (convert, pull).
func ProgressFlag(fs *flag.FlagSet) *progress.Mode {
	m := new(progress.Mode)
	fs.Var(m, "progress", "how progress goes to stderr: auto (a bar per layer on a terminal, else plain lines), tty, plain or quiet (warnings only)")
	return m
}

// startProgress shows this command's progress on stderr in mode m until
// the returned function is called.
func (e *env) startProgress(m progress.Mode) func() {
	e.prog = progress.New(e.stderr, m)
	return func() {
		e.prog.Wait()
		e.prog = nil
	}
}

// progressf writes a progress line (above the bars; none with --progress
// quiet or outside startProgress).
func (e *env) progressf(format string, args ...any) {
	if e.prog != nil {
		e.prog.Printf(format, args...)
	}
}

// warnf always writes a warning to stderr (above the bars).
func (e *env) warnf(format string, args ...any) {
	format = "socikit: warning: " + format
	if e.prog != nil {
		e.prog.Warnf(format, args...)
		return
	}
	fmt.Fprintf(e.stderr, format+"\n", args...)
}

// blobProgress is an item per blob convert copies or indexes, its bytes
// counted as the source is read.
type blobProgress struct {
	e     *env
	mu    sync.Mutex
	items map[digest.Digest]*progress.Item
}

// start adds the item of blob d.
func (b *blobProgress) start(d ocispec.Descriptor) *progress.Item {
	name := "blob " + shortDigest(d.Digest.String())
	if classifyLayer(d.MediaType) != layerOther {
		name = "layer " + shortDigest(d.Digest.String())
	}
	var it *progress.Item
	if b.e != nil && b.e.prog != nil {
		it = b.e.prog.Add(name, d.Size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.items == nil {
		b.items = map[digest.Digest]*progress.Item{}
	}
	b.items[d.Digest] = it
	return it
}

// item returns blob d's item, nil if none.
func (b *blobProgress) item(d digest.Digest) *progress.Item {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.items[d]
}

// end finishes blob d's item: done with the message if err is nil, else
// dropped. It returns err.
func (b *blobProgress) end(d digest.Digest, err error, format string, args ...any) error {
	it := b.item(d)
	switch {
	case it == nil:
	case err != nil:
		it.Abort()
	default:
		it.Done(format, args...)
	}
	return err
}

// source wraps src so that reading a blob with an item counts its bytes.
func (b *blobProgress) source(src image.Source) image.Source {
	return progressSource{Source: src, b: b}
}

type progressSource struct {
	image.Source
	b *blobProgress
}

func (s progressSource) Blob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := s.Source.Blob(ctx, d)
	if err != nil {
		return nil, err
	}
	if it := s.b.item(d.Digest); it != nil {
		return &countingReader{ReadCloser: rc, it: it}, nil
	}
	return rc, nil
}

// countingReader sets its item's bytes done to what it has read (each open
// counts from 0: a retried upload shows as going back).
type countingReader struct {
	io.ReadCloser
	it *progress.Item
	n  int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n += int64(n)
	r.it.SetCurrent(r.n)
	return n, err
}
