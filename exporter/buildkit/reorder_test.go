package buildkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/moby/buildkit/util/compression"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// countingStore counts the content writers opened (one per blob written).
type countingStore struct {
	content.Store
	writers atomic.Int32
}

func (s *countingStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	s.writers.Add(1)
	return s.Store.Writer(ctx, opts...)
}

func tarEntryNames(t *testing.T, cs content.Store, d ocispecs.Descriptor) ([]string, digest.Digest) {
	t.Helper()
	b, err := content.ReadBlob(context.Background(), cs, d)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, digest.FromBytes(plain)
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// TestReorderedBlob converts a plain gzip layer (a cache record's main
// blob) to its reordered blob: the reordered tar, its own diffID, linked
// to the main blob only by socikit's labels (not as a BuildKit compression
// variant), found again without writing anything, and made again if it is
// gone.
func TestReorderedBlob(t *testing.T) {
	ctx := context.Background()
	cs := &countingStore{Store: newTestStore(t)}
	tb := testTar(t, "a/", "a/one", "a/two", "b/", "b/three")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb)
	zw.Close()
	main := putBlob(t, cs, gz.Bytes(), map[string]string{labels.LabelUncompressed: digest.FromBytes(tb).String()})
	main.Annotations = map[string]string{labels.LabelUncompressed: digest.FromBytes(tb).String(), "buildkit/createdat": "x"}

	ct := Compression{SpanSize: 64 << 10, Startup: []string{"/b/three"}, Reorder: true}
	comp := compression.New(ct).SetForce(true)
	n0 := cs.writers.Load()
	d, err := reorderedBlob(ctx, cs, nil, main, comp)
	if err != nil {
		t.Fatal(err)
	}
	if cs.writers.Load() == n0 {
		t.Fatalf("nothing written")
	}
	names, diffID := tarEntryNames(t, cs, d)
	if want := "b/ b/three a/ a/one a/two"; strings.Join(names, " ") != want {
		t.Errorf("reordered tar %v, want %s", names, want)
	}
	if d.Annotations[labels.LabelUncompressed] != diffID.String() || diffID == digest.FromBytes(tb) {
		t.Errorf("uncompressed annotation %s, reordered tar %s, original %s", d.Annotations[labels.LabelUncompressed], diffID, digest.FromBytes(tb))
	}
	if d.Annotations["buildkit/createdat"] != "x" || d.MediaType != ocispecs.MediaTypeImageLayerGzip {
		t.Errorf("descriptor %+v", d)
	}
	info, err := cs.Info(ctx, main.Digest)
	if err != nil {
		t.Fatal(err)
	}
	written := ct
	written.Level = ct.level(&comp)
	p := written.Params().Encoded()
	if info.Labels[LabelReordered+"."+p] != d.Digest.String() || info.Labels[labelGCRefReordered+"."+p] != d.Digest.String() {
		t.Errorf("main blob labels %v: no link to %s", info.Labels, d.Digest)
	}
	for k := range info.Labels {
		if strings.HasPrefix(k, "containerd.io/gc.ref.content.blob-") {
			t.Errorf("main blob label %s: the reordered blob is a BuildKit compression variant", k)
		}
	}
	if info.Labels[labels.LabelUncompressed] != digest.FromBytes(tb).String() {
		t.Errorf("main blob's uncompressed label changed: %v", info.Labels)
	}

	n1 := cs.writers.Load()
	again, err := reorderedBlob(ctx, cs, nil, main, comp)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != d.Digest || again.Annotations[labels.LabelUncompressed] != diffID.String() || cs.writers.Load() != n1 {
		t.Errorf("second call: %+v, %d blobs written; want %s and nothing written", again, cs.writers.Load()-n1, d.Digest)
	}

	// Other parameters: another blob.
	other := ct
	other.Startup = []string{"/a/two"}
	od, err := reorderedBlob(ctx, cs, nil, main, compression.New(other).SetForce(true))
	if err != nil {
		t.Fatal(err)
	}
	if names, _ := tarEntryNames(t, cs, od); strings.Join(names, " ") != "a/ a/two a/one b/ b/three" {
		t.Errorf("other start-up list: tar %v", names)
	}

	// The reordered blob gone (its label dangling): made again, the same.
	if err := cs.Delete(ctx, d.Digest); err != nil {
		t.Fatal(err)
	}
	n2 := cs.writers.Load()
	made, err := reorderedBlob(ctx, cs, nil, main, comp)
	if err != nil {
		t.Fatal(err)
	}
	if made.Digest != d.Digest || cs.writers.Load() == n2 {
		t.Errorf("after deletion: %s (%d written), want %s made again", made.Digest, cs.writers.Load()-n2, d.Digest)
	}
}

func TestUnreordered(t *testing.T) {
	ct := Compression{Startup: []string{"/x"}, Reorder: true, Keep: map[digest.Digest]struct{}{"sha256:1": {}}}
	got := unreordered(compression.New(ct).SetForce(true))
	gt, ok := got.Type.(Compression)
	if !ok || gt.Reorder || got.Force || len(gt.Startup) != 1 || len(gt.Keep) != 1 {
		t.Errorf("unreordered: %+v", got)
	}
	plain := Compression{Startup: []string{"/x"}}
	if got := unreordered(compression.New(plain).SetForce(true)); !got.Force || got.Type.(Compression).Reorder {
		t.Errorf("a compression without reordering changed: %+v", got)
	}
	if got := unreordered(compression.New(compression.Gzip)); got.Type != compression.Gzip {
		t.Errorf("gzip changed: %+v", got)
	}
}
