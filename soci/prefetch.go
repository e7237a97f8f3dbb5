package soci

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// prefetchVersion is the only prefetch body version upstream reads or writes.
const prefetchVersion = "1.0"

// PrefetchSpan is an inclusive range of span ids of one layer's zTOC to fetch
// eagerly.
type PrefetchSpan struct {
	StartSpan int32 `json:"start_span"`
	EndSpan   int32 `json:"end_span"`
	// Priority is reserved upstream: lower is more urgent, 0 (omitted) means
	// no preference.
	Priority int `json:"priority,omitempty"`
}

// Prefetch is the content of a prefetch blob: the spans of image layer Layer
// to fetch eagerly.
type Prefetch struct {
	// Layer is the image layer digest. It is not part of the blob body; it
	// goes into the descriptor annotation AnnotationImageLayerDigest.
	Layer digest.Digest
	// Spans are written in the given order. Upstream sorts and merges them.
	Spans []PrefetchSpan
}

type prefetchBody struct {
	Version       string         `json:"version"`
	PrefetchSpans []PrefetchSpan `json:"prefetch_spans"`
}

// Marshal returns the prefetch blob, byte-identical to upstream's
// ({"version":"1.0","prefetch_spans":[...]}), and its descriptor: media type
// MediaTypePrefetch, annotated with AnnotationImageLayerDigest. Use the
// descriptor's digest and size in [LayerPrefetch].
func (p Prefetch) Marshal() ([]byte, ocispec.Descriptor, error) {
	if err := p.Layer.Validate(); err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("marshal prefetch: %w", &FieldError{Field: "layer", Err: err})
	}
	if err := validateSpans(p.Spans); err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("marshal prefetch for layer %s: %w", p.Layer, err)
	}
	b, err := json.Marshal(prefetchBody{Version: prefetchVersion, PrefetchSpans: p.Spans})
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("marshal prefetch for layer %s: %w", p.Layer, err)
	}
	return b, ocispec.Descriptor{
		MediaType:   MediaTypePrefetch,
		Digest:      digest.FromBytes(b),
		Size:        int64(len(b)),
		Annotations: map[string]string{AnnotationImageLayerDigest: p.Layer.String()},
	}, nil
}

// ParsePrefetch parses and validates a prefetch blob: at most
// MaxDocumentSize bytes, version "1.0", at least one span, 0 <= start_span <=
// end_span. Unknown fields are ignored. The returned Layer is empty: take it
// from the index ([LayerPrefetch.Layer]).
func ParsePrefetch(b []byte) (Prefetch, error) {
	if err := checkSize("prefetch", b); err != nil {
		return Prefetch{}, err
	}
	var body prefetchBody
	if err := json.Unmarshal(b, &body); err != nil {
		return Prefetch{}, fmt.Errorf("parse prefetch: %w", &FieldError{Field: "prefetch", Err: err})
	}
	if body.Version != prefetchVersion {
		return Prefetch{}, fmt.Errorf("parse prefetch: %w", &FieldError{Field: "version",
			Err: fmt.Errorf("%q (want %q): %w", body.Version, prefetchVersion, ErrUnsupportedVersion)})
	}
	if err := validateSpans(body.PrefetchSpans); err != nil {
		return Prefetch{}, fmt.Errorf("parse prefetch: %w", err)
	}
	return Prefetch{Spans: body.PrefetchSpans}, nil
}

func validateSpans(spans []PrefetchSpan) error {
	if len(spans) == 0 {
		return &FieldError{Field: "prefetch_spans", Err: errors.New("empty")}
	}
	for i, s := range spans {
		if s.StartSpan < 0 {
			return fieldErr(fmt.Sprintf("prefetch_spans[%d].start_span", i), "negative (%d)", s.StartSpan)
		}
		if s.EndSpan < s.StartSpan {
			return fieldErr(fmt.Sprintf("prefetch_spans[%d].end_span", i), "%d < start_span %d", s.EndSpan, s.StartSpan)
		}
	}
	return nil
}
