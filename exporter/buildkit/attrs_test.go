package buildkit

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/socikit/socikit/exporter"
	"github.com/socikit/socikit/soci"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		attrs   map[string]string
		want    Options
		rest    map[string]string
		wantErr string
	}{
		{
			name:  "defaults",
			attrs: map[string]string{"name": "r/i:t", "push": "true"},
			want:  Options{Version: soci.V2, MinLayerSize: exporter.DefaultMinLayerSize},
			rest:  map[string]string{"name": "r/i:t", "push": "true"},
		},
		{
			name: "all, lower-cased by buildx or not",
			attrs: map[string]string{"SOCI-Index": "V1", "soci-span-size": "1M", "soci-min-layer-size": "0",
				"soci-prefetch": "/a, /b/c", "soci-reorder": "false"},
			want: Options{Version: soci.V1, SpanSize: 1 << 20, Prefetch: []string{"/a", "/b/c"}},
			rest: map[string]string{},
		},
		{name: "auto span", attrs: map[string]string{"soci-span-size": "auto"}, want: Options{Version: soci.V2, MinLayerSize: exporter.DefaultMinLayerSize}, rest: map[string]string{}},
		{name: "unknown", attrs: map[string]string{"soci-foo": "1"}, wantErr: `"soci-foo"`},
		{name: "bad span", attrs: map[string]string{"soci-span-size": "12abc"}, wantErr: "soci-span-size"},
		{name: "small span", attrs: map[string]string{"soci-span-size": "100"}, wantErr: "at least"},
		{name: "bad version", attrs: map[string]string{"soci-index": "v3"}, wantErr: "soci-index"},
		{name: "relative prefetch", attrs: map[string]string{"soci-prefetch": "a"}, wantErr: "not absolute"},
		{name: "profile not absolute", attrs: map[string]string{"soci-profile": "p.json"}, wantErr: "not an absolute path"},
		{name: "profile missing", attrs: map[string]string{"soci-profile": "/no/such/profile.json"}, wantErr: "no such file"},
		{
			name:  "reorder",
			attrs: map[string]string{"soci-reorder": "true", "soci-prefetch": "/a"},
			want:  Options{Version: soci.V2, MinLayerSize: exporter.DefaultMinLayerSize, Prefetch: []string{"/a"}, Reorder: true},
			rest:  map[string]string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rest, err := ParseOptions(tc.attrs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("options (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.rest, rest); d != "" {
				t.Errorf("rest (-want +got):\n%s", d)
			}
		})
	}
}
