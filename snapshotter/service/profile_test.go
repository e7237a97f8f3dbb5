package service

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/snapshotter/record"
)

func TestLoadConfigProfile(t *testing.T) {
	p := t.TempDir() + "/c.toml"
	c, err := LoadConfig("")
	if err != nil || !c.Profile.Record || c.Profile.Window != Duration(record.DefaultWindow) || c.Profile.MaxFiles != record.DefaultMaxFiles ||
		c.Profile.MaxRanges != record.DefaultMaxRanges || c.Profile.MaxImages != record.DefaultMaxImages {
		t.Fatalf("defaults: %+v %v", c.Profile, err)
	}
	if err := writeFile(p, "[profile]\nrecord = true\nwindow = \"5s\"\nmax_files = 10\nmax_ranges = 20\nmax_images = 2\n"); err != nil {
		t.Fatal(err)
	}
	if c, err = LoadConfig(p); err != nil || c.Profile != (ProfileConfig{Record: true, Window: Duration(5e9), MaxFiles: 10, MaxRanges: 20, MaxImages: 2}) {
		t.Fatalf("set: %+v %v", c.Profile, err)
	}
	if err := writeFile(p, "[profile]\nrecord = false\n"); err != nil {
		t.Fatal(err)
	}
	if c, err = LoadConfig(p); err != nil || c.Profile.Record {
		t.Fatalf("off: %+v %v", c.Profile, err)
	}
	for _, bad := range []string{"window = \"0s\"", "max_files = 0", "max_ranges = -1", "max_images = 0", "max_files = 1000000", "windows = \"1s\""} {
		if err := writeFile(p, "[profile]\n"+bad+"\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(p); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// fakeLayers returns Layers with two layers "mounted" (no FUSE: the
// observers are driven by hand) of image ref, recording as c says.
func fakeLayers(t *testing.T, ref string, c ProfileConfig) (*Layers, *record.Layer, *record.Layer) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	ls := &Layers{mounts: map[string]*mountedLayer{}}
	if c.Record {
		ls.rec = newRecorder(c)
	}
	var obs [2]*record.Layer
	for i, mp := range []string{"/mnt/top", "/mnt/base"} {
		l := Layer{Repo: r.Context(), Image: ref}
		l.Desc.Digest = digest.Digest("sha256:" + strings.Repeat(string(rune('a'+i)), 64))
		m := &mountedLayer{l: l}
		if ls.rec != nil {
			m.obs = ls.rec.Layer(l.Desc.Digest.String())
			obs[i] = m.obs
		}
		ls.mounts[mp] = m
	}
	return ls, obs[0], obs[1]
}

func get(t *testing.T, ls *Layers, query string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	serveProfile(w, httptest.NewRequest(http.MethodGet, "/profile"+query, nil), ls)
	return w
}

// TestProfileEndpoint: a start over the layers (through FileSystem, as the
// snapshotter calls it) opens the window, reads of both layers make one
// profile in first-access order, served at /profile?image=REF; unknown
// images, no image, recording off and no lazy layers are refused with the
// reason.
func TestProfileEndpoint(t *testing.T) {
	const ref = "registry.example.com/app:1.0"
	ls, top, base := fakeLayers(t, ref, DefaultConfig().Profile)
	top.ObserveRead(1, "before/start", 0, 10) // no window yet
	fsys := NewFileSystem(nil, ls)
	fsys.Started(context.Background(), "rootfs", []string{"/mnt/top", "/mnt/unknown", "/mnt/base"})
	base.ObserveRead(0, "bin/sh", 0, 4096)
	top.ObserveRead(2, "./app/main.py", 100, 50)
	base.ObserveRead(0, "bin/sh", 4096, 4096)

	w := get(t, ls, "?image="+ref)
	if w.Code != http.StatusOK {
		t.Fatalf("GET: %d %s", w.Code, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); ct != profile.MediaType {
		t.Errorf("content type %q", ct)
	}
	if h := w.Header(); h.Get(HeaderProfileStarts) != "1" || h.Get(HeaderProfileDropped) != "files=0 ranges=0" || h.Get(HeaderProfileRecording) != "true" {
		t.Errorf("headers %v", h)
	}
	p, err := profile.Decode(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := []profile.File{
		{Path: "/bin/sh", Ranges: []profile.Range{{Offset: 0, Length: 8192}}},
		{Path: "/app/main.py", Ranges: []profile.Range{{Offset: 100, Length: 50}}},
	}
	if !reflect.DeepEqual(p.Files, want) || p.Source != profile.SourceSnapshotter {
		t.Errorf("profile %+v", p)
	}
	// No manifest known: no platform, and no registry asked.
	if p.Platform != "" {
		t.Errorf("platform %q", p.Platform)
	}

	for _, tc := range []struct {
		ls    *Layers
		query string
		code  int
		msg   string
	}{
		{ls, "?image=registry.example.com/other:1.0", 404, `no start-up profile recorded for image "registry.example.com/other:1.0"`},
		{ls, "?image=registry.example.com/other:1.0", 404, `images with a profile: "registry.example.com/app:1.0"`},
		{ls, "", 400, "name an image"},
		{nil, "?image=" + ref, 404, "mounts no lazy layers"},
	} {
		w := get(t, tc.ls, tc.query)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.msg) {
			t.Errorf("%s: %d %q, want %d and %q", tc.query, w.Code, w.Body.String(), tc.code, tc.msg)
		}
	}
	off, _, _ := fakeLayers(t, ref, ProfileConfig{})
	fsys = NewFileSystem(nil, off)
	fsys.Started(context.Background(), "rootfs", []string{"/mnt/top"})
	if w := get(t, off, "?image="+ref); w.Code != 404 || !strings.Contains(w.Body.String(), "record = false") {
		t.Errorf("recording off: %d %q", w.Code, w.Body.String())
	}
	w = httptest.NewRecorder()
	serveProfile(w, httptest.NewRequest(http.MethodPost, "/profile?image="+ref, nil), ls)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}

// TestProfileImageName: a reference that normalizes to the recorded one
// finds it.
func TestProfileImageName(t *testing.T) {
	const ref = "docker.io/library/busybox:latest"
	ls, top, _ := fakeLayers(t, ref, DefaultConfig().Profile)
	ls.Started(context.Background(), "rootfs", []string{"/mnt/top"})
	top.ObserveRead(0, "bin/busybox", 0, 1)
	for _, q := range []string{ref, "busybox", "busybox:latest", "index.docker.io/library/busybox"} {
		if w := get(t, ls, "?image="+q); w.Code != http.StatusOK {
			t.Errorf("%s: %d %s", q, w.Code, w.Body.String())
		}
	}
	if w := get(t, ls, "?image=busybox:1.36"); w.Code != http.StatusNotFound {
		t.Errorf("another tag: %d", w.Code)
	}
}

// TestProfilePlatform: the platform comes from the image config in the
// registry.
func TestProfilePlatform(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/arm:latest"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(100, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = "linux", "arm64", "v8"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	md, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ls, top, _ := fakeLayers(t, ref, DefaultConfig().Profile)
	for _, m := range ls.mounts {
		m.l.Manifest = digest.Digest(md.String())
	}
	ls.Started(context.Background(), "rootfs", []string{"/mnt/top"})
	top.ObserveRead(0, "x", 0, 1)
	p, _, ok := ls.Profile(context.Background(), ref)
	if !ok || p.Platform != "linux/arm64/v8" {
		t.Fatalf("profile %+v %v", p, ok)
	}
	srv.Close() // cached: the registry is not asked again
	if p, _, _ = ls.Profile(context.Background(), ref); p.Platform != "linux/arm64/v8" {
		t.Errorf("platform not cached: %q", p.Platform)
	}
}

// TestExampleConfigProfile: the example configuration, which lists keys
// with their defaults, loads and has the default [profile].
func TestExampleConfigProfile(t *testing.T) {
	c, err := LoadConfig("../../examples/containerd/socikit-snapshotter.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Profile != DefaultConfig().Profile {
		t.Errorf("example [profile] %+v, defaults %+v", c.Profile, DefaultConfig().Profile)
	}
}
