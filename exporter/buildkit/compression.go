package buildkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/labels"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/compression"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/profile"
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
	// LabelCompressed + "." + setting (digest) on a layer blob that
	// Compression wrote: the digest of the parameters it was written with
	// (Compression.Params). A blob satisfies a Compression only if it
	// carries this label with the same parameters (NeedsConversion).
	LabelCompressed = "dev.socikit.compressed"
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

// compressedLabel is the LabelCompressed key for span setting spanSize.
func compressedLabel(spanSize int64) string {
	return LabelCompressed + "." + SpanSetting(spanSize)
}

// Compression is a BuildKit compression type: standard gzip (media type
// application/vnd.oci.image.layer.v1.tar+gzip, readable by any client) written
// by exporter.BuildLayerStream, which plans spans from the tar as it streams
// (or uses SpanSize) and takes zTOC checkpoints at span ends in the same
// pass. The finalizer stores the zTOC in the content store and labels the
// layer blob with it (see LabelZtoc) and with the parameters it was written
// with (LabelCompressed).
//
// For BuildKit a plain gzip blob is not a soci-gzip blob: NeedsConversion
// accepts only a blob this type wrote with the same parameters, or one of
// the Keep blobs (base-image layers, kept as they are). The soci exporter
// exports with this type forced (compression.Config.Force), so BuildKit
// converts every other cached blob of the build's own layers (a plain gzip
// blob left by a type=image export, say) with this compressor, links the
// result to the cache record as a compression variant, and finds it there
// on the next export with the same parameters.
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
	// Profile is the start-up profile (byte ranges): with it, span cuts
	// isolate the hot ranges of big files and reordering puts the files
	// with hot ranges first (exporter.WithProfile). Startup, if also set,
	// adds whole files.
	Profile *profile.Profile
	// Level is the gzip level (1-9); 0 is exporter.DefaultCompressionLevel.
	// BuildKit's compression.Config.Level, when set, is the same value.
	Level int
	// Keep lists blobs used as they are whatever wrote them: the layers of
	// base images, whose digests are shared with the images they come from.
	// NeedsConversion is false for them.
	Keep map[digest.Digest]struct{}
	// KeepNone marks a forced compression with nothing kept (the exporter's
	// force-compression=true): it only changes String, so that BuildKit's
	// per-ref flight for this type is not shared with a conversion that
	// keeps base layers.
	KeepNone bool
}

var _ compression.Type = Compression{}

// String names the type in BuildKit's logs and in the keys of its per-ref
// conversion flights (cache/blobs.go ensureCompression): two exports with
// different parameters must not share one, so the name carries a digest of
// the parameters.
func (c Compression) String() string {
	s := "soci-gzip-" + c.Params().Encoded()[:12]
	if c.KeepNone {
		s += "-all"
	}
	return s
}

// level is the gzip level: comp.Level when BuildKit's config has one, else
// Level, else exporter.DefaultCompressionLevel.
func (c Compression) level(comp *compression.Config) int {
	switch {
	case comp != nil && comp.Level != nil:
		return *comp.Level
	case c.Level != 0:
		return c.Level
	}
	return exporter.DefaultCompressionLevel
}

// Params is the digest of everything a blob written by this type depends on
// besides the layer's tar: span setting, gzip level, start-up files and
// reordering. It is the value of the LabelCompressed label.
func (c Compression) Params() digest.Digest {
	var b strings.Builder
	// Version 2: a start-up list or profile begins with
	// exporter.RuntimeFiles.
	fmt.Fprintf(&b, "socikit soci-gzip 2\nspan %s\nlevel %d\nreorder %t\n", SpanSetting(c.SpanSize), c.level(nil), c.Reorder)
	for _, p := range c.Startup {
		fmt.Fprintf(&b, "startup %q\n", p)
	}
	if c.Profile != nil {
		// Marshal is deterministic; a profile that does not encode
		// cannot be used either (layerOptions fails on it).
		pb, err := profile.Marshal(c.Profile)
		if err != nil {
			pb = []byte(err.Error())
		}
		fmt.Fprintf(&b, "profile %s\n", digest.FromBytes(pb))
	}
	return digest.FromString(b.String())
}

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

// NeedsConversion tells BuildKit whether blob desc must be converted to be
// a soci-gzip layer: not for a Keep blob (a base-image layer, used as it is
// and indexed by the exporter with ztoc.Build) nor for a blob this type
// wrote with the same parameters (LabelCompressed); yes for any other layer
// blob, plain gzip included. BuildKit asks for each layer of the exported
// chain when the compression is forced (cache/remote.go getRemote), and for
// each cached variant of a layer when it looks for one (cache/refs.go
// getBlobWithCompression); a blob that is not in the content store (a lazy
// layer) needs conversion only if it is not kept, which happens only with
// force-compression=true.
func (c Compression) NeedsConversion(ctx context.Context, cs content.Store, desc ocispecs.Descriptor) (bool, error) {
	if !images.IsLayerType(desc.MediaType) {
		return false, nil
	}
	if _, ok := c.Keep[desc.Digest]; ok {
		return false, nil
	}
	info, err := cs.Info(ctx, desc.Digest)
	if cerrdefs.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return !c.wrote(info.Labels), nil
}

// wrote reports whether a blob with these labels was written by this type
// with the same parameters (and has its zTOC).
func (c Compression) wrote(l map[string]string) bool {
	zk, _, _ := ztocLabels(c.SpanSize)
	return l[compressedLabel(c.SpanSize)] == c.Params().String() && l[zk] != ""
}

// layerOptions are the exporter options for a layer compressed with config
// comp: span setting, start-up files and gzip level (BuildKit's
// compression-level, else exporter.DefaultCompressionLevel).
func (c Compression) layerOptions(comp compression.Config) []exporter.Option {
	opts := []exporter.Option{exporter.WithSpanSize(c.SpanSize), exporter.WithBuildToolIdentifier(BuildTool),
		exporter.WithCompressionLevel(c.level(&comp))}
	if len(c.Startup) > 0 {
		opts = append(opts, exporter.WithStartupFiles(c.Startup))
	}
	if c.Profile != nil {
		opts = append(opts, exporter.WithProfile(c.Profile))
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
	// The parameters the blob is labelled with: those of this type at the
	// level actually used.
	written := c
	written.Level = c.level(&comp)
	params := written.Params()
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
		var ann map[string]string
		if c.Reorder {
			// BuildKit takes the diffID from this label once the finalizer
			// has run (and the timestamp-rewriting converter from the
			// annotation): the reordered tar's digest, not that of the tar it
			// streamed. Set before LabelCompressed, which says the blob is
			// complete.
			info := content.Info{Digest: r.Digest, Labels: map[string]string{labels.LabelUncompressed: r.DiffID.String()}}
			if _, err := cs.Update(ctx, info, "labels."+labels.LabelUncompressed); err != nil {
				return nil, fmt.Errorf("label reordered layer %s with its diffID: %w", r.Digest, err)
			}
			ann = map[string]string{labels.LabelUncompressed: r.DiffID.String()}
		}
		if err := storeZtoc(ctx, cs, r.Digest, r.ZtocBlob, c.SpanSize, r.Spans.Size, params); err != nil {
			return nil, err
		}
		bklog.G(ctx).Infof("soci-gzip: compressed layer %s (diffID %s, span setting %s, %s, %d entries moved first)",
			r.Digest, r.DiffID, SpanSetting(c.SpanSize), r.Spans, len(r.Reordered))
		return ann, nil
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
// used (the annotation's value), params the LabelCompressed value (none if
// empty).
func storeZtoc(ctx context.Context, cs content.Store, layer digest.Digest, zb []byte, setting, chosen int64, params digest.Digest) error {
	zd := ocispecs.Descriptor{MediaType: soci.MediaTypeZtoc, Digest: digest.FromBytes(zb), Size: int64(len(zb))}
	if err := writeBlob(ctx, cs, zd, zb); err != nil {
		return err
	}
	zk, sk, gk := ztocLabels(setting)
	info := content.Info{Digest: layer, Labels: map[string]string{
		zk: zd.Digest.String(),
		sk: strconv.FormatInt(chosen, 10),
		gk: zd.Digest.String(),
	}}
	fields := []string{"labels." + zk, "labels." + sk, "labels." + gk}
	if params != "" {
		ck := compressedLabel(setting)
		info.Labels[ck] = params.String()
		fields = append(fields, "labels."+ck)
	}
	if _, err := cs.Update(ctx, info, fields...); err != nil {
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
