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
	"time"

	"github.com/containerd/containerd/v2/core/content"
	archiveexporter "github.com/containerd/containerd/v2/core/images/archive"
	"github.com/distribution/reference"
	"github.com/moby/buildkit/exporter"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session"
	sessioncontent "github.com/moby/buildkit/session/content"
	"github.com/moby/buildkit/session/filesync"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/contentutil"
	"github.com/moby/buildkit/util/grpcerrors"
	"github.com/moby/buildkit/util/progress"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"

	"github.com/socikit/socikit/soci"
)

// OCI exporter keys handled here rather than by the soci exporter.
const (
	// keyTar (bool, default true) streams an OCI layout tar to the client
	// (dest=FILE); false writes into the client's OCI layout directory
	// (dest=DIR), as the stock oci exporter does.
	keyTar = "tar"
)

// respIndexDigests is the response key under which the soci exporter lists
// the SOCI index digests it wrote (comma-separated).
const respIndexDigests = "soci.index.digest"

// ociExporter answers --output type=oci. Without soci-* attributes it is the
// stock oci exporter, untouched. With any of them the image is committed and
// indexed exactly as type=soci does (soci-gzip layers, zTOCs, SOCI index, v2
// binding by default) and the result is sent to the client as an OCI layout:
// BuildKit streams dest= only to its built-in exporter types, so this is the
// way to get a SOCI image without a registry (a CI step, for instance).
type ociExporter struct {
	stock exporter.Exporter
	soci  *sociExporter
}

// newOCIExporter wraps the worker's stock oci exporter.
func newOCIExporter(stock exporter.Exporter, opt Opt) (exporter.Exporter, error) {
	se, err := New(opt)
	if err != nil {
		return nil, err
	}
	return &ociExporter{stock: stock, soci: se.(*sociExporter)}, nil
}

func (e *ociExporter) Resolve(ctx context.Context, id int, attrs map[string]string) (exporter.ExporterInstance, error) {
	if !HasSociAttrs(attrs) {
		return e.stock.Resolve(ctx, id, attrs)
	}
	rest := maps.Clone(attrs)
	tar := true
	if v, ok := rest[keyTar]; ok {
		delete(rest, keyTar)
		if err := parseBoolAttr(&tar, keyTar, v); err != nil {
			return nil, err
		}
	}
	for _, k := range []string{keyPush, keyPushByDigest} {
		if v, ok := rest[k]; ok {
			if b, err := strconv.ParseBool(v); v == "" || (err == nil && b) {
				return nil, fmt.Errorf("type=oci with soci-* attributes writes an OCI layout and does not push (%s=%s): use type=soci,push=true to push", k, v)
			}
		}
	}
	_, storeSet := rest[keyStore]
	inst, err := e.soci.Resolve(ctx, id, rest)
	if err != nil {
		return nil, err
	}
	si := inst.(*instance)
	// Like the stock oci exporter, do not name the image in the worker's
	// image store unless asked to.
	if !storeSet {
		si.store = false
	}
	return &ociInstance{instance: si, attrs: attrs, tar: tar}, nil
}

type ociInstance struct {
	*instance
	attrs map[string]string
	tar   bool
}

func (i *ociInstance) Type() string             { return "oci" }
func (i *ociInstance) Name() string             { return "exporting to oci image format with SOCI index" }
func (i *ociInstance) Attrs() map[string]string { return i.attrs }

// Export commits and indexes the image as type=soci does (without pushing),
// then sends the image index (or manifest), every blob under it and, for v1,
// the SOCI index as a referrer, to the client as an OCI layout.
func (i *ociInstance) Export(ctx context.Context, src *exporter.Source, buildInfo exporter.ExportBuildInfo) (map[string]string, exporter.FinalizeFunc, exporter.DescriptorReference, error) {
	resp, _, descref, err := i.instance.Export(ctx, src, buildInfo)
	if err != nil {
		return nil, nil, nil, err
	}
	release := func() {
		if descref != nil {
			if err := descref.Release(); err != nil {
				bklog.G(ctx).Warnf("soci exporter: releasing the image descriptor: %v", err)
			}
		}
	}
	root, err := rootDescriptor(resp)
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	if err := i.send(ctx, src, buildInfo, resp, root); err != nil {
		release()
		return nil, nil, nil, err
	}
	return resp, nil, descref, nil
}

func (i *ociInstance) send(ctx context.Context, src *exporter.Source, buildInfo exporter.ExportBuildInfo, resp map[string]string, root ocispecs.Descriptor) error {
	if root.Annotations == nil {
		root.Annotations = map[string]string{}
	}
	if _, ok := root.Annotations[ocispecs.AnnotationCreated]; !ok {
		tm := time.Now()
		if i.opts.Epoch != nil && i.opts.Epoch.Value != nil {
			tm = *i.opts.Epoch.Value
		}
		root.Annotations[ocispecs.AnnotationCreated] = tm.UTC().Format(time.RFC3339)
	}
	names, err := normalizedNames(resp[exptypes.ExporterImageNameKey])
	if err != nil {
		return err
	}
	if len(names) > 0 {
		resp[exptypes.ExporterImageNameKey] = strings.Join(names, ",")
	}
	dt, err := json.Marshal(root)
	if err != nil {
		return err
	}
	resp[exptypes.ExporterImageDescriptorKey] = base64.StdEncoding.EncodeToString(dt)

	cs := i.e.opt.ContentStore
	sg := session.NewGroup(buildInfo.SessionID)
	mp := contentutil.NewMultiProvider(cs)
	refCfg := i.opts.RefCfg
	refCfg.Compression = i.compression() // the layers Export exported
	for _, ref := range sourceRefs(src) {
		remotes, err := ref.GetRemotes(ctx, false, refCfg, false, sg)
		if err != nil {
			return err
		}
		for _, d := range remotes[0].Descriptors {
			mp.Add(d.Digest, remotes[0].Provider)
		}
	}
	referrers, err := v1Referrers(ctx, cs, resp[respIndexDigests])
	if err != nil {
		return err
	}

	timeoutCtx, cancel := context.WithCancelCause(ctx)
	timeoutCtx, cancelTimeout := context.WithTimeoutCause(timeoutCtx, 5*time.Second, context.DeadlineExceeded)
	defer cancelTimeout()
	defer cancel(context.Canceled)
	caller, err := i.e.opt.SessionManager.Get(timeoutCtx, buildInfo.SessionID, false)
	if err != nil {
		return err
	}

	if !i.tar {
		store := sessioncontent.NewCallerStore(caller, "export")
		if err := contentutil.CopyChain(ctx, store, mp, root); err != nil {
			return fmt.Errorf("copy image to the client's OCI layout: %w", err)
		}
		for _, refs := range referrers {
			for _, d := range refs {
				if err := contentutil.CopyChain(ctx, store, mp, d); err != nil {
					return fmt.Errorf("copy SOCI index %s to the client's OCI layout: %w", d.Digest, err)
				}
			}
		}
		return nil
	}

	opts := []archiveexporter.ExportOpt{
		archiveexporter.WithManifest(root, names...),
		archiveexporter.WithAllPlatforms(),
		archiveexporter.WithSkipDockerManifest(),
	}
	if len(referrers) > 0 {
		opts = append(opts, archiveexporter.WithReferrersProvider(referrers))
	}
	w, err := filesync.CopyFileWriter(ctx, resp, i.id, caller)
	if err != nil {
		return err
	}
	report := progress.OneOff(ctx, "sending tarball")
	if err := archiveexporter.Export(ctx, mp, w, opts...); err != nil {
		w.Close()
		if grpcerrors.Code(err) == codes.AlreadyExists {
			return report(nil)
		}
		return report(err)
	}
	if err := w.Close(); err != nil && grpcerrors.Code(err) != codes.AlreadyExists {
		return report(err)
	}
	return report(nil)
}

// rootDescriptor decodes the descriptor the soci exporter returned.
func rootDescriptor(resp map[string]string) (ocispecs.Descriptor, error) {
	var d ocispecs.Descriptor
	s, ok := resp[exptypes.ExporterImageDescriptorKey]
	if !ok {
		return d, errors.New("soci exporter returned no image descriptor")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return d, fmt.Errorf("decode image descriptor: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decode image descriptor: %w", err)
	}
	return d, nil
}

// referrerMap serves v1 SOCI indexes as referrers of their subjects, so that
// the OCI layout lists them in index.json next to the image (with their
// artifact type and containerd's subject annotation).
type referrerMap map[digest.Digest][]ocispecs.Descriptor

func (m referrerMap) Referrers(_ context.Context, d ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
	refs := m[d.Digest]
	out := make([]ocispecs.Descriptor, len(refs))
	for k, r := range refs {
		r.Annotations = maps.Clone(r.Annotations)
		out[k] = r
	}
	return out, nil
}

// v1Referrers reads the SOCI indexes listed (comma-separated digests) from
// the content store and returns the v1 ones by subject. v2 indexes are
// reachable from the image index and need nothing more.
func v1Referrers(ctx context.Context, cs content.Store, list string) (referrerMap, error) {
	m := referrerMap{}
	for s := range strings.SplitSeq(list, ",") {
		if s == "" {
			continue
		}
		d, err := digest.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("SOCI index digest %q: %w", s, err)
		}
		info, err := cs.Info(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("stat SOCI index %s: %w", d, err)
		}
		desc := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageManifest, Digest: d, Size: info.Size}
		b, err := readBlob(ctx, cs, desc)
		if err != nil {
			return nil, err
		}
		ix, err := soci.ParseIndex(b)
		if err != nil {
			return nil, fmt.Errorf("parse SOCI index %s: %w", d, err)
		}
		if ix.Version != soci.V1 || ix.Subject == nil {
			continue
		}
		desc.ArtifactType = soci.MediaTypeIndexV1
		m[ix.Subject.Digest] = append(m[ix.Subject.Digest], desc)
	}
	return m, nil
}

// normalizedNames turns name=a,b into fully qualified tagged names, as the
// stock oci exporter does for the layout's ref-name annotations.
func normalizedNames(name string) ([]string, error) {
	if name == "" || name == "*" {
		return nil, nil
	}
	var out []string
	for n := range strings.SplitSeq(name, ",") {
		parsed, err := reference.ParseNormalizedNamed(n)
		if err != nil {
			return nil, fmt.Errorf("parse image name %s: %w", n, err)
		}
		out = append(out, reference.TagNameOnly(parsed).String())
	}
	return out, nil
}
