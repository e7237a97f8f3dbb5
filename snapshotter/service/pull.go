package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/snapshotter/remote"
)

// The pipelined pull (docs/pull.md): the layers the snapshotter unpacks
// itself (OpenLayer) are fetched with several range requests in flight
// into a file under Root/pull, read back in order as each prefix arrives
// and unpacked while the rest is fetched; once a layer is fetched, the
// next layer of its image the snapshotter will unpack is fetched, so the
// link stays busy while a layer is being applied.

// Defaults of PullOptions.
const (
	// DefaultPullAhead is how many layers above the one being unpacked
	// are fetched at once.
	DefaultPullAhead = 2
	// pullUnclaimed is how long a layer fetched ahead waits for its
	// Prepare before it is dropped (containerd had the layer already, or
	// the pull ended).
	pullUnclaimed = 2 * time.Minute
)

// PullOptions configure the snapshotter's own pull of the layers it does
// not mount lazily (FileSystem.SetPull).
type PullOptions struct {
	// Dir holds the blobs being fetched (emptied by SetPull).
	Dir string
	// Unindexed: images without a SOCI index are pulled here too, not by
	// containerd (Config.Pull.DisableUnindexed is its negation).
	Unindexed bool
	// Download: range requests per layer, their size, the fetch budget
	// (default the lazy layers' one).
	Download remote.DownloadConfig
	// Ahead is how many layers above the one being unpacked may be
	// fetched before their Prepare, one after the other (0: none).
	Ahead int
}

// puller runs the downloads of the layers the snapshotter unpacks.
type puller struct {
	o  PullOptions
	mu sync.Mutex
	// pending: downloads started ahead, not yet opened, by layer digest.
	pending map[digest.Digest]*pullDownload
}

// pullDownload is one layer being fetched into a file of its own.
type pullDownload struct {
	d     *remote.Download
	f     *os.File
	timer *time.Timer // fetched ahead: drops it if nobody opens it
	once  sync.Once
}

// SetPull sets how OpenLayer fetches layers, and turns the pull of images
// without a SOCI index on or off. Without it OpenLayer fetches under
// os.TempDir with remote's defaults, and leaves such images to containerd.
func (f *FileSystem) SetPull(o PullOptions) error {
	if o.Dir != "" {
		if err := os.RemoveAll(o.Dir); err != nil {
			return fmt.Errorf("empty pull directory: %w", err)
		}
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return fmt.Errorf("create pull directory: %w", err)
		}
	}
	if o.Ahead < 0 {
		return fmt.Errorf("pull: %d layers ahead", o.Ahead)
	}
	if o.Download.Budget == nil {
		if ls, ok := f.m.(*Layers); ok {
			o.Download.Budget = ls.budget
		}
	}
	f.pull.o = o
	return nil
}

// open returns the body of layer desc of found: its download, started
// ahead or now, read in order as it arrives. The next layers of found that
// the snapshotter will unpack too are fetched after it (ahead).
func (f *FileSystem) open(ctx context.Context, found *Found, desc ocispec.Descriptor) (io.ReadCloser, error) {
	p := &f.pull
	p.mu.Lock()
	dl := p.pending[desc.Digest] // nil: none, or one being started
	delete(p.pending, desc.Digest)
	p.mu.Unlock()
	if dl != nil {
		dl.timer.Stop()
	} else {
		var err error
		if dl, err = f.start(ctx, found, desc); err != nil {
			return nil, err
		}
	}
	if p.o.Ahead > 0 {
		// Not the request's context: the downloads outlive this Prepare.
		go f.ahead(log.WithLogger(context.Background(), log.G(ctx)), found, desc.Digest, dl)
	}
	return &pullBody{r: dl.d.Reader(ctx), dl: dl, c: &f.unpacked}, nil
}

// ahead fetches the p.o.Ahead layers of found above layer d that the
// snapshotter unpacks (no zTOC, a media type it handles), one after the
// other: each starts when the one below it has been fetched (dl first),
// so that the layer being unpacked has the link to itself and the next
// one arrives while it is being applied. A layer fetched already, or
// being fetched, is not fetched again.
func (f *FileSystem) ahead(ctx context.Context, found *Found, d digest.Digest, dl *pullDownload) {
	p := &f.pull
	i := slices.IndexFunc(found.Layers, func(l ocispec.Descriptor) bool { return l.Digest == d })
	if i < 0 {
		return
	}
	prev := dl
	for _, l := range found.Layers[i+1 : min(len(found.Layers), i+1+p.o.Ahead)] {
		if _, err := found.unindexed(l.Digest); err != nil {
			continue
		}
		if err := prev.d.Wait(ctx); err != nil {
			return // failed or cancelled: the unpack fails, containerd takes over
		}
		dg := l.Digest
		p.mu.Lock()
		if p.pending == nil {
			p.pending = map[digest.Digest]*pullDownload{}
		}
		other, started := p.pending[dg]
		if !started {
			p.pending[dg] = nil // being started: nobody else starts it
		}
		p.mu.Unlock()
		if started {
			if other == nil {
				return
			}
			prev = other
			continue
		}
		next, err := f.start(ctx, found, l)
		if err != nil {
			p.mu.Lock()
			delete(p.pending, dg)
			p.mu.Unlock()
			log.G(ctx).WithError(err).WithField("layer", dg).Warn("fetch layer ahead")
			return
		}
		next.timer = time.AfterFunc(pullUnclaimed, func() {
			p.mu.Lock()
			mine := p.pending[dg] == next
			if mine {
				delete(p.pending, dg)
			}
			p.mu.Unlock()
			if mine {
				next.close()
			}
		})
		p.mu.Lock()
		p.pending[dg] = next
		p.mu.Unlock()
		prev = next
	}
}

// start starts downloading layer desc of found into a new file.
func (f *FileSystem) start(ctx context.Context, found *Found, desc ocispec.Descriptor) (*pullDownload, error) {
	blob, err := httprange.NewRegistryBlob(ctx, found.Repo, desc.Digest, desc.Size, httprange.WithTransport(f.d.rt))
	if err != nil {
		return nil, err
	}
	file, err := os.CreateTemp(f.pull.o.Dir, "layer-")
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	// The name is not needed: the file goes when it is closed.
	if err := os.Remove(file.Name()); err != nil {
		file.Close()
		return nil, fmt.Errorf("pull: %w", err)
	}
	cfg := f.pull.o.Download
	cfg.Fetched = func(n int64) { f.unpacked.bytes.Add(n) }
	d, err := remote.StartDownload(context.WithoutCancel(ctx), blob, file, cfg)
	if err != nil {
		file.Close()
		return nil, err
	}
	log.G(ctx).WithField("layer", desc.Digest).WithField("size", desc.Size).WithField("image", found.Manifest.Digest).
		WithField("dir", filepath.Dir(file.Name())).Debug("fetching layer to unpack it here")
	return &pullDownload{d: d, f: file}, nil
}

// close cancels the download and drops its file.
func (dl *pullDownload) close() {
	dl.once.Do(func() {
		dl.d.Cancel()
		_ = dl.f.Close() // unlinked already: nothing else to clean
	})
}

// pullBody is a layer body read from its download.
type pullBody struct {
	r   io.Reader
	dl  *pullDownload
	c   *unpackCounters
	eof bool
}

func (b *pullBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if errors.Is(err, io.EOF) && !b.eof {
		b.eof = true
		b.c.layers.Add(1)
	}
	return n, err
}

func (b *pullBody) Close() error {
	b.dl.close()
	return nil
}
