package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

type convertOptions struct {
	version      soci.Version
	spanSize     int64
	minLayerSize int64
	platforms    []ocispec.Platform
	allPlatforms bool
	prefetch     []string
	profile      *profile.Profile
	plainHTTP    bool
	jobs         int
	buildTool    string
	noLazyZtoc   bool
}

func runConvert(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "convert", "[flags] SRC DST",
		`Index the layers of the image SRC and write a SOCI-enabled image to DST.

SRC and DST are each an OCI layout directory, an OCI layout tar (.tar) or a
registry reference. "oci-layout:PATH" and "oci-archive:PATH.tar" force a
layout; an existing directory, a path ending in .tar, or a path starting with
"/", "./" or "../" is one too. A layout may be followed by ":TAG" (its
org.opencontainers.image.ref.name) or "@sha256:..." to pick the image.

By default the output is a SOCI v2 image: an OCI image index listing the
image manifests (annotated with com.amazon.soci.index-digest) and then the
SOCI indexes. With --index-version v1 the image is copied unchanged and a
v1 SOCI index referring to it is added (referrers API and the sha256-<hex>
fallback tag; in a layout, an index.json entry).

--profile FILE reads a start-up profile (the byte ranges of each file a
start-up reads, socikit.profile.v1 JSON) and puts the spans holding those
bytes in the prefetch artifacts: each path counts in the topmost indexed
layer holding it; paths no indexed layer holds are warned about. With
--prefetch too, both are prefetched (--prefetch paths whole). The layer
blobs are kept, so spans are not cut around the hot ranges.
`)
	var o convertOptions
	version := fs.String("index-version", "v2", "SOCI index version: v1 or v2")
	fs.Int64Var(&o.spanSize, "span-size", ztoc.DefaultSpanSize, "uncompressed bytes between zTOC checkpoints")
	fs.Int64Var(&o.minLayerSize, "min-layer-size", exporter.DefaultMinLayerSize, "layers smaller than this many bytes get no zTOC")
	pl := (*platformList)(&o.platforms)
	fs.Var(pl, "platform", "platform os/arch[/variant] to index (repeatable; default the host platform)")
	lazyZtoc := fs.Bool("lazy-ztoc", true, "put a lazy zTOC (the zTOC without its checkpoint windows, gzip) beside each zTOC: socikit-snapshotter mounts from it, checked, without reading the zTOC")
	fs.BoolVar(&o.allPlatforms, "all-platforms", false, "index every platform of an image index")
	fs.Var((*stringList)(&o.prefetch), "prefetch", "file path whose spans go in the prefetch artifact of its layers (repeatable)")
	profilePath := fs.String("profile", "", "start-up profile (JSON, optionally gzip; package profile): the spans holding its hot byte ranges go in the prefetch artifacts, each path in the topmost layer holding it; merged with --prefetch")
	fs.BoolVar(&o.plainHTTP, "plain-http", false, "allow plain HTTP to registries")
	fs.IntVar(&o.jobs, "jobs", runtime.GOMAXPROCS(0), "layers indexed in parallel")
	fs.StringVar(&o.buildTool, "build-tool-id", ztoc.DefaultBuildTool, "build tool identifier written in zTOCs and indexes")
	timeout := timeoutFlag(fs)
	progressMode := ProgressFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("convert: want SRC and DST, got %d arguments", len(pos))
	}
	if o.version, err = soci.ParseVersion(*version); err != nil {
		return fmt.Errorf("convert: --index-version: %w", err)
	}
	o.noLazyZtoc = !*lazyZtoc
	if o.jobs < 1 {
		return fmt.Errorf("convert: --jobs %d: must be at least 1", o.jobs)
	}
	if o.minLayerSize < 0 {
		return fmt.Errorf("convert: --min-layer-size %d: must not be negative", o.minLayerSize)
	}
	if o.allPlatforms && len(o.platforms) > 0 {
		return errors.New("convert: --platform and --all-platforms exclude each other")
	}
	if err := checkConvertOptions(&o); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	if *profilePath != "" {
		if o.profile, err = readProfile(*profilePath); err != nil {
			return fmt.Errorf("convert: --profile %s: %w", *profilePath, err)
		}
	}
	ctx, cancel := withTimeout(ctx, *timeout)
	defer cancel()
	stop := e.startProgress(*progressMode)
	defer stop()
	return convert(ctx, e, o, pos[0], pos[1])
}

// readProfile reads and validates a start-up profile file.
func readProfile(name string) (*profile.Profile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return profile.Decode(f)
}

// layerKind is how convert treats a layer media type.
type layerKind int

const (
	layerOther   layerKind = iota // not a filesystem layer: copied, not indexed
	layerTar                      // tar or gzip tar: indexed
	layerZstd                     // zstd tar: upstream SOCI cannot index it
	layerForeign                  // non-distributable: not fetched
)

func classifyLayer(mt string) layerKind {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip,
		"application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.docker.image.rootfs.diff.tar":
		return layerTar
	case ocispec.MediaTypeImageLayerZstd, "application/vnd.docker.image.rootfs.diff.tar.zstd":
		return layerZstd
	case "application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
		return layerForeign
	}
	return layerOther
}

// img is one platform image manifest of the source.
type img struct {
	desc     ocispec.Descriptor // as listed (or resolved)
	body     []byte
	manifest ocispec.Manifest
	platform *ocispec.Platform
	index    bool // selected for indexing
}

// layerResult is the zTOC of one indexed layer.
type layerResult = exporter.LayerIndex

// converter holds the state of one conversion.
type converter struct {
	e         *env
	o         convertOptions
	src       image.Source
	dst       image.Target
	samePlace bool
	progress  blobProgress

	mu      sync.Mutex
	results map[digest.Digest]*layerResult
}

func convert(ctx context.Context, e *env, o convertOptions, srcArg, dstArg string) (err error) {
	srcRef, err := image.ParseRef(srcArg, o.plainHTTP)
	if err != nil {
		return fmt.Errorf("convert: source: %w", err)
	}
	dstRef, err := image.ParseRef(dstArg, o.plainHTTP)
	if err != nil {
		return fmt.Errorf("convert: destination: %w", err)
	}
	// Everything that can be checked without I/O is, first.
	tag, err := targetTag(srcRef, dstRef)
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	if dstRef.Digest != "" {
		return fmt.Errorf("convert: destination %s: must not select by digest (use :TAG)", dstArg)
	}
	src, err := image.OpenSource(ctx, srcRef, e.rt)
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	defer src.Close()
	rootDesc, rootBody, err := src.Resolve(ctx)
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	dst, err := image.OpenTarget(ctx, dstRef, e.rt)
	if err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	defer dst.Close()
	// All or nothing: a layout destination is put back as it was (the
	// files written are removed, index.json restored, a directory created
	// for it removed); a layout tar is only written by Commit; in a
	// registry the tag is pushed last (Output.Write), so a failure leaves
	// it untouched and what was pushed unreferenced.
	committed := false
	defer func() {
		if committed {
			return
		}
		if a, ok := dst.(image.Aborter); ok {
			if aerr := a.Abort(); aerr != nil {
				e.warnf("convert failed and %s could not be put back as it was: %v", dstArg, aerr)
			}
		}
	}()
	c := &converter{e: e, o: o, src: src, dst: dst, samePlace: srcRef.SamePlace(dstRef), progress: blobProgress{e: e},
		results: map[digest.Digest]*layerResult{}}
	out, err := c.run(ctx, rootDesc, rootBody, tag)
	if err != nil {
		return fmt.Errorf("convert %s to %s: %w", srcArg, dstArg, err)
	}
	if err := dst.Commit(ctx); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	committed = true
	fmt.Fprintln(e.stdout, out)
	return nil
}

// targetTag is the tag the result gets at dst: the destination's own tag,
// else (for a layout destination) the source's tag, else "latest".
func targetTag(src, dst image.Ref) (string, error) {
	if dst.Kind == image.KindRegistry {
		if dst.Digest != "" {
			return "", fmt.Errorf("destination %s: must be a tag, not a digest", dst)
		}
		if t, ok := dst.Name.(interface{ TagStr() string }); ok {
			return t.TagStr(), nil
		}
		return "", fmt.Errorf("destination %s: must be a tag, not a digest", dst)
	}
	if dst.Tag != "" {
		return dst.Tag, nil
	}
	switch src.Kind {
	case image.KindRegistry:
		if t, ok := src.Name.(interface{ TagStr() string }); ok {
			return t.TagStr(), nil
		}
	default:
		if src.Tag != "" {
			return src.Tag, nil
		}
	}
	return "latest", nil
}

// run converts and returns the digest line to print.
func (c *converter) run(ctx context.Context, rootDesc ocispec.Descriptor, rootBody []byte, tag string) (string, error) {
	images, base, err := c.selectImages(ctx, rootDesc, rootBody)
	if err != nil {
		return "", err
	}
	if err := c.indexAndCopyLayers(ctx, images); err != nil {
		return "", err
	}
	if err := c.applyProfile(images); err != nil {
		return "", err
	}
	req := &exporter.Request{Version: c.o.version, BuildTool: c.o.buildTool, Root: rootDesc, RootBody: rootBody,
		Layers: c.results, Prefetch: c.o.prefetch, NoLazyZtoc: c.o.noLazyZtoc}
	for _, im := range images {
		req.Images = append(req.Images, exporter.ImageManifest{Desc: im.desc, Body: im.body, Platform: im.platform, Skip: !im.index})
	}
	out, err := exporter.Assemble(req)
	var unindexed []exporter.ImageManifest
	switch {
	case errors.Is(err, exporter.ErrNoLayers):
		for _, im := range req.Images {
			if !im.Skip {
				unindexed = append(unindexed, im)
			}
		}
	case err != nil:
		var pe *exporter.PrefetchNotFoundError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("--prefetch %s: no indexed layer of image %s (%s) holds it", pe.Path, pe.Image, pe.Platform)
		}
		return "", err
	default:
		unindexed = out.Unindexed
	}
	for _, im := range unindexed {
		c.e.warnf("image %s (%s): no layer to index (at least --min-layer-size %d bytes, tar or gzip)",
			im.Desc.Digest, platformString(im.Platform), c.o.minLayerSize)
	}
	if err != nil {
		return "", fmt.Errorf("no layer to index: none is a tar or gzip layer of at least %d bytes (--min-layer-size)", c.o.minLayerSize)
	}
	// Entries of the image index that are not converted images
	// (attestations) go to dst with what they reference before the root.
	if base != nil {
		if err := c.copyOthers(ctx, base, images); err != nil {
			return "", err
		}
	} else if c.o.version == soci.V1 && image.IsIndex(rootDesc.MediaType) {
		if err := c.copyOthers(ctx, rootBody, images); err != nil {
			return "", err
		}
	}
	if err := out.Write(ctx, c.dst, tag); err != nil {
		return "", err
	}
	for _, r := range out.Referrers {
		c.e.progressf("SOCI index %s for %s", r.Desc.Digest, r.Subject)
	}
	return out.Root.Desc.Digest.String(), nil
}

// maxMissingShown caps the profile paths a warning names.
const maxMissingShown = 10

// applyProfile adds the spans holding the profile's hot bytes to the
// prefetch spans of the indexed layers of every selected image (of the
// profile's platform, when it names one), each path counted in the
// topmost indexed layer holding it. Paths no indexed layer holds are
// warned about. The zTOCs are those of ztoc.Build (the blobs are kept):
// the spans are not cut around the hot ranges.
func (c *converter) applyProfile(images []*img) error {
	p := c.o.profile
	if p == nil {
		return nil
	}
	var want *ocispec.Platform
	if p.Platform != "" {
		pl, err := parsePlatform(p.Platform)
		if err != nil {
			return fmt.Errorf("--profile: %w", err)
		}
		want = &pl
	}
	applied := 0
	for _, im := range images {
		if !im.index {
			continue
		}
		if want != nil && !platformMatches(*want, im.platform) {
			c.e.warnf("--profile: the profile is for %s; not applied to image %s (%s)", p.Platform, im.desc.Digest, platformString(im.platform))
			continue
		}
		applied++
		zs := make([]*ztoc.Ztoc, len(im.manifest.Layers))
		for i, l := range im.manifest.Layers {
			if r := c.results[l.Digest]; r != nil {
				zs[i] = r.Ztoc
			}
		}
		spans, missing, err := exporter.ImagePrefetchRanges(zs, p)
		if err != nil {
			return fmt.Errorf("--profile: image %s: %w", im.desc.Digest, err)
		}
		n := 0
		for i, l := range im.manifest.Layers {
			if r := c.results[l.Digest]; r != nil && len(spans[i]) > 0 {
				r.Prefetch = exporter.MergeSpans(append(r.Prefetch, spans[i]...))
				n += len(spans[i])
			}
		}
		c.e.progressf("profile: %d span ranges to prefetch in image %s (%s)", n, im.desc.Digest, platformString(im.platform))
		if len(missing) > 0 {
			shown := missing[:min(len(missing), maxMissingShown)]
			more := ""
			if len(missing) > len(shown) {
				more = fmt.Sprintf(" and %d more", len(missing)-len(shown))
			}
			c.e.warnf("--profile: %d of the profile's %d paths are in no indexed layer of image %s (%s): %s%s",
				len(missing), len(p.Files), im.desc.Digest, platformString(im.platform), strings.Join(shown, ", "), more)
		}
	}
	if applied == 0 && want != nil {
		return fmt.Errorf("--profile: the profile is for %s, which no selected image is (use --platform)", p.Platform)
	}
	return nil
}

// selectImages returns the image manifests of the source (all of them; those
// to index are marked) and, for an image index, its bytes.
func (c *converter) selectImages(ctx context.Context, rootDesc ocispec.Descriptor, rootBody []byte) ([]*img, []byte, error) {
	if image.IsManifest(rootDesc.MediaType) {
		im, err := c.loadImage(ctx, rootDesc, rootBody)
		if err != nil {
			return nil, nil, err
		}
		im.index = true
		return []*img{im}, nil, nil
	}
	if !image.IsIndex(rootDesc.MediaType) {
		return nil, nil, fmt.Errorf("source %s: media type %q is neither an image manifest nor an index", rootDesc.Digest, rootDesc.MediaType)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(rootBody, &idx); err != nil {
		return nil, nil, fmt.Errorf("parse image index %s: %w", rootDesc.Digest, err)
	}
	want := c.o.platforms
	if len(want) == 0 && !c.o.allPlatforms {
		want = []ocispec.Platform{hostPlatform()}
	}
	var images []*img
	var available []string
	selected := 0
	for _, d := range idx.Manifests {
		if !isImageEntry(d) {
			continue
		}
		body, err := c.src.Manifest(ctx, d)
		if err != nil {
			return nil, nil, err
		}
		im, err := c.loadImage(ctx, d, body)
		if err != nil {
			return nil, nil, err
		}
		available = append(available, platformString(im.platform))
		images = append(images, im)
	}
	have := make([]*ocispec.Platform, len(images))
	for i, im := range images {
		have[i] = im.platform
	}
	for i, sel := range selectPlatforms(want, have) {
		images[i].index = c.o.allPlatforms || sel
		if images[i].index {
			selected++
		}
	}
	if selected == 0 {
		return nil, nil, fmt.Errorf("image index %s has no manifest for platform %s (it has: %v); use --platform or --all-platforms",
			rootDesc.Digest, (*platformList)(&want).String(), available)
	}
	return images, rootBody, nil
}

// isImageEntry reports whether an image index entry is a platform image
// (not an attestation, nested index or SOCI index).
func isImageEntry(d ocispec.Descriptor) bool { return exporter.IsPlatformImage(d) }

func (c *converter) loadImage(ctx context.Context, d ocispec.Descriptor, body []byte) (*img, error) {
	im := &img{desc: d, body: body, platform: d.Platform}
	if err := json.Unmarshal(body, &im.manifest); err != nil {
		return nil, fmt.Errorf("parse image manifest %s: %w", d.Digest, err)
	}
	switch im.manifest.Config.MediaType {
	case soci.MediaTypeIndexV1, soci.MediaTypeIndexV2:
		return nil, fmt.Errorf("manifest %s is a SOCI index, not an image", d.Digest)
	}
	if im.desc.MediaType == "" {
		im.desc.MediaType = image.MediaTypeOf(body)
	}
	if im.platform == nil {
		cfg, err := image.ReadBlob(ctx, c.src, im.manifest.Config, image.MaxManifestSize)
		if err != nil {
			return nil, fmt.Errorf("read config of %s: %w", d.Digest, err)
		}
		var p ocispec.Platform
		if err := json.Unmarshal(cfg, &p); err != nil {
			return nil, fmt.Errorf("parse config of %s: %w", d.Digest, err)
		}
		im.platform = &ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion}
		if p.OS == "" || p.Architecture == "" {
			// An empty platform in the image index would match no runtime
			// and containerd would pull no layer: take the host's, as for
			// --platform.
			h := hostPlatform()
			c.e.warnf("image %s names no platform in its config; using %s", d.Digest, platformString(&h))
			im.platform = &h
		}
	}
	return im, nil
}

// indexAndCopyLayers indexes every selected tar layer (each once, however
// many images share it) and copies every blob of every image to dst. A
// layer dst lacks is streamed once from the source, into dst and the
// indexer together.
func (c *converter) indexAndCopyLayers(ctx context.Context, images []*img) error {
	type job struct {
		d     ocispec.Descriptor
		index bool
	}
	var jobs []*job
	byDigest := map[digest.Digest]*job{}
	for _, im := range images {
		blobs := append([]ocispec.Descriptor{im.manifest.Config}, im.manifest.Layers...)
		for i, d := range blobs {
			index := false
			if i > 0 && im.index {
				switch classifyLayer(d.MediaType) {
				case layerTar:
					index = d.Size >= c.o.minLayerSize
				case layerZstd:
					if byDigest[d.Digest] == nil {
						c.e.warnf("layer %s is zstd-compressed; SOCI cannot index it, skipping", d.Digest)
					}
				}
			}
			if j := byDigest[d.Digest]; j != nil {
				j.index = j.index || index
				continue
			}
			j := &job{d: d, index: index}
			byDigest[d.Digest] = j
			jobs = append(jobs, j)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.o.jobs)
	for _, j := range jobs {
		if !j.index && (c.samePlace || classifyLayer(j.d.MediaType) == layerForeign) {
			continue // nothing to copy, nothing to index
		}
		c.progress.start(j.d)
		g.Go(func() error {
			if j.index {
				return c.indexLayer(gctx, j.d)
			}
			return c.progress.end(j.d.Digest, c.dst.WriteBlob(gctx, j.d, c.opener(j.d)), "copied, %d bytes", j.d.Size)
		})
	}
	return g.Wait()
}

func (c *converter) opener(d ocispec.Descriptor) image.Opener {
	return func(ctx context.Context) (io.ReadCloser, error) { return c.progress.source(c.src).Blob(ctx, d) }
}

// indexLayer builds the zTOC of layer d, copying it to dst on the way if dst
// lacks it. The layer is read once (again only for an upload retry, whose
// bytes are not indexed twice: layerFeed); the error returned is the first
// cause of a failure.
func (c *converter) indexLayer(ctx context.Context, d ocispec.Descriptor) error {
	opts := []ztoc.Option{ztoc.WithSpanSize(c.o.spanSize), ztoc.WithBuildToolIdentifier(c.o.buildTool)}
	f := newLayerFeed(c.progress.source(c.src), d, opts)
	z, err := f.finish(ctx, c.dst.WriteBlob(ctx, d, f.open))
	if err != nil {
		return c.progress.end(d.Digest, err, "")
	}
	c.warnLayer(d, z)
	return c.addResult(d, z)
}

func (c *converter) addResult(d ocispec.Descriptor, z *ztoc.Ztoc) error {
	if z.CompressedArchiveSize != d.Size {
		return fmt.Errorf("index layer %s: zTOC covers %d bytes of a %d byte layer", d.Digest, z.CompressedArchiveSize, d.Size)
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		return fmt.Errorf("index layer %s: %w", d.Digest, err)
	}
	b, err := ztoc.Marshal(z)
	if err != nil {
		return fmt.Errorf("marshal zTOC of layer %s: %w", d.Digest, err)
	}
	_ = c.progress.end(d.Digest, nil, "indexed, %d spans, %d files, zTOC %d bytes", len(ix.Spans()), len(z.Files), len(b)) // returns the nil it is given
	c.mu.Lock()
	c.results[d.Digest] = &exporter.LayerIndex{Ztoc: z, Blob: b, SpanSize: c.o.spanSize}
	c.mu.Unlock()
	return nil
}

// copyOthers copies the entries of the source image index that are not
// converted images (attestations, other platforms' normalized copies are
// handled by the caller) with everything they reference.
func (c *converter) copyOthers(ctx context.Context, indexBody []byte, images []*img) error {
	var idx ocispec.Index
	if err := json.Unmarshal(indexBody, &idx); err != nil {
		return fmt.Errorf("parse image index: %w", err)
	}
	for _, d := range idx.Manifests {
		if slices.ContainsFunc(images, func(im *img) bool { return im.desc.Digest == d.Digest }) {
			continue
		}
		if err := c.copyTree(ctx, d, 0); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies manifest or index d and what it references to dst.
func (c *converter) copyTree(ctx context.Context, d ocispec.Descriptor, depth int) error {
	if depth > 4 {
		return fmt.Errorf("copy %s: image indexes nested too deep", d.Digest)
	}
	if c.samePlace {
		return nil
	}
	if !image.IsManifest(d.MediaType) && !image.IsIndex(d.MediaType) {
		return c.dst.WriteBlob(ctx, d, c.opener(d))
	}
	body, err := c.src.Manifest(ctx, d)
	if err != nil {
		return err
	}
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("parse manifest %s: %w", d.Digest, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.o.jobs)
	blobs := m.Layers
	if m.Config != nil {
		blobs = append([]ocispec.Descriptor{*m.Config}, blobs...)
	}
	for _, b := range blobs {
		if classifyLayer(b.MediaType) == layerForeign {
			continue
		}
		g.Go(func() error { return c.dst.WriteBlob(gctx, b, c.opener(b)) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, child := range m.Manifests {
		if err := c.copyTree(ctx, child, depth+1); err != nil {
			return err
		}
	}
	return c.dst.PutManifest(ctx, d, body, "")
}
