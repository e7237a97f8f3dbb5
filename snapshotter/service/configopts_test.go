package service

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/socikit/socikit/snapshotter/remote"
	"github.com/socikit/socikit/snapshotter/snapshot"
)

// testDiscoverer is the Discoverer a daemon with configuration c and
// transport rt has.
func testDiscoverer(t testing.TB, c Config, rt http.RoundTripper) *Discoverer {
	t.Helper()
	d, err := NewDiscoverer(discoverConfigOptions(c, rt)...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// rangeCounter is a transport that counts the range requests it carries.
type rangeCounter struct{ ranges atomic.Int64 }

func (c *rangeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Range") != "" {
		c.ranges.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestSpanFetchTransport: the transport the daemon is given (Run's
// WithTransport, or the CRI credentials' one) carries the span fetches of
// the layers the default NewLayerMounter mounts, for a layer found by
// discovery and for one restored from the local store.
func TestSpanFetchTransport(t *testing.T) {
	ti := pushTestImage(t)
	ctx := context.Background()
	rt := &rangeCounter{}
	c := DefaultConfig()
	c.Root = t.TempDir()
	c.Containerd.Address = ""
	m, err := LayersFromConfig(ctx, c, rt)
	if err != nil {
		t.Fatal(err)
	}
	ls := m.(*Layers)
	found, err := testDiscoverer(t, c, rt).Find(ctx, map[string]string{
		snapshot.LabelImageRef:       ti.ref,
		snapshot.LabelManifestDigest: ti.bound.Digest.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := found.Layer(ti.layer)
	if err != nil {
		t.Fatal(err)
	}
	for _, stored := range []bool{false, true} {
		l.stored = stored
		blob, err := ls.spanBlob(ctx, l, &layerMetrics{parent: ls.metrics})
		if err != nil {
			t.Fatal(err)
		}
		before := rt.ranges.Load()
		if err := blob.ReadRanges(ctx, []remote.Range{{Off: 0, Buf: make([]byte, 16)}}); err != nil {
			t.Fatal(err)
		}
		if n := rt.ranges.Load() - before; n != 1 {
			t.Errorf("stored %v: %d range requests through the daemon's transport, want 1", stored, n)
		}
	}
}

// TestConfigOptions: each setting of the configuration reaches the
// layer filesystem and the discoverer.
func TestConfigOptions(t *testing.T) {
	c := DefaultConfig()
	c.Registry.PlainHTTP = []string{"reg:5000"}
	c.Discovery.EnableV1 = true
	c.Discovery.Timeout = Duration(3 * time.Second)
	c.Lazy.CacheMaxSize = 1 << 30
	c.Lazy.ReadAhead = 1 << 20
	c.Lazy.PrefetchWait = Duration(time.Second)
	c.Lazy.BackgroundRate = 8 << 20
	c.Lazy.BackgroundDelay = Duration(2 * time.Second)
	c.Lazy.DisablePassthrough = true
	c.Lazy.WholeZtoc = true
	c.Containerd.Address = "/run/x.sock"
	c.Profile.Record = true
	rt := &rangeCounter{}

	d := testDiscoverer(t, c, rt)
	if !cmp.Equal(d.plainHTTP, []string{"reg:5000"}) || !d.enableV1 || d.timeout != 3*time.Second || d.rt != rt {
		t.Errorf("discoverer: plain %v, v1 %v, timeout %v, transport %v", d.plainHTTP, d.enableV1, d.timeout, d.rt)
	}
	if d := testDiscoverer(t, DefaultConfig(), nil); d.enableV1 || len(d.plainHTTP) != 0 ||
		d.timeout != time.Duration(DefaultDiscoveryTimeout) || d.rt != nil {
		t.Errorf("default discoverer: %+v", d)
	}

	var o layersOptions
	for _, opt := range layersConfigOptions(c, rt) {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	want := layersOptions{cacheMaxSize: 1 << 30, transport: rt, containerd: "/run/x.sock", record: ptr(recordOptions(c.Profile)),
		readAhead: 1 << 20, prefetchWait: time.Second, background: &remote.BackgroundOptions{Rate: 8 << 20, Delay: 2 * time.Second},
		passthrough: false, passthroughMinSize: DefaultPassthroughMinSize, wholeZtoc: true, ztocDelay: 2 * time.Second}
	if diff := cmp.Diff(want, o, cmp.AllowUnexported(layersOptions{}), cmp.Comparer(func(a, b http.RoundTripper) bool { return a == b })); diff != "" {
		t.Errorf("layers options (-want +got):\n%s", diff)
	}
	if _, err := NewDiscoverer(DiscoverTimeout(0)); err == nil {
		t.Error("NewDiscoverer took a zero timeout")
	}
	if _, err := NewLayers(context.Background(), t.TempDir(), LayersReadAhead(-1)); err == nil {
		t.Error("NewLayers took a negative read-ahead")
	}
}

func ptr[T any](v T) *T { return &v }
