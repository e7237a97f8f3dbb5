package main

import (
	"context"

	"github.com/socikit/socikit/integration/harness/shaping"
)

// regStats is what the registry sent: blob and manifest bodies (range
// responses included), and the requests for them.
type regStats struct {
	bytes, requests int64
}

func getStats(ctx context.Context, reg string) (regStats, error) {
	st, err := shaping.ReadStats(ctx, nil, "http://"+reg)
	if err != nil {
		return regStats{}, err
	}
	return regStats{
		bytes:    st.Blob.Bytes + st.Manifest.Bytes,
		requests: st.Blob.Requests + st.Manifest.Requests,
	}, nil
}

func resetStats(ctx context.Context, reg string) error {
	_, err := shaping.ResetStats(ctx, nil, "http://"+reg)
	return err
}
