package buildkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/moby/buildkit/util/compression"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/ztoc"
)

// TestCompression runs the compressor and finalizer the way BuildKit does
// and checks the layer is plain gzip and its stored zTOC reads every file.
func TestCompression(t *testing.T) {
	ctx := context.Background()
	cs, err := local.NewLabeledStore(t.TempDir(), &memLabels{m: map[digest.Digest]map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	files := map[string][]byte{}
	for i := range 40 {
		b := make([]byte, rng.IntN(200<<10))
		for j := range b {
			b[j] = byte('a' + rng.IntN(4))
		}
		name := "f" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		files[name] = b
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	tw.Close()

	typ := Compression{SpanSize: 64 << 10}
	compress, finalize := typ.Compress(ctx, compression.New(typ))
	w, err := content.OpenWriter(ctx, cs, content.WithRef("layer"))
	if err != nil {
		t.Fatal(err)
	}
	cw, err := compress(w, ocispecs.MediaTypeImageLayerGzip)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(cw, bytes.NewReader(tb.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	dgst := w.Digest()
	if err := w.Commit(ctx, 0, dgst); err != nil {
		t.Fatal(err)
	}
	if _, err := finalize(ctx, cs); err != nil {
		t.Fatal(err)
	}

	info, err := cs.Info(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	zd, err := digest.Parse(info.Labels[LabelZtoc])
	if err != nil {
		t.Fatalf("label %s: %v (labels %v)", LabelZtoc, err, info.Labels)
	}
	if info.Labels[labelGCRefZtoc] != zd.String() {
		t.Errorf("gc label = %q", info.Labels[labelGCRefZtoc])
	}
	zb, err := content.ReadBlob(ctx, cs, ocispecs.Descriptor{Digest: zd})
	if err != nil {
		t.Fatal(err)
	}
	z, err := ztoc.Unmarshal(zb)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := content.ReadBlob(ctx, cs, ocispecs.Descriptor{Digest: dgst})
	if err != nil {
		t.Fatal(err)
	}
	gr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(gr)
	if err != nil || !bytes.Equal(plain, tb.Bytes()) {
		t.Fatalf("gunzip: err %v, equal %v", err, bytes.Equal(plain, tb.Bytes()))
	}
	if z.MaxSpanID < 2 {
		t.Errorf("%d spans, want several at 64 KiB", z.MaxSpanID+1)
	}
	zr, err := ztoc.NewReader(z, bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := zr.ReadFile(z.Lookup(name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: err %v, equal %v", name, err, bytes.Equal(got, want))
		}
	}
}

// memLabels is an in-memory local.LabelStore.
type memLabels struct {
	mu sync.Mutex
	m  map[digest.Digest]map[string]string
}

func (l *memLabels) Get(d digest.Digest) (map[string]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.m[d]), nil
}

func (l *memLabels) Set(d digest.Digest, labels map[string]string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[d] = maps.Clone(labels)
	return nil
}

func (l *memLabels) Update(d digest.Digest, update map[string]string) (map[string]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := maps.Clone(l.m[d])
	if cur == nil {
		cur = map[string]string{}
	}
	for k, v := range update {
		if v == "" {
			delete(cur, k)
		} else {
			cur[k] = v
		}
	}
	l.m[d] = cur
	return maps.Clone(cur), nil
}
