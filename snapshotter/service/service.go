package service

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/socikit/socikit/snapshotter/snapshot"
)

// Option configures Run.
type Option func(*options) error

type options struct {
	newMounter NewLayerMounter
	transport  http.RoundTripper
	ready      func(address string)
}

// WithLayerMounter sets the constructor of the lazy layer filesystem
// (default none: every layer is unpacked by containerd).
func WithLayerMounter(f NewLayerMounter) Option {
	return func(o *options) error {
		o.newMounter = f
		return nil
	}
}

// WithTransport sets the base HTTP transport of registry requests (default
// go-containerregistry's remote.DefaultTransport).
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		o.transport = rt
		return nil
	}
}

// WithReady registers a function called once the socket accepts
// connections (default none); tests use it instead of polling.
func WithReady(f func(address string)) Option {
	return func(o *options) error {
		o.ready = f
		return nil
	}
}

// Run serves the snapshotter described by c until ctx is done, then stops
// gracefully and unmounts its remote layers (they are mounted again on the
// next start).
func Run(ctx context.Context, c Config, opts ...Option) error {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if err := SetupLogging(c); err != nil { // logging.go
		return err
	}
	if err := os.MkdirAll(c.Root, 0o700); err != nil {
		return fmt.Errorf("create root: %w", err)
	}
	cri, err := newCRIService(c) // nil unless [cri] enable (cri.go)
	if err != nil {
		return err
	}
	defer cri.close()
	o.transport = cri.transport(o.transport)
	var m LayerMounter
	if o.newMounter != nil {
		if m, err = o.newMounter(ctx, c, o.transport); err != nil {
			return fmt.Errorf("start layer filesystem: %w", err)
		}
	}
	metrics := &Metrics{}
	layers, _ := m.(*Layers)
	if layers != nil {
		metrics = layers.metrics
	}
	d, err := NewDiscoverer(discoverConfigOptions(c, o.transport)...) // configopts.go
	if err != nil {
		return err
	}
	fsys := NewFileSystem(d, m)
	fsys.SetUnpackUnindexed(c.Lazy.UnpackUnindexed)
	if err := fsys.SetPull(pullConfigOptions(c)); err != nil { // configopts.go
		return err
	}
	sn, err := snapshot.New(ctx, c.Root, fsys, snapshot.WithMountOptions(c.Snapshotter.MountOptions...))
	if err != nil {
		return err
	}
	defer func() {
		if err := sn.Close(); err != nil {
			log.G(ctx).WithError(err).Warn("close snapshotter")
		}
	}()

	l, err := listen(c.Address)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(defaultNamespace))
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))

	errc := make(chan error, 3)
	if err := cri.serve(ctx, c, srv, errc); err != nil {
		l.Close()
		return err
	}
	go func() { errc <- srv.Serve(l) }()
	h := newHTTPHandler(metrics, layers, &fsys.unpacked) // metrics.go
	hs, err := startHTTP(ctx, c.MetricsAddress, c.MetricsAddress == DefaultMetricsAddress, h, errc)
	if err != nil {
		srv.Stop()
		if serr := <-errc; serr != nil { // nil after Stop, unless Serve failed first
			log.G(ctx).WithError(serr).Warn("grpc server")
		}
		return err
	}
	log.G(ctx).WithField("address", c.Address).WithField("root", c.Root).Info("socikit-snapshotter serving")
	if o.ready != nil {
		o.ready(c.Address)
	}
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	}
	if hs != nil {
		_ = hs.Close()
	}
	srv.GracefulStop()
	_ = os.Remove(c.Address)
	return err
}

// listen opens the unix socket, replacing a stale one.
func listen(address string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(address), 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := os.Remove(address); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", address, err)
	}
	return l, nil
}

// defaultNamespace gives requests without a containerd namespace
// snapshot.DefaultNamespace (containerd 1.6 drops it on proxy snapshotter
// calls, containerd#6061).
func defaultNamespace(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if md, ok := metadata.FromIncomingContext(ctx); !ok || len(md.Get(namespaces.GRPCHeader)) == 0 {
		ctx = namespaces.WithNamespace(ctx, snapshot.DefaultNamespace)
	}
	return h(ctx, req)
}

// DefaultOptions are the options of the socikit-snapshotter command: the
// lazy layer filesystem (LayersFromConfig) unless the configuration
// disables it.
func DefaultOptions(c Config) []Option {
	if c.Lazy.Disable {
		return nil
	}
	return []Option{WithLayerMounter(LayersFromConfig)}
}
