// Command upstreamindex writes a SOCI v2 image whose zTOCs are built by
// upstream soci-snapshotter's builder (github.com/awslabs/soci-snapshotter
// v0.16.1 ztoc.Builder, cgo zlib) and marshalled by upstream's
// ztoc.Marshal; the SOCI index manifest and the v2 binding are socikit's
// (package soci), which write upstream's layout. The runtime tests use it
// to run images indexed by upstream through socikit-snapshotter.
//
//	go run ./internal/upstreamindex [-plain-http] [-span-size N] [-min-layer-size N] SRC DST
//
// SRC names one single-platform image (a registry reference or an OCI
// layout, as `socikit convert` takes them); DST must be a tag. The image's
// blobs are copied to DST's repository, then the zTOCs, the index, the
// rewritten manifest and the image index, which DST's tag then names.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	uz "github.com/awslabs/soci-snapshotter/ztoc"
	ucomp "github.com/awslabs/soci-snapshotter/ztoc/compression"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/soci"
)

// buildTool is what upstream's CLI writes.
const buildTool = "AWS SOCI CLI v0.2"

func main() {
	plainHTTP := flag.Bool("plain-http", false, "allow plain HTTP to registries")
	span := flag.Int64("span-size", 1<<22, "span size of upstream's builder")
	minSize := flag.Int64("min-layer-size", 10<<20, "layers smaller than this get no zTOC")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: upstreamindex [flags] SRC DST")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, flag.Arg(0), flag.Arg(1), *plainHTTP, *span, *minSize); err != nil {
		fmt.Fprintln(os.Stderr, "upstreamindex:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, srcArg, dstArg string, plainHTTP bool, span, minSize int64) error {
	srcRef, err := image.ParseRef(srcArg, plainHTTP)
	if err != nil {
		return err
	}
	dstRef, err := image.ParseRef(dstArg, plainHTTP)
	if err != nil {
		return err
	}
	tag := dstRef.Tag
	if t, ok := dstRef.Name.(interface{ TagStr() string }); ok {
		tag = t.TagStr()
	}
	if tag == "" {
		tag = "latest"
	}
	src, err := image.OpenSource(ctx, srcRef, nil)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := image.OpenTarget(ctx, dstRef, nil)
	if err != nil {
		return err
	}
	defer dst.Close()

	desc, body, err := src.Resolve(ctx)
	if err != nil {
		return err
	}
	if !image.IsManifest(image.MediaTypeOf(body)) {
		return fmt.Errorf("%s is not a single-platform image manifest (%s)", srcArg, image.MediaTypeOf(body))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("parse manifest: %w", err)
	}
	cfgBody, err := readBlob(ctx, src, m.Config)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgBody, &cfg); err != nil {
		return fmt.Errorf("parse config: %w", err)
	}
	platform := &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}

	copyBlob := func(d ocispec.Descriptor) error {
		return dst.WriteBlob(ctx, d, func(ctx context.Context) (io.ReadCloser, error) { return src.Blob(ctx, d) })
	}
	if err := copyBlob(m.Config); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "upstreamindex-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ix := soci.Index{Version: soci.V2, BuildTool: buildTool}
	for i, l := range m.Layers {
		if err := copyBlob(l); err != nil {
			return fmt.Errorf("copy layer %s: %w", l.Digest, err)
		}
		if l.Size < minSize {
			continue
		}
		if !strings.Contains(l.MediaType, "gzip") {
			return fmt.Errorf("layer %s: %s is not gzip", l.Digest, l.MediaType)
		}
		path := filepath.Join(tmp, fmt.Sprintf("layer-%d", i))
		if err := saveBlob(ctx, src, l, path); err != nil {
			return fmt.Errorf("read layer %s: %w", l.Digest, err)
		}
		zb, err := upstreamZtoc(path, span)
		if err != nil {
			return fmt.Errorf("upstream zTOC of layer %s: %w", l.Digest, err)
		}
		os.Remove(path)
		zd := ocispec.Descriptor{MediaType: soci.MediaTypeZtoc, Digest: digest.FromBytes(zb), Size: int64(len(zb))}
		if err := writeBytes(ctx, dst, zd, zb); err != nil {
			return err
		}
		ix.Layers = append(ix.Layers, soci.LayerZtoc{LayerDigest: l.Digest, LayerMediaType: l.MediaType, Ztoc: zd, SpanSize: span})
	}
	if len(ix.Layers) == 0 {
		return errors.New("no layer is large enough to index")
	}
	ixBody, ixDesc, err := ix.Marshal()
	if err != nil {
		return err
	}
	cfgDesc := soci.V2.ConfigDescriptor()
	if err := writeBytes(ctx, dst, cfgDesc, []byte(soci.EmptyConfigJSON)); err != nil {
		return err
	}
	if err := dst.PutManifest(ctx, ixDesc, ixBody, ""); err != nil {
		return fmt.Errorf("put SOCI index: %w", err)
	}
	newBody, newDesc, err := soci.BindV2(body, platform, ixDesc)
	if err != nil {
		return err
	}
	if err := dst.PutManifest(ctx, newDesc, newBody, ""); err != nil {
		return fmt.Errorf("put image manifest: %w", err)
	}
	newDesc.Platform = platform
	idxBody, idxDesc, err := soci.BuildImageIndex(nil, []soci.BoundImage{{Original: desc.Digest, Manifest: newDesc, Index: ixDesc}})
	if err != nil {
		return err
	}
	if err := dst.PutManifest(ctx, idxDesc, idxBody, tag); err != nil {
		return fmt.Errorf("put image index: %w", err)
	}
	if err := dst.Commit(ctx); err != nil {
		return err
	}
	fmt.Println(idxDesc.Digest)
	return nil
}

// upstreamZtoc builds and marshals a zTOC with upstream's code.
func upstreamZtoc(path string, span int64) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("upstream panicked: %v", r)
		}
	}()
	z, err := uz.NewBuilder(buildTool).BuildZtoc(path, span, uz.WithCompression(ucomp.Gzip))
	if err != nil {
		return nil, err
	}
	r, _, err := uz.Marshal(z)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func readBlob(ctx context.Context, src image.Source, d ocispec.Descriptor) ([]byte, error) {
	rc, err := src.Blob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return image.ReadAll(rc, 64<<20)
}

func saveBlob(ctx context.Context, src image.Source, d ocispec.Descriptor, path string) error {
	rc, err := src.Blob(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeBytes(ctx context.Context, dst image.Target, d ocispec.Descriptor, b []byte) error {
	return dst.WriteBlob(ctx, d, func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(string(b))), nil
	})
}
