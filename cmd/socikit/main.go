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
	"github.com/socikit/socikit/internal/version"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version" || os.Args[1] == "version") {
		fmt.Println("socikit", version.String())
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], cli.WithCommand(pull.Command()))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "socikit:", err)
		os.Exit(1)
	}
}
