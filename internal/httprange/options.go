package httprange

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Option configures NewHTTPBlob and NewRegistryBlob. WithTransport and
// WithKeychain are NewRegistryBlob's only: NewHTTPBlob returns an error for
// them rather than ignore them.
type Option func(*options) error

type options struct {
	retries    int
	backoff    time.Duration
	timeout    time.Duration
	maxRequest int64
	jobs       int
	multiRange int
	// noRangeByRange: a refused multi-range request is an error, not
	// asked again range by range (WithoutRangeByRange).
	noRangeByRange bool
	transport      http.RoundTripper
	keychain       authn.Keychain
	// keychainSet: WithKeychain was given (it wins over a transport's).
	keychainSet bool

	stallFloor, stallCeiling time.Duration
	hedgeMin                 time.Duration // 0: no hedging
	maxRetryAfter            time.Duration
	slowFetch                time.Duration

	metrics FaultMetrics
}

// Defaults of the options.
const (
	// DefaultRetries is how often a failed request is retried.
	DefaultRetries = 4
	// DefaultBackoff is the first retry delay; it doubles (with jitter).
	DefaultBackoff = 200 * time.Millisecond
	// DefaultRequestTimeout bounds each attempt (connect, headers and
	// body): a registry that stops answering gives an error, not a hang.
	DefaultRequestTimeout = 60 * time.Second
	// DefaultMaxRequestSize splits larger ranges into several requests so
	// that one slow response does not hold everything and the timeout
	// stays meaningful.
	DefaultMaxRequestSize = 32 << 20
	// DefaultJobs bounds the parallel requests of one ReadRanges.
	DefaultJobs = 4
	// DefaultMultiRange is the most ranges sent in one multi-range request.
	DefaultMultiRange = 16

	// DefaultStallFloor and DefaultStallCeiling bound the stall deadline:
	// how long a request may go without a byte (waiting for its headers,
	// or between two reads of its body) before it is cut and asked again.
	// Between the bounds the deadline follows the registry host: 4 × the
	// 95th percentile of its recent silences (times to the headers and
	// longest pauses within bodies of the last 128 responses), or
	// DefaultStallCold until 8 are known; each retry of a request doubles
	// it (up to the ceiling), so a registry slower than the floor is
	// waited for after all.
	DefaultStallFloor   = 1 * time.Second
	DefaultStallCeiling = 15 * time.Second
	DefaultStallCold    = 4 * time.Second
	// DefaultHedgeDelay is the least time a request waits for its headers
	// before a second, identical request is sent (a hedge; the first to
	// answer is used, the other cancelled). The delay is 2 × the host's
	// 95th percentile time to headers (a quarter of the stall deadline
	// until it is known), below the stall deadline; hedges are at most
	// 10 % of a host's requests (plus 4).
	DefaultHedgeDelay = 200 * time.Millisecond
	// DefaultMaxRetryAfter caps the wait a Retry-After header asks for.
	DefaultMaxRetryAfter = 20 * time.Second
	// DefaultSlowFetch: a request that takes longer, retries included, is
	// logged (rate-limited) and counted (FaultMetrics.SlowFetch).
	DefaultSlowFetch = 2 * time.Second
)

// WithStallTimeout bounds the adaptive stall deadline (see
// DefaultStallFloor); floor == ceiling makes it fixed. Default
// DefaultStallFloor, DefaultStallCeiling.
func WithStallTimeout(floor, ceiling time.Duration) Option {
	return func(o *options) error {
		if floor <= 0 || ceiling < floor {
			return fmt.Errorf("stall timeout bounds %v, %v: want 0 < floor <= ceiling", floor, ceiling)
		}
		o.stallFloor, o.stallCeiling = floor, ceiling
		return nil
	}
}

// WithHedgeDelay sets the least delay before a hedge request (see
// DefaultHedgeDelay); 0 turns hedging off. Default DefaultHedgeDelay.
func WithHedgeDelay(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("hedge delay %v is negative", d)
		}
		o.hedgeMin = d
		return nil
	}
}

// WithMaxRetryAfter caps the wait asked by a Retry-After header of a 429
// or 503. Default DefaultMaxRetryAfter.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("max Retry-After %v is negative", d)
		}
		o.maxRetryAfter = d
		return nil
	}
}

// WithSlowFetch sets the duration above which a request counts as slow.
// Default DefaultSlowFetch.
func WithSlowFetch(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("slow fetch threshold %v is not positive", d)
		}
		o.slowFetch = d
		return nil
	}
}

// WithRetries sets how often a failed request is retried. Default
// DefaultRetries.
func WithRetries(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("retries %d is negative", n)
		}
		o.retries = n
		return nil
	}
}

// WithBackoff sets the first retry delay. Default DefaultBackoff.
func WithBackoff(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("backoff %v is negative", d)
		}
		o.backoff = d
		return nil
	}
}

// WithRequestTimeout bounds each request attempt, however much progress
// it makes (WithStallTimeout cuts one that makes none). Default
// DefaultRequestTimeout.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("request timeout %v is not positive", d)
		}
		o.timeout = d
		return nil
	}
}

// WithMaxRequestSize caps the bytes asked in one request. Default
// DefaultMaxRequestSize.
func WithMaxRequestSize(n int64) Option {
	return func(o *options) error {
		if n < 4096 {
			return fmt.Errorf("max request size %d is below 4096", n)
		}
		o.maxRequest = n
		return nil
	}
}

// WithJobs bounds the parallel requests of one ReadRanges. Default
// DefaultJobs.
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("jobs %d is below 1", n)
		}
		o.jobs = n
		return nil
	}
}

// WithMultiRange sets the most ranges asked in one multi-range request; 1
// disables multi-range requests. Servers that answer one with anything
// but multipart/byteranges or a single covering range are asked range by
// range from then on. Default DefaultMultiRange.
func WithMultiRange(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("multi-range %d is below 1", n)
		}
		o.multiRange = n
		return nil
	}
}

// WithoutRangeByRange makes a refused multi-range request an error
// wrapping ErrMultiRangeRefused instead of asking range by range: for a
// caller with a cheaper fallback (a lazily read zTOC is then read whole).
func WithoutRangeByRange() Option {
	return func(o *options) error {
		o.noRangeByRange = true
		return nil
	}
}

// WithTransport sets the base round tripper of NewRegistryBlob (it adds
// registry authentication on top). Default a clone of
// http.DefaultTransport. NewHTTPBlob refuses it (its client is given).
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		o.transport = rt
		return nil
	}
}

// WithKeychain sets where NewRegistryBlob finds credentials. Default
// authn.DefaultKeychain (the docker config), or the keychain a WithTransport
// transport carries (a RegistryKeychain method, as
// internal/image.KeychainTransport has). NewHTTPBlob refuses it.
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) error {
		if k == nil {
			return errors.New("keychain is nil")
		}
		o.keychain = k
		o.keychainSet = true
		return nil
	}
}

// WithMetrics sets where an HTTPBlob reports how it handled faults
// (retries, stalls, hedges, whole-blob answers, slow requests). Default:
// nowhere.
func WithMetrics(m FaultMetrics) Option {
	return func(o *options) error {
		if m == nil {
			m = nopMetrics{}
		}
		o.metrics = m
		return nil
	}
}

func makeOptions(opts []Option) (options, error) {
	o := options{retries: DefaultRetries, backoff: DefaultBackoff, timeout: DefaultRequestTimeout,
		maxRequest: DefaultMaxRequestSize, jobs: DefaultJobs, multiRange: DefaultMultiRange,
		keychain: authn.DefaultKeychain, metrics: nopMetrics{}, stallFloor: DefaultStallFloor,
		stallCeiling: DefaultStallCeiling, hedgeMin: DefaultHedgeDelay, maxRetryAfter: DefaultMaxRetryAfter,
		slowFetch: DefaultSlowFetch}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}
