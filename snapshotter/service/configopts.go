package service

import (
	"context"
	"net/http"
	"path/filepath"
	"time"

	"github.com/containerd/log"

	"github.com/socikit/socikit/snapshotter/record"
	"github.com/socikit/socikit/snapshotter/remote"
)

// The daemon's one boundary between its TOML Config and the options of the
// libraries it builds, as containerd's plugins turn their config into Opts:
// NewLayers and NewDiscoverer take options only, so a setting reaches them
// here or not at all.

// LayersFromConfig is the default NewLayerMounter: NewLayers under c.Root
// with the [lazy], [profile] and [containerd] settings of c, every registry
// request (span fetches included) going through rt.
func LayersFromConfig(ctx context.Context, c Config, rt http.RoundTripper) (LayerMounter, error) {
	opts := layersConfigOptions(c, rt)
	if s, err := openFDStore(ctx, c); err != nil { // keep.go
		log.G(ctx).WithError(err).Warn("no fd store: running containers will not survive a crash of the daemon")
	} else if s != nil {
		opts = append(opts, LayersKeep(s))
	}
	ls, err := NewLayers(ctx, c.Root, opts...)
	if err != nil {
		return nil, err
	}
	return ls, nil
}

// layersConfigOptions turns c into NewLayers's options.
func layersConfigOptions(c Config, rt http.RoundTripper) []LayersOption {
	opts := []LayersOption{
		LayersTransport(rt),
		LayersContainerd(c.Containerd.Address),
		LayersReadAhead(c.Lazy.ReadAhead),
		LayersPrefetchWait(time.Duration(c.Lazy.PrefetchWait)),
		LayersPassthrough(!c.Lazy.DisablePassthrough, c.Lazy.PassthroughMinSize),
		LayersZtoc(c.Lazy.WholeZtoc, max(0, time.Duration(c.Lazy.BackgroundDelay))),
	}
	if c.Lazy.CacheMaxSize > 0 {
		opts = append(opts, LayersCacheMaxSize(c.Lazy.CacheMaxSize))
	}
	if c.Lazy.BackgroundRate > 0 {
		opts = append(opts, LayersBackground(c.Lazy.BackgroundRate, max(0, time.Duration(c.Lazy.BackgroundDelay))))
	}
	if c.Profile.Record {
		opts = append(opts, LayersRecord(recordOptions(c.Profile)))
	}
	return opts
}

// recordOptions turns [profile] into the recorder's limits.
func recordOptions(c ProfileConfig) record.Options {
	return record.Options{Window: time.Duration(c.Window), MaxFiles: c.MaxFiles, MaxRanges: c.MaxRanges, MaxImages: c.MaxImages}
}

// discoverConfigOptions turns c into NewDiscoverer's options.
func discoverConfigOptions(c Config, rt http.RoundTripper) []DiscoverOption {
	opts := []DiscoverOption{DiscoverTransport(rt), DiscoverPlainHTTP(c.Registry.PlainHTTP...), DiscoverV1(c.Discovery.EnableV1)}
	if c.Discovery.Timeout > 0 {
		opts = append(opts, DiscoverTimeout(time.Duration(c.Discovery.Timeout)))
	}
	return opts
}

// pullConfigOptions turns [pull] into the FileSystem's PullOptions; the
// blobs being fetched go under Root/pull.
func pullConfigOptions(c Config) PullOptions {
	return PullOptions{Dir: filepath.Join(c.Root, "pull"), Unindexed: !c.Pull.DisableUnindexed, Ahead: c.Pull.LayersAhead,
		Download: remote.DownloadConfig{Jobs: c.Pull.Jobs, Chunk: c.Pull.ChunkSize}}
}
