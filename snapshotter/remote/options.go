package remote

import "fmt"

// Option configures NewFetcher. The options of the blob it reads from
// (retries, timeouts, transport) are httprange's, given to
// httprange.NewRegistryBlob.
type Option func(*options) error

type options struct {
	metrics       Metrics
	fetchJobs     int
	maxFetchSize  int64
	readAhead     int64
	verifyRetries int
	budget        *Budget // nil: none
}

func makeOptions(opts []Option) (options, error) {
	o := options{metrics: nopMetrics{}, fetchJobs: DefaultFetchJobs, maxFetchSize: DefaultMaxFetchSize,
		readAhead: DefaultReadAhead, verifyRetries: DefaultVerifyRetries}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Defaults of the fetcher options.
const (
	// DefaultFetchJobs bounds the concurrent fetches of a Fetcher.
	DefaultFetchJobs = 4
	// DefaultMaxFetchSize caps the compressed bytes of one run of adjacent
	// spans fetched together: coalescing saves round trips, but a read
	// waits for its whole run.
	DefaultMaxFetchSize = 16 << 20
	// DefaultReadAhead caps the compressed bytes fetched ahead of
	// sequential reads (see Fetcher.ReadAt).
	DefaultReadAhead = 16 << 20
	// DefaultVerifyRetries is how often a Fetcher fetches a span again
	// whose bytes did not match its digest before it gives up (EIO).
	DefaultVerifyRetries = 2
)

// WithReadAhead caps the compressed bytes a Fetcher fetches ahead of
// sequential reads; 0 turns read-ahead off. Default DefaultReadAhead.
func WithReadAhead(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("read-ahead %d is negative", n)
		}
		o.readAhead = n
		return nil
	}
}

// WithMetrics sets where a Fetcher reports (its span verification retries
// too, if m is a FaultMetrics). Default: nowhere. The blob's fault
// handling goes where httprange.WithMetrics says (Counters is both).
func WithMetrics(m Metrics) Option {
	return func(o *options) error {
		if m == nil {
			m = nopMetrics{}
		}
		o.metrics = m
		return nil
	}
}

// WithFetchJobs bounds the concurrent fetches of a Fetcher. Default
// DefaultFetchJobs.
func WithFetchJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("fetch jobs %d is below 1", n)
		}
		o.fetchJobs = n
		return nil
	}
}

// WithMaxFetchSize caps the compressed bytes of adjacent missing spans a
// Fetcher coalesces into one range. Default DefaultMaxFetchSize.
func WithMaxFetchSize(n int64) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("max fetch size %d is below 1", n)
		}
		o.maxFetchSize = n
		return nil
	}
}

// WithVerifyRetries sets how often a Fetcher fetches a span again after
// its bytes did not match its digest (a registry or proxy may damage one
// response); 0 fails at the first mismatch. Default DefaultVerifyRetries.
func WithVerifyRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("verify retries %d is negative", n)
		}
		o.verifyRetries = n
		return nil
	}
}
