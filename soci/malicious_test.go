package soci

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestParseIndexMalicious: indexes built to hurt the parser are refused
// with an error, and what the parser allocates stays proportional to its
// input (at most MaxDocumentSize), whatever counts or sizes they claim.
func TestParseIndexMalicious(t *testing.T) {
	golden := goldenIndex(V2)
	// As many zTOC descriptors as fit in MaxDocumentSize, every one for
	// the same layer with a different zTOC: refused as a duplicate.
	layer := `{"mediaType":"` + MediaTypeZtoc + `","digest":"%s","size":%d,"annotations":{"` + AnnotationImageLayerDigest + `":"` + dg("layer").String() + `"}}`
	var many []string
	size := 0
	for i := 0; size < MaxDocumentSize-4096; i++ {
		l := fmt.Sprintf(layer, dg(fmt.Sprint(i)), i+1)
		many = append(many, l)
		size += len(l) + 1
	}
	manyLayers := strings.Replace(golden, `"layers":[`, `"layers":[`+strings.Join(many, ",")+",", 1)
	// The same count of distinct layers: accepted (a big image), and
	// allocating in proportion.
	distinct := make([]string, len(many))
	for i := range many {
		distinct[i] = strings.Replace(many[i], dg("layer").String(), dg(fmt.Sprint("many-layer", i)).String(), 1)
	}
	manyDistinct := strings.Replace(golden, `"layers":[`, `"layers":[`+strings.Join(distinct, ",")+",", 1)

	cases := []struct {
		name string
		doc  string
		ok   bool
	}{
		{"many zTOCs for one layer", manyLayers, false},
		{"many distinct layers", manyDistinct, true},
		{"deep nesting", strings.Replace(golden, `"annotations":{`, `"x":`+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+`,"annotations":{`, 1), false},
		{"huge size", strings.Replace(golden, `"size":`, `"size":1e300,"x":`, 1), false},
		{"size overflow", strings.Replace(golden, `"size":2`, `"size":18446744073709551617`, 1), false},
		{"huge string", strings.Replace(golden, `"annotations":{`, `"annotations":{"a":"`+strings.Repeat("\\u0000", MaxDocumentSize/6)+`",`, 1), false},
		{"layer digest with a path", strings.Replace(golden, dg("layer0").String(), "sha256:../../etc/passwd", 1), false},
		{"zTOC digest with a path", strings.Replace(golden, `"digest":"sha256:`, `"digest":"sha256:/../`, 2), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			var ix *Index
			alloc := allocated(func() { ix, err = ParseIndex([]byte(tc.doc)) })
			if tc.ok != (err == nil) {
				t.Fatalf("ok %v, error %v", tc.ok, err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Errorf("error %v does not match ErrInvalid or ErrTooLarge", err)
			}
			// encoding/json into ocispec types: a few times the input.
			if limit := uint64(12*len(tc.doc)) + 1<<20; alloc > limit {
				t.Errorf("allocated %d bytes for a %d-byte document (limit %d)", alloc, len(tc.doc), limit)
			}
			n := 0
			if ix != nil {
				n = len(ix.Layers)
			}
			t.Logf("%d bytes, %d layers, %d bytes allocated: %v", len(tc.doc), n, alloc, err)
		})
	}
}
