package cli

import (
	"context"
	"flag"
	"time"
)

// timeoutFlag adds --timeout to a command that reads images (get-file,
// inspect, convert): a limit on the whole command, none by default. Its
// range reads retry as socikit-snapshotter's span fetches do
// (internal/httprange), and the limit cuts the retries too.
func timeoutFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("timeout", 0, "give up after this long, retries of failed registry requests included (0: no limit)")
}

// withTimeout returns ctx bounded by d; d == 0 leaves it unbounded.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
