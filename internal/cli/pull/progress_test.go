package pull

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/progress"
)

// fakeContent has the blobs of present and one write in progress.
type fakeContent struct {
	present map[digest.Digest]bool
	mu      sync.Mutex
	status  []content.Status
}

func (f *fakeContent) Info(_ context.Context, d digest.Digest) (content.Info, error) {
	if f.present[d] {
		return content.Info{Digest: d}, nil
	}
	return content.Info{}, errdefs.ErrNotFound
}

func (f *fakeContent) ListStatuses(context.Context, ...string) ([]content.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, nil
}

// TestTrackerPlain: a line per blob handled, saying whether it was
// fetched or present; none for a failed one.
func TestTrackerPlain(t *testing.T) {
	d := func(mt, s string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(s), Size: int64(len(s))}
	}
	idx, mf, cfg := d(ocispec.MediaTypeImageIndex, "index"), d(ocispec.MediaTypeImageManifest, "manifest"), d(ocispec.MediaTypeImageConfig, "config")
	layer, bad := d(ocispec.MediaTypeImageLayerGzip, "layer"), d(ocispec.MediaTypeImageLayerGzip, "bad")
	fc := &fakeContent{present: map[digest.Digest]bool{cfg.Digest: true}}
	var buf bytes.Buffer
	p := progress.New(&buf, progress.Auto)
	h := newTracker(p, fc).wrap(images.HandlerFunc(func(_ context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if desc.Digest == bad.Digest {
			return nil, errors.New("broken")
		}
		return nil, nil
	}))
	for _, desc := range []ocispec.Descriptor{idx, mf, cfg, layer, bad} {
		h.Handle(context.Background(), desc)
	}
	p.Wait()
	want := "index " + short(idx.Digest) + ": fetched, 5 bytes\n" +
		"manifest " + short(mf.Digest) + ": fetched, 8 bytes\n" +
		"config " + short(cfg.Digest) + ": present, 6 bytes\n" +
		"layer " + short(layer.Digest) + ": fetched, 5 bytes\n"
	if got := buf.String(); got != want {
		t.Errorf("lines:\n%s\nwant:\n%s", got, want)
	}
}

// TestTrackerPoll: the bytes of a blob being fetched come from the write
// status of its content store ref; polling ends with its context.
func TestTrackerPoll(t *testing.T) {
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("layer"), Size: 1000}
	ctx := context.Background()
	fc := &fakeContent{status: []content.Status{{Ref: remotes.MakeRefKey(ctx, layer), Offset: 400, Total: 1000}}}
	var buf bytes.Buffer
	p := progress.New(&buf, progress.Bars)
	tr := newTracker(p, fc)
	release := make(chan struct{})
	handled := make(chan struct{})
	h := tr.wrap(images.HandlerFunc(func(context.Context, ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		<-release
		return nil, nil
	}))
	go func() {
		defer close(handled)
		h.Handle(ctx, layer)
	}()
	pctx, stop := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		tr.poll(pctx, time.Millisecond)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		tr.mu.Lock()
		it := tr.active[remotes.MakeRefKey(ctx, layer)]
		tr.mu.Unlock()
		if it != nil && it.Current() == 400 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the layer's bytes never came from its write status")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-handled
	stop()
	<-polled
	p.Wait()
	if !bytes.Contains(buf.Bytes(), []byte("layer "+short(layer.Digest)+": fetched, 1000 bytes")) {
		t.Errorf("output lacks the layer's line:\n%s", buf.String())
	}
}
