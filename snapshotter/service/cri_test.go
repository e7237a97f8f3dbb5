package service

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	gcrremote "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/socikit/socikit/internal/httprange"
	"github.com/socikit/socikit/internal/image"
)

func TestCRIAuth(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("bob:s3cr:et"))
	for _, c := range []struct {
		name string
		in   *runtime.AuthConfig
		reg  string
		want *authn.AuthConfig
		err  bool
	}{
		{"nil", nil, "r.example", nil, false},
		{"empty", &runtime.AuthConfig{}, "r.example", nil, false},
		{"user", &runtime.AuthConfig{Username: "u", Password: "p", Auth: b64}, "r.example", &authn.AuthConfig{Username: "u", Password: "p"}, false},
		{"auth", &runtime.AuthConfig{Auth: b64}, "r.example", &authn.AuthConfig{Username: "bob", Password: "s3cr:et"}, false},
		{"identity", &runtime.AuthConfig{IdentityToken: "it"}, "r.example", &authn.AuthConfig{IdentityToken: "it"}, false},
		{"registry-token", &runtime.AuthConfig{RegistryToken: "rt"}, "r.example", &authn.AuthConfig{RegistryToken: "rt"}, false},
		{"server-match", &runtime.AuthConfig{Username: "u", ServerAddress: "https://r.example:5000/v2/"}, "r.example:5000", &authn.AuthConfig{Username: "u"}, false},
		{"server-bare", &runtime.AuthConfig{Username: "u", ServerAddress: "r.example"}, "r.example", &authn.AuthConfig{Username: "u"}, false},
		{"server-hub", &runtime.AuthConfig{Username: "u", ServerAddress: "https://index.docker.io/v1/"}, name.DefaultRegistry, &authn.AuthConfig{Username: "u"}, false},
		{"server-other", &runtime.AuthConfig{Username: "u", ServerAddress: "other.example"}, "r.example", nil, false},
		{"bad-base64", &runtime.AuthConfig{Auth: "!!"}, "r.example", nil, true},
		{"no-colon", &runtime.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("bob"))}, "r.example", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := criAuth(c.in, c.reg)
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if (got == nil) != (c.want == nil) || got != nil && *got != *c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestCRIKeychain(t *testing.T) {
	repo := func(s string) name.Repository {
		r, err := criRepository(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	docker := authn.NewMultiKeychain() // stands for the docker config: anonymous
	k := NewCRIKeychain(docker, 2)
	who := func(r name.Repository) string {
		a, err := k.Resolve(r)
		if err != nil {
			t.Fatal(err)
		}
		c, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		return c.Username
	}
	app := repo("r.example:5000/team/app:1")
	k.Set(app, &authn.AuthConfig{Username: "one"})
	if got := who(repo("r.example:5000/team/app@sha256:" + strings.Repeat("a", 64))); got != "one" {
		t.Fatalf("same repository by digest: %q, want one", got)
	}
	if got := who(repo("r.example:5000/team/other:1")); got != "" {
		t.Fatalf("another repository got credentials %q", got)
	}
	// A failed pull with other credentials puts the working ones back.
	undo := k.Set(app, &authn.AuthConfig{Username: "wrong"})
	if got := who(app); got != "wrong" {
		t.Fatalf("during the pull: %q", got)
	}
	undo()
	if got := who(app); got != "one" {
		t.Fatalf("after the failed pull: %q, want one", got)
	}
	// An undo after a later Set leaves the later one.
	undo = k.Set(app, &authn.AuthConfig{Username: "two"})
	k.Set(app, &authn.AuthConfig{Username: "three"})
	undo()
	if got := who(app); got != "three" {
		t.Fatalf("undo after a later pull: %q, want three", got)
	}
	// A pull without credentials forgets them.
	k.Set(app, nil)
	if got := who(app); got != "" {
		t.Fatalf("after an anonymous pull: %q", got)
	}
	// Docker Hub short names are the same repository.
	k.Set(repo("busybox"), &authn.AuthConfig{Username: "hub"})
	if got := who(repo("docker.io/library/busybox:latest")); got != "hub" {
		t.Fatalf("docker.io/library/busybox: %q", got)
	}
	// At most max repositories: the oldest goes.
	k.Set(repo("r.example/a"), &authn.AuthConfig{Username: "a"})
	k.Set(repo("r.example/b"), &authn.AuthConfig{Username: "b"})
	if n := k.Len(); n != 2 {
		t.Fatalf("%d repositories kept, want 2", n)
	}
	if got := who(repo("busybox")); got != "" {
		t.Fatalf("oldest repository still has %q", got)
	}
}

// fakeImages is a CRI image service that records the pulls it gets and
// calls pulled during each.
type fakeImages struct {
	runtime.UnimplementedImageServiceServer
	mu     sync.Mutex
	pulls  []string
	pulled func(ref string) error
}

func (f *fakeImages) PullImage(_ context.Context, r *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	f.mu.Lock()
	f.pulls = append(f.pulls, r.GetImage().GetImage())
	f.mu.Unlock()
	if err := f.pulled(r.GetImage().GetImage()); err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: "sha256:" + strings.Repeat("0", 64)}, nil
}

func (f *fakeImages) ListImages(context.Context, *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	return &runtime.ListImagesResponse{Images: []*runtime.Image{{Id: "one"}}}, nil
}

func (f *fakeImages) StreamImages(_ *runtime.StreamImagesRequest, s grpc.ServerStreamingServer[runtime.StreamImagesResponse]) error {
	for _, id := range []string{"a", "b"} {
		if err := s.Send(&runtime.StreamImagesResponse{Images: []*runtime.Image{{Id: id}}}); err != nil {
			return err
		}
	}
	return nil
}

// authRegistry serves a registry that wants basic auth user:pass.
func authRegistry(t *testing.T, user, pass string) (host string, open func(bool)) {
	t.Helper()
	next := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var mu sync.Mutex
	locked := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		l := locked
		mu.Unlock()
		if u, p, ok := r.BasicAuth(); l && (!ok || u != user || p != pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), func(open bool) { mu.Lock(); locked = !open; mu.Unlock() }
}

// TestCRIProxy serves the proxy on a socket of its own in front of a fake
// CRI image service; during a PullImage (as containerd's snapshot calls
// happen then) the daemon's registry clients authenticate with the pull's
// credentials, which they would not find in any docker config.
func TestCRIProxy(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no docker config
	host, setOpen := authRegistry(t, "kube", "let")
	img, err := random.Image(4096, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := gcrremote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	setOpen(false)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	lsize, _ := ls[0].Size()
	md, _ := img.Digest()

	dir := t.TempDir()
	backendSock := filepath.Join(dir, "containerd.sock")
	fake := &fakeImages{}
	bl, err := net.Listen("unix", backendSock)
	if err != nil {
		t.Fatal(err)
	}
	bs := grpc.NewServer()
	runtime.RegisterImageServiceServer(bs, fake)
	go bs.Serve(bl) //nolint:errcheck
	t.Cleanup(bs.Stop)

	c := DefaultConfig()
	c.Address = filepath.Join(dir, "socikit.sock")
	c.Containerd.Address = backendSock
	c.CRI = CRIConfig{Enable: true, Address: filepath.Join(dir, "cri.sock")}
	s, err := newCRIService(c)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	if err := s.serve(context.Background(), c, nil, errc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	rt := s.transport(nil)

	// What the snapshotter does during the pull: the manifest (discovery)
	// and a range read of the layer (a lazy mount's span fetch).
	fetch := func() error {
		reg, err := image.OpenRegistry(ref.Context().Digest(md.String()), rt)
		if err != nil {
			return err
		}
		if _, err := reg.Manifest(context.Background(), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(md.String())}); err != nil {
			return err
		}
		b, err := httprange.NewRegistryBlob(context.Background(), ref.Context(), digest.Digest(ld.String()), lsize, httprange.WithTransport(rt))
		if err != nil {
			return err
		}
		return b.ReadRanges(context.Background(), []httprange.Range{{Off: 0, Buf: make([]byte, 16)}})
	}
	var during error
	fake.pulled = func(string) error {
		during = fetch()
		return nil
	}

	conn, err := grpc.NewClient("unix://"+c.CRI.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := runtime.NewImageServiceClient(conn)
	ctx := context.Background()

	if err := fetch(); err == nil {
		t.Fatal("registry answered without credentials")
	}
	resp, err := cl.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref.String()},
		Auth: &runtime.AuthConfig{Username: "kube", Password: "let"}})
	if err != nil {
		t.Fatal(err)
	}
	if during != nil {
		t.Fatalf("registry clients during the pull: %v", during)
	}
	if resp.GetImageRef() == "" || len(fake.pulls) != 1 || fake.pulls[0] != ref.String() {
		t.Fatalf("pull not forwarded: %v %v", resp, fake.pulls)
	}
	if err := fetch(); err != nil {
		t.Fatalf("after the pull (a daemon restart's mount, a background fetch): %v", err)
	}

	// Wrong credentials: the backend's error comes back as it is, and the
	// working credentials stay.
	fake.pulled = func(string) error {
		if err := fetch(); err == nil {
			t.Error("wrong credentials worked")
		}
		return status.Error(codes.Unknown, "failed to pull and unpack image: 401 Unauthorized")
	}
	_, err = cl.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref.String()},
		Auth: &runtime.AuthConfig{Username: "kube", Password: "wrong"}})
	if st, _ := status.FromError(err); st.Code() != codes.Unknown || !strings.Contains(st.Message(), "401") {
		t.Fatalf("wrong credentials: %v", err)
	}
	if err := fetch(); err != nil {
		t.Fatalf("the failed pull dropped the working credentials: %v", err)
	}

	// The other calls are forwarded.
	li, err := cl.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil || len(li.GetImages()) != 1 {
		t.Fatalf("ListImages: %v %v", li, err)
	}
	st, err := cl.StreamImages(ctx, &runtime.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.GetImages()[0].GetId())
	}
	if strings.Join(ids, ",") != "a,b" {
		t.Fatalf("StreamImages: %v", ids)
	}
	if _, err := cl.ImageFsInfo(ctx, &runtime.ImageFsInfoRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("ImageFsInfo: %v, want the backend's Unimplemented", err)
	}
	if _, err := cl.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: "Not A Ref"}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad reference: %v", err)
	}
}

func TestCRIConfig(t *testing.T) {
	c := DefaultConfig()
	c.CRI.Enable = true
	if a, err := c.criBackend(); err != nil || a != DefaultContainerdAddress {
		t.Fatalf("default backend %q %v", a, err)
	}
	c.CRI.ImageServiceAddress = "unix:///x/cri.sock"
	if a, _ := c.criBackend(); a != "/x/cri.sock" {
		t.Fatalf("backend %q", a)
	}
	c.CRI.ImageServiceAddress = c.Address
	if _, err := c.criBackend(); err == nil {
		t.Fatal("own socket as backend accepted")
	}
	c.CRI.ImageServiceAddress, c.Containerd.Address = "", ""
	if _, err := c.criBackend(); err == nil {
		t.Fatal("no backend accepted")
	}
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := writeFile(p, "[cri]\nenable = true\naddress = \"/run/x/cri.sock\"\nimage_service_address = \"/run/containerd/containerd.sock\"\n"); err != nil {
		t.Fatal(err)
	}
	lc, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if !lc.CRI.Enable || lc.CRI.Address != "/run/x/cri.sock" {
		t.Fatalf("loaded %+v", lc.CRI)
	}
}

// TestExampleConfigCRI: the example configuration lists [cri] with its
// defaults.
func TestExampleConfigCRI(t *testing.T) {
	c, err := LoadConfig("../../examples/containerd/socikit-snapshotter.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CRI != DefaultConfig().CRI {
		t.Errorf("example [cri] %+v, defaults %+v", c.CRI, DefaultConfig().CRI)
	}
}
