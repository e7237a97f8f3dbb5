package remote

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/socikit/socikit/internal/httprange"
)

// FetchKind tells why spans were fetched.
type FetchKind uint8

// The kinds of fetches.
const (
	// OnDemand fetches serve a read that waits for them.
	OnDemand FetchKind = iota
	// Prefetch fetches serve Prefetch (spans named by the index).
	Prefetch
	// Background fetches fill the rest of the layer.
	Background
	// ReadAhead fetches run ahead of sequential reads.
	ReadAhead

	// NumFetchKinds is the number of fetch kinds.
	NumFetchKinds = iota
)

var kindNames = [...]string{OnDemand: "on-demand", Prefetch: "prefetch", Background: "background", ReadAhead: "read-ahead"}

// String returns "on-demand", "prefetch", "background" or "read-ahead".
func (k FetchKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("FetchKind(%d)", uint8(k))
}

// ParseFetchKind parses the String form of a FetchKind.
func ParseFetchKind(s string) (FetchKind, error) {
	for i, n := range kindNames {
		if n == s {
			return FetchKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown fetch kind %q", s)
}

// Metrics receives the events of a Fetcher. Implementations must be safe
// for concurrent use and fast: they are called on the read path. Counters
// is one; a Prometheus adapter is another.
type Metrics interface {
	// Fetched is called once per range of spans fetched from the blob,
	// with the compressed bytes transferred and the time taken; err is
	// nil on success.
	Fetched(kind FetchKind, spans int, bytes int64, d time.Duration, err error)
	// CacheHit and CacheMiss count spans a read found cached or not.
	CacheHit(spans int)
	CacheMiss(spans int)
	// VerifyFailed is called for each span whose bytes did not match its
	// digest.
	VerifyFailed(id SpanID)
}

// RetryReason, FaultMetrics and the reasons are httprange's: Counters
// counts an HTTPBlob's fault handling and a Fetcher's verification retries
// alike.
type (
	RetryReason  = httprange.RetryReason
	FaultMetrics = httprange.FaultMetrics
)

// The reasons for a retry (see httprange).
const (
	RetryConnection = httprange.RetryConnection
	Retry5xx        = httprange.Retry5xx
	Retry429        = httprange.Retry429
	RetryShortBody  = httprange.RetryShortBody
	RetryStall      = httprange.RetryStall
	RetryTimeout    = httprange.RetryTimeout
	RetryWholeBlob  = httprange.RetryWholeBlob
	RetryVerify     = httprange.RetryVerify
	NumRetryReasons = httprange.NumRetryReasons
)

// Counters is a Metrics and a FaultMetrics that counts, with atomic
// counters. Its zero value is ready to use.
type Counters struct {
	Fetches       [NumFetchKinds]atomic.Int64 // by FetchKind
	FetchErrors   atomic.Int64
	FetchedSpans  atomic.Int64
	FetchedBytes  atomic.Int64 // compressed bytes transferred
	FetchNanos    atomic.Int64
	Hits, Misses  atomic.Int64
	VerifyFailure atomic.Int64

	Retries     [NumRetryReasons]atomic.Int64 // by RetryReason
	Stalls      atomic.Int64
	Hedges      atomic.Int64 // hedge requests sent
	HedgeWins   atomic.Int64 // of which answered first
	WholeBlobs  atomic.Int64
	SlowFetches atomic.Int64
}

var (
	_ Metrics      = (*Counters)(nil)
	_ FaultMetrics = (*Counters)(nil)
)

// Retried implements FaultMetrics.
func (c *Counters) Retried(r RetryReason) {
	if int(r) < len(c.Retries) {
		c.Retries[r].Add(1)
	}
}

// Stalled implements FaultMetrics.
func (c *Counters) Stalled() { c.Stalls.Add(1) }

// Hedged implements FaultMetrics.
func (c *Counters) Hedged(won bool) {
	c.Hedges.Add(1)
	if won {
		c.HedgeWins.Add(1)
	}
}

// WholeBlob implements FaultMetrics.
func (c *Counters) WholeBlob() { c.WholeBlobs.Add(1) }

// SlowFetch implements FaultMetrics.
func (c *Counters) SlowFetch() { c.SlowFetches.Add(1) }

// Fetched implements Metrics.
func (c *Counters) Fetched(kind FetchKind, spans int, bytes int64, d time.Duration, err error) {
	if int(kind) < len(c.Fetches) {
		c.Fetches[kind].Add(1)
	}
	if err != nil {
		c.FetchErrors.Add(1)
		return
	}
	c.FetchedSpans.Add(int64(spans))
	c.FetchedBytes.Add(bytes)
	c.FetchNanos.Add(int64(d))
}

// CacheHit implements Metrics.
func (c *Counters) CacheHit(spans int) { c.Hits.Add(int64(spans)) }

// CacheMiss implements Metrics.
func (c *Counters) CacheMiss(spans int) { c.Misses.Add(int64(spans)) }

// VerifyFailed implements Metrics.
func (c *Counters) VerifyFailed(SpanID) { c.VerifyFailure.Add(1) }

type nopMetrics struct{}

func (nopMetrics) Fetched(FetchKind, int, int64, time.Duration, error) {}
func (nopMetrics) CacheHit(int)                                        {}
func (nopMetrics) CacheMiss(int)                                       {}
func (nopMetrics) VerifyFailed(SpanID)                                 {}
func (nopMetrics) Retried(RetryReason)                                 {}

// retried reports a verification retry to m's FaultMetrics side, if it
// has one.
func retried(m Metrics, r RetryReason) {
	if fm, ok := m.(FaultMetrics); ok {
		fm.Retried(r)
	}
}
