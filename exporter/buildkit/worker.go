package buildkit

import (
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/worker"
	"github.com/moby/buildkit/worker/base"
)

// ExporterType is the exporter type this package adds: --output type=soci.
const ExporterType = "soci"

// WrapWorker returns w answering Exporter(ExporterType) with the soci
// exporter, and Exporter("oci") with an exporter that is the stock one unless
// soci-* attributes are present, in which case it writes an OCI layout with
// the image and its SOCI index (see oci.go: BuildKit only streams dest= to
// built-in exporter types). Everything else is w's. Workers that are not
// BuildKit base workers are returned unchanged.
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
		return New(w.opt(sm))
	case client.ExporterOCI:
		stock, err := w.Worker.Exporter(name, sm)
		if err != nil {
			return nil, err
		}
		return newOCIExporter(stock, w.opt(sm))
	default:
		return w.Worker.Exporter(name, sm)
	}
}

func (w *sociWorker) opt(sm *session.Manager) Opt {
	return Opt{
		SessionManager: sm,
		ContentStore:   w.base.ContentStore(),
		Snapshotter:    w.base.Snapshotter,
		Applier:        w.base.Applier,
		Differ:         w.base.Differ,
		Images:         w.base.ImageStore,
		RegistryHosts:  w.base.RegistryHosts,
		LeaseManager:   w.base.LeaseManager(),
	}
}
