//go:build socikit_overlay

// This file is added to BuildKit's stock cmd/buildkitd (v0.34.2) by
// scripts/buildkit-build.sh with go build -overlay: it is the only change to
// buildkitd. Its name sorts after BuildKit's own files, so its init runs after
// theirs have registered the worker initializers, and it wraps each one so
// that the workers it creates answer --output type=soci.

package main

import (
	"github.com/moby/buildkit/worker"
	"github.com/urfave/cli/v3"

	sociexporter "github.com/socikit/socikit/exporter/buildkit"
)

func init() {
	for k := range workerInitializers {
		fn := workerInitializers[k].fn
		workerInitializers[k].fn = func(c *cli.Command, common workerInitializerOpt) ([]worker.Worker, error) {
			ws, err := fn(c, common)
			if err != nil {
				return nil, err
			}
			for j, w := range ws {
				ws[j] = sociexporter.WrapWorker(w)
			}
			return ws, nil
		}
	}
}
