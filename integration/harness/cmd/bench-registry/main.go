// Command bench-registry serves the benchmark harness's shaped registry: an
// in-memory OCI registry (referrers API, Range requests) that delays every
// HTTP request by --latency and counts requests and response bytes per class
// (see package shaping). Bandwidth is not limited here: scripts/bench-net.sh
// runs this command in a network namespace whose egress is shaped by tc.
//
// The counters are at GET /_bench/stats (JSON) and reset by
// POST /_bench/reset on the registry's own listener; these requests are not
// delayed or counted. --admin serves the same endpoints on a second address
// as well (e.g. one outside the shaped link).
//
// Prints "listening on http://ADDR ..." once the listener is open; stops on
// SIGINT or SIGTERM, letting requests in flight finish for a few seconds.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/socikit/socikit/integration/harness/shaping"
)

func main() {
	addr := flag.String("addr", "10.200.0.2:5000", "listen address of the registry (and of /_bench/)")
	latency := flag.Duration("latency", 20*time.Millisecond, "delay added before each HTTP request (per request, not per packet); 0 = none")
	admin := flag.String("admin", "", "also serve /_bench/stats and /_bench/reset on this address (default: only on --addr)")
	verbose := flag.Bool("v", false, "log every registry request to stderr")
	flag.Parse()
	if err := run(*addr, *admin, *latency, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "bench-registry:", err)
		os.Exit(1)
	}
}

func run(addr, adminAddr string, latency time.Duration, verbose bool) error {
	var logger *log.Logger
	if verbose {
		logger = log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	}
	reg := shaping.NewRegistry(latency, logger)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	servers := []*http.Server{{Addr: addr, Handler: reg, ReadHeaderTimeout: 10 * time.Second}}
	if adminAddr != "" {
		servers = append(servers, &http.Server{Addr: adminAddr, Handler: reg.Admin(), ReadHeaderTimeout: 10 * time.Second})
	}
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", srv.Addr, err)
			}
		}()
	}
	msg := fmt.Sprintf("listening on http://%s (latency %v per request, stats http://%s%sstats", addr, latency, addr, shaping.AdminPrefix)
	if adminAddr != "" {
		msg += fmt.Sprintf(" and http://%s%sstats", adminAddr, shaping.AdminPrefix)
	}
	fmt.Println(msg + ")")

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		if serr := srv.Shutdown(shutCtx); serr != nil && err == nil {
			err = fmt.Errorf("shutdown %s: %w", srv.Addr, serr)
		}
	}
	return err
}
