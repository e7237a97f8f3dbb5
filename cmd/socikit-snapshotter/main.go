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

	"github.com/socikit/socikit/internal/version"
	"github.com/socikit/socikit/snapshotter/service"
)

func main() {
	config := flag.String("config", "", "TOML configuration file (default: built-in defaults)")
	root := flag.String("root", "", "state directory (overrides the config; default "+service.DefaultRoot+")")
	address := flag.String("address", "", "gRPC unix socket (overrides the config; default "+service.DefaultAddress+")")
	level := flag.String("log-level", "", "log level (overrides the config; default "+service.DefaultLogLevel+")")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("socikit-snapshotter", version.String())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := service.LoadConfig(*config)
	if err == nil {
		c = c.Override(*root, *address, *level)
		err = service.Run(ctx, c, service.DefaultOptions(c)...)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "socikit-snapshotter:", err)
		os.Exit(1)
	}
}
