package service

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/containerd/log"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/socikit/socikit/internal/image"
)

// Registry credentials from Kubernetes.
//
// The kubelet passes an image's pull secret to the container runtime in the
// CRI PullImage request, and containerd uses it for its own fetches only:
// nothing of it reaches a snapshotter, which then fetches the layers of a
// private image lazily, long after the pull, without credentials. As upstream
// SOCI does (service/keychain/cri), the daemon can serve the CRI image
// service (runtime.v1.ImageService) itself, in front of containerd's: the
// kubelet is pointed at it (--image-service-endpoint), every call is
// forwarded to containerd, and the credentials of each PullImage are kept,
// in memory, for the image's repository, before the pull goes on (the
// snapshot calls of the pull need them). Every registry client of the
// daemon (discovery, zTOCs, span fetches, unpacked layers, /profile) looks
// there first, then in the docker config.

// DefaultCRIMaxRepositories caps the repositories whose CRI credentials are
// kept; the one pulled longest ago is forgotten first.
const DefaultCRIMaxRepositories = 4096

// criMaxMsgSize is the gRPC message limit both ways (the kubelet's).
const criMaxMsgSize = 16 << 20

// CRIConfig configures the CRI image service proxy (`[cri]`).
//
//	[cri]
//	enable = false                  # serve runtime.v1.ImageService, keep PullImage credentials
//	address = ""                    # its unix socket; "": the snapshotter's own (address)
//	image_service_address = ""      # the CRI image service forwarded to; "": [containerd] address
type CRIConfig struct {
	// Enable serves the CRI image service as a proxy of
	// ImageServiceAddress and keeps the credentials of every PullImage
	// for the registry requests of that image's layers (default false).
	Enable bool `toml:"enable"`
	// Address is the unix socket the CRI image service is served on
	// (the kubelet's --image-service-endpoint, crictl's --image-endpoint);
	// "" (the default) serves it on the snapshotter's socket, beside the
	// snapshots API, as upstream SOCI does.
	Address string `toml:"address"`
	// ImageServiceAddress is the unix socket of the CRI image service
	// calls are forwarded to (containerd's CRI plugin answers on
	// containerd's socket); "" (the default) is [containerd] address.
	ImageServiceAddress string `toml:"image_service_address"`
}

// backend returns the socket calls are forwarded to, or an error when the
// configuration names none.
func (c Config) criBackend() (string, error) {
	a := c.CRI.ImageServiceAddress
	if a == "" {
		a = c.Containerd.Address
	}
	if a == "" {
		return "", errors.New("config: cri.image_service_address is empty and so is containerd.address")
	}
	a = strings.TrimPrefix(a, "unix://")
	if a == c.Address || (c.CRI.Address != "" && a == strings.TrimPrefix(c.CRI.Address, "unix://")) {
		return "", fmt.Errorf("config: cri.image_service_address %s is this daemon's own socket", a)
	}
	return a, nil
}

// criService is the CRI image service proxy and the credentials it keeps.
type criService struct {
	runtime.UnimplementedImageServiceServer

	keys    *CRIKeychain
	conn    *grpc.ClientConn
	backend runtime.ImageServiceClient
	address string // the backend's socket, for errors

	srv *grpc.Server // own server when CRI.Address is set
}

// newCRIService connects (lazily) to the backend; nil when [cri] is off.
func newCRIService(c Config) (*criService, error) {
	if !c.CRI.Enable {
		return nil, nil
	}
	backend, err := c.criBackend()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+backend,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(criMaxMsgSize), grpc.MaxCallSendMsgSize(criMaxMsgSize)))
	if err != nil {
		return nil, fmt.Errorf("cri: connect to %s: %w", backend, err)
	}
	return &criService{keys: NewCRIKeychain(authn.DefaultKeychain, DefaultCRIMaxRepositories), conn: conn,
		backend: runtime.NewImageServiceClient(conn), address: backend}, nil
}

// transport wraps the daemon's base registry transport so that every
// registry client takes credentials from the CRI keychain.
func (s *criService) transport(base http.RoundTripper) http.RoundTripper {
	if s == nil {
		return base
	}
	return &image.KeychainTransport{Base: base, Keychain: s.keys}
}

// serve registers the image service on the snapshotter's server srv, or
// serves it on a socket of its own; errors of that server go to errc.
func (s *criService) serve(ctx context.Context, c Config, srv *grpc.Server, errc chan<- error) error {
	if s == nil {
		return nil
	}
	if c.CRI.Address == "" {
		runtime.RegisterImageServiceServer(srv, s)
		log.G(ctx).WithField("address", c.Address).WithField("image_service", s.address).Info("CRI image service proxy serving on the snapshotter's socket")
		return nil
	}
	l, err := listen(strings.TrimPrefix(c.CRI.Address, "unix://"))
	if err != nil {
		return fmt.Errorf("cri: %w", err)
	}
	s.srv = grpc.NewServer(grpc.MaxRecvMsgSize(criMaxMsgSize), grpc.MaxSendMsgSize(criMaxMsgSize))
	runtime.RegisterImageServiceServer(s.srv, s)
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("cri: %w", err)
		}
	}()
	log.G(ctx).WithField("address", c.CRI.Address).WithField("image_service", s.address).Info("CRI image service proxy serving")
	return nil
}

// close stops its own server and the backend connection.
func (s *criService) close() {
	if s == nil {
		return
	}
	if s.srv != nil {
		s.srv.GracefulStop() // closing the listener removes the socket
	}
	_ = s.conn.Close()
}

// forward is the context of a forwarded call: the caller's deadline and
// cancellation, none of its metadata (the snapshotter's namespace
// interceptor adds containerd's namespace header to it).
func forward(ctx context.Context) context.Context {
	return metadata.NewOutgoingContext(ctx, metadata.MD{})
}

// ListImages implements runtime.ImageServiceServer.
func (s *criService) ListImages(ctx context.Context, r *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	return s.backend.ListImages(forward(ctx), r)
}

// StreamImages implements runtime.ImageServiceServer.
func (s *criService) StreamImages(r *runtime.StreamImagesRequest, out grpc.ServerStreamingServer[runtime.StreamImagesResponse]) error {
	in, err := s.backend.StreamImages(forward(out.Context()), r)
	if err != nil {
		return err
	}
	for {
		m, err := in.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := out.Send(m); err != nil {
			return err
		}
	}
}

// ImageStatus implements runtime.ImageServiceServer.
func (s *criService) ImageStatus(ctx context.Context, r *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	return s.backend.ImageStatus(forward(ctx), r)
}

// ImageFsInfo implements runtime.ImageServiceServer.
func (s *criService) ImageFsInfo(ctx context.Context, r *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	return s.backend.ImageFsInfo(forward(ctx), r)
}

// RemoveImage implements runtime.ImageServiceServer. The credentials of
// the repository stay: other images of it may still be mounted again (a
// daemon restart) or pulled.
func (s *criService) RemoveImage(ctx context.Context, r *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	return s.backend.RemoveImage(forward(ctx), r)
}

// PullImage implements runtime.ImageServiceServer: the request's
// credentials are kept for the image's repository, then the pull is
// forwarded. A failed pull puts back what was kept before, so wrong
// credentials do not replace working ones.
func (s *criService) PullImage(ctx context.Context, r *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	ref := r.GetImage().GetImage()
	repo, err := criRepository(ref)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "parse image reference %q: %v", ref, err)
	}
	cfg, err := criAuth(r.GetAuth(), repo.RegistryStr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "credentials for %s: %v", repo, err)
	}
	undo := s.keys.Set(repo, cfg)
	lg := log.G(ctx).WithField("image", ref)
	if cfg != nil {
		lg = lg.WithField("credentials", "from the request")
	}
	resp, err := s.backend.PullImage(forward(ctx), r)
	if err != nil {
		undo()
		lg.WithError(err).Info("CRI pull failed")
		return nil, err
	}
	lg.WithField("image_ref", resp.GetImageRef()).Debug("CRI pull")
	return resp, nil
}

// criRepository parses a CRI image reference as containerd does (docker.io
// and library/ implied) into go-containerregistry's repository, whose
// String is what registry clients resolve credentials for.
func criRepository(ref string) (name.Repository, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return name.Repository{}, err
	}
	return r.Context(), nil
}

// criAuth turns CRI credentials into go-containerregistry's, as
// containerd's CRI plugin reads them (ParseAuth): username and password
// first, then the identity token, then the base64 auth; a registry token
// is sent as is. nil: no credentials (an anonymous pull, or a
// ServerAddress that is not the image's registry).
func criAuth(a *runtime.AuthConfig, registry string) (*authn.AuthConfig, error) {
	if a == nil {
		return nil, nil
	}
	if a.ServerAddress != "" && !sameRegistry(serverHost(a.ServerAddress), registry) {
		return nil, nil
	}
	var c authn.AuthConfig
	switch {
	case a.Username != "":
		c.Username, c.Password = a.Username, a.Password
	case a.IdentityToken != "":
		c.IdentityToken = a.IdentityToken
	case a.Auth != "":
		b, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, fmt.Errorf("auth is not base64: %w", err)
		}
		u, p, ok := strings.Cut(string(b), ":")
		if !ok {
			return nil, errors.New("auth is not base64 of user:password")
		}
		c.Username, c.Password = u, strings.Trim(p, "\x00")
	}
	c.RegistryToken = a.RegistryToken
	if c == (authn.AuthConfig{}) {
		return nil, nil
	}
	return &c, nil
}

// serverHost is the host of a ServerAddress: a URL or a bare host[:port].
func serverHost(s string) string {
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			return u.Host
		}
	}
	h, _, _ := strings.Cut(s, "/")
	return h
}

// sameRegistry compares registry hosts, Docker Hub's names as one.
func sameRegistry(a, b string) bool {
	hub := func(h string) string {
		switch h {
		case "docker.io", "index.docker.io", "registry-1.docker.io":
			return name.DefaultRegistry
		}
		return h
	}
	return hub(a) == hub(b)
}

// CRIKeychain is an authn.Keychain of the credentials CRI pulls passed, by
// repository, in front of another keychain (the docker config). Safe for
// concurrent use.
type CRIKeychain struct {
	next authn.Keychain
	max  int

	mu    sync.Mutex
	repos map[string]*criEntry
	seq   uint64
}

type criEntry struct {
	cfg authn.AuthConfig
	seq uint64 // when set, for dropping the oldest
}

// NewCRIKeychain returns an empty keychain that falls back to next and
// keeps at most max repositories.
func NewCRIKeychain(next authn.Keychain, max int) *CRIKeychain {
	return &CRIKeychain{next: next, max: max, repos: map[string]*criEntry{}}
}

// Set keeps cfg for repo (nil forgets it: a pull without credentials) and
// returns a function that puts back what was there before, unless another
// Set came since.
func (k *CRIKeychain) Set(repo name.Repository, cfg *authn.AuthConfig) (undo func()) {
	key := repo.String()
	k.mu.Lock()
	defer k.mu.Unlock()
	prev := k.repos[key]
	k.seq++
	var mine *criEntry
	if cfg == nil {
		delete(k.repos, key)
	} else {
		mine = &criEntry{cfg: *cfg, seq: k.seq}
		k.repos[key] = mine
		for len(k.repos) > k.max {
			k.dropOldest()
		}
	}
	return func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if cur := k.repos[key]; cur != mine {
			return
		}
		if prev == nil {
			delete(k.repos, key)
		} else {
			k.repos[key] = prev
		}
	}
}

func (k *CRIKeychain) dropOldest() {
	var oldest string
	var seq uint64
	for key, e := range k.repos {
		if oldest == "" || e.seq < seq {
			oldest, seq = key, e.seq
		}
	}
	delete(k.repos, oldest)
}

// Len returns how many repositories have credentials.
func (k *CRIKeychain) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.repos)
}

// Resolve implements authn.Keychain: the credentials a CRI pull of the
// repository passed, else next's.
func (k *CRIKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	k.mu.Lock()
	e := k.repos[r.String()]
	k.mu.Unlock()
	if e != nil {
		return authn.FromConfig(e.cfg), nil
	}
	if k.next == nil {
		return authn.Anonymous, nil
	}
	return k.next.Resolve(r)
}
