package buildkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/buildkit/util/bklog"

	"github.com/socikit/socikit/profile"
)

// exportOptions are the soci options of one export: the socikit
// frontend's (profile.AttrsMetadataKey in the result metadata, from
// `# socikit:` directives and SOCIKIT_* build args) overridden by the
// exporter attributes given on the command line, and the start-up
// profile: soci-profile if given, else the frontend's profiles of every
// platform, merged (platform keys in sorted order, so the result is
// deterministic). A reorder asked for by the frontend with no profile to
// follow (its profiling step failed, and said so) is dropped with a log
// line; one asked for on the command line is an error.
func (i *instance) exportOptions(ctx context.Context, meta map[string][]byte) (Options, error) {
	attrs := map[string]string{}
	if dt, ok := meta[profile.AttrsMetadataKey]; ok {
		var m map[string]string
		if err := json.Unmarshal(dt, &m); err != nil {
			return Options{}, fmt.Errorf("soci exporter: socikit frontend attributes (%s): %w", profile.AttrsMetadataKey, err)
		}
		for k, v := range m {
			if lk := strings.ToLower(k); strings.HasPrefix(lk, attrPrefix) {
				attrs[lk] = v
			}
		}
	}
	fromFrontend := map[string]bool{}
	for k := range attrs {
		fromFrontend[k] = true
	}
	for k, v := range i.attrs {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, attrPrefix) {
			attrs[lk] = v
			delete(fromFrontend, lk)
		}
	}
	o, _, err := ParseOptions(attrs)
	if err != nil {
		if len(fromFrontend) > 0 {
			return Options{}, fmt.Errorf("soci exporter (options from the Dockerfile's # socikit: lines or SOCIKIT_* build args included): %w", err)
		}
		return Options{}, err
	}
	if o.Profile == nil {
		if o.Profile, err = frontendProfile(meta); err != nil {
			return Options{}, err
		}
	}
	if o.Reorder && len(o.Prefetch) == 0 && o.Profile == nil && fromFrontend[AttrReorder] {
		bklog.G(ctx).Warnf("soci exporter: %s from the socikit frontend ignored: no start-up profile", AttrReorder)
		o.Reorder = false
	}
	if err := o.check(); err != nil {
		return Options{}, err
	}
	return o, nil
}

// frontendProfile merges the profiles the socikit frontend put in the
// result metadata, or returns nil if there are none.
func frontendProfile(meta map[string][]byte) (*profile.Profile, error) {
	var keys []string
	for k := range meta {
		if k == profile.MetadataKey || strings.HasPrefix(k, profile.MetadataKey+"/") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	slices.Sort(keys)
	var ps []*profile.Profile
	for _, k := range keys {
		p, err := profile.Decode(bytes.NewReader(meta[k]))
		if err != nil {
			return nil, fmt.Errorf("soci exporter: start-up profile %s from the frontend: %w", k, err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 1 {
		return ps[0], nil
	}
	return profile.Merge(ps...), nil
}
