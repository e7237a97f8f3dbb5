package results

// The full-pull contenders (docs/pull.md): the plain image, no index, pulled
// and unpacked whole before the container starts; their "pull s" against
// overlayfs's is the figure, not their time to ready.
const (
	// SocikitPull is socikit-snapshotter's pipelined pull of the plain
	// image (its default for images without a SOCI index).
	SocikitPull = "socikit-pull"
	// UpstreamParallel is upstream soci-snapshotter v0.16.1 pulling the
	// plain image in its parallel pull mode ([pull_modes.
	// parallel_pull_unpack], scripts/containerd-start.sh
	// SOCI_PARALLEL_PULL=1).
	UpstreamParallel = "upstream-parallel"
)

// FullPull names the contenders that fetch the whole image before the
// container starts, by design (overlayfs included): the harness does not
// hold them to fetching less than overlayfs before ready.
var FullPull = map[string]bool{Overlayfs: true, SocikitPull: true, UpstreamParallel: true}
