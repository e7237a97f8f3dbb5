package buildkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"maps"
	"math/rand/v2"
	"strings"
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
	zk, sk, gk := ztocLabels(typ.SpanSize)
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
	zd, err := digest.Parse(info.Labels[zk])
	if err != nil {
		t.Fatalf("label %s: %v (labels %v)", zk, err, info.Labels)
	}
	if info.Labels[gk] != zd.String() {
		t.Errorf("gc label = %q", info.Labels[gk])
	}
	if info.Labels[sk] != "65536" {
		t.Errorf("span size label = %q", info.Labels[sk])
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
	g, err := ztoc.ParseGzipCheckpoints(z.Checkpoints)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range g.Points {
		if cp.Bits != 0 {
			t.Fatalf("checkpoint %+v: not byte-aligned, so not from the one-pass writer", cp)
		}
	}

	// The index uses the stored zTOC for the same span setting, and
	// indexes the blob again for another one (a cached blob reused by a
	// build with other options).
	ldesc := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayerGzip, Digest: dgst, Size: int64(len(blob))}
	li, err := layerZtoc(ctx, cs, ldesc, Options{SpanSize: 64 << 10})
	if err != nil || li == nil || digest.FromBytes(li.Blob) != zd || li.SpanSize != 64<<10 {
		t.Fatalf("same setting: err %v, want ztoc %s at 64 KiB", err, zd)
	}
	li, err = layerZtoc(ctx, cs, ldesc, Options{SpanSize: 128 << 10})
	if err != nil || li == nil || digest.FromBytes(li.Blob) == zd || li.SpanSize != 128<<10 {
		t.Fatalf("other setting: err %v, want a new ztoc at 128 KiB", err)
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

// TestCompressionReorder checks that a reordering compressor puts the
// start-up files first and labels the blob with the reordered tar's
// digest, which BuildKit takes as the diffID.
func TestCompressionReorder(t *testing.T) {
	ctx := context.Background()
	cs, err := local.NewLabeledStore(t.TempDir(), &memLabels{m: map[digest.Digest]map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, name := range []string{"a/", "a/one", "b/", "b/two", "b/three"} {
		h := &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		var body []byte
		if name[len(name)-1] != '/' {
			body = bytes.Repeat([]byte(name), 1000)
			h = &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()

	typ := Compression{Startup: []string{"/b/three"}, Reorder: true}
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
	// What BuildKit's differ does: label the blob with the digest of the
	// tar it streamed.
	if err := w.Commit(ctx, 0, dgst, content.WithLabels(map[string]string{"containerd.io/uncompressed": digest.FromBytes(tb.Bytes()).String()})); err != nil {
		t.Fatal(err)
	}
	ann, err := finalize(ctx, cs)
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
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if want := []string{"b/", "b/three", "a/", "a/one", "b/two"}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("order %v, want %v", names, want)
	}
	info, err := cs.Info(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	want := digest.FromBytes(plain).String()
	if got := info.Labels["containerd.io/uncompressed"]; got != want {
		t.Errorf("uncompressed label %s, want the reordered tar's %s", got, want)
	}
	if ann["containerd.io/uncompressed"] != want {
		t.Errorf("annotations %v, want the reordered tar's diffID", ann)
	}
}
