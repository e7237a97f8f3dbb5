package image

import (
	"context"
	"fmt"
	"net/http"
)

// OpenSource opens ref for reading. rt is the HTTP transport for
// registries (nil for the default).
func OpenSource(ctx context.Context, ref Ref, rt http.RoundTripper) (Source, error) {
	switch ref.Kind {
	case KindLayout:
		return OpenLayout(ref.Path, ref.Tag, ref.Digest)
	case KindArchive:
		return OpenArchive(ref.Path, ref.Tag, ref.Digest)
	case KindRegistry:
		return OpenRegistry(ref.Name, rt)
	}
	return nil, fmt.Errorf("open source: invalid reference kind %v", ref.Kind)
}

// OpenTarget opens ref for writing, creating a layout if needed. A
// layout target must not select by digest.
func OpenTarget(ctx context.Context, ref Ref, rt http.RoundTripper) (Target, error) {
	if ref.Digest != "" {
		return nil, fmt.Errorf("open target %s: a target cannot be selected by digest", ref)
	}
	switch ref.Kind {
	case KindLayout:
		return CreateLayout(ref.Path)
	case KindArchive:
		return CreateArchive(ref.Path)
	case KindRegistry:
		return OpenRegistry(ref.Name, rt)
	}
	return nil, fmt.Errorf("open target: invalid reference kind %v", ref.Kind)
}
