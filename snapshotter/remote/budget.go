package remote

import (
	"context"
	"fmt"

	"golang.org/x/sync/semaphore"
)

// DefaultBudget is the budget the daemon gives all its layers' fetches
// (socikit-snapshotter): 128 MiB of compressed bytes in flight. One
// Fetcher alone holds at most DefaultFetchJobs × DefaultMaxFetchSize (64
// MiB); ten layers prefetching at once would hold ten times that without
// a shared budget (553 MiB was measured on a large reordered image).
const DefaultBudget = 128 << 20

// Budget bounds the compressed bytes that the fetches of every Fetcher
// sharing it hold in memory at once: a fetch waits until its bytes fit
// (a fetch larger than the whole budget waits for it to be free). The
// decompressed bytes add at most one span per fetch (runs are decompressed
// and cached span by span). Safe for concurrent use.
type Budget struct {
	size int64
	sem  *semaphore.Weighted
}

// NewBudget returns a Budget of n bytes.
func NewBudget(n int64) (*Budget, error) {
	if n <= 0 {
		return nil, fmt.Errorf("fetch budget %d is not positive", n)
	}
	return &Budget{size: n, sem: semaphore.NewWeighted(n)}, nil
}

// acquire waits until n bytes (at most the budget) are free and takes
// them; release gives them back.
func (b *Budget) acquire(ctx context.Context, n int64) (release func(), err error) {
	if b == nil {
		return func() {}, nil
	}
	n = min(n, b.size)
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	return func() { b.sem.Release(n) }, nil
}

// WithBudget makes the Fetcher's fetches share b with every Fetcher given
// it. Default: no budget beyond the Fetcher's own bound
// (WithFetchJobs × WithMaxFetchSize).
func WithBudget(b *Budget) Option {
	return func(o *options) error {
		o.budget = b
		return nil
	}
}
