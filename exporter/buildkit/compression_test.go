package buildkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/moby/buildkit/util/compression"
	"github.com/moby/buildkit/util/converter"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/exporter"
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
	// That zTOC is kept for the next export, without claiming that
	// soci-gzip wrote the blob for 128 KiB spans.
	info, err = cs.Info(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	zk128, _, _ := ztocLabels(128 << 10)
	if info.Labels[zk128] != digest.FromBytes(li.Blob).String() || info.Labels[compressedLabel(128<<10)] != "" {
		t.Errorf("labels after indexing at 128 KiB: %v", info.Labels)
	}
	if !needs(t, Compression{SpanSize: 128 << 10}, cs, ldesc) || needs(t, typ, cs, ldesc) {
		t.Errorf("NeedsConversion: want true at 128 KiB (indexed, not written), false at 64 KiB")
	}
	li2, err := layerZtoc(ctx, cs, ldesc, Options{SpanSize: 128 << 10})
	if err != nil || !bytes.Equal(li2.Blob, li.Blob) || li2.SpanSize != 128<<10 {
		t.Fatalf("indexed again: err %v, want the kept zTOC", err)
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

// testTar is a tar of a few files, some compressible, with the given names
// (a trailing slash makes a directory).
func testTar(t *testing.T, names ...string) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, name := range names {
		h := &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		var body []byte
		if !strings.HasSuffix(name, "/") {
			body = make([]byte, 50<<10+rng.IntN(150<<10))
			for j := range body {
				body[j] = byte('a' + rng.IntN(6))
			}
			h = &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	return tb.Bytes()
}

func newTestStore(t *testing.T) content.Store {
	t.Helper()
	cs, err := local.NewLabeledStore(t.TempDir(), &memLabels{m: map[digest.Digest]map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// putBlob stores b with labels and returns its gzip layer descriptor.
func putBlob(t *testing.T, cs content.Store, b []byte, lbls map[string]string) ocispecs.Descriptor {
	t.Helper()
	desc := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayerGzip, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := content.WriteBlob(context.Background(), cs, "put-"+desc.Digest.String(), bytes.NewReader(b), desc, content.WithLabels(lbls)); err != nil {
		t.Fatal(err)
	}
	return desc
}

// compressDirect writes tb with typ the way BuildKit's differ does (the
// compressor fed the tar, the blob committed with the tar's digest as its
// uncompressed label, then the finalizer) and returns the blob's descriptor.
func compressDirect(t *testing.T, cs content.Store, typ Compression, tb []byte) ocispecs.Descriptor {
	t.Helper()
	ctx := context.Background()
	compress, finalize := typ.Compress(ctx, compression.New(typ))
	w, err := content.OpenWriter(ctx, cs, content.WithRef("direct"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cw, err := compress(w, ocispecs.MediaTypeImageLayerGzip)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cw.Write(tb); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	dgst := w.Digest()
	if err := w.Commit(ctx, 0, dgst, content.WithLabels(map[string]string{"containerd.io/uncompressed": digest.FromBytes(tb).String()})); err != nil {
		t.Fatal(err)
	}
	if _, err := finalize(ctx, cs); err != nil {
		t.Fatal(err)
	}
	info, err := cs.Info(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	return ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayerGzip, Digest: dgst, Size: info.Size}
}

func needs(t *testing.T, typ Compression, cs content.Store, d ocispecs.Descriptor) bool {
	t.Helper()
	n, err := typ.NeedsConversion(context.Background(), cs, d)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNeedsConversion checks which blobs satisfy soci-gzip: only those it
// wrote with the same parameters, and the kept (base) blobs.
func TestNeedsConversion(t *testing.T) {
	cs := newTestStore(t)
	tb := testTar(t, "a/", "a/one", "a/two", "b/", "b/three")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb)
	zw.Close()
	plain := putBlob(t, cs, gz.Bytes(), map[string]string{"containerd.io/uncompressed": digest.FromBytes(tb).String()})

	typ := Compression{SpanSize: 64 << 10, Startup: []string{"/b/three"}}
	if !needs(t, typ, cs, plain) {
		t.Errorf("a plain gzip blob satisfies soci-gzip")
	}
	if needs(t, Compression{Keep: map[digest.Digest]struct{}{plain.Digest: {}}}, cs, plain) {
		t.Errorf("a kept blob needs conversion")
	}
	cfg := plain
	cfg.MediaType = ocispecs.MediaTypeImageConfig
	if needs(t, typ, cs, cfg) {
		t.Errorf("a config needs conversion")
	}
	lazy := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayerGzip, Digest: digest.FromString("not here"), Size: 10}
	if !needs(t, typ, cs, lazy) {
		t.Errorf("an absent blob that is not kept does not need conversion")
	}
	if needs(t, Compression{Keep: map[digest.Digest]struct{}{lazy.Digest: {}}}, cs, lazy) {
		t.Errorf("an absent kept blob needs conversion")
	}

	ours := compressDirect(t, cs, typ, tb)
	if needs(t, typ, cs, ours) {
		t.Errorf("a blob soci-gzip wrote with the same parameters needs conversion")
	}
	level := typ
	level.Level = 9
	reorder := typ
	reorder.Reorder = true
	startup := typ
	startup.Startup = []string{"/a/one"}
	span := typ
	span.SpanSize = 128 << 10
	for name, other := range map[string]Compression{"level": level, "reorder": reorder, "startup": startup, "span": span} {
		if !needs(t, other, cs, ours) {
			t.Errorf("other %s: the blob written with other parameters satisfies it", name)
		}
		if other.String() == typ.String() {
			t.Errorf("other %s: same name %s", name, typ)
		}
	}
	defLevel := typ
	defLevel.Level = exporter.DefaultCompressionLevel
	if needs(t, defLevel, cs, ours) || defLevel.String() != typ.String() {
		t.Errorf("the default level given explicitly is another parameter set")
	}
	if typ.String() == (Compression{SpanSize: typ.SpanSize, Startup: typ.Startup, KeepNone: true}).String() {
		t.Errorf("KeepNone does not change the name")
	}
}

// TestConvertCached converts a plain gzip blob with BuildKit's converter (what
// BuildKit does when soci-gzip is forced and a layer's cached blob is plain
// gzip): the result is the blob the compressor writes from the tar directly,
// labelled with its zTOC, and satisfies the type; with reordering, its
// diffID annotation is the reordered tar's.
func TestConvertCached(t *testing.T) {
	ctx := context.Background()
	tb := testTar(t, "a/", "a/one", "a/two", "b/", "b/three")
	for _, typ := range []Compression{
		{},
		{SpanSize: 64 << 10},
		{Startup: []string{"/b/three"}, Reorder: true},
	} {
		t.Run(SpanSetting(typ.SpanSize)+fmt.Sprint(typ.Reorder), func(t *testing.T) {
			cs := newTestStore(t)
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write(tb)
			zw.Close()
			plain := putBlob(t, cs, gz.Bytes(), map[string]string{"containerd.io/uncompressed": digest.FromBytes(tb).String()})

			conv, err := converter.New(ctx, cs, plain, compression.New(typ).SetForce(true))
			if err != nil || conv == nil {
				t.Fatalf("converter: %v (nil: %v)", err, conv == nil)
			}
			got, err := conv(ctx, cs, plain)
			if err != nil {
				t.Fatal(err)
			}
			if needs(t, typ, cs, *got) {
				t.Errorf("the converted blob needs conversion")
			}
			direct := compressDirect(t, newTestStore(t), typ, tb)
			if got.Digest != direct.Digest {
				t.Errorf("converted %s, written directly %s", got.Digest, direct.Digest)
			}
			blob, err := content.ReadBlob(ctx, cs, *got)
			if err != nil {
				t.Fatal(err)
			}
			gr, err := gzip.NewReader(bytes.NewReader(blob))
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(gr)
			if err != nil {
				t.Fatal(err)
			}
			if d := digest.FromBytes(out).String(); got.Annotations["containerd.io/uncompressed"] != d {
				t.Errorf("diffID annotation %s, tar %s", got.Annotations["containerd.io/uncompressed"], d)
			}
			if typ.Reorder == bytes.Equal(out, tb) {
				t.Errorf("reorder %v: output tar equal to the input: %v", typ.Reorder, bytes.Equal(out, tb))
			}
			li, err := layerZtoc(ctx, cs, *got, Options{SpanSize: typ.SpanSize})
			if err != nil {
				t.Fatal(err)
			}
			if aligned := allAligned(t, li.Ztoc); !aligned {
				t.Errorf("the zTOC of the converted blob is not the compressor's")
			}
		})
	}
}

func allAligned(t *testing.T, z *ztoc.Ztoc) bool {
	t.Helper()
	g, err := ztoc.ParseGzipCheckpoints(z.Checkpoints)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range g.Points {
		if cp.Bits != 0 {
			return false
		}
	}
	return true
}
