package buildkit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/moby/buildkit/cache"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter"
	"github.com/moby/buildkit/exporter/containerimage"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/snapshot"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/compression"
	"github.com/moby/buildkit/util/contentutil"
	"github.com/moby/buildkit/util/leaseutil"
	"github.com/moby/buildkit/util/progress"
	"github.com/moby/buildkit/util/push"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Opt holds what the soci exporter needs from the worker.
type Opt struct {
	SessionManager *session.Manager
	ContentStore   content.Store
	Snapshotter    snapshot.Snapshotter
	Applier        diff.Applier
	Differ         diff.Comparer
	// Images is optional: when set, the exported image is named there too.
	Images        images.Store
	RegistryHosts docker.RegistryHosts
	LeaseManager  leases.Manager
}

type sociExporter struct {
	opt Opt
	iw  *containerimage.ImageWriter
}

// New returns the soci exporter.
func New(opt Opt) (exporter.Exporter, error) {
	iw, err := containerimage.NewImageWriter(containerimage.WriterOpt{
		Snapshotter:  opt.Snapshotter,
		ContentStore: opt.ContentStore,
		Applier:      opt.Applier,
		Differ:       opt.Differ,
	})
	if err != nil {
		return nil, err
	}
	return &sociExporter{opt: opt, iw: iw}, nil
}

// Image exporter keys (BuildKit's exptypes) the soci exporter handles
// itself; the others go to containerimage.ImageCommitOpts.Load. Variables
// because BuildKit declares them so.
var (
	keyPush         = string(exptypes.OptKeyPush)
	keyPushByDigest = string(exptypes.OptKeyPushByDigest)
	keyInsecure     = string(exptypes.OptKeyInsecure)
	keyStore        = string(exptypes.OptKeyStore)
	keyUnpack       = string(exptypes.OptKeyUnpack)
	keyCompression  = string(exptypes.OptKeyLayerCompression)
	keyForceComp    = string(exptypes.OptKeyForceCompression)
	keyCompLevel    = string(exptypes.OptKeyCompressionLevel)
)

// Resolve parses the attributes once: the soci-* ones into Options, the
// image ones with BuildKit's own parser.
func (e *sociExporter) Resolve(ctx context.Context, id int, attrs map[string]string) (exporter.ExporterInstance, error) {
	sopts, rest, err := ParseOptions(attrs)
	if err != nil {
		return nil, err
	}
	i := &instance{e: e, id: id, attrs: attrs, sopts: sopts, store: true}
	if v, ok := rest[keyCompression]; ok && v != "" && v != compression.Gzip.String() {
		return nil, fmt.Errorf("soci exporter: compression=%s: SOCI layers are gzip", v)
	}
	i.opts.ForceInlineAttestations = true
	other, err := i.opts.Load(ctx, rest)
	if err != nil {
		return nil, err
	}
	comp := i.opts.RefCfg.Compression
	if comp.Level != nil && (*comp.Level < 1 || *comp.Level > 9) {
		return nil, fmt.Errorf("soci exporter: compression-level=%d: must be 1-9", *comp.Level)
	}
	ct := Compression{SpanSize: sopts.SpanSize, Startup: sopts.Prefetch, Reorder: sopts.Reorder}
	if comp.Level != nil {
		ct.Level = *comp.Level
	}
	// force-compression=true: base-image layers are converted too.
	i.forceAll = comp.Force
	comp.Type = ct
	i.opts.RefCfg.Compression = comp
	for k, v := range other {
		var err error
		switch k {
		case keyPush:
			err = parseBoolAttr(&i.push, k, v)
		case keyPushByDigest:
			err = parseBoolAttr(&i.pushByDigest, k, v)
		case keyInsecure:
			err = parseBoolAttr(&i.insecure, k, v)
		case keyStore:
			err = parseBoolAttr(&i.store, k, v)
		case keyUnpack:
			var b bool
			err = parseBoolAttr(&b, k, v)
			if err == nil && b {
				err = errors.New("soci exporter: unpack=true is not supported")
			}
		case keyCompression, keyForceComp, keyCompLevel:
			// consumed by ImageCommitOpts.Load
		default:
			if i.meta == nil {
				i.meta = map[string][]byte{}
			}
			i.meta[k] = []byte(v)
		}
		if err != nil {
			return nil, err
		}
	}
	return i, nil
}

func parseBoolAttr(dst *bool, k, v string) error {
	if v == "" {
		*dst = true
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("non-bool value %q for %s", v, k)
	}
	*dst = b
	return nil
}

type instance struct {
	e     *sociExporter
	id    int
	attrs map[string]string
	sopts Options
	opts  containerimage.ImageCommitOpts
	meta  map[string][]byte

	push, pushByDigest, insecure, store bool
	// forceAll is force-compression=true: base-image layers are converted
	// to soci-gzip too (their digests change).
	forceAll bool

	mu sync.Mutex
	// comp is the compression Export uses (forced, with the base layers
	// of the exported refs kept), once it has computed it.
	comp *compression.Config
}

func (i *instance) ID() int                  { return i.id }
func (i *instance) Name() string             { return "exporting to image with SOCI index" }
func (i *instance) Type() string             { return ExporterType }
func (i *instance) Attrs() map[string]string { return i.attrs }

// Config is the compression BuildKit uses for the inline cache, which runs
// during Export: the one Export uses once it is known, so that the inline
// cache names the layers the image has.
func (i *instance) Config() *exporter.Config {
	return exporter.NewConfigWithCompression(i.compression())
}

// compression returns the compression Export uses, or before Export the
// parsed one.
func (i *instance) compression() compression.Config {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.comp != nil {
		return unreordered(*i.comp)
	}
	return unreordered(i.opts.RefCfg.Compression)
}

// forcedCompression is the compression for exporting src: soci-gzip forced
// on every layer of the build's own, with the blobs of the base-image
// layers kept (none with force-compression=true). BuildKit keeps the first
// blob it made for a cache record and, unforced, exports that one whatever
// its compression (cache/blobs.go computeBlobChain, cache/remote.go
// getRemote): a layer first compressed for another export (type=image, a
// cache export) would then be exported as plain gzip, indexed afterwards
// with 4 MiB spans and never reordered. Forced, BuildKit asks
// Compression.NeedsConversion of each layer and converts the others with
// our compressor, keeping the result as a variant of the record.
func (i *instance) forcedCompression(ctx context.Context, src *exporter.Source, sopts Options) compression.Config {
	comp := i.opts.RefCfg.Compression
	ct := comp.Type.(Compression)
	ct.SpanSize, ct.Startup, ct.Reorder, ct.Profile = sopts.SpanSize, sopts.Prefetch, sopts.Reorder, sopts.Profile
	if i.forceAll {
		ct.KeepNone = true
	} else {
		ct.Keep = baseLayerBlobs(ctx, src)
	}
	comp.Type = ct
	comp.Force = true
	i.mu.Lock()
	i.comp = &comp
	i.mu.Unlock()
	return comp
}

// Export commits the image with our compression, adds the SOCI index and
// returns a finalizer that pushes the result.
func (i *instance) Export(ctx context.Context, src *exporter.Source, buildInfo exporter.ExportBuildInfo) (_ map[string]string, _ exporter.FinalizeFunc, descref exporter.DescriptorReference, err error) {
	src = src.Clone()
	if src.Metadata == nil {
		src.Metadata = map[string][]byte{}
	}
	maps.Copy(src.Metadata, i.meta)

	sopts, err := i.exportOptions(ctx, src.Metadata)
	if err != nil {
		return nil, nil, nil, err
	}
	opts := i.opts
	opts.RefCfg.Compression = i.forcedCompression(ctx, src, sopts)
	// soci-reorder: reordered layers are made outside BuildKit's cache (reorder.go).
	src = withReorderedLayers(src, opts.RefCfg.Compression, i.e.opt)
	as, _, err := containerimage.ParseAnnotations(src.Metadata)
	if err != nil {
		return nil, nil, nil, err
	}
	opts.Annotations = opts.Annotations.Merge(as)
	opts.SetOCITypesDefault(containerimage.DefaultOCITypes(buildInfo.CompatibilityVersion, src))
	opts.SetOCIArtifactDefault(containerimage.DefaultOCIArtifact(buildInfo.CompatibilityVersion, &opts))
	if err := opts.Validate(); err != nil {
		return nil, nil, nil, err
	}

	ctx, done, err := leaseutil.WithLease(ctx, i.e.opt.LeaseManager, leaseutil.MakeTemporary)
	if err != nil {
		return nil, nil, nil, err
	}
	defer func() {
		if descref == nil {
			if err := done(context.WithoutCancel(ctx)); err != nil {
				bklog.G(ctx).Warnf("soci exporter: releasing the temporary lease: %v", err)
			}
		}
	}()

	desc, _, err := i.e.iw.Commit(ctx, src, buildInfo.SessionID, buildInfo.InlineCache, &opts, buildInfo.CompatibilityVersion, client.ExporterImage)
	if err != nil {
		return nil, nil, nil, err
	}
	configDigest := desc.Annotations[exptypes.ExporterConfigDigestKey]
	delete(desc.Annotations, exptypes.ExporterConfigDigestKey)

	refs := sourceRefs(src)
	sg := session.NewGroup(buildInfo.SessionID)
	// Base layers may still be lazy (not in the content store): fetch them,
	// as they are read to index them and pushed.
	if err := unlazy(ctx, refs, opts, sg); err != nil {
		return nil, nil, nil, err
	}

	cs := i.e.opt.ContentStore
	indexDone := progress.OneOff(ctx, "building SOCI index")
	res, err := addIndexes(ctx, cs, *desc, sopts)
	if err := indexDone(err); err != nil {
		return nil, nil, nil, err
	}

	name := opts.ImageName
	if n, ok := src.Metadata["image.name"]; name == "*" && ok {
		name = string(n)
	}
	resp := map[string]string{}
	if name != "" {
		resp[exptypes.ExporterImageNameKey] = name
	}
	resp[exptypes.ExporterImageDigestKey] = res.root.Digest.String()
	if configDigest != "" {
		resp[exptypes.ExporterImageConfigDigestKey] = configDigest
	}
	dt, err := json.Marshal(res.root)
	if err != nil {
		return nil, nil, nil, err
	}
	resp[exptypes.ExporterImageDescriptorKey] = base64.StdEncoding.EncodeToString(dt)
	if len(res.indexes) > 0 {
		ds := make([]string, len(res.indexes))
		for k, d := range res.indexes {
			ds[k] = d.Digest.String()
		}
		resp["soci.index.digest"] = strings.Join(ds, ",")
	}

	if name != "" && i.store && i.e.opt.Images != nil {
		for n := range strings.SplitSeq(name, ",") {
			if err := nameImage(ctx, i.e.opt.Images, n, res.root); err != nil {
				return nil, nil, nil, err
			}
		}
	}

	descref = containerimage.NewDescriptorReference(res.root, done)
	if !i.push || name == "" {
		return resp, nil, descref, nil
	}
	finalize := func(ctx context.Context) error {
		provider, annotations, err := pushProvider(ctx, cs, refs, opts, sg)
		if err != nil {
			return err
		}
		for n := range strings.SplitSeq(name, ",") {
			if err := push.Push(ctx, i.e.opt.SessionManager, buildInfo.SessionID, provider, cs, res.root.Digest, n, i.insecure, i.e.opt.RegistryHosts, i.pushByDigest, annotations); err != nil {
				return fmt.Errorf("push %s: %w", n, err)
			}
			// A v1 index is a referrer of the image: push it after the image,
			// by digest, so that it never names a manifest the registry lacks.
			if len(res.v1) > 0 {
				repo, _, _ := strings.Cut(n, "@")
				if k := strings.LastIndex(repo, ":"); k > strings.LastIndex(repo, "/") {
					repo = repo[:k]
				}
				for _, d := range res.v1 {
					if err := push.Push(ctx, i.e.opt.SessionManager, buildInfo.SessionID, provider, cs, d.Digest, repo, i.insecure, i.e.opt.RegistryHosts, true, annotations); err != nil {
						return fmt.Errorf("push SOCI index %s to %s: %w", d.Digest, repo, err)
					}
				}
			}
		}
		return nil
	}
	return resp, finalize, descref, nil
}

func sourceRefs(src *exporter.Source) []cache.ImmutableRef {
	var refs []cache.ImmutableRef
	if src.Ref != nil {
		refs = append(refs, src.Ref)
	}
	for _, r := range src.Refs {
		if r != nil {
			refs = append(refs, r)
		}
	}
	return refs
}

func unlazy(ctx context.Context, refs []cache.ImmutableRef, opts containerimage.ImageCommitOpts, sg session.Group) error {
	eg, ctx := errgroup.WithContext(ctx)
	for _, ref := range refs {
		eg.Go(func() error {
			remotes, err := ref.GetRemotes(ctx, false, opts.RefCfg, false, sg)
			if err != nil {
				return err
			}
			if u, ok := remotes[0].Provider.(cache.Unlazier); ok {
				return u.Unlazy(ctx)
			}
			return nil
		})
	}
	return eg.Wait()
}

// pushProvider serves the content store plus the refs' remotes, and collects
// the distribution-source annotations that allow cross-repository mounts.
func pushProvider(ctx context.Context, cs content.Store, refs []cache.ImmutableRef, opts containerimage.ImageCommitOpts, sg session.Group) (content.Provider, map[digest.Digest]map[string]string, error) {
	annotations := map[digest.Digest]map[string]string{}
	mp := contentutil.NewMultiProvider(cs)
	for _, ref := range refs {
		remotes, err := ref.GetRemotes(ctx, false, opts.RefCfg, false, sg)
		if err != nil {
			return nil, nil, err
		}
		for _, d := range remotes[0].Descriptors {
			mp.Add(d.Digest, remotes[0].Provider)
			for k, v := range d.Annotations {
				if strings.HasPrefix(k, "containerd.io/distribution.source.") {
					if annotations[d.Digest] == nil {
						annotations[d.Digest] = map[string]string{}
					}
					annotations[d.Digest][k] = v
				}
			}
		}
	}
	return mp, annotations, nil
}

func nameImage(ctx context.Context, is images.Store, name string, target ocispecs.Descriptor) error {
	img := images.Image{Name: name, Target: target}
	if _, err := is.Update(ctx, img); err == nil {
		return nil
	}
	if _, err := is.Create(ctx, img); err != nil {
		if _, uerr := is.Update(ctx, img); uerr != nil {
			return fmt.Errorf("name image %s: %w", name, err)
		}
	}
	bklog.G(ctx).Debugf("soci exporter: named %s", name)
	return nil
}
