package httprange

import "fmt"

// RetryReason tells why a range request was retried.
type RetryReason uint8

// The reasons for a retry.
const (
	// RetryConnection: the connection failed (refused, reset, closed)
	// before the response's headers.
	RetryConnection RetryReason = iota
	// Retry5xx: a 5xx status.
	Retry5xx
	// Retry429: 429 Too Many Requests (Retry-After honoured).
	Retry429
	// RetryShortBody: the body ended (or the connection broke) before the
	// bytes asked for.
	RetryShortBody
	// RetryStall: no byte for the stall deadline (before the headers or in
	// the body): the request was cut.
	RetryStall
	// RetryTimeout: the per-attempt timeout (WithRequestTimeout) expired
	// while the response was still coming, or a 408.
	RetryTimeout
	// RetryWholeBlob: a 200 with the whole blob, too far from the range
	// asked to read through (asked again).
	RetryWholeBlob
	// RetryVerify: bytes read did not match their digest and were asked
	// again. An HTTPBlob does not verify; a caller that does
	// (snapshotter/remote's Fetcher, per span) reports it.
	RetryVerify

	// NumRetryReasons is the number of retry reasons.
	NumRetryReasons = iota
)

var reasonNames = [...]string{RetryConnection: "connection", Retry5xx: "5xx", Retry429: "429", RetryShortBody: "short-body",
	RetryStall: "stall", RetryTimeout: "timeout", RetryWholeBlob: "whole-blob", RetryVerify: "verify"}

// String returns the reason's label: "connection", "5xx", "429",
// "short-body", "stall", "timeout", "whole-blob" or "verify".
func (r RetryReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("RetryReason(%d)", uint8(r))
}

// FaultMetrics receives how registry faults were handled: an HTTPBlob
// reports to the one given with WithMetrics. Implementations must be safe
// for concurrent use and fast. snapshotter/remote.Counters is one.
type FaultMetrics interface {
	// Retried is called for each request (or span) asked again.
	Retried(reason RetryReason)
	// Stalled is called for each request cut for making no progress.
	Stalled()
	// Hedged is called for each hedge request (a second request sent when
	// the first was slow to answer) once the race is decided: won tells
	// that the hedge answered first.
	Hedged(won bool)
	// WholeBlob is called for each 200 answering a range request with the
	// whole blob.
	WholeBlob()
	// SlowFetch is called for each request that took longer than
	// WithSlowFetch (default DefaultSlowFetch), retries included.
	SlowFetch()
}

type nopMetrics struct{}

func (nopMetrics) Retried(RetryReason) {}
func (nopMetrics) Stalled()            {}
func (nopMetrics) Hedged(bool)         {}
func (nopMetrics) WholeBlob()          {}
func (nopMetrics) SlowFetch()          {}
