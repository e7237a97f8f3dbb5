package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/soci"
)

// userAgent is sent to registries.
const userAgent = "socikit"

// Registry is a repository in a registry, usable as a Source and a Target.
// Credentials come from the docker config (authn.DefaultKeychain), or from
// the keychain the transport carries (KeychainTransport).
type Registry struct {
	ref    name.Reference
	repo   name.Repository
	rt     http.RoundTripper
	kc     authn.Keychain
	puller *remote.Puller
	pusher *remote.Pusher
}

// KeychainTransport is a base HTTP transport that carries the keychain
// registry clients are to take credentials from, in place of the docker
// config: OpenRegistry and snapshotter/remote's NewRegistryBlob (which
// recognizes it by its methods) use Keychain and send requests through
// Base. The socikit-snapshotter daemon hands one to every registry client it
// makes, so that credentials captured from CRI pulls reach them all.
type KeychainTransport struct {
	// Base is the transport requests go through (nil: each client's
	// default).
	Base http.RoundTripper
	// Keychain finds credentials (nil: authn.DefaultKeychain).
	Keychain authn.Keychain
}

// RoundTrip sends r through Base, or remote.DefaultTransport.
func (t *KeychainTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.Base == nil {
		return remote.DefaultTransport.RoundTrip(r)
	}
	return t.Base.RoundTrip(r)
}

// BaseTransport returns Base (nil for the client's default).
func (t *KeychainTransport) BaseTransport() http.RoundTripper { return t.Base }

// RegistryKeychain returns Keychain, or authn.DefaultKeychain.
func (t *KeychainTransport) RegistryKeychain() authn.Keychain {
	if t.Keychain == nil {
		return authn.DefaultKeychain
	}
	return t.Keychain
}

// splitTransport returns the keychain rt carries and the transport under it
// (authn.DefaultKeychain and rt itself for any other transport).
func splitTransport(rt http.RoundTripper) (http.RoundTripper, authn.Keychain) {
	if kt, ok := rt.(*KeychainTransport); ok {
		return kt.Base, kt.RegistryKeychain()
	}
	return rt, authn.DefaultKeychain
}

var (
	_ Source         = (*Registry)(nil)
	_ RangeSource    = (*Registry)(nil)
	_ ReferrerSource = (*Registry)(nil)
	_ Target         = (*Registry)(nil)
)

// OpenRegistry returns the repository of ref. rt is the base HTTP transport
// (nil for remote.DefaultTransport); a *KeychainTransport also says where
// credentials come from.
func OpenRegistry(ref name.Reference, rt http.RoundTripper) (*Registry, error) {
	rt, kc := splitTransport(rt)
	if rt == nil {
		rt = remote.DefaultTransport
	}
	opts := []remote.Option{
		remote.WithAuthFromKeychain(kc),
		remote.WithTransport(rt),
		remote.WithUserAgent(userAgent),
	}
	puller, err := remote.NewPuller(opts...)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ref, err)
	}
	pusher, err := remote.NewPusher(opts...)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ref, err)
	}
	return &Registry{ref: ref, repo: ref.Context(), rt: rt, kc: kc, puller: puller, pusher: pusher}, nil
}

func (r *Registry) options(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(r.kc),
		remote.WithTransport(r.rt),
		remote.WithUserAgent(userAgent),
	}
}

// Tag returns the tag of the reference, or "" for a digest reference.
func (r *Registry) Tag() string {
	if t, ok := r.ref.(name.Tag); ok {
		return t.TagStr()
	}
	return ""
}

// Resolve fetches the manifest or index the reference names.
func (r *Registry) Resolve(ctx context.Context) (ocispec.Descriptor, []byte, error) {
	d, err := r.puller.Get(ctx, r.ref)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("resolve %s: %w", r.ref, wrapNotFound(err))
	}
	if len(d.Manifest) > MaxManifestSize {
		return ocispec.Descriptor{}, nil, fmt.Errorf("resolve %s: %d byte manifest exceeds the %d byte limit", r.ref, len(d.Manifest), MaxManifestSize)
	}
	return ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: int64(len(d.Manifest))}, d.Manifest, nil
}

// Manifest fetches manifest d by digest.
func (r *Registry) Manifest(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > MaxManifestSize {
		return nil, fmt.Errorf("fetch manifest %s: %d bytes exceed the %d byte limit", d.Digest, d.Size, MaxManifestSize)
	}
	rd, err := r.puller.Get(ctx, r.repo.Digest(d.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("fetch manifest %s from %s: %w", d.Digest, r.repo, wrapNotFound(err))
	}
	if err := Verify(d, rd.Manifest); err != nil {
		return nil, fmt.Errorf("fetch manifest from %s: %w", r.repo, err)
	}
	return rd.Manifest, nil
}

// Blob streams blob d; the reader verifies its digest at EOF.
func (r *Registry) Blob(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	l, err := r.puller.Layer(ctx, r.repo.Digest(d.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w", d.Digest, r.repo, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("fetch blob %s from %s: %w", d.Digest, r.repo, wrapNotFound(err))
	}
	return NewVerifyingReader(rc, d)
}

// BlobReaderAt returns random access to blob d through HTTP range requests,
// with the retry policy socikit-snapshotter's span fetches have (see
// internal/httprange); ctx bounds every read.
func (r *Registry) BlobReaderAt(ctx context.Context, d ocispec.Descriptor) (ReaderAtCloser, error) {
	if d.Size <= 0 {
		return nil, fmt.Errorf("range read blob %s: size unknown", d.Digest)
	}
	b, err := httprange.NewRegistryBlob(ctx, r.repo, d.Digest, d.Size,
		httprange.WithTransport(transport.NewUserAgent(r.rt, userAgent)), httprange.WithKeychain(r.kc))
	if err != nil {
		return nil, fmt.Errorf("range read blob %s: %w", d.Digest, err)
	}
	return httprange.NewReaderAt(ctx, b), nil
}

// Referrers lists the manifests whose subject is subject: through the
// referrers API, else through the referrers tag "<alg>-<hex>", which may hold
// a referrers index (the OCI fallback) or, as older SOCI tools push it, the
// referring manifest itself.
func (r *Registry) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	opts := append(r.options(ctx), remote.WithReferrersTagFallback(false))
	if artifactType != "" {
		opts = append(opts, remote.WithFilter("artifactType", artifactType))
	}
	var out []ocispec.Descriptor
	idx, apiErr := remote.Referrers(r.repo.Digest(subject.String()), opts...)
	if apiErr == nil {
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("list referrers of %s: %w", subject, err)
		}
		for _, d := range m.Manifests {
			out = append(out, toOCI(d))
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	tag := soci.ReferrersTag(subject)
	rd, err := r.puller.Get(ctx, r.repo.Tag(tag))
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		if apiErr != nil {
			return nil, fmt.Errorf("list referrers of %s: %w", subject, errors.Join(apiErr, err))
		}
		return nil, fmt.Errorf("list referrers of %s: tag %s: %w", subject, tag, err)
	}
	if len(rd.Manifest) > MaxManifestSize {
		return nil, fmt.Errorf("list referrers of %s: tag %s: manifest too large", subject, tag)
	}
	if rd.MediaType.IsIndex() {
		var m ocispec.Index
		if err := json.Unmarshal(rd.Manifest, &m); err != nil {
			return nil, fmt.Errorf("list referrers of %s: tag %s: %w", subject, tag, err)
		}
		for _, d := range m.Manifests {
			if artifactType == "" || d.ArtifactType == artifactType {
				out = append(out, d)
			}
		}
		return out, nil
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(rd.Manifest, &m); err != nil {
		return nil, fmt.Errorf("list referrers of %s: tag %s: %w", subject, tag, err)
	}
	at := m.ArtifactType
	if at == "" {
		at = m.Config.MediaType
	}
	if m.Subject == nil || m.Subject.Digest != subject || (artifactType != "" && at != artifactType) {
		return nil, nil
	}
	return []ocispec.Descriptor{{MediaType: string(rd.MediaType), Digest: digest.Digest(rd.Digest.String()),
		Size: int64(len(rd.Manifest)), ArtifactType: at, Annotations: m.Annotations}}, nil
}

// blobLayer adapts a descriptor and an Opener to the v1.Layer that
// remote.Pusher.Upload wants; only the compressed form exists.
type blobLayer struct {
	ctx  context.Context
	d    ocispec.Descriptor
	open Opener
}

var _ v1.Layer = (*blobLayer)(nil)

func (b *blobLayer) Digest() (v1.Hash, error) { return v1.NewHash(b.d.Digest.String()) }
func (b *blobLayer) DiffID() (v1.Hash, error) { return v1.NewHash(b.d.Digest.String()) }
func (b *blobLayer) Size() (int64, error)     { return b.d.Size, nil }
func (b *blobLayer) MediaType() (types.MediaType, error) {
	if b.d.MediaType == "" {
		return types.MediaType("application/octet-stream"), nil
	}
	return types.MediaType(b.d.MediaType), nil
}
func (b *blobLayer) Compressed() (io.ReadCloser, error) {
	rc, err := b.open(b.ctx)
	if err != nil {
		return nil, err
	}
	return NewVerifyingReader(rc, b.d)
}
func (b *blobLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, errors.New("uncompressed form of a copied blob is not available")
}

// WriteBlob uploads blob d unless the repository has it.
func (r *Registry) WriteBlob(ctx context.Context, d ocispec.Descriptor, open Opener) error {
	// Foreign and non-distributable layers are never pushed; the pusher
	// would skip them silently, and so do we.
	if !types.MediaType(d.MediaType).IsDistributable() {
		return nil
	}
	if err := r.pusher.Upload(ctx, r.repo, &blobLayer{ctx: ctx, d: d, open: open}); err != nil {
		return fmt.Errorf("upload blob %s to %s: %w", d.Digest, r.repo, err)
	}
	return nil
}

// rawManifest is a remote.Taggable for bytes we already have.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// PutManifest pushes manifest body by digest or, with a tag, by tag.
func (r *Registry) PutManifest(ctx context.Context, d ocispec.Descriptor, body []byte, tag string) error {
	if err := Verify(d, body); err != nil {
		return fmt.Errorf("put manifest: %w", err)
	}
	var ref name.Reference = r.repo.Digest(d.Digest.String())
	if tag != "" {
		ref = r.repo.Tag(tag)
	}
	if err := r.pusher.Push(ctx, ref, rawManifest{body: body, mt: types.MediaType(d.MediaType)}); err != nil {
		return fmt.Errorf("push manifest %s to %s: %w", d.Digest, ref, err)
	}
	return nil
}

// PutReferrer pushes body by digest; ggcr keeps the referrers tag index when
// the registry has no referrers API. Then, unless the referrers tag already
// holds an index (that list), the manifest is also tagged with it, which is
// how SOCI v1 clients without referrers support find it.
func (r *Registry) PutReferrer(ctx context.Context, subject digest.Digest, d ocispec.Descriptor, body []byte) error {
	if err := r.PutManifest(ctx, d, body, ""); err != nil {
		return err
	}
	tag := soci.ReferrersTag(subject)
	head, err := r.puller.Head(ctx, r.repo.Tag(tag))
	switch {
	case err == nil && head.MediaType.IsIndex():
		return nil
	case err != nil && !isNotFound(err):
		return fmt.Errorf("check referrers tag %s of %s: %w", tag, r.repo, err)
	}
	return r.PutManifest(ctx, d, body, tag)
}

// Commit does nothing: pushes are complete when they return.
func (r *Registry) Commit(context.Context) error { return nil }

// Close does nothing.
func (r *Registry) Close() error { return nil }

func isNotFound(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode == http.StatusNotFound
	}
	return false
}

func wrapNotFound(err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

func toOCI(d v1.Descriptor) ocispec.Descriptor {
	var o ocispec.Descriptor
	b, err := json.Marshal(d)
	if err == nil {
		err = json.Unmarshal(b, &o)
	}
	if err != nil {
		return ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size,
			ArtifactType: d.ArtifactType, Annotations: d.Annotations}
	}
	return o
}
