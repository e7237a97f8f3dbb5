package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/snapshotter/record"
	"github.com/socikit/socikit/snapshotter/snapshot"
)

// Response headers of /profile besides the profile itself.
const (
	// HeaderProfileStarts is the number of container starts recorded.
	HeaderProfileStarts = "Socikit-Profile-Starts"
	// HeaderProfileDropped says how many reads of new files and new ranges
	// the caps left out: "files=N ranges=M".
	HeaderProfileDropped = "Socikit-Profile-Dropped"
	// HeaderProfileRecording is "true" while a start's window is open.
	HeaderProfileRecording = "Socikit-Profile-Recording"
)

// platformTimeout bounds the registry reads that find an image's platform
// for /profile.
const platformTimeout = 10 * time.Second

func newRecorder(c ProfileConfig) *record.Recorder {
	return record.New(recordOptions(c)) // configopts.go
}

var _ snapshot.StartObserver = (*FileSystem)(nil)

// Started implements snapshot.StartObserver: a container is starting over
// lazily mounted layers.
func (f *FileSystem) Started(ctx context.Context, key string, mountpoints []string) {
	if so, ok := f.m.(snapshot.StartObserver); ok {
		so.Started(ctx, key, mountpoints)
	}
}

// imageMeta is what /profile needs to find an image's platform.
type imageMeta struct {
	repo     name.Repository
	manifest digest.Digest
}

// imageName is the name of l's image in /status and /profile: the
// reference containerd pulled, else the repository.
func (l Layer) imageName() string {
	if l.Image != "" {
		return l.Image
	}
	return l.Repo.Name()
}

// Started implements snapshot.StartObserver: it opens a recording window on
// the lazy layers under a starting container, for the image of the topmost
// of them (a base layer mounted for another image records for this one
// then).
func (ls *Layers) Started(ctx context.Context, key string, mountpoints []string) {
	if ls.rec == nil {
		return
	}
	var (
		top *mountedLayer
		obs []*record.Layer
	)
	ls.mu.Lock()
	for _, mp := range mountpoints {
		m := ls.mounts[mp]
		if m == nil || m.obs == nil {
			continue
		}
		if top == nil {
			top = m
		}
		obs = append(obs, m.obs)
	}
	ls.mu.Unlock()
	if top == nil {
		return
	}
	img := top.l.imageName()
	ls.rec.Start(img, key, imageMeta{repo: top.l.Repo, manifest: top.l.Manifest}, obs...)
	log.G(ctx).WithField("image", img).WithField("key", key).WithField("layers", len(obs)).
		Debug("recording start-up profile")
}

// Profile returns the start-up profile recorded for image (a reference as
// /status names it, or one that normalizes to the same: "busybox" for
// "docker.io/library/busybox:latest"), with its platform when the registry
// tells it.
func (ls *Layers) Profile(ctx context.Context, image string) (*profile.Profile, record.Info, bool) {
	if ls.rec == nil {
		return nil, record.Info{}, false
	}
	p, info, ok := ls.rec.Profile(image)
	if !ok {
		want := normalizeRef(image)
		for _, i := range ls.rec.Images() {
			if want != "" && normalizeRef(i.Image) == want {
				p, info, ok = ls.rec.Profile(i.Image)
				break
			}
		}
	}
	if !ok {
		return nil, record.Info{}, false
	}
	if m, isMeta := info.Meta.(imageMeta); isMeta {
		p.Platform = ls.platform(ctx, m)
	}
	return p, info, true
}

func normalizeRef(s string) string {
	r, err := name.ParseReference(s)
	if err != nil {
		return ""
	}
	return r.Name()
}

// platform returns the os/arch[/variant] of the image config of m's
// manifest, read from the registry once per manifest; "" when it cannot be
// read.
func (ls *Layers) platform(ctx context.Context, m imageMeta) string {
	if m.manifest == "" {
		return ""
	}
	ls.mu.Lock()
	p, ok := ls.platforms[m.manifest]
	ls.mu.Unlock()
	if ok {
		return p
	}
	ctx, cancel := context.WithTimeout(ctx, platformTimeout)
	defer cancel()
	p, err := fetchPlatform(ctx, m, ls.rt)
	if err != nil {
		log.G(ctx).WithError(err).WithField("manifest", m.manifest).Warn("profile: image platform unknown")
		return ""
	}
	ls.mu.Lock()
	if ls.platforms == nil || len(ls.platforms) >= 4*record.DefaultMaxImages {
		ls.platforms = map[digest.Digest]string{}
	}
	ls.platforms[m.manifest] = p
	ls.mu.Unlock()
	return p
}

func fetchPlatform(ctx context.Context, m imageMeta, rt http.RoundTripper) (string, error) {
	reg, err := image.OpenRegistry(m.repo.Digest(m.manifest.String()), rt)
	if err != nil {
		return "", err
	}
	body, err := reg.Manifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: m.manifest})
	if err != nil {
		return "", err
	}
	var mf ocispec.Manifest
	if err := json.Unmarshal(body, &mf); err != nil {
		return "", fmt.Errorf("parse manifest %s: %w", m.manifest, err)
	}
	b, err := image.ReadBlob(ctx, reg, mf.Config, image.MaxManifestSize)
	if err != nil {
		return "", fmt.Errorf("image config %s: %w", mf.Config.Digest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("parse image config %s: %w", mf.Config.Digest, err)
	}
	if cfg.OS == "" || cfg.Architecture == "" {
		return "", fmt.Errorf("image config %s names no platform", mf.Config.Digest)
	}
	return platforms.Format(cfg.Platform), nil
}

// serveProfile answers GET /profile?image=REF with the image's start-up
// profile in the profile format (profile.Encode), or 404 with the reason.
func serveProfile(w http.ResponseWriter, r *http.Request, ls *Layers) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case ls == nil:
		http.Error(w, "no start-up profiles: this snapshotter mounts no lazy layers ([lazy] disable = true)", http.StatusNotFound)
		return
	case ls.rec == nil:
		http.Error(w, "no start-up profiles: recording is off ([profile] record = false)", http.StatusNotFound)
		return
	}
	img := r.URL.Query().Get("image")
	if img == "" {
		http.Error(w, "name an image: /profile?image=REF; "+recordedImages(ls.rec), http.StatusBadRequest)
		return
	}
	p, info, ok := ls.Profile(r.Context(), img)
	if !ok {
		http.Error(w, fmt.Sprintf("no start-up profile recorded for image %q (none of its containers started over lazy layers since the snapshotter started, or it was dropped); %s",
			img, recordedImages(ls.rec)), http.StatusNotFound)
		return
	}
	b, err := profile.Marshal(p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", profile.MediaType)
	h.Set(HeaderProfileStarts, strconv.Itoa(info.Starts))
	h.Set(HeaderProfileDropped, fmt.Sprintf("files=%d ranges=%d", info.DroppedFiles, info.DroppedRanges))
	h.Set(HeaderProfileRecording, strconv.FormatBool(info.Recording))
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(b)
	}
}

// recordedImages lists the images that have a profile, for error messages.
func recordedImages(rec *record.Recorder) string {
	infos := rec.Images()
	if len(infos) == 0 {
		return "no image has a profile yet"
	}
	names := make([]string, len(infos))
	for i, in := range infos {
		names[i] = strconv.Quote(in.Image)
	}
	return "images with a profile: " + strings.Join(names, ", ")
}
