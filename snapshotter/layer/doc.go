// Package layer composes the lazy layer: a zTOC, a remote.Blob and the
// span cache become a mounted, read-only FUSE filesystem whose reads fetch,
// verify, decompress and cache spans on demand. It is what the containerd
// snapshotter's FileSystem (Mount/Check/Unmount, in snapshotter/snapshot)
// calls for each indexed layer.
//
//	c, _ := cache.Open(root+"/cache", cache.WithMaxSize(limit))     // once per daemon
//	blob, _ := remote.NewRegistryBlob(ctx, repo, desc.Digest, desc.Size)
//	m, err := layer.Mount(ctx, mountpoint, layer.Source{
//		Digest: desc.Digest, Ztoc: z, Blob: blob,
//	}, c,
//		layer.WithPrefetch(spans, 10*time.Second),
//		layer.WithBackground(remote.BackgroundOptions{Rate: 8 << 20, Delay: 5 * time.Second}),
//		layer.WithFetchOptions(remote.WithMetrics(counters)),
//	)
//	err = m.Check(ctx)   // the mount still answers
//	err = m.Unmount()    // unmount, stop fetching, release the cache layer
//
// Mount needs root and /dev/fuse. Spans cached by an earlier process are
// used without fetching them again, so remounting after a restart costs
// no network for what was cached.
package layer
