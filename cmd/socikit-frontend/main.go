// Command socikit-frontend is socikit's `# syntax=` BuildKit frontend:
// BuildKit's Dockerfile frontend plus socikit options and start-up
// profiling (package frontend). It runs as a gateway frontend image, with
// socikit-trace beside it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/moby/buildkit/frontend/gateway/grpcclient"
	"github.com/moby/buildkit/util/appcontext"
	"github.com/moby/buildkit/util/bklog"
	_ "github.com/moby/buildkit/util/grpcutil/encoding/proto"

	"github.com/socikit/socikit/frontend"
	"github.com/socikit/socikit/internal/version"
)

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("socikit-frontend", version.String())
		return
	}
	if err := grpcclient.RunFromEnvironment(appcontext.Context(), frontend.Build); err != nil {
		bklog.L.Errorf("fatal error: %+v", err)
		os.Exit(1)
	}
}
