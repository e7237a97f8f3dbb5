package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/socikit/socikit/integration/harness/results"
	"github.com/socikit/socikit/integration/harness/shaping"
)

// blobKinds maps the config and layer digests of ref's image (the host's
// platform) to their fetch kinds ("layer" for layers, told apart later by
// range or whole).
func blobKinds(ctx context.Context, ref string) (map[string]string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err != nil {
		return nil, fmt.Errorf("blob kinds of %s: %w", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("blob kinds of %s: %w", ref, err)
	}
	kinds := map[string]string{m.Config.Digest.String(): results.FetchConfig}
	for _, l := range m.Layers {
		kinds[l.Digest.String()] = "layer"
	}
	return kinds, nil
}

// timeline turns the registry's event log into a Timeline of the cold
// start that began at start; marks are milliseconds from start.
func timeline(ev shaping.Events, start time.Time, kinds map[string]string, pullEnd, ready, exit float64) *results.Timeline {
	tl := &results.Timeline{PullEndMS: pullEnd, ReadyMS: ready, ExitMS: exit, Dropped: ev.Dropped}
	off := float64(ev.Since.Sub(start)) / float64(time.Millisecond)
	for _, e := range ev.Events {
		tl.Fetches = append(tl.Fetches, results.Fetch{
			StartMS: off + e.StartMS, EndMS: off + e.EndMS, Kind: fetchKind(e, kinds), Bytes: e.Bytes,
		})
	}
	return tl
}

// fetchKind says what a registry request was for.
func fetchKind(e shaping.Event, kinds map[string]string) string {
	switch e.Class {
	case "manifest":
		return results.FetchManifest
	case "blob":
		d := e.Path[strings.LastIndexByte(e.Path, '/')+1:]
		switch kinds[d] {
		case results.FetchConfig:
			return results.FetchConfig
		case "layer":
			if e.Range != "" {
				return results.FetchLayerRange
			}
			return results.FetchLayerWhole
		}
		return results.FetchIndex
	}
	return results.FetchOther
}
