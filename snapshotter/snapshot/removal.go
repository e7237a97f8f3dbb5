package snapshot

import "context"

type removalKey struct{}

// WithRemoval marks ctx as that of a FileSystem.Unmount done because the
// snapshot is being removed (Remove, Cleanup), not because the daemon
// stops (Close) or a stale mount is cleared. A FileSystem may then drop
// what it keeps for the layer beyond the mount, such as its cached spans:
// they would otherwise stay until evicted.
func WithRemoval(ctx context.Context) context.Context {
	return context.WithValue(ctx, removalKey{}, true)
}

// IsRemoval reports whether ctx was marked by WithRemoval.
func IsRemoval(ctx context.Context) bool {
	v, _ := ctx.Value(removalKey{}).(bool)
	return v
}
