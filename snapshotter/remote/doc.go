// Package remote fetches the spans of a lazily mounted layer.
//
// A Blob gives random access to a layer blob's compressed bytes;
// internal/httprange's HTTPBlob implements it with HTTP range requests to a
// registry, with the retry, stall, hedging and redaction policy the CLI
// shares (docs/reliability.md). Its options are httprange's; a Fetcher's
// are this package's, so that neither constructor can be handed the
// other's options.
//
// A Fetcher turns a Blob, the layer's ztoc.Index and a cache.Layer into
// verified, decompressed bytes of the layer's tar stream:
//
//	blob, err := httprange.NewRegistryBlob(ctx, repo, layerDigest, layerSize,
//		httprange.WithTransport(rt), httprange.WithMetrics(counters))
//	f, err := remote.NewFetcher(ctx, index, blob, cacheLayer,
//		remote.WithMetrics(counters))
//	defer f.Close()
//	err = f.Prefetch(ctx, spans)           // spans named by the SOCI index
//	go f.Background(bgCtx, remote.BackgroundOptions{Rate: 8 << 20})
//	n, err := f.ReadAt(ctx, p, tarOffset)   // what the FUSE layer calls
//
// Missing spans are fetched once however many readers wait for them;
// adjacent missing spans are coalesced into one range (up to
// WithMaxFetchSize); concurrent fetches are bounded (WithFetchJobs). Each
// span's compressed bytes are checked against its digest in the zTOC
// before they are decompressed (ztoc.Index.Decompress), so a corrupted blob
// never gives wrong data: a span that does not match is fetched again
// (WithVerifyRetries, for a response damaged on its way), and if it still
// does not match the read fails with an error wrapping
// ztoc.ErrDigestMismatch (EIO in the container); nothing is cached for a
// span that failed, and the next read tries again.
//
// Background fetching fills the rest of the layer at a configured rate and
// pauses while on-demand reads wait. Metrics receives counts and latencies
// (Counters is an atomic implementation, and an httprange.FaultMetrics too;
// a Prometheus adapter belongs to the daemon).
package remote
