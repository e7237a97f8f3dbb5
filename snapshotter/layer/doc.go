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
//		layer.WithPrefetch(spans, 0), // fetches start now, the mount does not wait
//		layer.WithBackground(remote.BackgroundOptions{Rate: 8 << 20, Delay: 5 * time.Second}),
//		layer.WithFetchOptions(remote.WithMetrics(counters)),
//		layer.WithPassthrough(0), // FUSE passthrough for files >= 1 MiB once cached
//	)
//	err = m.Check(ctx)   // the mount still answers
//	err = m.Unmount()    // unmount, stop fetching, release the cache layer
//
// With WithPassthrough, a regular file whose spans are all cached is
// copied, at its next open, from the span files into a content file of
// the cache (keyed by its offset in the tar stream), and the kernel reads
// that file itself (FUSE passthrough); Mounted.Stats counts the opens.
//
// Mount needs root and /dev/fuse. Spans cached by an earlier process are
// used without fetching them again, so remounting after a restart costs
// no network for what was cached.
package layer
