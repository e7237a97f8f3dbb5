// Package results holds the raw measurements of one harness run, shared by
// the runner (which fills them) and the report writers (CSV, JSON,
// Markdown, PNG).
package results

import "time"

// Contender names, in the order reports list them. Overlayfs is the
// baseline every ratio is taken against; Upstream is upstream
// soci-snapshotter v0.16.1 with its own index of the plain image.
const (
	Overlayfs      = "overlayfs"       // containerd overlayfs: full pull of the plain image, then run
	SocikitAuto    = "socikit-auto"    // our exporter, soci-span-size=auto
	SocikitReorder = "socikit-reorder" // our exporter, auto spans + soci-reorder from the start-up profile
	SocikitConvert = "socikit-4m"      // `socikit convert --span-size 4194304` of the plain image
	Upstream       = "upstream-soci"   // upstream soci-snapshotter, index by upstream's builder (4 MiB spans)
	// SocikitProfiled is the image built through the `# syntax=` frontend
	// (socikit-frontend) with no hand-made list: its profiling step traces
	// the start-up inside the build (byte ranges, mapped pages included)
	// and the soci exporter reorders, cuts spans around the hot ranges and
	// prefetches exactly the hot spans.
	SocikitProfiled = "socikit-profiled"
	// SocikitLazyProfile is the image rebuilt through the frontend with the
	// profile socikit-snapshotter recorded during a lazy start of the auto
	// image (`socikit profile export`, build context SOCIKIT_PROFILE_CONTEXT).
	SocikitLazyProfile = "socikit-lazyprofile"
)

// Contenders lists the contender names in report order.
var Contenders = []string{Overlayfs, SocikitAuto, SocikitReorder, SocikitProfiled, SocikitLazyProfile, SocikitConvert, Upstream}

// Optional contenders appear in reports only when a run measured them
// (samples or failures): runs made before they existed, or without them,
// keep their tables as they were.
var Optional = map[string]bool{SocikitProfiled: true, SocikitLazyProfile: true}

// Run is one invocation of the harness.
type Run struct {
	Started  time.Time `json:"started"`  // UTC
	Mode     string    `json:"mode"`     // "quick" or "full"
	Host     string    `json:"host"`     // uname -r, cores, memory
	Link     Link      `json:"link"`     // shaping of the registry link
	Runs     int       `json:"runs"`     // iterations per (image, contender)
	Command  string    `json:"command"`  // the command line that produced it
	Images   []Image   `json:"images"`   // the images measured
	Samples  []Sample  `json:"samples"`  // one per (image, contender, iteration)
	Failures []Failure `json:"failures"` // contenders that failed, with the error
	// Builds are the timed image builds of the prepare phase (omitted by
	// runs made before they were recorded).
	Builds []Build `json:"builds,omitempty"`
}

// Build is one timed build of one image variant, push included.
type Build struct {
	Image   string `json:"image"`
	Variant string `json:"variant"` // plain, auto, reorder, profiled, lazyprofile
	// Fresh: on a buildkitd of its own, started for this build (empty
	// cache); else on the run's shared builder, after the builds before it.
	Fresh bool    `json:"fresh_builder"`
	MS    float64 `json:"ms"` // the buildctl command, start to exit
	// Frontend builds with a profiling step: the step's duration as
	// BuildKit reports it (DONE), the traced start-up's own time to its
	// ready line (socikit-trace's seconds) and socikit-trace's summary.
	ProfileStepMS float64 `json:"profile_step_ms,omitempty"`
	StartupMS     float64 `json:"startup_ms,omitempty"`
	ProfileStatus string  `json:"profile_status,omitempty"`
}

// Link is the shaping of the link between the runtime and the registry.
type Link struct {
	RateMbit  float64 `json:"rate_mbit"`  // tc tbf rate on the registry's egress; 0 = unshaped
	LatencyMS float64 `json:"latency_ms"` // delay added to every HTTP request by the proxy
}

// Image describes one benchmark image (sizes of the plain image).
type Image struct {
	Name             string `json:"name"`             // python, node, jvm, toolchain, ...
	Layers           int    `json:"layers"`           // layer count
	CompressedBytes  int64  `json:"compressed_bytes"` // sum of compressed layer sizes
	UncompressedSize int64  `json:"uncompressed_bytes"`
	// StartupFiles and StartupBytes are the regular files the app reads
	// before its ready line (from the start-up profile) and their size;
	// StartupCompressed is their compressed size: the files, whole, in
	// first-open order, as one tar stream through gzip (level 6).
	StartupFiles      int    `json:"startup_files"`
	StartupBytes      int64  `json:"startup_bytes"`
	StartupCompressed int64  `json:"startup_compressed_bytes"`
	Ready             string `json:"ready"` // the ready line the app prints
	// The byte ranges the start-up reads (mapped pages included), from a
	// socikit-trace run of the app in a chroot of the image's rootfs
	// (scripts/bench-images.sh, startup-ranges.json): files, bytes after
	// merging overlaps, and those bytes, file by file in first-access
	// order, ranges by offset, as one gzip stream (level 6, no tar
	// headers). 0 when not measured.
	RangeFiles      int   `json:"range_files,omitempty"`
	RangeBytes      int64 `json:"range_bytes,omitempty"`
	RangeCompressed int64 `json:"range_compressed_bytes,omitempty"`
	// The profile socikit-snapshotter recorded during the lazy start of
	// the auto image that the lazyprofile variant was built from: files
	// and bytes (pages as the kernel asked for them, read-ahead included).
	LazyProfileFiles int   `json:"lazy_profile_files,omitempty"`
	LazyProfileBytes int64 `json:"lazy_profile_bytes,omitempty"`
}

// Sample is one cold start of one image by one contender.
type Sample struct {
	Image     string `json:"image"`
	Contender string `json:"contender"`
	Iter      int    `json:"iter"`
	// PullMS is `ctr image pull` (for lazy contenders: manifests, zTOCs,
	// mounts); ReadyMS runs from the start of the pull to the ready line.
	PullMS  float64 `json:"pull_ms"`
	ReadyMS float64 `json:"ready_ms"`
	// ReadAllMS runs from the start of a second, separate cold pull to the
	// exit of a container that reads every regular file (0: not measured).
	ReadAllMS float64 `json:"read_all_ms"`
	// BytesBeforeReady counts the bytes the registry sent (blobs,
	// manifests, headers excluded) from the start of the pull to the ready
	// line; BytesTotal until the end of the sample (background fetch
	// included when it had finished).
	BytesBeforeReady int64 `json:"bytes_before_ready"`
	BytesTotal       int64 `json:"bytes_total"`
	Requests         int64 `json:"requests_before_ready"`
	// IndexBytes is the size of the SOCI index manifest and its zTOCs (0
	// for overlayfs).
	IndexBytes int64 `json:"index_bytes"`
	// PeakRSSKiB is the snapshotter's peak resident memory (VmHWM) at the
	// end of the sample; for overlayfs, containerd's.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	// LocalReadyMS (overlayfs only) is the app's time to ready on the
	// rootfs it unpacked, with a cold page cache: a second container of
	// the pulled image, from `ctr run` to the ready line, after dropping
	// the page cache. The floor's first term (report: Floor).
	LocalReadyMS float64 `json:"local_ready_ms,omitempty"`
	// Timeline is what the registry served during the sample and when
	// (nil in runs made before timelines were recorded).
	Timeline *Timeline `json:"timeline,omitempty"`
	// FUSEBeforeReady counts, by kind, the FUSE requests
	// socikit-snapshotter's lazy mounts answered from the start of the
	// pull to the ready line (its /fuse-ops at the ready line; nil for
	// other snapshotters and in runs made before they were recorded).
	FUSEBeforeReady map[string]int64 `json:"fuse_before_ready,omitempty"`
}

// Timeline is one cold start as the registry saw it, in milliseconds from
// the start of the pull.
type Timeline struct {
	PullEndMS float64 `json:"pull_end_ms"` // `ctr image pull` returned; `ctr run` starts
	ReadyMS   float64 `json:"ready_ms"`    // the ready line
	ExitMS    float64 `json:"exit_ms"`     // the container exited
	Fetches   []Fetch `json:"fetches"`     // registry requests, in start order
	Dropped   int64   `json:"dropped,omitempty"`
	// FUSE samples socikit-snapshotter's FUSE request counts during the
	// cold start (every 100 ms, and at the ready line), in time order;
	// empty for other snapshotters.
	FUSE []FUSESample `json:"fuse,omitempty"`
}

// FUSESample is socikit-snapshotter's count of FUSE requests by kind
// ("lookup", "getattr", "open", "read", "readdirplus", "release", ...)
// at one moment of a Timeline: since the daemon started, which is just
// before the pull.
type FUSESample struct {
	MS  float64          `json:"ms"`
	Ops map[string]int64 `json:"ops"`
}

// Fetch kinds: what a registry request was for.
const (
	FetchManifest   = "manifest"    // an image index or manifest (GET or HEAD)
	FetchConfig     = "config"      // the image config
	FetchLayerRange = "layer-range" // a range read of a layer: spans
	FetchLayerWhole = "layer-whole" // a whole layer
	FetchIndex      = "index"       // other blobs: SOCI index, zTOCs, prefetch lists, profiles
	FetchOther      = "other"       // referrers, tags, /v2/
)

// Fetch is one registry request of a Timeline.
type Fetch struct {
	StartMS float64 `json:"start_ms"` // the request reached the registry (after the link's added delay)
	EndMS   float64 `json:"end_ms"`   // the registry had written its reply
	Kind    string  `json:"kind"`
	Bytes   int64   `json:"bytes"` // body bytes
}

// Failure records a contender that could not be measured.
type Failure struct {
	Image     string `json:"image"`
	Contender string `json:"contender"`
	Error     string `json:"error"`
}
