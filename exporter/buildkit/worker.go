package buildkit

import (
	"context"
	"fmt"

	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/worker"
	"github.com/moby/buildkit/worker/base"
)

// ExporterType is the exporter type this package adds: --output type=soci.
const ExporterType = "soci"

// WrapWorker returns w answering Exporter(ExporterType) with the soci
// exporter, and Exporter("oci") with an exporter that refuses soci-*
// attributes (BuildKit only streams dest= to built-in exporters; an OCI
// layout tar with the SOCI index is not implemented yet). Everything else is
// w's. Workers that are not BuildKit base workers are returned unchanged.
func WrapWorker(w worker.Worker) worker.Worker {
	bw, ok := w.(*base.Worker)
	if !ok {
		return w
	}
	return &sociWorker{Worker: w, base: bw}
}

type sociWorker struct {
	worker.Worker
	base *base.Worker
}

// Exporter answers the soci type and delegates every other one.
func (w *sociWorker) Exporter(name string, sm *session.Manager) (exporter.Exporter, error) {
	switch name {
	case ExporterType:
		return New(Opt{
			SessionManager: sm,
			ContentStore:   w.base.ContentStore(),
			Snapshotter:    w.base.Snapshotter,
			Applier:        w.base.Applier,
			Differ:         w.base.Differ,
			Images:         w.base.ImageStore,
			RegistryHosts:  w.base.RegistryHosts,
			LeaseManager:   w.base.LeaseManager(),
		})
	case client.ExporterOCI:
		inner, err := w.Worker.Exporter(name, sm)
		if err != nil {
			return nil, err
		}
		return &ociGuard{Exporter: inner}, nil
	default:
		return w.Worker.Exporter(name, sm)
	}
}

// ociGuard refuses soci-* attributes on type=oci instead of ignoring them.
type ociGuard struct {
	exporter.Exporter
}

func (g *ociGuard) Resolve(ctx context.Context, id int, attrs map[string]string) (exporter.ExporterInstance, error) {
	if HasSociAttrs(attrs) {
		return nil, fmt.Errorf("soci-* attributes with --output type=oci are not supported yet; use type=soci with push=true")
	}
	return g.Exporter.Resolve(ctx, id, attrs)
}
