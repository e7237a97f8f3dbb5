package service

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/socikit/socikit/internal/statusapi"
)

// Status is the JSON document served at /status (statusapi.StatusPath):
// the lazily mounted layers, grouped by image. The types live in
// internal/statusapi, shared with the CLI.
type Status = statusapi.Status

// ImageStatus sums the layers of one image.
type ImageStatus = statusapi.ImageStatus

// LayerStatus is one lazily mounted layer.
type LayerStatus = statusapi.LayerStatus

// Status returns the state of every mounted layer.
func (ls *Layers) Status() Status {
	ls.mu.Lock()
	mounts := make([]*mountedLayer, 0, len(ls.mounts))
	for _, m := range ls.mounts {
		mounts = append(mounts, m)
	}
	ls.mu.Unlock()
	byImage := map[string]*ImageStatus{}
	for _, m := range mounts {
		cached, total := m.m.Progress()
		c := &m.metrics.Counters
		s := LayerStatus{
			Layer: m.l.Desc.Digest.String(), Index: m.l.Index.Digest.String(), Mountpoint: m.m.Dir(), MountedAt: m.at,
			CompressedSize: m.l.Desc.Size, FetchedBytes: c.FetchedBytes.Load(), FetchedSpans: c.FetchedSpans.Load(),
			FetchErrors: c.FetchErrors.Load(), CacheHits: c.Hits.Load(), CacheMisses: c.Misses.Load(),
			VerifyFailures: c.VerifyFailure.Load(), SpansCached: cached, SpansTotal: total,
		}
		if err := m.m.Err(); err != nil {
			s.LastError = err.Error()
		}
		img := m.l.Image
		if img == "" {
			img = m.l.Repo.Name()
		}
		is := byImage[img]
		if is == nil {
			is = &ImageStatus{Image: img}
			byImage[img] = is
		}
		is.Layers = append(is.Layers, s)
		is.FetchedBytes += s.FetchedBytes
		is.SpansCached += cached
		is.SpansTotal += total
	}
	st := Status{Images: []ImageStatus{}}
	for _, is := range byImage {
		slices.SortFunc(is.Layers, func(a, b LayerStatus) int { return cmp.Compare(a.Mountpoint, b.Mountpoint) })
		st.Images = append(st.Images, *is)
	}
	slices.SortFunc(st.Images, func(a, b ImageStatus) int { return cmp.Compare(a.Image, b.Image) })
	return st
}

// serveStatus writes the status of ls (nil: no lazy layers) as JSON.
func serveStatus(w http.ResponseWriter, ls *Layers) {
	st := Status{Images: []ImageStatus{}}
	if ls != nil {
		st = ls.Status()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}
