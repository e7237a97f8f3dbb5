package buildkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/compression"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/soci"
)

// Content-store labels that link a layer blob to the zTOC built while it was
// compressed. BuildKit drops compression finalizer annotations, so the link
// travels as labels; the gc.ref label keeps the zTOC as long as the layer.
// Each label key ends with the span setting the zTOC was made for ("auto"
// or a byte count, see SpanSetting): a blob BuildKit reuses from its cache
// keeps the zTOCs of earlier builds, and a build that asks for another span
// setting finds no label of its own and indexes the blob again (ztoc.Build)
// instead of using a zTOC made for other spans.
const (
	// LabelZtoc + "." + setting (digest) on a layer blob: its zTOC blob.
	LabelZtoc = "dev.socikit.ztoc"
	// LabelZtocSpanSize + "." + setting (decimal) on a layer blob: the span
	// size of its zTOC (for auto, the size the planner chose last).
	LabelZtocSpanSize = "dev.socikit.ztoc.span-size"
	// labelGCRefZtoc + "." + setting makes containerd's GC keep the zTOC
	// while the layer lives.
	labelGCRefZtoc = "containerd.io/gc.ref.content.socikit.ztoc"
)

// SpanSetting names a span size option in label keys: "auto" for 0, else
// the byte count.
func SpanSetting(spanSize int64) string {
	if spanSize <= 0 {
		return "auto"
	}
	return strconv.FormatInt(spanSize, 10)
}

// ztocLabels returns the label keys for the zTOC, its span size and its GC
// reference under span setting spanSize.
func ztocLabels(spanSize int64) (ztocKey, sizeKey, gcKey string) {
	s := "." + SpanSetting(spanSize)
	return LabelZtoc + s, LabelZtocSpanSize + s, labelGCRefZtoc + s
}

// Compression is a BuildKit compression type: standard gzip (media type
// application/vnd.oci.image.layer.v1.tar+gzip, readable by any client) written
// by exporter.BuildLayerStream, which plans spans from the tar as it streams
// (or uses SpanSize) and takes zTOC checkpoints at span ends in the same
// pass. The finalizer stores the zTOC in the content store and labels the
// layer blob with it (see LabelZtoc).
type Compression struct {
	// SpanSize is the target uncompressed span size; 0 chooses it from the
	// layer's content (exporter.StreamPlanner).
	SpanSize int64
	// Startup lists the files read at start-up (the prefetch list): auto
	// span planning cuts around them.
	Startup []string
	// Reorder moves the Startup files to the front of each layer this type
	// compresses (exporter.BuildLayer with exporter.WithReorder). The
	// layer's tar stream is spooled to a temporary file first, as
	// reordering needs the whole tar; the finalizer then sets the blob's
	// uncompressed digest (the diffID BuildKit puts in the image config) to
	// that of the reordered tar.
	Reorder bool
}

var _ compression.Type = Compression{}

// String names the type in BuildKit's logs and cache records.
func (c Compression) String() string { return "soci-gzip" }

// MediaType is the OCI gzip layer type: the layers are plain gzip.
func (c Compression) MediaType() string { return ocispecs.MediaTypeImageLayerGzip }

// OnlySupportOCITypes is false: Docker gzip layer types work too.
func (c Compression) OnlySupportOCITypes() bool { return false }

// NeedsComputeDiffBySelf is true so that BuildKit computes the diff itself
// with our compressor whatever the differ.
func (c Compression) NeedsComputeDiffBySelf(compression.Config) bool { return true }

// Decompress reads a gzip layer.
func (c Compression) Decompress(ctx context.Context, cs content.Store, desc ocispecs.Descriptor) (io.ReadCloser, error) {
	return compression.Gzip.Decompress(ctx, cs, desc)
}

// NeedsConversion is gzip's rule: any gzip layer (not eStargz) is used as it
// is and indexed by the exporter with ztoc.Build.
func (c Compression) NeedsConversion(ctx context.Context, cs content.Store, desc ocispecs.Descriptor) (bool, error) {
	return compression.Gzip.NeedsConversion(ctx, cs, desc)
}

// layerOptions are the exporter options for a layer compressed with config
// comp: span setting, start-up files and gzip level (BuildKit's
// compression-level, else exporter.DefaultCompressionLevel).
func (c Compression) layerOptions(comp compression.Config) []exporter.Option {
	opts := []exporter.Option{exporter.WithSpanSize(c.SpanSize), exporter.WithBuildToolIdentifier(BuildTool)}
	if len(c.Startup) > 0 {
		opts = append(opts, exporter.WithStartupFiles(c.Startup))
	}
	if comp.Level != nil {
		opts = append(opts, exporter.WithCompressionLevel(*comp.Level))
	}
	if c.Reorder {
		opts = append(opts, exporter.WithReorder(true))
	}
	return opts
}

// Compress returns a compressor that gzips a layer with
// exporter.BuildLayerStream, and a finalizer that stores the zTOC and links
// it to the blob.
func (c Compression) Compress(ctx context.Context, comp compression.Config) (compression.Compressor, compression.Finalizer) {
	var (
		mu       sync.Mutex
		res      *exporter.LayerResult
		writeErr error
	)
	opts := c.layerOptions(comp)
	compressor := func(dest io.Writer, mediaType string) (io.WriteCloser, error) {
		ct, err := compression.FromMediaType(mediaType)
		if err != nil {
			return nil, err
		}
		if ct != compression.Gzip {
			return nil, fmt.Errorf("soci-gzip compressor: unsupported media type %q", mediaType)
		}
		if c.Reorder {
			return newSpoolWriter(func(f *os.File, size int64) error {
				r, err := exporter.BuildLayer(ctx, dest, f, size, opts...)
				mu.Lock()
				defer mu.Unlock()
				res, writeErr = r, err
				return err
			})
		}
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			r, err := exporter.BuildLayerStream(ctx, dest, pr, opts...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				writeErr = err
				res = nil
				pr.CloseWithError(err)
				return
			}
			res, writeErr = r, nil
			// Drain anything after the tar end so the writer never blocks.
			_, _ = io.Copy(io.Discard, pr)
		}()
		return &pipeCloser{PipeWriter: pw, done: done, err: func() error {
			mu.Lock()
			defer mu.Unlock()
			return writeErr
		}}, nil
	}
	finalize := func(ctx context.Context, cs content.Store) (map[string]string, error) {
		mu.Lock()
		r, werr := res, writeErr
		mu.Unlock()
		if r == nil {
			if werr != nil {
				return nil, fmt.Errorf("soci-gzip: compress layer: %w", werr)
			}
			return nil, errors.New("soci-gzip: no layer was compressed")
		}
		if err := storeZtoc(ctx, cs, r.Digest, r.ZtocBlob, c.SpanSize, r.Spans.Size); err != nil {
			return nil, err
		}
		bklog.G(ctx).Debugf("soci-gzip: layer %s: %s", r.Digest, r.Spans)
		if !c.Reorder {
			return nil, nil
		}
		// BuildKit takes the diffID from this label once the finalizer has
		// run (and the timestamp-rewriting converter from the annotation):
		// the reordered tar's digest, not that of the tar it streamed.
		info := content.Info{Digest: r.Digest, Labels: map[string]string{labels.LabelUncompressed: r.DiffID.String()}}
		if _, err := cs.Update(ctx, info, "labels."+labels.LabelUncompressed); err != nil {
			return nil, fmt.Errorf("label reordered layer %s with its diffID: %w", r.Digest, err)
		}
		bklog.G(ctx).Debugf("soci-gzip: layer %s reordered: %d entries moved first, diffID %s", r.Digest, len(r.Reordered), r.DiffID)
		return map[string]string{labels.LabelUncompressed: r.DiffID.String()}, nil
	}
	return compressor, finalize
}

// pipeCloser closes the pipe and waits for the compressor to finish.
type pipeCloser struct {
	*io.PipeWriter
	done chan struct{}
	err  func() error
}

func (p *pipeCloser) Close() error {
	if err := p.PipeWriter.Close(); err != nil {
		return err
	}
	<-p.done
	return p.err()
}

// spoolWriter spools a layer's tar to a temporary file and, on Close,
// hands the file to build.
type spoolWriter struct {
	f     *os.File
	n     int64
	build func(f *os.File, size int64) error
	once  sync.Once
	err   error
}

func newSpoolWriter(build func(f *os.File, size int64) error) (*spoolWriter, error) {
	f, err := os.CreateTemp("", "socikit-layer-*.tar")
	if err != nil {
		return nil, fmt.Errorf("soci-gzip: spool layer: %w", err)
	}
	return &spoolWriter{f: f, build: build}, nil
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}

// Close builds the layer; BuildKit's differs may call it more than once.
func (w *spoolWriter) Close() error {
	w.once.Do(func() {
		defer os.Remove(w.f.Name())
		defer w.f.Close()
		if err := w.build(w.f, w.n); err != nil {
			w.err = fmt.Errorf("soci-gzip: reorder layer: %w", err)
		}
	})
	return w.err
}

// storeZtoc writes the zTOC blob zb to the content store and labels the
// layer blob with it under span setting setting; chosen is the span size
// used (the annotation's value).
func storeZtoc(ctx context.Context, cs content.Store, layer digest.Digest, zb []byte, setting, chosen int64) error {
	zd := ocispecs.Descriptor{MediaType: soci.MediaTypeZtoc, Digest: digest.FromBytes(zb), Size: int64(len(zb))}
	if err := writeBlob(ctx, cs, zd, zb); err != nil {
		return err
	}
	info, err := cs.Info(ctx, layer)
	if err != nil {
		return fmt.Errorf("stat layer %s: %w", layer, err)
	}
	if info.Labels == nil {
		info.Labels = map[string]string{}
	}
	zk, sk, gk := ztocLabels(setting)
	info.Labels[zk] = zd.Digest.String()
	info.Labels[sk] = strconv.FormatInt(chosen, 10)
	info.Labels[gk] = zd.Digest.String()
	if _, err := cs.Update(ctx, info, "labels."+zk, "labels."+sk, "labels."+gk); err != nil {
		return fmt.Errorf("label layer %s with its ztoc: %w", layer, err)
	}
	return nil
}

func writeBlob(ctx context.Context, cs content.Store, desc ocispecs.Descriptor, b []byte) error {
	if err := content.WriteBlob(ctx, cs, "socikit-"+desc.Digest.String(), bytes.NewReader(b), desc); err != nil {
		return fmt.Errorf("write blob %s: %w", desc.Digest, err)
	}
	return nil
}
