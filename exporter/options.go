package exporter

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/ztoc"
)

// DefaultCompressionLevel is BuildLayer's gzip level: ztoc.Compress's
// default, ztoc.DefaultCompressionLevel (8), whose doc gives the reasons.
const DefaultCompressionLevel = ztoc.DefaultCompressionLevel

// DefaultMinLayerSize is upstream SOCI's minimum layer size: compressed
// layers smaller than this get no zTOC and are pulled whole, as lazy
// loading them saves little. It is the default of `socikit convert
// --min-layer-size` and of the soci exporter's soci-min-layer-size.
const DefaultMinLayerSize int64 = 10 << 20

// Option configures BuildLayer and ChooseSpanSize.
type Option func(*options) error

type options struct {
	spanSize     int64 // 0: auto
	candidates   []int64
	startup      []string         // WithStartupFiles; nil: not given
	profile      *profile.Profile // WithProfile; nil: not given
	reorder      bool
	readFraction float64 // 0: the prior below
	// The no-list prior: p = max(priorFraction, priorFiles / files)
	// (DefaultReadFraction, DefaultReadFiles; the calibration test sets
	// them to evaluate other priors).
	priorFraction float64
	priorFiles    float64
	requestBytes  int64
	ratio         float64
	level         int
	jobs          int
	buildTool     string
	partial       partialRule
	// files is the start-up profile in effect (the RuntimeFiles, then
	// WithProfile's files, then the WithStartupFiles paths it does not
	// name, whole); nil: unknown.
	files []startupFile
}

func makeOptions(opts []Option) (*options, error) {
	o := &options{
		candidates:    DefaultSpanCandidates,
		priorFraction: DefaultReadFraction,
		priorFiles:    DefaultReadFiles,
		requestBytes:  DefaultRequestBytes,
		ratio:         DefaultCompressionRatio,
		level:         DefaultCompressionLevel,
		jobs:          runtime.GOMAXPROCS(0),
		buildTool:     ztoc.DefaultBuildTool,
		partial:       defaultPartialRule,
	}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	o.files = withRuntimeFiles(startupFiles(o.profile, o.startup))
	return o, nil
}

// WithSpanSize fixes the span size (ztoc.SizePlanner); 0 chooses it from
// the layer's content (ChooseSpanSize). Default 0 (auto).
func WithSpanSize(n int64) Option {
	return func(o *options) error {
		if n != 0 && n < ztoc.MinSpanSize {
			return fmt.Errorf("span size %d: must be 0 (auto) or at least %d", n, ztoc.MinSpanSize)
		}
		o.spanSize = n
		return nil
	}
}

// WithSpanCandidates sets the span sizes auto sizing chooses from. Default
// DefaultSpanCandidates.
func WithSpanCandidates(sizes ...int64) Option {
	return func(o *options) error {
		if len(sizes) == 0 {
			return fmt.Errorf("span candidates: none given")
		}
		for _, n := range sizes {
			if n < ztoc.MinSpanSize {
				return fmt.Errorf("span candidate %d: must be at least %d", n, ztoc.MinSpanSize)
			}
		}
		o.candidates = slices.Clone(sizes)
		return nil
	}
}

// WithStartupFiles gives the files a container reads at start-up (layer
// paths; a leading "/" or "./" is ignored), each counted as read whole:
// a profile of whole files. They drive span sizing, reordering
// (WithReorder) and the prefetch spans. A non-nil empty list means
// "known: nothing is read"; nil (the default) means unknown. With
// WithProfile too, the profile's files come first (first-access order)
// and the listed paths it does not name follow; a path in both counts
// whole.
func WithStartupFiles(paths []string) Option {
	return func(o *options) error {
		if paths == nil {
			paths = []string{}
		}
		o.startup = slices.Clone(paths)
		return nil
	}
}

// WithProfile gives the byte ranges a container reads at start-up, file
// by file in first-access order (package profile). With a profile,
// reordering (WithReorder) puts the files with hot ranges first, except
// big files read only in part (at least PartialMinSize bytes, their hot
// ranges, rounded to HotGranule and joined across small gaps, at most
// half of the file), which follow the others; span cuts isolate the hot
// ranges of those files; the span-size model counts the spans holding hot
// bytes; and the prefetch spans are exactly those (PrefetchRanges). A
// profile with no files means "known: nothing is read"; nil (the
// default) means no profile. Profile paths are image paths ("/usr/bin/x");
// paths the layer does not hold are reported in LayerResult.Missing.
func WithProfile(p *profile.Profile) Option {
	return func(o *options) error {
		if p != nil {
			q := *p
			q.Version = profile.Version // a profile made in code may leave it out
			if err := q.Validate(); err != nil {
				return err
			}
		}
		o.profile = p
		return nil
	}
}

// WithReorder moves the start-up files to the front of the layer
// (Reorder). Default false.
func WithReorder(on bool) Option {
	return func(o *options) error { o.reorder = on; return nil }
}

// WithReadFraction sets the probability with which the span-size model
// assumes each regular file is read at start-up when no start-up list is
// known. Default min(1, max(DefaultReadFraction, DefaultReadFiles / the
// layer's non-empty regular files)).
func WithReadFraction(p float64) Option {
	return func(o *options) error {
		if !(p > 0 && p <= 1) {
			return fmt.Errorf("read fraction %v: must be in (0, 1]", p)
		}
		o.readFraction = p
		return nil
	}
}

// WithRequestBytes sets what the span-size model counts for each span a
// start-up touches (one HTTP range request), in bytes: the link's request
// latency times its bandwidth (20 ms at 25 MB/s is 500 KB). 0 counts
// bytes only. Default DefaultRequestBytes.
func WithRequestBytes(n int64) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("request bytes %d: must not be negative", n)
		}
		o.requestBytes = n
		return nil
	}
}

// WithCompressionRatio sets the compressed/uncompressed ratio the span-size
// model assumes for span bytes. Default DefaultCompressionRatio.
func WithCompressionRatio(r float64) Option {
	return func(o *options) error {
		if !(r > 0 && r <= 2) {
			return fmt.Errorf("compression ratio %v: must be in (0, 2]", r)
		}
		o.ratio = r
		return nil
	}
}

// WithCompressionLevel sets the gzip level (1-9) of ztoc.Compress's
// encoder (klauspost/compress/flate). Default DefaultCompressionLevel.
func WithCompressionLevel(level int) Option {
	return func(o *options) error {
		if level < 1 || level > 9 {
			return fmt.Errorf("compression level %d: must be 1-9", level)
		}
		o.level = level
		return nil
	}
}

// WithJobs sets how many spans are compressed at once; the output is the
// same for any value. Default runtime.GOMAXPROCS(0).
func WithJobs(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("jobs %d: must be at least 1", n)
		}
		o.jobs = n
		return nil
	}
}

// WithBuildToolIdentifier sets the zTOC's build tool identifier. Default
// ztoc.DefaultBuildTool.
func WithBuildToolIdentifier(id string) Option {
	return func(o *options) error { o.buildTool = id; return nil }
}
