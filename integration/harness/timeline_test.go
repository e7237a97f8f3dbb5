package main

import (
	"testing"
	"time"

	"github.com/socikit/socikit/integration/harness/results"
	"github.com/socikit/socikit/integration/harness/shaping"
)

func TestTimeline(t *testing.T) {
	kinds := map[string]string{"sha256:c": results.FetchConfig, "sha256:l": "layer"}
	start := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	ev := shaping.Events{Since: start.Add(-10 * time.Millisecond), Dropped: 2, Events: []shaping.Event{
		{StartMS: 20, EndMS: 30, Class: "manifest", Path: "/v2/app/manifests/latest"},
		{StartMS: 40, EndMS: 50, Class: "blob", Path: "/v2/app/blobs/sha256:c", Bytes: 900},
		{StartMS: 60, EndMS: 70, Class: "blob", Path: "/v2/app/blobs/sha256:z", Bytes: 5000},
		{StartMS: 80, EndMS: 90, Class: "blob", Path: "/v2/app/blobs/sha256:l", Range: "bytes=0-99", Bytes: 100},
		{StartMS: 85, EndMS: 95, Class: "blob", Path: "/v2/app/blobs/sha256:l", Bytes: 1000},
		{StartMS: 96, EndMS: 97, Class: "other", Path: "/v2/app/referrers/sha256:m"},
	}}
	tl := timeline(ev, start, kinds, 100, 200, 300)
	want := []results.Fetch{
		{StartMS: 10, EndMS: 20, Kind: results.FetchManifest},
		{StartMS: 30, EndMS: 40, Kind: results.FetchConfig, Bytes: 900},
		{StartMS: 50, EndMS: 60, Kind: results.FetchIndex, Bytes: 5000},
		{StartMS: 70, EndMS: 80, Kind: results.FetchLayerRange, Bytes: 100},
		{StartMS: 75, EndMS: 85, Kind: results.FetchLayerWhole, Bytes: 1000},
		{StartMS: 86, EndMS: 87, Kind: results.FetchOther},
	}
	if tl.PullEndMS != 100 || tl.ReadyMS != 200 || tl.ExitMS != 300 || tl.Dropped != 2 || len(tl.Fetches) != len(want) {
		t.Fatalf("timeline %+v", tl)
	}
	for i, f := range tl.Fetches {
		if f != want[i] {
			t.Errorf("fetch %d: %+v, want %+v", i, f, want[i])
		}
	}
}
