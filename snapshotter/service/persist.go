package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/snapshotter/snapshot"
)

// localStore keeps on disk what mounting an indexed layer needs, so that
// the daemon mounts its layers again after a restart or a crash without a
// registry round trip (and without containerd's content store, whatever
// namespace pulled the image: CRI pulls into k8s.io):
//
//	Root/artifacts/<alg>/<hex>   zTOCs, lazy zTOCs and prefetch lists as
//	                             fetched, checked against their digest
//	                             when read
//	Root/layers/<hex>.json       the Layer discovery found for the labels
//	                             of a snapshot (hex: sha256 of the labels
//	                             that name it, layerKey)
//
// Files are written to a temporary name, synced and renamed, so a crash
// leaves a file whole or absent. What no snapshot uses any more is removed
// after each snapshot removal and at start, and the artifacts are capped
// (persistgc.go; docs/reliability.md, "Memory and disk bounds").
type localStore struct {
	root string
}

func newLocalStore(root string) *localStore { return &localStore{root: root} }

func (s *localStore) blobPath(d digest.Digest) string {
	return filepath.Join(s.root, "artifacts", d.Algorithm().String(), d.Encoded())
}

// blob returns artifact d if the store has it whole (at most limit bytes).
func (s *localStore) blob(d ocispec.Descriptor, limit int64) ([]byte, bool) {
	if s == nil || d.Digest.Validate() != nil || d.Size > limit {
		return nil, false
	}
	b, err := os.ReadFile(s.blobPath(d.Digest))
	if err != nil || image.Verify(d, b) != nil {
		return nil, false
	}
	return b, true
}

// putBlob stores artifact d (already verified by the caller).
func (s *localStore) putBlob(d ocispec.Descriptor, b []byte) error {
	if s == nil {
		return nil
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("store artifact: %w", err)
	}
	p := s.blobPath(d.Digest)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return writeFileAtomic(p, b)
}

// layerRecord is a Layer as stored: name.Repository does not marshal.
type layerRecord struct {
	Repo          string              `json:"repo"`
	PlainHTTP     bool                `json:"plainHTTP,omitempty"`
	Desc          ocispec.Descriptor  `json:"layer"`
	Ztoc          ocispec.Descriptor  `json:"ztoc"`
	SpanSize      int64               `json:"spanSize,omitempty"`
	DisableXattrs bool                `json:"disableXattrs,omitempty"`
	Prefetch      *ocispec.Descriptor `json:"prefetch,omitempty"`
	LazyZtoc      *ocispec.Descriptor `json:"lazyZtoc,omitempty"`
	Index         ocispec.Descriptor  `json:"index"`
	Manifest      digest.Digest       `json:"manifest"`
}

// layerKey names the record of the layer the labels of a Prepare name: the
// same labels the Discoverer and Found.Layer go by.
func layerKey(labels map[string]string) (string, bool) {
	ref, mdg, ldg := labels[snapshot.LabelImageRef], labels[snapshot.LabelManifestDigest], labels[snapshot.LabelLayerDigest]
	if ref == "" || mdg == "" || ldg == "" {
		return "", false
	}
	h := sha256.Sum256([]byte(ref + "\x00" + mdg + "\x00" + labels[snapshot.LabelIndexDigest] + "\x00" + ldg))
	return hex.EncodeToString(h[:]), true
}

func (s *localStore) layerPath(key string) string {
	return filepath.Join(s.root, "layers", key+".json")
}

// layer returns the stored Layer of the labels, if any. Its zTOC may still
// be missing from the store (then it is fetched as at a first mount).
func (s *localStore) layer(labels map[string]string) (Layer, bool) {
	key, ok := layerKey(labels)
	if s == nil || !ok {
		return Layer{}, false
	}
	b, err := os.ReadFile(s.layerPath(key))
	if err != nil {
		return Layer{}, false
	}
	var r layerRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Desc.Digest.String() != labels[snapshot.LabelLayerDigest] {
		return Layer{}, false
	}
	var opts []name.Option
	if r.PlainHTTP {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(r.Repo, opts...)
	if err != nil {
		return Layer{}, false
	}
	return Layer{Repo: repo, Desc: r.Desc, Ztoc: r.Ztoc, SpanSize: r.SpanSize, DisableXattrs: r.DisableXattrs,
		Prefetch: r.Prefetch, LazyZtoc: r.LazyZtoc, Index: r.Index, Manifest: r.Manifest, stored: true}, true
}

// putLayer stores the Layer found for the labels.
func (s *localStore) putLayer(labels map[string]string, l Layer) error {
	key, ok := layerKey(labels)
	if s == nil || !ok {
		return nil
	}
	b, err := json.Marshal(layerRecord{Repo: l.Repo.Name(), PlainHTTP: l.Repo.Scheme() == "http", Desc: l.Desc, Ztoc: l.Ztoc,
		SpanSize: l.SpanSize, DisableXattrs: l.DisableXattrs, Prefetch: l.Prefetch, LazyZtoc: l.LazyZtoc, Index: l.Index, Manifest: l.Manifest})
	if err != nil {
		return fmt.Errorf("store layer %s: %w", l.Desc.Digest, err)
	}
	return writeFileAtomic(s.layerPath(key), b)
}

// writeFileAtomic writes b to p through a synced temporary file renamed
// into place.
func writeFileAtomic(p string, b []byte) (err error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("store %s: %w", p, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return fmt.Errorf("store %s: %w", p, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", p, err)
	}
	return nil
}

// lazyBlob is the registry blob of a layer mounted from the local store:
// it resolves credentials and authenticates (a registry round trip) at the
// first read that needs the registry, not at the mount, so a restart
// mounts its layers while the registry is down and reads of cached spans
// never need it. A failed attempt is made again at the next read.
type lazyBlob struct {
	repo name.Repository
	d    digest.Digest
	size int64
	opts []httprange.Option

	mu sync.Mutex
	b  *httprange.HTTPBlob
}

var _ remote.NotifyBlob = (*lazyBlob)(nil)

// Size implements remote.Blob.
func (b *lazyBlob) Size() int64 { return b.size }

// ReadRanges implements remote.Blob.
func (b *lazyBlob) ReadRanges(ctx context.Context, ranges []remote.Range) error {
	return b.ReadRangesNotify(ctx, ranges, nil)
}

// ReadRangesNotify implements remote.NotifyBlob.
func (b *lazyBlob) ReadRangesNotify(ctx context.Context, ranges []remote.Range, notify func(off, n int64)) error {
	b.mu.Lock()
	hb := b.b
	if hb == nil {
		var err error
		hb, err = httprange.NewRegistryBlob(ctx, b.repo, b.d, b.size, b.opts...)
		if err != nil {
			b.mu.Unlock()
			return fmt.Errorf("open layer blob %s: %w", b.d, err)
		}
		b.b = hb
	}
	b.mu.Unlock()
	return hb.ReadRangesNotify(ctx, ranges, notify)
}
