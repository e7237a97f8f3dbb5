// Package shaping serves the benchmark harness's shaped registry: an
// in-memory OCI registry (go-containerregistry's pkg/registry, with the
// referrers API and Range requests) behind two http.Handler wrappers:
//
//   - Delay adds a fixed delay before each HTTP request is served. It models
//     the round-trip time of a distant registry, once per request (time to
//     first byte), not per packet: the TCP connection itself has no added
//     latency, so slow start and the bandwidth-delay product of a real long
//     link are not reproduced. Bandwidth is limited outside the process, by
//     tc on the registry's network namespace (scripts/bench-net.sh).
//   - Counter counts requests and response body bytes per Class as the bytes
//     are written, so a reading taken mid-transfer reflects what was sent.
//
// The counters are read and reset over HTTP under AdminPrefix
// (GET /_bench/stats, POST /_bench/reset); admin requests are neither
// delayed nor counted. ReadStats and ResetStats are the client side.
package shaping

import (
	"io"
	"log"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is the shaped registry: Counter and Delay around an in-memory
// registry, with the admin endpoints under AdminPrefix on the same handler.
type Registry struct {
	// Counter counts the registry's traffic (not the admin endpoints').
	Counter *Counter

	registry http.Handler // delayed, counted
	admin    http.Handler
}

// NewRegistry returns a shaped in-memory registry that delays every request
// by latency (0: no delay). logger receives the registry's per-request log;
// nil discards it.
func NewRegistry(latency time.Duration, logger *log.Logger) *Registry {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	reg := registry.New(registry.WithReferrersSupport(true), registry.Logger(logger))
	c := NewCounter(reg)
	return &Registry{Counter: c, registry: Delay(c, latency), admin: c.AdminHandler()}
}

// ServeHTTP serves the admin endpoints under AdminPrefix directly and every
// other request through Delay and Counter.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if isAdmin(req) {
		r.admin.ServeHTTP(w, req)
		return
	}
	r.registry.ServeHTTP(w, req)
}

// Admin returns the admin endpoints alone, for serving on a separate
// listener.
func (r *Registry) Admin() http.Handler { return r.admin }

// Delay returns a handler that waits d before passing each request to next.
// The delay is per HTTP request, not per packet or per byte: it models one
// round trip before the response starts. A request whose context ends during
// the wait is dropped without reaching next. d <= 0 returns next unchanged.
func Delay(next http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			next.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	})
}
