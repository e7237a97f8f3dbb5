package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/internal/image"
	"github.com/socikit/socikit/internal/spanmap"
	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// pictureArgs are inspect's --profile, --svg and --platform.
type pictureArgs struct {
	profile, svg string
	platforms    platformList
	json         bool
	prof         *profile.Profile // the profile read by load
}

// load reads the profile file (JSON, optionally gzip), if one is named.
func (a *pictureArgs) load() error {
	if a.profile == "" {
		return nil
	}
	f, err := os.Open(a.profile)
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := profile.Decode(f)
	if err != nil {
		return fmt.Errorf("%s: %w", a.profile, err)
	}
	a.prof = p
	return nil
}

// inspectPicture maps a start-up profile (if any) onto the spans of one
// SOCI index of the image and prints the summary or draws the SVG.
func inspectPicture(ctx context.Context, e *env, src image.Source, found []foundIndex, refArg string, a pictureArgs) error {
	prof := a.prof
	platforms := a.platforms
	if len(platforms) == 0 && prof != nil && prof.Platform != "" && len(found) > 1 {
		if p, err := parsePlatform(prof.Platform); err == nil {
			platforms = platformList{p}
		}
	}
	f, err := pickIndex(found, platforms)
	if err != nil {
		return err
	}
	if prof == nil {
		p, d, err := storedProfile(ctx, src, f.manifest)
		if err != nil {
			e.warnf("the start-up profile stored with the image: %v", err)
		} else if p != nil {
			e.warnf("using the start-up profile stored with the image (%s, %d files; --profile FILE uses another)", d.Digest, len(p.Files))
			prof = p
		}
	}
	if prof != nil && prof.Platform != "" && f.platform != nil {
		if p, err := parsePlatform(prof.Platform); err == nil && !platformMatches(p, f.platform) {
			e.warnf("the profile is of %s, the SOCI index of %s", prof.Platform, platformString(f.platform))
		}
	}
	layers, err := pictureLayers(ctx, e, src, f)
	if err != nil {
		return err
	}
	res := spanmap.Map(prof, layers)
	meta := spanmap.Meta{Image: refArg, IndexDigest: f.desc.Digest, IndexVersion: f.index.Version.String(), Platform: platformString(f.platform)}
	if res.NotFound > 0 {
		more := ""
		if res.NotFound > len(res.NotFoundPaths) {
			more = fmt.Sprintf(", the first %d", len(res.NotFoundPaths))
		}
		e.warnf("paths of the profile in no indexed layer: %d%s: %s", res.NotFound, more, strings.Join(res.NotFoundPaths, " "))
	}
	switch {
	case a.svg != "":
		var buf bytes.Buffer
		if err := spanmap.SVG(&buf, res, meta); err != nil {
			return err
		}
		if a.svg == "-" {
			_, err := e.stdout.Write(buf.Bytes())
			return err
		}
		return os.WriteFile(a.svg, buf.Bytes(), 0o644)
	case a.json:
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	default:
		return spanmap.Write(e.stdout, res, meta)
	}
}

// pictureLayers returns the layers of the image f indexes, in order: the
// indexed ones with their span index and prefetch spans, and, when the
// image manifest can be read, those without zTOC.
func pictureLayers(ctx context.Context, e *env, src image.Source, f foundIndex) ([]spanmap.Layer, error) {
	prefetch := map[string]ocispec.Descriptor{}
	for _, p := range f.index.Prefetches {
		prefetch[p.Layer.String()] = p.Prefetch
	}
	var indexed []spanmap.Layer
	for _, l := range f.index.Layers {
		z, err := fetchZtoc(ctx, src, l)
		if err != nil {
			return nil, err
		}
		ix, err := ztoc.NewIndex(z)
		if err != nil {
			return nil, fmt.Errorf("zTOC %s of layer %s: %w", l.Ztoc.Digest, l.LayerDigest, err)
		}
		sl := spanmap.Layer{Digest: l.LayerDigest, Size: z.CompressedArchiveSize, Index: ix, ZtocSize: l.Ztoc.Size}
		if d, ok := prefetch[l.LayerDigest.String()]; ok {
			b, err := image.ReadBlob(ctx, src, d, soci.MaxDocumentSize)
			if err != nil {
				return nil, fmt.Errorf("prefetch of layer %s: %w", l.LayerDigest, err)
			}
			pf, err := soci.ParsePrefetch(b)
			if err != nil {
				return nil, fmt.Errorf("prefetch of layer %s: %w", l.LayerDigest, err)
			}
			sl.Prefetch = pf.Spans
		}
		indexed = append(indexed, sl)
	}
	if f.manifest == "" {
		return indexed, nil
	}
	body, err := src.Manifest(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: f.manifest})
	var m ocispec.Manifest
	if err == nil {
		err = json.Unmarshal(body, &m)
	}
	if err != nil {
		e.warnf("image manifest %s: %v; layers without zTOC are left out", f.manifest, err)
		return indexed, nil
	}
	// Merge in manifest order; give up on a manifest that does not list
	// the indexed layers in the index's order.
	var out []spanmap.Layer
	next := 0
	for _, d := range m.Layers {
		if next < len(indexed) && d.Digest == indexed[next].Digest {
			out = append(out, indexed[next])
			next++
			continue
		}
		out = append(out, spanmap.Layer{Digest: d.Digest, Size: d.Size})
	}
	if next != len(indexed) {
		e.warnf("image manifest %s does not list the indexed layers in order; layers without zTOC are left out", f.manifest)
		return indexed, nil
	}
	return out, nil
}

// storedProfile returns the start-up profile attached to image manifest img
// in the image's index (exporter.FindProfile), or nil if there is none.
func storedProfile(ctx context.Context, src image.Source, img digest.Digest) (*profile.Profile, ocispec.Descriptor, error) {
	if img == "" {
		return nil, ocispec.Descriptor{}, nil
	}
	root, body, err := src.Resolve(ctx)
	if err != nil || !image.IsIndex(root.MediaType) {
		return nil, ocispec.Descriptor{}, err
	}
	d, ok, err := exporter.FindProfile(body, img)
	if err != nil || !ok {
		return nil, ocispec.Descriptor{}, err
	}
	mb, err := src.Manifest(ctx, d)
	if err != nil {
		return nil, d, err
	}
	pd, err := exporter.ProfileFromArtifact(mb)
	if err != nil {
		return nil, d, err
	}
	rc, err := src.Blob(ctx, pd)
	if err != nil {
		return nil, d, err
	}
	defer rc.Close()
	p, err := profile.Decode(rc)
	if err != nil {
		return nil, d, err
	}
	return p, d, nil
}
