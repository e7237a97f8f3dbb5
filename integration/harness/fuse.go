package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/socikit/socikit/integration/harness/results"
	"github.com/socikit/socikit/internal/statusapi"
)

// fusePeriod is how often a cold start samples socikit-snapshotter's FUSE
// request counts.
const fusePeriod = 100 * time.Millisecond

// fusePoller samples socikit-snapshotter's FUSE request counts
// (statusapi.FUSEOpsPath) during a cold start, for its timeline.
type fusePoller struct {
	start  time.Time
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	url      string // "" until found in the daemon's log
	noAddr   bool   // not found in addressWait
	samples  []results.FUSESample
	failed   error // the first failed read
	failures int
	stopped  bool
}

// startFUSEPoller samples the FUSE request counts of the socikit-snapshotter
// in d every fusePeriod from now until stop, in ms from start. The
// daemon's metrics address comes from its log (it may be written just
// after containerd-start.sh returns: looked for until addressWait).
func startFUSEPoller(ctx context.Context, d *daemons, start time.Time) *fusePoller {
	ctx, cancel := context.WithCancel(ctx)
	p := &fusePoller{start: start, cancel: cancel, done: make(chan struct{}), client: &http.Client{Timeout: 2 * time.Second}}
	logFile := filepath.Join(d.dir, "socikit.log")
	go func() {
		defer close(p.done)
		t := time.NewTicker(fusePeriod)
		defer t.Stop()
		for {
			if p.address(logFile) {
				_, _ = p.sample(ctx) // an error is kept in p.failed
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// addressWait bounds the search for the metrics address in the daemon's
// log.
const addressWait = 5 * time.Second

// address reports whether the daemon's metrics address is known, looking
// for it in its log if not.
func (p *fusePoller) address(logFile string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.url != "" {
		return true
	}
	if p.noAddr {
		return false
	}
	if addr := metricsAddress(logFile); addr != "" {
		p.url = "http://" + addr + statusapi.FUSEOpsPath
		return true
	}
	if time.Since(p.start) > addressWait {
		p.noAddr = true
		logf("socikit-snapshotter logged no metrics address in %v (%s): no FUSE request counts", addressWait, logFile)
	}
	return false
}

// sample reads the counts once and keeps them.
func (p *fusePoller) sample(ctx context.Context) (map[string]int64, error) {
	ops, err := p.read(ctx)
	at := msSince(p.start)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			p.failures++
			if p.failed == nil {
				p.failed = err
			}
		}
		return nil, err
	}
	p.samples = append(p.samples, results.FUSESample{MS: at, Ops: ops})
	return ops, nil
}

func (p *fusePoller) read(ctx context.Context) (map[string]int64, error) {
	p.mu.Lock()
	url := p.url
	p.mu.Unlock()
	if url == "" {
		return nil, errors.New("the metrics address of socikit-snapshotter is not known yet")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var doc statusapi.FUSEOps
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	ops := make(map[string]int64, len(doc.Ops))
	for k, v := range doc.Ops {
		ops[k] = v.Count
	}
	return ops, nil
}

// stop ends the sampling and returns the samples, in time order. Calls
// after the first return the same.
func (p *fusePoller) stop() []results.FUSESample {
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed != nil && !p.stopped {
		logf("reading FUSE request counts: %d failed, the first: %v (%d samples kept)", p.failures, p.failed, len(p.samples))
	}
	p.stopped = true
	// The ready line's sample and the poller's may have crossed.
	slices.SortStableFunc(p.samples, func(a, b results.FUSESample) int { return cmp.Compare(a.MS, b.MS) })
	return p.samples
}

// metricsAddress returns the address socikit-snapshotter logged that it
// serves its metrics on ("metrics server listening" in its log), or "".
func metricsAddress(logFile string) string {
	f, err := os.Open(logFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.Contains(l, "metrics server listening") {
			continue
		}
		_, v, ok := strings.Cut(l, "metrics_address=")
		if !ok {
			continue
		}
		if strings.HasPrefix(v, `"`) {
			v, _, _ = strings.Cut(v[1:], `"`)
		} else {
			v, _, _ = strings.Cut(v, " ")
		}
		return v
	}
	return ""
}
