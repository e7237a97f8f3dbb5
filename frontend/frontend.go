// Package frontend is socikit's `# syntax=` BuildKit frontend: BuildKit's
// own Dockerfile frontend (v0.34.2, used as a library, so every Dockerfile
// feature, subrequest and lint check behaves as with dockerfile.v0), plus
// the socikit options read from the Dockerfile and build args, and a
// start-up profiling step after the final stage. That step runs the
// image's start-up (ENTRYPOINT + CMD, or the startup option) under
// socikit-trace in an exec on the final rootfs that is not part of the
// image, until the ready line, and records the byte ranges of the files it
// reads (profile package). The profile and the options reach the soci
// exporter through the result's metadata (profile.MetadataKey,
// profile.AttrsMetadataKey), per platform.
package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/frontend/dockerfile/builder"
	"github.com/moby/buildkit/frontend/dockerui"
	"github.com/moby/buildkit/frontend/gateway/client"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/profile"
)

// keyCmdline is the frontend option that BuildKit's Dockerfile frontend
// sets when it forwards to a `# syntax=` frontend; with it set, the
// Dockerfile builder builds instead of forwarding again.
const keyCmdline = "cmdline"

// keyRequestID is set for subrequests (outline, targets, lint, --call).
const keyRequestID = "requestid"

// TracerEnv names the environment variable that overrides where the
// frontend finds socikit-trace (default: beside the frontend binary, then
// /bin/socikit-trace).
const TracerEnv = "SOCIKIT_TRACE"

// Build is the frontend's gateway.BuildFunc.
func Build(ctx context.Context, c client.Client) (*client.Result, error) {
	c = &noForward{Client: c}
	opts := c.BuildOpts().Opts
	if opts[keyRequestID] != "" {
		// outline, targets, lint (--call=check): the Dockerfile
		// frontend's own answer.
		return builder.Build(ctx, c)
	}
	bc, err := dockerui.NewClient(c)
	if err != nil {
		return nil, err
	}
	src, err := bc.ReadEntrypoint(ctx, "Dockerfile")
	if err != nil {
		return nil, err
	}
	o, err := ParseOptions(src.Data, opts)
	if err != nil {
		return nil, err
	}
	res, err := builder.Build(ctx, c)
	if err != nil {
		return nil, err
	}
	// Warnings show on the profiling step's vertex once it exists (a
	// warning on the Dockerfile's vertex, long done, is not printed by
	// buildctl's plain progress), else on the Dockerfile's.
	var warnAt digest.Digest
	warn := func(msg string) {
		msg = "socikit: " + msg
		if warnAt != "" {
			if err := c.Warn(ctx, warnAt, msg, client.WarnOpts{Level: 1}); err == nil {
				return
			}
			// Not taken on that vertex: on the Dockerfile's then.
		}
		src.Warn(ctx, msg, client.WarnOpts{})
	}
	if err := addProfiles(ctx, c, bc, res, o, warn, &warnAt); err != nil {
		return nil, err
	}
	return res, nil
}

// noForward is the client the Dockerfile builder sees: with "cmdline" set
// it builds the Dockerfile itself instead of forwarding to the image named
// by a `# syntax=` line (which is this frontend, or one the user chose to
// replace with it).
type noForward struct {
	client.Client
}

func (c *noForward) BuildOpts() client.BuildOpts {
	bo := c.Client.BuildOpts()
	if _, ok := bo.Opts[keyCmdline]; !ok {
		m := make(map[string]string, len(bo.Opts)+1)
		for k, v := range bo.Opts {
			m[k] = v
		}
		m[keyCmdline] = ""
		bo.Opts = m
	}
	return bo
}

// platformResult is one platform of a build result.
type platformResult struct {
	id       string // "" for a single-platform result
	platform ocispecs.Platform
	ref      client.Reference
	config   []byte
}

// platformsOf lists res's platforms in the order of its platforms metadata.
func platformsOf(res *client.Result) ([]platformResult, error) {
	if res.Ref != nil && len(res.Refs) == 0 {
		p := platforms.DefaultSpec()
		if dt, ok := res.Metadata[exptypes.ExporterPlatformsKey]; ok {
			var ps exptypes.Platforms
			if err := json.Unmarshal(dt, &ps); err == nil && len(ps.Platforms) == 1 {
				p = ps.Platforms[0].Platform
			}
		}
		return []platformResult{{platform: p, ref: res.Ref, config: res.Metadata[exptypes.ExporterImageConfigKey]}}, nil
	}
	dt, ok := res.Metadata[exptypes.ExporterPlatformsKey]
	if !ok {
		return nil, fmt.Errorf("multi-platform result without %s", exptypes.ExporterPlatformsKey)
	}
	var ps exptypes.Platforms
	if err := json.Unmarshal(dt, &ps); err != nil {
		return nil, fmt.Errorf("parse %s: %w", exptypes.ExporterPlatformsKey, err)
	}
	var out []platformResult
	for _, p := range ps.Platforms {
		ref, ok := res.Refs[p.ID]
		if !ok {
			continue
		}
		out = append(out, platformResult{id: p.ID, platform: p.Platform, ref: ref,
			config: res.Metadata[exptypes.ExporterImageConfigKey+"/"+p.ID]})
	}
	return out, nil
}

// metaKey is key for a single-platform result, key/ID for one platform
// of a multi-platform result.
func metaKey(key, id string) string {
	if id == "" {
		return key
	}
	return key + "/" + id
}

// addProfiles runs the profiling step for each platform the builder runs
// natively, or reads the profile from a build context, and adds the
// profiles, their status and the exporter attributes to res's metadata.
func addProfiles(ctx context.Context, c client.Client, bc *dockerui.Client, res *client.Result, o *Options, warn func(string), warnAt *digest.Digest) error {
	ps, err := platformsOf(res)
	if err != nil {
		return err
	}
	attrs := o.Attrs
	made := false
	defer func() {
		// A profile makes reordering the default: the fast path.
		if made {
			if _, ok := attrs["soci-reorder"]; !ok {
				attrs["soci-reorder"] = "true"
			}
		}
		if dt, err := json.Marshal(attrs); err == nil {
			res.AddMeta(profile.AttrsMetadataKey, dt)
		}
	}()
	if o.ProfileContext != "" {
		p, err := readContextProfile(ctx, c, bc, o.ProfileContext)
		if err != nil {
			return err
		}
		for _, pr := range ps {
			if err := setProfile(res, pr.id, p, "ok: from build context "+o.ProfileContext); err != nil {
				return err
			}
		}
		made = len(p.Files) > 0
		return nil
	}
	if !o.Profile {
		return nil
	}
	native := nativePlatform(c)
	tracer, err := readTracer()
	if err != nil {
		return err
	}
	var nativeProfile *profile.Profile
	var nativeID string
	var others []platformResult
	for _, pr := range ps {
		if !platforms.Only(native).Match(pr.platform) {
			others = append(others, pr)
			continue
		}
		if nativeProfile != nil {
			others = append(others, pr)
			continue
		}
		p, status, err := profileStartup(ctx, c, pr, o, tracer, warnAt)
		if err != nil {
			return err
		}
		name := platforms.FormatAll(pr.platform)
		if p == nil {
			if o.Strict {
				return fmt.Errorf("socikit: start-up profiling of %s failed (strict): %s", name, status)
			}
			warn(fmt.Sprintf("%s: no start-up profile: %s", name, status))
			res.AddMeta(metaKey(profile.StatusMetadataKey, pr.id), []byte("no profile: "+status))
			continue
		}
		if err := setProfile(res, pr.id, p, status); err != nil {
			return err
		}
		nativeProfile, nativeID, made = p, name, true
	}
	for _, pr := range others {
		name := platforms.FormatAll(pr.platform)
		if nativeProfile == nil {
			res.AddMeta(metaKey(profile.StatusMetadataKey, pr.id), []byte("not profiled: the builder does not run "+name+" natively"))
			warn(name + ": not profiled (the builder does not run it natively) and no native profile to reuse")
			continue
		}
		q := *nativeProfile
		q.Platform = name
		status := "not profiled (the builder does not run it natively): reusing " + nativeID + "'s profile where the paths match"
		if err := setProfile(res, pr.id, &q, status); err != nil {
			return err
		}
		warn(name + ": " + status)
	}
	return nil
}

func setProfile(res *client.Result, id string, p *profile.Profile, status string) error {
	dt, err := profile.Marshal(p)
	if err != nil {
		return err
	}
	res.AddMeta(metaKey(profile.MetadataKey, id), dt)
	res.AddMeta(metaKey(profile.StatusMetadataKey, id), []byte(status))
	return nil
}

// nativePlatform is the first platform of the first worker: the one it
// runs without emulation.
func nativePlatform(c client.Client) ocispecs.Platform {
	ws := c.BuildOpts().Workers
	if len(ws) > 0 && len(ws[0].Platforms) > 0 {
		return platforms.Normalize(ws[0].Platforms[0])
	}
	return platforms.DefaultSpec()
}

// readTracer returns the socikit-trace binary the profiling step mounts.
func readTracer() ([]byte, error) {
	var cands []string
	if p := os.Getenv(TracerEnv); p != "" {
		cands = append(cands, p)
	}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), "socikit-trace"))
	}
	cands = append(cands, "/bin/socikit-trace", "/usr/local/bin/socikit-trace")
	for _, p := range cands {
		if b, err := os.ReadFile(p); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("socikit-trace not found (looked in %s): the frontend image must hold it", strings.Join(cands, ", "))
}
