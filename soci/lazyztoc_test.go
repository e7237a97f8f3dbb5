package soci

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestIndexLazyZtoc(t *testing.T) {
	ix := testIndex(V2)
	ix.LazyZtocs = []LazyZtoc{{Ztoc: dg("ztoc2"), Blob: ocispec.Descriptor{Digest: dg("lazy2"), Size: 70}}}
	b, _, err := ix.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	last := m.Layers[len(m.Layers)-1]
	want := ocispec.Descriptor{MediaType: MediaTypeLazyZtoc, Digest: dg("lazy2"), Size: 70,
		Annotations: map[string]string{AnnotationZtocDigest: dg("ztoc2").String()}}
	if diff := cmp.Diff(want, last); diff != "" {
		t.Errorf("lazy zTOC descriptor (-want +got):\n%s", diff)
	}
	// Upstream finds zTOCs by media type and the layer digest annotation:
	// the lazy zTOC has neither.
	if _, ok := last.Annotations[AnnotationImageLayerDigest]; ok || last.MediaType == MediaTypeZtoc || last.MediaType == MediaTypePrefetch {
		t.Errorf("lazy zTOC descriptor looks like upstream's: %+v", last)
	}
	got, err := ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	wantLazy := []LazyZtoc{{Ztoc: dg("ztoc2"), Blob: ocispec.Descriptor{MediaType: MediaTypeLazyZtoc, Digest: dg("lazy2"), Size: 70}}}
	if diff := cmp.Diff(wantLazy, got.LazyZtocs); diff != "" {
		t.Errorf("parsed (-want +got):\n%s", diff)
	}
	b2, _, err := got.Marshal()
	if err != nil || string(b2) != string(b) {
		t.Errorf("re-Marshal differs (err %v)", err)
	}
}

func TestIndexLazyZtocErrors(t *testing.T) {
	tests := []struct {
		name  string
		lazy  []LazyZtoc
		field string
	}{
		{"unknown zTOC", []LazyZtoc{{Ztoc: dg("ztoc1"), Blob: ocispec.Descriptor{Digest: dg("lazy1"), Size: 7}}},
			"lazy zTOC of zTOC " + dg("ztoc1").String() + " (descriptor 0)"},
		{"no zTOC digest", []LazyZtoc{{Blob: ocispec.Descriptor{Digest: dg("lazy1"), Size: 7}}},
			"layers[3].annotations[" + AnnotationZtocDigest + "]"},
		{"zero size", []LazyZtoc{{Ztoc: dg("ztoc0"), Blob: ocispec.Descriptor{Digest: dg("lazy1")}}}, "layers[3].size"},
		{"two for one zTOC", []LazyZtoc{{Ztoc: dg("ztoc0"), Blob: ocispec.Descriptor{Digest: dg("lazy1"), Size: 7}},
			{Ztoc: dg("ztoc0"), Blob: ocispec.Descriptor{Digest: dg("lazy2"), Size: 7}}}, "layers[4].annotations[" + AnnotationZtocDigest + "]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := testIndex(V2)
			ix.LazyZtocs = tc.lazy
			_, _, err := ix.Marshal()
			checkErr(t, err, tc.field)
		})
	}
}
