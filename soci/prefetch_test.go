package soci

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPrefetchMarshal(t *testing.T) {
	p := Prefetch{Layer: dg("layer2"), Spans: []PrefetchSpan{{StartSpan: 0, EndSpan: 3}, {StartSpan: 7, EndSpan: 7, Priority: 2}}}
	b, desc, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"version":"1.0","prefetch_spans":[{"start_span":0,"end_span":3},{"start_span":7,"end_span":7,"priority":2}]}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("bytes (-want +got):\n%s", diff)
	}
	wantDesc := ocispec.Descriptor{MediaType: MediaTypePrefetch, Digest: digest.FromString(want), Size: int64(len(want)),
		Annotations: map[string]string{AnnotationImageLayerDigest: dg("layer2").String()}}
	if diff := cmp.Diff(wantDesc, desc); diff != "" {
		t.Errorf("descriptor (-want +got):\n%s", diff)
	}
	got, err := ParsePrefetch(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Prefetch{Spans: p.Spans}, got); diff != "" {
		t.Errorf("ParsePrefetch (-want +got):\n%s", diff)
	}
}

func TestPrefetchErrors(t *testing.T) {
	marshal := []struct {
		name  string
		p     Prefetch
		field string
	}{
		{"no layer", Prefetch{Spans: []PrefetchSpan{{}}}, "layer"},
		{"no spans", Prefetch{Layer: dg("l")}, "prefetch_spans"},
		{"negative start", Prefetch{Layer: dg("l"), Spans: []PrefetchSpan{{StartSpan: -1, EndSpan: 2}}}, "prefetch_spans[0].start_span"},
		{"end before start", Prefetch{Layer: dg("l"), Spans: []PrefetchSpan{{}, {StartSpan: 3, EndSpan: 2}}}, "prefetch_spans[1].end_span"},
	}
	for _, tc := range marshal {
		t.Run("Marshal/"+tc.name, func(t *testing.T) {
			_, _, err := tc.p.Marshal()
			checkErr(t, err, tc.field)
		})
	}
	parse := []struct {
		name, in, field string
	}{
		{"not json", `{`, "prefetch"},
		{"null", `null`, "version"},
		{"no version", `{"prefetch_spans":[{"start_span":0,"end_span":0}]}`, "version"},
		{"version 2.0", `{"version":"2.0","prefetch_spans":[{"start_span":0,"end_span":0}]}`, "version"},
		{"empty spans", `{"version":"1.0","prefetch_spans":[]}`, "prefetch_spans"},
		{"no spans", `{"version":"1.0"}`, "prefetch_spans"},
		{"span id over int32", `{"version":"1.0","prefetch_spans":[{"start_span":0,"end_span":2147483648}]}`, "prefetch"},
		{"end before start", `{"version":"1.0","prefetch_spans":[{"start_span":5,"end_span":4}]}`, "prefetch_spans[0].end_span"},
		{"negative start", `{"version":"1.0","prefetch_spans":[{"start_span":-5,"end_span":4}]}`, "prefetch_spans[0].start_span"},
	}
	for _, tc := range parse {
		t.Run("Parse/"+tc.name, func(t *testing.T) {
			_, err := ParsePrefetch([]byte(tc.in))
			checkErr(t, err, tc.field)
		})
	}
}
