// Package remote fetches the spans of a lazily mounted layer.
//
// A Blob gives random access to a layer blob's compressed bytes; HTTPBlob
// implements it with HTTP range requests to a registry (ggcr's transport
// for token and basic auth from the docker config, large ranges split,
// several ranges in one multi-range request with a fallback to one request
// per range when the server does not answer them properly). Errors never
// carry credentials or signed-URL query strings.
//
// Registry faults are survived rather than waited out (docs/reliability.md):
//   - retries with exponential backoff and jitter on 5xx, 408, 429,
//     connection errors and short bodies; a 429 or 503 is retried after
//     its Retry-After (capped, WithMaxRetryAfter); a retry asks only for
//     the bytes still missing;
//   - a request that gets no byte for the stall deadline (waiting for its
//     headers, or between two reads of its body) is cut and asked again;
//     the deadline adapts to the registry host's recent latencies between
//     a floor and a ceiling (WithStallTimeout) and doubles with each retry;
//   - a request still without headers after the hedge delay gets a twin,
//     the first answer winning (WithHedgeDelay; at most ~10 % of requests);
//   - a 200 with the whole blob is read up to the range asked (or asked
//     again when the range lies far into the blob);
//   - a per-attempt timeout (WithRequestTimeout) bounds even a request
//     that keeps making progress.
//
// Retries, stalls, hedges, whole-blob answers and slow requests go to a
// FaultMetrics and to the log (at most one line of a kind per host every 5
// s, with the count of the lines left out).
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
// never gives wrong data: a span that does not match is fetched again
// (WithVerifyRetries, for a response damaged on its way), and if it still
// does not match the read fails with an error wrapping
// ztoc.ErrDigestMismatch (EIO in the container); nothing is cached for a
// span that failed, and the next read tries again.
//
// Background fetching fills the rest of the layer at a configured rate and
// pauses while on-demand reads wait. Metrics receives counts and latencies
// (Counters is an atomic implementation; a Prometheus adapter belongs to
// the daemon).
package remote
