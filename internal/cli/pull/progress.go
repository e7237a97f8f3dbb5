package pull

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/progress"
)

// contentStatus is what the tracker reads of containerd's content store.
type contentStatus interface {
	Info(ctx context.Context, dgst digest.Digest) (content.Info, error)
	ListStatuses(ctx context.Context, filters ...string) ([]content.Status, error)
}

// tracker shows the blobs the pull handles (a lazily mounted layer is
// not fetched, so it has none): an item per blob, whose bytes come from
// the content store's write statuses.
type tracker struct {
	p  *progress.Progress
	cs contentStatus

	mu     sync.Mutex
	active map[string]*progress.Item // by content store ref (remotes.MakeRefKey)
}

func newTracker(p *progress.Progress, cs contentStatus) *tracker {
	return &tracker{p: p, cs: cs, active: map[string]*progress.Item{}}
}

// wrap tracks each descriptor h handles (fetch, then children).
func (t *tracker) wrap(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		_, err := t.cs.Info(ctx, desc.Digest)
		present := err == nil
		it := t.p.Add(kind(desc)+" "+short(desc.Digest), desc.Size)
		ref := remotes.MakeRefKey(ctx, desc)
		t.mu.Lock()
		t.active[ref] = it
		t.mu.Unlock()
		children, err := h.Handle(ctx, desc)
		t.mu.Lock()
		delete(t.active, ref)
		t.mu.Unlock()
		switch {
		case err != nil:
			it.Abort()
		case present:
			it.Done("present, %d bytes", desc.Size)
		default:
			it.Done("fetched, %d bytes", desc.Size)
		}
		return children, err
	})
}

// poll sets the bytes of the blobs being fetched from the content store's
// write statuses every interval until ctx ends (bars only: plain lines
// have no use for them).
func (t *tracker) poll(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		sts, err := t.cs.ListStatuses(ctx)
		if err != nil {
			continue // progress only: the pull reports real errors
		}
		t.mu.Lock()
		for _, st := range sts {
			if it := t.active[st.Ref]; it != nil {
				it.SetCurrent(st.Offset)
			}
		}
		t.mu.Unlock()
	}
}

func kind(d ocispec.Descriptor) string {
	switch {
	case images.IsIndexType(d.MediaType):
		return "index"
	case images.IsManifestType(d.MediaType):
		return "manifest"
	case images.IsConfigType(d.MediaType):
		return "config"
	case images.IsLayerType(d.MediaType):
		return "layer"
	}
	return "blob"
}

// short is the algorithm and the first 12 hex digits of d.
func short(d digest.Digest) string {
	alg, hex, _ := strings.Cut(d.String(), ":")
	return fmt.Sprintf("%s:%.12s", alg, hex)
}
