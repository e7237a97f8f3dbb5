package service

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/snapshotter/snapshot"
)

// nopMounter is a LayerMounter that mounts nothing.
type nopMounter struct{}

func (nopMounter) MountLayer(context.Context, string, Layer) error { return errors.New("no mounts") }
func (nopMounter) Check(context.Context, string) error             { return errors.New("no mounts") }
func (nopMounter) Unmount(context.Context, string) error           { return nil }

// TestOpenLayer: the layer without a zTOC of an indexed image is opened,
// with its diff ID from the label or else the image config; indexed layers,
// images without an index, and a daemon with unpacking off or no lazy
// layers leave the layer to containerd.
func TestOpenLayer(t *testing.T) {
	ti := pushTestImage(t)
	ctx := context.Background()
	labels := func(manifest, layer digest.Digest, diffID string) map[string]string {
		l := map[string]string{
			snapshot.LabelImageRef:       ti.ref,
			snapshot.LabelManifestDigest: manifest.String(),
			snapshot.LabelLayerDigest:    layer.String(),
		}
		if diffID != "" {
			l[snapshot.LabelDiffID] = diffID
		}
		return l
	}
	fsys := NewFileSystem(testDiscoverer(t, DefaultConfig(), nil), nopMounter{})

	lb, err := fsys.OpenLayer(ctx, labels(ti.bound.Digest, ti.unlisted, ""))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(lb.Body)
	lb.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(blob) != ti.unlisted || int64(len(blob)) != lb.Desc.Size || lb.Desc.Digest != ti.unlisted {
		t.Fatalf("read %d bytes, digest %s; want layer %s (%+v)", len(blob), digest.FromBytes(blob), ti.unlisted, lb.Desc)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	tarBytes, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(tarBytes); lb.DiffID != want {
		t.Errorf("diff ID %s (from the image config), want %s", lb.DiffID, want)
	}
	if n, b := fsys.unpacked.layers.Load(), fsys.unpacked.bytes.Load(); n != 1 || b != int64(len(blob)) {
		t.Errorf("counters: %d layers, %d bytes; want 1, %d", n, b, len(blob))
	}
	fams := scrape(t, newHTTPHandler(&Metrics{}, nil, &fsys.unpacked))
	if v := sample(t, fams, "socikit_unpacked_layers_total"); v != 1 {
		t.Errorf("socikit_unpacked_layers_total %v, want 1", v)
	}
	if v := sample(t, fams, "socikit_unpacked_bytes_total"); v != float64(len(blob)) {
		t.Errorf("socikit_unpacked_bytes_total %v, want %d", v, len(blob))
	}

	// The label's diff ID is taken as it is.
	lb, err = fsys.OpenLayer(ctx, labels(ti.bound.Digest, ti.unlisted, digest.FromString("x").String()))
	if err != nil || lb.DiffID != digest.FromString("x") {
		t.Errorf("with the diff ID label: %s, %v", lb.DiffID, err)
	}
	if err == nil {
		lb.Body.Close()
	}

	off := NewFileSystem(testDiscoverer(t, DefaultConfig(), nil), nopMounter{})
	off.SetUnpackUnindexed(false)
	for _, tc := range []struct {
		name   string
		fsys   *FileSystem
		labels map[string]string
	}{
		{"indexed layer", fsys, labels(ti.bound.Digest, ti.layer, "")},
		{"image without index", fsys, labels(ti.plain.Digest, ti.unlisted, "")},
		{"unpack off", off, labels(ti.bound.Digest, ti.unlisted, "")},
		{"no lazy layers", NewFileSystem(testDiscoverer(t, DefaultConfig(), nil), nil), labels(ti.bound.Digest, ti.unlisted, "")},
	} {
		if _, err := tc.fsys.OpenLayer(ctx, tc.labels); !errors.Is(err, snapshot.ErrNotIndexed) {
			t.Errorf("%s: OpenLayer error %v, want ErrNotIndexed", tc.name, err)
		}
	}
}

func TestLoadConfigUnpackUnindexed(t *testing.T) {
	if !DefaultConfig().Lazy.UnpackUnindexed {
		t.Fatal("unpack_unindexed is off by default")
	}
	p := t.TempDir() + "/c.toml"
	if err := writeFile(p, "[lazy]\nunpack_unindexed = false\n"); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadConfig(p); err != nil || c.Lazy.UnpackUnindexed {
		t.Fatalf("unpack_unindexed = false: %+v, %v", c.Lazy, err)
	}
}

// TestExampleConfigLazy: the example configuration lists [lazy] with its
// defaults.
func TestExampleConfigLazy(t *testing.T) {
	c, err := LoadConfig("../../examples/containerd/socikit-snapshotter.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Lazy != DefaultConfig().Lazy {
		t.Errorf("example [lazy] %+v, defaults %+v", c.Lazy, DefaultConfig().Lazy)
	}
	if c.Pull != DefaultConfig().Pull {
		t.Errorf("example [pull] %+v, defaults %+v", c.Pull, DefaultConfig().Pull)
	}
}
