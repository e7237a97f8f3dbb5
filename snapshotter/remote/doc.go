// Package remote fetches the spans of a lazily mounted layer.
//
// A Blob gives random access to a layer blob's compressed bytes; HTTPBlob
// implements it with HTTP range requests to a registry (ggcr's transport
// for token and basic auth from the docker config, retries with backoff on
// 5xx, 429 and connection resets, a timeout per attempt, large ranges split,
// several ranges in one multi-range request with a fallback to one request
// per range when the server does not answer them properly). Errors never
// carry credentials or signed-URL query strings.
//
// A Fetcher turns a Blob, the layer's ztoc.Index and a cache.Layer into
// verified, decompressed bytes of the layer's tar stream:
//
//	blob, err := remote.NewRegistryBlob(ctx, repo, layerDigest, layerSize)
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
// gives an error wrapping ztoc.ErrDigestMismatch, never wrong data; nothing
// is cached for a span that failed, and the next read tries again.
//
// Background fetching fills the rest of the layer at a configured rate and
// pauses while on-demand reads wait. Metrics receives counts and latencies
// (Counters is an atomic implementation; a Prometheus adapter belongs to
// the daemon).
package remote
