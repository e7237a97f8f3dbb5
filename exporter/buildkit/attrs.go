package buildkit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// Exporter attribute keys of the soci exporter. buildx lower-cases attribute
// keys, so keys are matched case-insensitively. Every other key goes to the
// image exporter's parser (name, push, registry.insecure, oci-mediatypes,
// compression-level, annotation.*, ...).
const (
	// AttrIndex (string "v2" or "v1", default "v2") is the SOCI index version.
	AttrIndex = "soci-index"
	// AttrSpanSize (string "auto" or a byte count, default "auto") is the
	// target uncompressed span size.
	AttrSpanSize = "soci-span-size"
	// AttrMinLayerSize (byte count, default exporter.DefaultMinLayerSize,
	// 10 MiB) is the compressed size under which a layer gets no zTOC.
	AttrMinLayerSize = "soci-min-layer-size"
	// AttrPrefetch (comma-separated absolute paths) lists files whose spans
	// the index marks for prefetch.
	AttrPrefetch = "soci-prefetch"
	// AttrReorder (bool, default false) puts the prefetch files (or the
	// start-up profile's files) first in the layers the build produced (not
	// in base-image layers); it needs AttrPrefetch, AttrProfile or a
	// profile from the socikit frontend.
	AttrReorder = "soci-reorder"
	// AttrProfile (a path on the builder's host) names a start-up profile
	// file (package profile); it replaces a profile the socikit frontend
	// made. Builds through the frontend can instead name a build context
	// (`# socikit:profile-context=NAME`), which needs no file on the builder.
	AttrProfile = "soci-profile"
	// AttrLazyZtoc (bool, default true) puts a lazy zTOC beside every zTOC
	// in the index (exporter.Request.NoLazyZtoc).
	AttrLazyZtoc = "soci-lazy-ztoc"

	attrPrefix = "soci-"
)

// AutoSpanSize is the span size "auto" stands for when a base-image layer,
// whose blob is kept as it is, is indexed with ztoc.Build: its tar is not
// scanned, so upstream's default (ztoc.DefaultSpanSize) is used. The layers
// the build produced get spans planned from their content
// (exporter.StreamPlanner).
const AutoSpanSize = ztoc.DefaultSpanSize

// Options are the soci-* attributes, parsed once at Resolve.
type Options struct {
	// Version is the SOCI index version.
	Version soci.Version
	// SpanSize is the target span size; 0 means auto.
	SpanSize int64
	// MinLayerSize is the compressed size under which a layer is not indexed.
	MinLayerSize int64
	// Prefetch lists absolute paths whose spans are marked for prefetch.
	Prefetch []string
	// Reorder puts the prefetch files first in the layers.
	Reorder bool
	// Profile is the start-up profile (AttrProfile, or the frontend's, see
	// exportOptions); nil if none.
	Profile *profile.Profile
	// NoLazyZtoc leaves the lazy zTOCs out (AttrLazyZtoc=false).
	NoLazyZtoc bool
}

// check reports an option set that cannot be exported.
func (o Options) check() error {
	if o.Reorder && len(o.Prefetch) == 0 && o.Profile == nil {
		return fmt.Errorf("%s=true needs %s or %s (or a profile from the socikit frontend): the files to put first", AttrReorder, AttrPrefetch, AttrProfile)
	}
	return nil
}

// EffectiveSpanSize is the span size to build with.
func (o Options) EffectiveSpanSize() int64 {
	if o.SpanSize == 0 {
		return AutoSpanSize
	}
	return o.SpanSize
}

// ParseOptions consumes the soci-* attributes of attrs and returns them with
// the other attributes. An unknown soci-* key is an error naming it.
func ParseOptions(attrs map[string]string) (Options, map[string]string, error) {
	o := Options{Version: soci.V2, MinLayerSize: exporter.DefaultMinLayerSize}
	rest := make(map[string]string, len(attrs))
	for k, v := range attrs {
		lk := strings.ToLower(k)
		if !strings.HasPrefix(lk, attrPrefix) {
			rest[k] = v
			continue
		}
		var err error
		switch lk {
		case AttrIndex:
			o.Version, err = soci.ParseVersion(strings.ToLower(v))
		case AttrSpanSize:
			if strings.EqualFold(v, "auto") || v == "" {
				o.SpanSize = 0
				break
			}
			o.SpanSize, err = parseSize(v)
			if err == nil && o.SpanSize < ztoc.MinSpanSize {
				err = fmt.Errorf("must be auto or at least %d bytes", ztoc.MinSpanSize)
			}
		case AttrMinLayerSize:
			o.MinLayerSize, err = parseSize(v)
		case AttrPrefetch:
			o.Prefetch = nil
			for p := range strings.SplitSeq(v, ",") {
				p = strings.TrimSpace(p)
				if p == "" {
					continue
				}
				if !strings.HasPrefix(p, "/") {
					err = fmt.Errorf("path %q is not absolute", p)
					break
				}
				o.Prefetch = append(o.Prefetch, p)
			}
		case AttrReorder:
			if v == "" {
				o.Reorder = true
			} else {
				o.Reorder, err = strconv.ParseBool(v)
			}
		case AttrProfile:
			o.Profile, err = readProfileFile(v)
		case AttrLazyZtoc:
			var on bool
			on, err = strconv.ParseBool(v)
			o.NoLazyZtoc = !on
		default:
			return Options{}, nil, fmt.Errorf("unknown soci exporter attribute %q (known: %s, %s, %s, %s, %s, %s, %s)",
				k, AttrIndex, AttrSpanSize, AttrMinLayerSize, AttrPrefetch, AttrReorder, AttrProfile, AttrLazyZtoc)
		}
		if err != nil {
			return Options{}, nil, fmt.Errorf("invalid value %q for %s: %w", v, k, err)
		}
	}
	return o, rest, nil
}

// readProfileFile reads a profile file on the builder's host.
func readProfileFile(name string) (*profile.Profile, error) {
	if !filepath.IsAbs(name) {
		return nil, fmt.Errorf("not an absolute path on the builder's host")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return profile.Decode(f)
}

// HasSociAttrs reports whether attrs holds any soci-* key.
func HasSociAttrs(attrs map[string]string) bool {
	for k := range attrs {
		if strings.HasPrefix(strings.ToLower(k), attrPrefix) {
			return true
		}
	}
	return false
}

// parseSize parses a non-negative byte count, with an optional binary
// suffix K, M or G (KiB, MiB, GiB; "KiB" etc. also accepted).
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, t[:len(t)-1]
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, t[:len(t)-1]
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a byte count")
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("too large")
	}
	return n * mult, nil
}
