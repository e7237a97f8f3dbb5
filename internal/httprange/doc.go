// Package httprange is socikit's one client for HTTP range reads of
// registry blobs, shared by socikit-snapshotter (span fetches, unpacked
// layers) and the socikit CLI (get-file), so that both follow one retry,
// timeout and redaction policy.
//
// An HTTPBlob reads a blob by range requests: NewRegistryBlob gives one
// with ggcr's transport for token and basic auth (the docker config, a
// WithKeychain keychain, or the one a WithTransport transport carries),
// NewHTTPBlob one over any URL and client. Large ranges are split, several
// ranges go in one multi-range request with a fallback to one request per
// range when the server does not answer them properly, and ReaderAt makes
// it an io.ReaderAt. Errors never carry credentials or signed-URL query
// strings.
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
//     that keeps making progress; the caller's context bounds them all.
//
// Retries, stalls, hedges, whole-blob answers and slow requests go to a
// FaultMetrics (WithMetrics) and to the log (log.G(ctx), at most one line
// of a kind per host every 5 s, with the count of the lines left out).
//
//	b, err := httprange.NewRegistryBlob(ctx, repo, layerDigest, layerSize,
//		httprange.WithTransport(rt), httprange.WithMetrics(counters))
//	err = b.ReadRanges(ctx, []httprange.Range{{Off: 4096, Buf: make([]byte, 512)}})
//	ra := httprange.NewReaderAt(ctx, b) // an io.ReaderAt for a zTOC reader
package httprange
