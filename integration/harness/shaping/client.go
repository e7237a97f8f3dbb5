package shaping

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ReadStats reads the counters of the shaped registry whose admin endpoints
// are at base (scheme and host, e.g. "http://10.200.0.2:5000"). A nil client
// means http.DefaultClient.
func ReadStats(ctx context.Context, client *http.Client, base string) (Stats, error) {
	return adminCall[Stats](ctx, client, http.MethodGet, base, "stats")
}

// ResetStats zeroes the counters of the shaped registry at base and returns
// the counts it discarded.
func ResetStats(ctx context.Context, client *http.Client, base string) (Stats, error) {
	return adminCall[Stats](ctx, client, http.MethodPost, base, "reset")
}

// adminCall calls an admin endpoint and decodes its JSON reply as a T.
func adminCall[T any](ctx context.Context, client *http.Client, method, base, endpoint string) (T, error) {
	var zero T
	if client == nil {
		client = http.DefaultClient
	}
	u := strings.TrimSuffix(base, "/") + AdminPrefix + endpoint
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return zero, fmt.Errorf("bench registry %s: %w", endpoint, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return zero, fmt.Errorf("bench registry %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return zero, fmt.Errorf("bench registry %s %s: %s: %s", method, u, resp.Status, strings.TrimSpace(string(b)))
	}
	var s T
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return zero, fmt.Errorf("bench registry %s: decoding %s: %w", endpoint, u, err)
	}
	return s, nil
}

// ReadEvents reads the event log of the shaped registry at base since its
// last reset.
func ReadEvents(ctx context.Context, client *http.Client, base string) (Events, error) {
	return adminCall[Events](ctx, client, http.MethodGet, base, "events")
}
