package service

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/containerd/log"
	"github.com/pelletier/go-toml/v2"
	"github.com/sirupsen/logrus"

	"github.com/socikit/socikit/internal/statusapi"
	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/snapshotter/record"
	"github.com/socikit/socikit/snapshotter/remote"
)

// Defaults of Config.
const (
	// DefaultRoot holds the metadata, snapshots and span cache.
	DefaultRoot = "/var/lib/socikit-snapshotter"
	// DefaultAddress is the snapshots gRPC socket containerd's proxy_plugins
	// entry points at.
	DefaultAddress = "/run/socikit-snapshotter/socikit-snapshotter.sock"
	// DefaultLogLevel is the logrus level.
	DefaultLogLevel = "info"
	// DefaultLogFormat is the format of the daemon's log on stderr.
	DefaultLogFormat = log.TextFormat
	// DefaultMetricsAddress is where the daemon serves /metrics, /status
	// and /profile unless metrics_address says otherwise; `socikit
	// status` and `socikit profile export` look there by default.
	DefaultMetricsAddress = statusapi.DefaultAddress
	// DefaultConfigPath is the configuration file the daemon reads when
	// it is given no --config and the file exists (FindConfig), as
	// containerd, soci-snapshotter and stargz-snapshotter do with theirs.
	DefaultConfigPath = "/etc/socikit/config.toml"
	// DefaultDiscoveryTimeout bounds the registry round trips of finding
	// an index; past it the layer is unpacked instead.
	DefaultDiscoveryTimeout = Duration(10 * time.Second)
	// DefaultContainerdAddress is containerd's usual gRPC socket, whose
	// content store is asked for SOCI artifacts containerd already fetched.
	DefaultContainerdAddress = "/run/containerd/containerd.sock"
	// DefaultPassthroughMinSize is the smallest file served through FUSE
	// passthrough (1 MiB): smaller files take one or a few FUSE reads and
	// are not worth a second copy on disk.
	DefaultPassthroughMinSize = 1 << 20
)

// Config is the daemon's TOML configuration. Every field has a usable
// default (see DefaultConfig); an empty file is a valid configuration.
//
//	root = "/var/lib/socikit-snapshotter"
//	address = "/run/socikit-snapshotter/socikit-snapshotter.sock"
//	log_level = "info"                   # trace, debug, info, warn, error
//	log_format = "text"                  # or "json"
//	metrics_address = "127.0.0.1:9101"   # empty: no metrics endpoint
//
//	[registry]
//	plain_http = ["registry.local:5000"] # hosts reached over plain HTTP
//
//	[containerd]
//	address = "/run/containerd/containerd.sock" # "": never read its content store
//
//	[discovery]
//	enable_v1 = false                    # v1 indexes through referrers
//	timeout = "10s"
//
//	[snapshotter]
//	mount_options = []                   # extra overlayfs options
//
//	[lazy]
//	disable = false                      # true: unpack every layer
//	cache_max_size = 0                   # bytes; 0: min(10 GiB, half the cache's filesystem)
//	prefetch_wait = "0s"                 # mounts wait this long for prefetch spans
//	background_rate = 0                  # bytes/s; 0: no background fetch
//	background_delay = "5s"
//	read_ahead = 16777216                # bytes fetched ahead of sequential reads; 0: off
//	whole_ztoc = false                   # true: zTOCs read whole and checked before the mount
//	disable_passthrough = false          # true: every read goes through FUSE
//	passthrough_min_size = 1048576       # bytes; smaller files read through FUSE
//	unpack_unindexed = true              # layers without a zTOC: fetched and unpacked here
//	fd_store = "auto"                    # mounts' /dev/fuse fds kept across a crash: auto, holder, systemd, off
//
//	[pull]                               # layers the snapshotter unpacks itself (docs/pull.md)
//	disable_unindexed = false            # true: images without a SOCI index are containerd's to pull
//	jobs = 4                             # range requests in flight per layer
//	chunk_size = 4194304                 # bytes per range request
//	layers_ahead = 2                     # layers fetched while the one below is unpacked
//
//	[profile]
//	record = true                        # start-up profiles at /profile; false: off
//	window = "30s"                       # reads recorded after each container start
//	max_files = 4096                     # per layer of an image
//	max_ranges = 16384                   # per layer of an image
//	max_images = 16                      # the image started longest ago is dropped
//
//	[cri]
//	enable = false                       # CRI image service proxy: PullImage credentials for lazy fetches
//	address = ""                         # its socket; "": the snapshotter's own
//	image_service_address = ""           # forwarded to; "": [containerd] address
type Config struct {
	// Root is the state directory (default DefaultRoot).
	Root string `toml:"root"`
	// Address is the unix socket of the gRPC API (default DefaultAddress).
	Address string `toml:"address"`
	// LogLevel is a logrus level: trace, debug, info, warn, error (default
	// DefaultLogLevel). docs/snapshotter.md says what each level logs.
	LogLevel string `toml:"log_level"`
	// LogFormat is the format of the log on stderr: text or json (default
	// DefaultLogFormat).
	LogFormat log.OutputFormat `toml:"log_format"`
	// MetricsAddress is a host:port serving /metrics (Prometheus text),
	// /status (JSON, read by `socikit status`), /profile?image=REF (start-up
	// profiles, read by `socikit profile export`) and /debug/vars (default
	// DefaultMetricsAddress; empty serves nothing). When the default
	// address is taken the daemon runs without the server and logs a
	// warning; another address that cannot be listened on is an error.
	MetricsAddress string `toml:"metrics_address"`

	Registry    RegistryConfig    `toml:"registry"`
	Containerd  ContainerdConfig  `toml:"containerd"`
	Discovery   DiscoveryConfig   `toml:"discovery"`
	Snapshotter SnapshotterConfig `toml:"snapshotter"`
	Lazy        LazyConfig        `toml:"lazy"`
	Pull        PullConfig        `toml:"pull"`
	Profile     ProfileConfig     `toml:"profile"`
	CRI         CRIConfig         `toml:"cri"` // cri.go
}

// ProfileConfig configures the start-up profiles recorded from running
// containers (snapshotter/record): per image, the byte ranges of the files
// its containers read from lazy layers during Window after each start,
// served at /profile of MetricsAddress (`socikit profile export`). Layers
// containerd unpacked itself are not seen. Kept in memory only: a restart
// starts afresh.
type ProfileConfig struct {
	// Record turns recording on (default true).
	Record bool `toml:"record"`
	// Window is how long after a container starts (containerd prepares
	// or mounts its root filesystem) its reads are recorded (default 30s).
	Window Duration `toml:"window"`
	// MaxFiles caps the files recorded per layer of an image (default
	// record.DefaultMaxFiles).
	MaxFiles int `toml:"max_files"`
	// MaxRanges caps the byte ranges recorded per layer of an image, over
	// its files (default record.DefaultMaxRanges).
	MaxRanges int `toml:"max_ranges"`
	// MaxImages caps the images whose profiles are kept; a start of
	// another drops the one started longest ago (default
	// record.DefaultMaxImages).
	MaxImages int `toml:"max_images"`
}

// LazyConfig configures lazy layers.
type LazyConfig struct {
	// Disable turns lazy loading off: every layer is unpacked (default
	// false).
	Disable bool `toml:"disable"`
	// CacheMaxSize is the size limit in bytes of the span cache under
	// Root/cache: past it, layers not mounted are evicted, least recently
	// used first, then mounted layers' spans and content files, least
	// recently read first (default 0: the smaller of 10 GiB and half the
	// filesystem holding the cache, cache.DefaultMaxSizeCap).
	CacheMaxSize int64 `toml:"cache_max_size"`
	// PrefetchWait bounds the wait for the index's prefetch spans before a
	// mount is handed over. Their fetches start before it either way;
	// with 0 the mount is handed over at once and reads of prefetch spans
	// wait for the fetches in flight, so the container's start overlaps
	// them (default 0; see layer.WithPrefetch).
	PrefetchWait Duration `toml:"prefetch_wait"`
	// BackgroundRate caps the bytes per second fetched in the background
	// after a mount to complete the layer (default 0: no background fetch).
	BackgroundRate int64 `toml:"background_rate"`
	// BackgroundDelay is waited after a mount before the background fetch
	// starts (default 5s).
	BackgroundDelay Duration `toml:"background_delay"`
	// ReadAhead caps the compressed bytes fetched ahead of sequential
	// reads (a checksum or copy of whole files); 0 turns read-ahead off
	// (default remote.DefaultReadAhead, 16 MiB).
	ReadAhead int64 `toml:"read_ahead"`
	// WholeZtoc reads each zTOC whole and checks its digest before the
	// layer is mounted. By default a zTOC is read lazily: its TOC and
	// checkpoint headers before the mount, a checkpoint window when a
	// span needs one, the rest BackgroundDelay after the mount, when the
	// whole is checked (docs/ztoc.md, "Reading a zTOC lazily").
	WholeZtoc bool `toml:"whole_ztoc"`
	// DisablePassthrough turns FUSE passthrough off: every read of a lazy
	// layer goes through the daemon (default false: passthrough where
	// the kernel allows it).
	DisablePassthrough bool `toml:"disable_passthrough"`
	// PassthroughMinSize is the size in bytes from which a regular file
	// whose spans are all cached is copied into a content file of the
	// span cache (counted in CacheMaxSize) and read by the kernel itself
	// through FUSE passthrough; smaller files are read through FUSE
	// (default DefaultPassthroughMinSize; 0 means the default).
	PassthroughMinSize int64 `toml:"passthrough_min_size"`
	// FDStore keeps the /dev/fuse descriptors of the lazy mounts outside
	// the daemon, so that running containers keep reading through a
	// crash and restart of it (docs/snapshotter.md, "Crash and restart"):
	// "holder" (a socikit-snapshotter fdstore process on Root/fdstore.sock),
	// "systemd" (the unit's fd store: FileDescriptorStoreMax=), "off", or
	// "auto" (systemd when $NOTIFY_SOCKET is set, else holder; "" means
	// auto, the default).
	FDStore string `toml:"fd_store"`
	// UnpackUnindexed makes the snapshotter fetch and unpack, itself, a
	// layer that has no zTOC in an image that has a SOCI index (layers
	// under the index's min layer size, such as a small base layer), and
	// commit it as containerd's target, as for a lazy layer. Otherwise
	// containerd unpacks it, and its unpacker then fetches that layer and
	// every layer above it whole, lazy ones included (docs/snapshotter.md,
	// "Layers without a zTOC"). Default true.
	UnpackUnindexed bool `toml:"unpack_unindexed"`
}

// PullConfig configures the pipelined pull: how the snapshotter fetches
// and unpacks the layers it does not mount lazily (layers without a zTOC,
// with Lazy.UnpackUnindexed, and every layer of an image without a SOCI
// index): several range requests in flight per layer, the next layers
// fetched while one is unpacked, each layer decompressed and unpacked as
// it arrives and verified against its digest before it is committed
// (docs/pull.md).
type PullConfig struct {
	// DisableUnindexed leaves images without a SOCI index to containerd,
	// which then fetches and unpacks them itself, as it does for its own
	// overlayfs snapshotter (default false: the snapshotter pulls them).
	DisableUnindexed bool `toml:"disable_unindexed"`
	// Jobs is the number of range requests in flight per layer (default
	// remote.DefaultDownloadJobs).
	Jobs int `toml:"jobs"`
	// ChunkSize is the size in bytes of each range request (default
	// remote.DefaultDownloadChunk, 4 MiB).
	ChunkSize int64 `toml:"chunk_size"`
	// LayersAhead is how many layers above the one being unpacked are
	// fetched at the same time (default DefaultPullAhead; 0: none).
	LayersAhead int `toml:"layers_ahead"`
}

// RegistryConfig configures registry access. Credentials come from the
// docker config (~/.docker/config.json, or $DOCKER_CONFIG/config.json) of
// the daemon's user, and with [cri] enable, first from the CRI pulls of the
// image's repository (CRIConfig).
type RegistryConfig struct {
	// PlainHTTP lists registry hosts (host or host:port) reached over
	// plain HTTP. Loopback and RFC 1918 hosts and localhost always are
	// (go-containerregistry's rule). Default: none.
	PlainHTTP []string `toml:"plain_http"`
}

// ContainerdConfig names the containerd this daemon serves.
type ContainerdConfig struct {
	// Address is containerd's gRPC socket (default
	// DefaultContainerdAddress; "" turns the lookup off). zTOCs and prefetch
	// lists that containerd has in its content store, or is fetching into
	// it, are read from there (in the namespace of the snapshot request)
	// instead of the registry: containerd's transfer service fetches them
	// too when it pulls a SOCI v2 image (docs/snapshotter.md). A socket
	// nobody listens on, or another containerd, only means the registry is
	// asked, as without it.
	Address string `toml:"address"`
}

// DiscoveryConfig configures how SOCI indexes are found.
type DiscoveryConfig struct {
	// EnableV1 also looks for v1 indexes through the referrers API and
	// its tag fallback (default false; see the package doc for why).
	EnableV1 bool `toml:"enable_v1"`
	// Timeout bounds discovery for one image (default
	// DefaultDiscoveryTimeout).
	Timeout Duration `toml:"timeout"`
}

// SnapshotterConfig configures the overlayfs side.
type SnapshotterConfig struct {
	// MountOptions are extra overlayfs mount options (default none).
	MountOptions []string `toml:"mount_options"`
}

// Duration is a time.Duration written in TOML as a string ("10s").
type Duration time.Duration

// UnmarshalText parses a time.ParseDuration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String formats the duration as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// DefaultConfig returns the configuration an empty file gives.
func DefaultConfig() Config {
	return Config{
		Root:           DefaultRoot,
		Address:        DefaultAddress,
		LogLevel:       DefaultLogLevel,
		LogFormat:      DefaultLogFormat,
		MetricsAddress: DefaultMetricsAddress,
		Discovery:      DiscoveryConfig{Timeout: DefaultDiscoveryTimeout},
		Containerd:     ContainerdConfig{Address: DefaultContainerdAddress},
		Lazy: LazyConfig{BackgroundDelay: Duration(5 * time.Second), ReadAhead: remote.DefaultReadAhead,
			PassthroughMinSize: DefaultPassthroughMinSize, UnpackUnindexed: true, FDStore: FDStoreAuto},
		Pull: PullConfig{Jobs: remote.DefaultDownloadJobs, ChunkSize: remote.DefaultDownloadChunk, LayersAhead: DefaultPullAhead},
		Profile: ProfileConfig{Record: true, Window: Duration(record.DefaultWindow), MaxFiles: record.DefaultMaxFiles,
			MaxRanges: record.DefaultMaxRanges, MaxImages: record.DefaultMaxImages},
	}
}

// defaultConfigPath is DefaultConfigPath; tests point it elsewhere.
var defaultConfigPath = DefaultConfigPath

// FindConfig returns the configuration file the daemon reads: path when it
// is not empty (the --config flag), else DefaultConfigPath when that file
// exists, else "" (the built-in defaults). A DefaultConfigPath that exists
// but cannot be looked at is an error, not a silent fallback.
func FindConfig(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	_, err := os.Stat(defaultConfigPath)
	switch {
	case err == nil:
		return defaultConfigPath, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	}
	return "", fmt.Errorf("look for the default config: %w", err)
}

// LoadConfig reads a TOML file over DefaultConfig. Unknown keys are errors,
// so a misspelt setting is not silently ignored. path "" gives the defaults.
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("parse config %s: %w", path, err)
	}
	return c, c.Validate()
}

// Validate checks the values LoadConfig cannot type-check.
func (c Config) Validate() error {
	if c.Root == "" || c.Address == "" {
		return fmt.Errorf("config: root and address must not be empty")
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("config: log_level: %w", err)
	}
	if c.LogFormat != log.TextFormat && c.LogFormat != log.JSONFormat {
		return fmt.Errorf("config: log_format %q: want %q or %q", c.LogFormat, log.TextFormat, log.JSONFormat)
	}
	if c.Discovery.Timeout <= 0 {
		return fmt.Errorf("config: discovery.timeout must be positive")
	}
	if c.Lazy.ReadAhead < 0 {
		return fmt.Errorf("config: lazy.read_ahead must not be negative")
	}
	switch c.Lazy.FDStore {
	case "", FDStoreAuto, FDStoreHolder, FDStoreSystemd, FDStoreOff:
	default:
		return fmt.Errorf("config: lazy.fd_store %q: want auto, holder, systemd or off", c.Lazy.FDStore)
	}
	if c.Lazy.PassthroughMinSize < 0 {
		return fmt.Errorf("config: lazy.passthrough_min_size must not be negative")
	}
	if p := c.Pull; p.Jobs <= 0 || p.ChunkSize <= 0 || p.LayersAhead < 0 {
		return fmt.Errorf("config: pull.jobs and pull.chunk_size must be positive, pull.layers_ahead not negative")
	}
	if p := c.Profile; p.Record {
		switch {
		case p.Window <= 0:
			return fmt.Errorf("config: profile.window must be positive")
		case p.MaxFiles <= 0 || p.MaxFiles > profile.MaxFiles:
			return fmt.Errorf("config: profile.max_files must be in 1..%d", profile.MaxFiles)
		case p.MaxRanges <= 0 || p.MaxRanges > profile.MaxRanges:
			return fmt.Errorf("config: profile.max_ranges must be in 1..%d", profile.MaxRanges)
		case p.MaxImages <= 0:
			return fmt.Errorf("config: profile.max_images must be positive")
		}
	}
	if slices.Contains(c.Registry.PlainHTTP, "") {
		return fmt.Errorf("config: registry.plain_http has an empty host")
	}
	return nil
}

// Override returns c with the non-empty flag values in place of its own.
func (c Config) Override(root, address, logLevel, logFormat string) Config {
	if root != "" {
		c.Root = root
	}
	if address != "" {
		c.Address = address
	}
	if logLevel != "" {
		c.LogLevel = logLevel
	}
	if logFormat != "" {
		c.LogFormat = log.OutputFormat(logFormat)
	}
	return c
}
