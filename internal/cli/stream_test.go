package cli

import (
	"context"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/soci"
)

// countingSource counts the blob reads of a source.
type countingSource struct {
	image.Source
	mu    sync.Mutex
	reads map[digest.Digest]int
}

func (c *countingSource) Blob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	c.mu.Lock()
	c.reads[d.Digest]++
	c.mu.Unlock()
	return c.Source.Blob(ctx, d)
}

// TestConvertStreamsLayersOnce checks that a layer copied to another place
// is read from the source once, for the copy and the index together.
func TestConvertStreamsLayersOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srcDir, im := newLayoutImage(t)
	l, err := image.OpenLayout(srcDir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{Source: l, reads: map[digest.Digest]int{}}
	dst, err := image.CreateLayout(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	root, body, err := src.Resolve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &converter{e: &env{stdout: io.Discard, stderr: io.Discard}, src: src, dst: dst, results: map[digest.Digest]*layerResult{},
		o: convertOptions{version: soci.V2, spanSize: 65536, jobs: 4, buildTool: "test"}}
	if _, err := c.run(ctx, root, body, "latest"); err != nil {
		t.Fatal(err)
	}
	for _, tl := range im.layers {
		if n := src.reads[tl.desc.Digest]; n != 1 {
			t.Errorf("layer %s read %d times, want 1", tl.desc.Digest, n)
		}
	}
	// Converting again into the same place reads each layer once more, for
	// the index only (the copy is skipped).
	src.reads = map[digest.Digest]int{}
	c.results = map[digest.Digest]*layerResult{}
	if _, err := c.run(ctx, root, body, "latest"); err != nil {
		t.Fatal(err)
	}
	for _, tl := range im.layers {
		if n := src.reads[tl.desc.Digest]; n != 1 {
			t.Errorf("second run: layer %s read %d times, want 1", tl.desc.Digest, n)
		}
	}
}
