// Command socikit-snapshotter is socikit's containerd proxy snapshotter: it
// serves containerd's snapshots gRPC API on a unix socket and mounts SOCI
// indexed layers lazily. See snapshotter/service for the configuration.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/log"
	"google.golang.org/grpc/grpclog"

	"github.com/socikit/socikit/internal/version"
	"github.com/socikit/socikit/snapshotter/service"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "fdstore" {
		if err := runFDStore(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "socikit-snapshotter fdstore:", err)
			os.Exit(1)
		}
		return
	}
	if exe, err := os.Executable(); err == nil {
		service.FDHolderCommand = []string{exe, "fdstore"}
	}
	config := flag.String("config", "", "TOML configuration file (default: "+service.DefaultConfigPath+" if it exists, else built-in defaults)")
	root := flag.String("root", "", "state directory (overrides the config; default "+service.DefaultRoot+")")
	address := flag.String("address", "", "gRPC unix socket (overrides the config; default "+service.DefaultAddress+")")
	level := flag.String("log-level", "", "log level: trace, debug, info, warn, error (overrides the config; default "+service.DefaultLogLevel+")")
	format := flag.String("log-format", "", "log format: text or json (overrides the config; default "+string(service.DefaultLogFormat)+")")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("socikit-snapshotter", version.String())
		return
	}
	grpclog.SetLoggerV2(service.GRPCLogger()) // before any gRPC use
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, *config, func(c service.Config) service.Config { return c.Override(*root, *address, *level, *format) })
	if err != nil {
		fmt.Fprintln(os.Stderr, "socikit-snapshotter:", err)
		os.Exit(1)
	}
}

// run loads the configuration (the --config file, else the default path if
// it exists), applies the flags and serves until ctx is done.
func run(ctx context.Context, config string, flags func(service.Config) service.Config) error {
	path, err := service.FindConfig(config)
	if err != nil {
		return err
	}
	c, err := service.LoadConfig(path)
	if err != nil {
		return err
	}
	c = flags(c)
	if err := c.Validate(); err != nil {
		return err
	}
	if err := service.SetupLogging(c); err != nil {
		return err
	}
	if path == "" {
		path = "none: built-in defaults"
	}
	log.L.WithField("config", path).Info("socikit-snapshotter starting")
	return service.Run(ctx, c, service.DefaultOptions(c)...)
}
