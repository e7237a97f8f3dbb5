package ztoc

import (
	"fmt"
	"runtime"
)

// Option configures Build and Compress.
type Option func(*options) error

type options struct {
	spanSize  int64
	buildTool string
	level     int
	jobs      int
	planner   SpanPlanner
}

func makeOptions(opts []Option) (options, error) {
	o := options{spanSize: DefaultSpanSize, buildTool: DefaultBuildTool, level: DefaultCompressionLevel, jobs: runtime.GOMAXPROCS(0)}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// MinSpanSize is the smallest span size accepted. Each gzip span costs a
// 32 KiB window in the zTOC, so spans much smaller than that only grow the
// index.
const MinSpanSize = 32 << 10

// DefaultCompressionLevel is the gzip level Compress uses by default, and
// the exporter's (exporter.DefaultCompressionLevel is this constant):
// klauspost/compress level 8, whose output is the size of compress/gzip's
// level 6 (what BuildKit's image exporter writes) within 0.1 % on the
// layers measured in docs/exporter.md, where klauspost's level 6 is
// 2.3-2.7 % larger. Parallel spans keep it faster than compress/gzip
// level 6 on two cores. Upstream SOCI writes no gzip (it indexes layers as
// they are), so it has no level to follow.
const DefaultCompressionLevel = 8

// WithSpanSize sets the span size: the uncompressed distance between
// checkpoints (Build) or the target span size (Compress). Default
// DefaultSpanSize (4 MiB).
func WithSpanSize(n int64) Option {
	return func(o *options) error {
		if n < MinSpanSize {
			return fmt.Errorf("span size %d is below the minimum %d", n, MinSpanSize)
		}
		o.spanSize = n
		return nil
	}
}

// WithBuildToolIdentifier sets the zTOC's build tool identifier. Default
// DefaultBuildTool; use UpstreamBuildTool for zTOCs byte-identical to
// upstream SOCI's CLI.
func WithBuildToolIdentifier(id string) Option {
	return func(o *options) error {
		o.buildTool = id
		return nil
	}
}

// WithCompressionLevel sets the gzip level Compress uses (1-9). Default
// DefaultCompressionLevel.
func WithCompressionLevel(level int) Option {
	return func(o *options) error {
		if level < 1 || level > 9 {
			return fmt.Errorf("gzip level %d is out of range 1-9", level)
		}
		o.level = level
		return nil
	}
}

// WithJobs sets how many spans Compress compresses at once. The output is
// the same for any value. Default runtime.GOMAXPROCS(0).
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("jobs %d is below 1", n)
		}
		o.jobs = n
		return nil
	}
}

// WithSpanPlanner sets where Compress ends spans. Default SizePlanner with
// the span size (WithSpanSize), which is also the span size recorded in the
// checkpoint blob.
func WithSpanPlanner(p SpanPlanner) Option {
	return func(o *options) error {
		o.planner = p
		return nil
	}
}
