// Command socikit converts images to SOCI-enabled images, inspects them,
// and pulls them into containerd for lazy loading.
// See docs/cli.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/socikit/socikit/internal/cli"
	"github.com/socikit/socikit/internal/cli/pull"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], cli.WithCommand(pull.Command()))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "socikit:", err)
		os.Exit(1)
	}
}
