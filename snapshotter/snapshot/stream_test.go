package snapshot

import (
	"archive/tar"
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestVerifier: the body's bytes pass through; the end is io.EOF only
// when size and digest match, an error otherwise.
func TestVerifier(t *testing.T) {
	body := bytes.Repeat([]byte("layer bytes "), 1000)
	desc := ocispec.Descriptor{Digest: digest.FromBytes(body), Size: int64(len(body))}
	flipped := bytes.Clone(body)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct {
		name string
		r    io.Reader
		want error // nil: verified
	}{
		{"right", bytes.NewReader(body), nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(body)), nil},
		{"wrong last byte", bytes.NewReader(flipped), errLayerDigest},
		{"short", bytes.NewReader(body[:len(body)-1]), io.ErrUnexpectedEOF},
		{"long", io.MultiReader(bytes.NewReader(body), strings.NewReader("x")), errLayerDigest},
		{"error", iotest.TimeoutReader(bytes.NewReader(body)), iotest.ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &verifier{r: tc.r, desc: desc, h: desc.Digest.Verifier()}
			got, err := io.ReadAll(v)
			if tc.want == nil {
				if err != nil || !v.verified || !bytes.Equal(got, body) {
					t.Fatalf("read %d bytes, %v, verified %v; want the body, verified", len(got), err, v.verified)
				}
				return
			}
			if !errors.Is(err, tc.want) || v.verified {
				t.Fatalf("error %v, verified %v; want %v", err, v.verified, tc.want)
			}
		})
	}
}

// TestAsyncReader: the read-ahead reader returns its source's bytes and
// error, and Close while blocks are pending does not block.
func TestAsyncReader(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789"), asyncBlock) // 10 blocks
	a := newAsyncReader(iotest.HalfReader(bytes.NewReader(src)))
	got, err := io.ReadAll(a)
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(src))
	}
	a.Close()
	b := newAsyncReader(io.MultiReader(bytes.NewReader(src[:100]), iotest.ErrReader(errors.New("boom"))))
	if got, err := io.ReadAll(b); err == nil || err.Error() != "boom" || !bytes.Equal(got, src[:100]) {
		t.Fatalf("read %d bytes, %v; want 100 and boom", len(got), err)
	}
	c := newAsyncReader(bytes.NewReader(src))
	c.Close() // not read at all
}

// streamLayer is testLayer with the tar of entries compressed by c (nil:
// none) and media type mt.
func streamLayer(t *testing.T, mt string, c func(io.Writer) io.WriteCloser, entries ...tarEntry) testLayer {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	blob := tb.Bytes()
	if c != nil {
		var cb bytes.Buffer
		w := c(&cb)
		if _, err := w.Write(tb.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		blob = cb.Bytes()
	}
	return testLayer{blob: blob, diffID: digest.FromBytes(tb.Bytes()),
		desc: ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(blob), Size: int64(len(blob))}}
}

func gzipLevel(level int) func(io.Writer) io.WriteCloser {
	return func(w io.Writer) io.WriteCloser {
		zw, _ := kgzip.NewWriterLevel(w, level)
		return zw
	}
}

func zstdWriter(w io.Writer) io.WriteCloser {
	zw, _ := zstd.NewWriter(w)
	return zw
}

// TestUnpackStream: gzip, zstd and plain tar layers unpack as they are
// read; a body that unpacks to the right tar (right diff ID) but is not
// the descriptor's blob, or is cut short, or fails half-way, is never
// committed, and the active snapshot is left empty for containerd.
func TestUnpackStream(t *testing.T) {
	requireRoot(t)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	big := strings.Repeat("content that compresses ", 200<<10) // ~4.8 MB: many async blocks
	entries := []tarEntry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/big", body: big, typ: tar.TypeReg},
		{name: "etc/small", body: "small\n", typ: tar.TypeReg}}
	good := map[string]testLayer{
		"gzip":  streamLayer(t, ocispec.MediaTypeImageLayerGzip, gzipLevel(6), entries...),
		"zstd":  streamLayer(t, ocispec.MediaTypeImageLayerZstd, zstdWriter, entries...),
		"tar":   streamLayer(t, ocispec.MediaTypeImageLayer, nil, entries...),
		"gzip1": streamLayer(t, ocispec.MediaTypeImageLayerGzip, gzipLevel(1), entries...),
	}
	fsys := &sourceFS{layers: map[string]testLayer{}}
	s := newTestSnapshotter(t, t.TempDir(), fsys)
	defer s.Close()
	for name, l := range good {
		t.Run(name, func(t *testing.T) {
			fsys.mu.Lock()
			fsys.layers[l.desc.Digest.String()] = l
			fsys.mu.Unlock()
			target := "sha256:ok-" + name
			if _, err := s.Prepare(ctx, "extract-"+name, "", layerLabels(target, l.desc.Digest.String())); !errdefs.IsAlreadyExists(err) {
				t.Fatalf("Prepare: %v, want ErrAlreadyExists", err)
			}
			ms, err := s.View(ctx, "view-"+name, target)
			if err != nil {
				t.Fatal(err)
			}
			dir := ms[0].Source
			if b, err := os.ReadFile(filepath.Join(dir, "etc/big")); err != nil || string(b) != big {
				t.Errorf("etc/big: %d bytes, %v", len(b), err)
			}
		})
	}

	// The same tar at another gzip level, or with another mtime in the
	// gzip header (same size): the diff ID matches, the blob is not the
	// one the descriptor names.
	recompressed := good["gzip1"]
	recompressed.desc = good["gzip"].desc
	mtime := good["gzip"]
	mtime.blob = bytes.Clone(mtime.blob)
	mtime.blob[4] ^= 1 // MTIME, which decompression ignores
	truncated := good["gzip"]
	truncated.blob = truncated.blob[:len(truncated.blob)-10]
	for _, tc := range []struct {
		name  string
		layer testLayer
		body  func([]byte) io.Reader
	}{
		{"recompressed", recompressed, nil},
		{"other gzip mtime", mtime, nil},
		{"truncated", truncated, nil},
		{"fails half-way", good["zstd"], func(b []byte) io.Reader {
			return io.MultiReader(bytes.NewReader(b[:len(b)/2]), iotest.ErrReader(errors.New("registry gone")))
		}},
		{"trailing garbage", good["tar"], func(b []byte) io.Reader {
			return io.MultiReader(bytes.NewReader(b), strings.NewReader("garbage"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tc.layer
			fsys.mu.Lock()
			fsys.layers["sha256:bad"] = l
			fsys.body = tc.body
			fsys.mu.Unlock()
			defer func() {
				fsys.mu.Lock()
				fsys.body = nil
				fsys.mu.Unlock()
			}()
			key, target := "extract-bad-"+tc.name, "sha256:bad-"+strings.ReplaceAll(tc.name, " ", "-")
			ms, err := s.Prepare(ctx, key, "", layerLabels(target, "sha256:bad"))
			if err != nil {
				t.Fatalf("Prepare: %v, want the active snapshot for containerd", err)
			}
			if entries, err := os.ReadDir(ms[0].Source); err != nil || len(entries) != 0 {
				t.Errorf("active snapshot after the failure: %v, %v; want empty", entries, err)
			}
			if _, err := s.Stat(ctx, target); !errdefs.IsNotFound(err) {
				t.Errorf("target committed from a bad body: %v", err)
			}
			if err := s.Remove(ctx, key); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// BenchmarkDecompress: a 32 MB tar (text-like and random files) as a gzip
// layer body through the verifier and decompress (klauspost/compress in
// a goroutine of its own), against klauspost's and compress/gzip's
// readers inline (the latter is what containerd's applier runs without
// unpigz).
func BenchmarkDecompress(b *testing.B) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	rnd := mrand.New(mrand.NewPCG(1, 2))
	words := strings.Fields("the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we their")
	for i := range 128 {
		var body []byte
		if i%4 == 0 { // incompressible, as binaries' sections often are
			body = make([]byte, 256<<10)
			for j := range body {
				body[j] = byte(rnd.Uint32())
			}
		} else {
			for len(body) < 256<<10 {
				body = append(body, words[rnd.IntN(len(words))]...)
				body = append(body, " \n"[rnd.IntN(2)])
			}
		}
		_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("dir/file%03d", i), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(body)
	}
	_ = tw.Close()
	tarBytes := tb.Bytes()
	var gb bytes.Buffer
	zw, _ := kgzip.NewWriterLevel(&gb, 6)
	_, _ = zw.Write(tarBytes)
	_ = zw.Close()
	blob := gb.Bytes()
	desc := ocispec.Descriptor{Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	b.Run("pipelined", func(b *testing.B) {
		b.SetBytes(int64(len(tarBytes)))
		for range b.N {
			v := &verifier{r: bytes.NewReader(blob), desc: desc, h: desc.Digest.Verifier()}
			r, err := decompress(v)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, r); err != nil || !v.verified {
				b.Fatal(err, v.verified)
			}
			r.Close()
		}
	})
	b.Run("klauspost-gzip", func(b *testing.B) {
		b.SetBytes(int64(len(tarBytes)))
		for range b.N {
			zr, err := kgzip.NewReader(bytes.NewReader(blob))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, zr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compress-gzip", func(b *testing.B) {
		b.SetBytes(int64(len(tarBytes)))
		for range b.N {
			zr, err := stdgzip.NewReader(bytes.NewReader(blob))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, zr); err != nil {
				b.Fatal(err)
			}
		}
	})
}
