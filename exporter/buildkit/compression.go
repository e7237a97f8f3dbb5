package buildkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/moby/buildkit/util/compression"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// Content-store labels that link a layer blob to the zTOC built while it was
// compressed. BuildKit drops compression finalizer annotations, so the link
// travels as labels; the gc.ref label keeps the zTOC as long as the layer.
const (
	// LabelZtoc (digest) on a layer blob: its zTOC blob.
	LabelZtoc = "dev.socikit.ztoc"
	// LabelZtocSpanSize (decimal) on a layer blob: the span size of its zTOC.
	LabelZtocSpanSize = "dev.socikit.ztoc.span-size"
	// labelGCRefZtoc makes containerd's GC keep the zTOC while the layer lives.
	labelGCRefZtoc = "containerd.io/gc.ref.content.socikit.ztoc"
)

// Compression is a BuildKit compression type: standard gzip (media type
// application/vnd.oci.image.layer.v1.tar+gzip, readable by any client) written
// by ztoc.Compress, which takes zTOC checkpoints at span ends in the same
// pass. The finalizer stores the zTOC in the content store and labels the
// layer blob with LabelZtoc.
type Compression struct {
	// SpanSize is the target uncompressed span size.
	SpanSize int64
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

type compressResult struct {
	blob digest.Digest
	z    *ztoc.Ztoc
}

// Compress returns a compressor that gzips a layer with ztoc.Compress, and a
// finalizer that stores the zTOC and links it to the blob.
func (c Compression) Compress(ctx context.Context, comp compression.Config) (compression.Compressor, compression.Finalizer) {
	var (
		mu       sync.Mutex
		res      *compressResult
		writeErr error
	)
	spanSize := c.SpanSize
	if spanSize <= 0 {
		spanSize = AutoSpanSize
	}
	opts := []ztoc.Option{ztoc.WithSpanSize(spanSize)}
	if comp.Level != nil {
		opts = append(opts, ztoc.WithCompressionLevel(*comp.Level))
	}
	compressor := func(dest io.Writer, mediaType string) (io.WriteCloser, error) {
		ct, err := compression.FromMediaType(mediaType)
		if err != nil {
			return nil, err
		}
		if ct != compression.Gzip {
			return nil, fmt.Errorf("soci-gzip compressor: unsupported media type %q", mediaType)
		}
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			dg := digest.Canonical.Digester()
			z, err := ztoc.Compress(io.MultiWriter(dest, dg.Hash()), pr, opts...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				writeErr = err
				res = nil
				pr.CloseWithError(err)
				return
			}
			res, writeErr = &compressResult{blob: dg.Digest(), z: z}, nil
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
		if err := storeZtoc(ctx, cs, r.blob, r.z, spanSize); err != nil {
			return nil, err
		}
		return nil, nil
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

// storeZtoc writes z to the content store and labels the layer blob with it.
func storeZtoc(ctx context.Context, cs content.Store, layer digest.Digest, z *ztoc.Ztoc, spanSize int64) error {
	zd, err := writeZtoc(ctx, cs, z)
	if err != nil {
		return err
	}
	info, err := cs.Info(ctx, layer)
	if err != nil {
		return fmt.Errorf("stat layer %s: %w", layer, err)
	}
	if info.Labels == nil {
		info.Labels = map[string]string{}
	}
	info.Labels[LabelZtoc] = zd.Digest.String()
	info.Labels[LabelZtocSpanSize] = strconv.FormatInt(spanSize, 10)
	info.Labels[labelGCRefZtoc] = zd.Digest.String()
	if _, err := cs.Update(ctx, info, "labels."+LabelZtoc, "labels."+LabelZtocSpanSize, "labels."+labelGCRefZtoc); err != nil {
		return fmt.Errorf("label layer %s with its ztoc: %w", layer, err)
	}
	return nil
}

// writeZtoc marshals z into the content store.
func writeZtoc(ctx context.Context, cs content.Store, z *ztoc.Ztoc) (ocispecs.Descriptor, error) {
	b, err := ztoc.Marshal(z)
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("marshal ztoc: %w", err)
	}
	desc := ocispecs.Descriptor{MediaType: soci.MediaTypeZtoc, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := writeBlob(ctx, cs, desc, b); err != nil {
		return ocispecs.Descriptor{}, err
	}
	return desc, nil
}

func writeBlob(ctx context.Context, cs content.Store, desc ocispecs.Descriptor, b []byte) error {
	if err := content.WriteBlob(ctx, cs, "socikit-"+desc.Digest.String(), bytes.NewReader(b), desc); err != nil {
		return fmt.Errorf("write blob %s: %w", desc.Digest, err)
	}
	return nil
}
