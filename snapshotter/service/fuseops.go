package service

import (
	"encoding/json"
	"net/http"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/socikit/socikit/internal/statusapi"
	"github.com/socikit/socikit/snapshotter/fs"
)

// The FUSE requests of the lazy mounts (Metrics.FUSE), by kind.
var (
	descFUSERequests = prometheus.NewDesc("socikit_fuse_requests_total",
		"FUSE requests the lazy mounts answered, by kind (lookup, getattr, open, read, release, readdirplus, ...).", []string{"op"}, nil)
	descFUSEDuration = prometheus.NewDesc("socikit_fuse_request_duration_seconds",
		"Time the daemon took to answer FUSE requests, by kind (kinds seen so far).", []string{"op"}, nil)
)

func describeFUSE(ch chan<- *prometheus.Desc) {
	ch <- descFUSERequests
	ch <- descFUSEDuration
}

// collectFUSE reports c: a counter for every kind, a histogram for the
// kinds seen.
func collectFUSE(ch chan<- prometheus.Metric, c *fs.OpCounters) {
	for op := fs.Op(0); op < fs.NumOps; op++ {
		s := c.Stat(op)
		ch <- prometheus.MustNewConstMetric(descFUSERequests, prometheus.CounterValue, float64(s.Count), op.String())
		if s.Count == 0 {
			continue
		}
		buckets := make(map[float64]uint64, len(fs.OpBuckets))
		var cum, n int64
		for i, b := range fs.OpBuckets {
			cum += s.Buckets[i]
			buckets[b.Seconds()] = uint64(cum)
		}
		for _, k := range s.Buckets {
			n += k
		}
		// n, not s.Count: the two may be a request apart under load, and
		// the histogram must hold together.
		ch <- prometheus.MustNewConstHistogram(descFUSEDuration, uint64(n), s.Total.Seconds(), buckets, op.String())
	}
}

// fuseOps is the document of statusapi.FUSEOpsPath.
func fuseOps(c *fs.OpCounters) statusapi.FUSEOps {
	doc := statusapi.FUSEOps{Ops: make(map[string]statusapi.FUSEOpCount, fs.NumOps)}
	for op := fs.Op(0); op < fs.NumOps; op++ {
		s := c.Stat(op)
		doc.Ops[op.String()] = statusapi.FUSEOpCount{Count: s.Count, Seconds: s.Total.Seconds()}
	}
	return doc
}

func serveFUSEOps(w http.ResponseWriter, c *fs.OpCounters) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(fuseOps(c)); err != nil {
		log.L.WithError(err).Debug("write FUSE request counts")
	}
}
