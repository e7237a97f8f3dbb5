// Command soci-snapshotter-grpc runs upstream AWS soci-snapshotter (the
// version go.mod pins) as a containerd proxy snapshotter, for the benchmark
// harness to compare against. Upstream's own main lives in its cmd module,
// which is not on the Go module proxy (it uses a local replace), so this is
// a thin main of ours over upstream's library packages: the snapshotter,
// filesystem, resolver, config parsing and defaults are all upstream's.
//
// Not wired: CRI and kubeconfig keychains (only the docker config keychain,
// as upstream's default), systemd socket activation, the debug endpoint and
// the `config` subcommand. Unlike upstream, SIGTERM also unmounts (upstream
// keeps its mounts on SIGTERM for restarts); the harness wants a clean stop.
//
//	soci-snapshotter-grpc --address SOCK --root DIR [--config TOML] [--log-level LEVEL]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	golog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/awslabs/soci-snapshotter/config"
	"github.com/awslabs/soci-snapshotter/fs"
	"github.com/awslabs/soci-snapshotter/metadata"
	"github.com/awslabs/soci-snapshotter/service"
	"github.com/awslabs/soci-snapshotter/service/keychain/dockerconfig"
	"github.com/awslabs/soci-snapshotter/service/resolver"
	"github.com/awslabs/soci-snapshotter/version"
	"github.com/awslabs/soci-snapshotter/ztoc"
	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	metrics "github.com/docker/go-metrics"
	"github.com/sirupsen/logrus"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

func main() {
	address := flag.String("address", "/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock", "unix socket to serve the snapshots API on")
	root := flag.String("root", config.DefaultSociSnapshotterRootPath, "state directory")
	cfgPath := flag.String("config", "", "upstream TOML config (default: upstream's defaults)")
	level := flag.String("log-level", "info", "trace, debug, info, warn or error")
	showVersion := flag.Bool("version", false, "print upstream's version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("soci-snapshotter-grpc", version.Version)
		return
	}
	if err := run(*address, *root, *cfgPath, *level); err != nil {
		log.L.WithError(err).Error("soci-snapshotter-grpc failed")
		os.Exit(1)
	}
}

func run(address, root, cfgPath, level string) error {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return err
	}
	logrus.SetLevel(lvl)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: log.RFC3339NanoFixed})
	ctx, cancel := context.WithCancel(log.WithLogger(context.Background(), log.L))
	defer cancel()
	// go-fuse logs through the standard library logger.
	golog.SetOutput(log.G(ctx).WriterLevel(logrus.DebugLevel))

	cfg := config.NewConfig()
	if cfgPath != "" {
		if cfg, err = config.NewConfigFromToml(cfgPath); err != nil {
			return err
		}
	}
	if !cfg.SkipCheckSnapshotterSupported {
		if err := service.Supported(root); err != nil {
			return fmt.Errorf("snapshotter not supported on %s: %w", root, err)
		}
	}
	store, err := metadataStore(root, cfg)
	if err != nil {
		return err
	}
	creds := []resolver.Credential{dockerconfig.NewDockerConfigKeychain(ctx)}
	sn, err := service.NewSociSnapshotterService(ctx, root, &cfg.ServiceConfig,
		service.WithCredsFuncs(creds...), service.WithFilesystemOptions(fs.WithMetadataStore(store)))
	if err != nil {
		return err
	}
	defer func() {
		log.G(ctx).Info("closing the snapshotter (unmounting)")
		if err := sn.Close(); err != nil {
			log.G(ctx).WithError(err).Warn("close")
		}
		log.G(ctx).Info("exiting")
	}()

	// Pass the caller's containerd namespace on to calls the snapshotter
	// makes itself (the containerd content store).
	rpc := grpc.NewServer(grpc.ChainUnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if ns, ok := namespaces.Namespace(ctx); ok {
				ctx = namespaces.WithNamespace(ctx, ns)
			}
			return h(ctx, req)
		}))
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))

	if err := os.MkdirAll(filepath.Dir(address), 0o700); err != nil {
		return err
	}
	os.Remove(address)
	l, err := net.Listen("unix", address)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- rpc.Serve(l) }()
	if cfg.MetricsAddress != "" && !cfg.NoPrometheus {
		ml, err := net.Listen(cfg.MetricsNetwork, cfg.MetricsAddress)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler())
		go func() { errc <- http.Serve(ml, mux) }()
	}
	log.G(ctx).WithFields(logrus.Fields{"version": version.Version, "address": address, "root": root}).
		Info("soci-snapshotter-grpc serving")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGINT, unix.SIGTERM)
	select {
	case s := <-sig:
		log.G(ctx).Infof("got %v, stopping", s)
		rpc.Stop()
		return nil
	case err := <-errc:
		return err
	}
}

// metadataStore opens upstream's zTOC metadata store as its main does:
// one bbolt database under root ("db", the default) or one per layer
// ("db-multi").
func metadataStore(root string, cfg *config.Config) (metadata.Store, error) {
	opts := bolt.Options{NoFreelistSync: true, InitialMmapSize: 64 << 20, FreelistType: bolt.FreelistMapType}
	switch cfg.MetadataStore {
	case "", "db":
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, err
		}
		opts.NoSync = cfg.MetadataDBNoSync
		db, err := bolt.Open(filepath.Join(root, "metadata.db"), 0o600, &opts)
		if err != nil {
			return nil, err
		}
		return func(sr *io.SectionReader, toc ztoc.TOC, o ...metadata.Option) (metadata.Reader, error) {
			if n := cfg.MetadataInsertionChunkSize; n > 0 {
				o = append(o, metadata.WithInsertionChunkSize(n))
			}
			return metadata.NewReader(db, sr, toc, o...)
		}, nil
	case "db-multi":
		return metadata.NewMultiReader(filepath.Join(root, "metadata"), metadata.DBMultiOptions{BoltOptions: &opts}), nil
	}
	return nil, fmt.Errorf("unknown metadata_store %q", cfg.MetadataStore)
}
