package soci

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzParseIndex: no panics, and whatever parses re-marshals to an index that
// parses to the same value.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(goldenIndex(V1)))
	f.Add([]byte(goldenIndex(V2)))
	f.Add(edit(f, V2, func(m map[string]any) { delete(annAt(m, 0), AnnotationSpanSize); m["artifactType"] = MediaTypeIndexV2 }))
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.amazon.soci.index.v2+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ParseIndex(b)
		if err != nil {
			return
		}
		out, _, err := ix.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed index: %v", err)
		}
		ix2, err := ParseIndex(out)
		if err != nil {
			t.Fatalf("ParseIndex of Marshal output: %v", err)
		}
		if diff := cmp.Diff(ix, ix2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzParsePrefetch: no panics, and round trip.
func FuzzParsePrefetch(f *testing.F) {
	f.Add([]byte(`{"version":"1.0","prefetch_spans":[{"start_span":0,"end_span":3},{"start_span":7,"end_span":7,"priority":2}]}`))
	f.Add([]byte(`{"version":"1.0","prefetch_spans":[]}`))
	f.Add([]byte(`{"version":"1.0","prefetch_spans":[{"start_span":5,"end_span":4}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePrefetch(b)
		if err != nil {
			return
		}
		p.Layer = dg("layer")
		out, _, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed prefetch: %v", err)
		}
		p2, err := ParsePrefetch(out)
		if err != nil {
			t.Fatalf("ParsePrefetch of Marshal output: %v", err)
		}
		p2.Layer = p.Layer
		if diff := cmp.Diff(p, p2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzBindV2: no panics; a bound manifest names its index, binding is
// idempotent, and the image index built from it finds the index.
func FuzzBindV2(f *testing.F) {
	f.Add([]byte(ociManifest), dg("soci").String())
	f.Add([]byte(dockerManifest), dg("soci").String())
	f.Add([]byte(dockerManifest), "")
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json"},"layers":null,"annotations":{"com.amazon.soci.index-digest":"x"}}`), dg("s").String())
	f.Fuzz(func(t *testing.T, manifest []byte, indexDigest string) {
		index := ocispec.Descriptor{Digest: digest.Digest(indexDigest), Size: 10}
		b, desc, err := BindV2(manifest, amd64, index)
		if err != nil {
			return
		}
		if index.Digest == "" {
			return
		}
		d, ok, err := IndexDigestFromManifest(b)
		if err != nil || !ok || d != index.Digest {
			t.Fatalf("IndexDigestFromManifest = %v, %v, %v; want %v", d, ok, err, index.Digest)
		}
		b2, _, err := BindV2(b, amd64, index)
		if err != nil || string(b2) != string(b) {
			t.Fatalf("BindV2 not idempotent (err %v)", err)
		}
		idx, _, err := BuildImageIndex(nil, []BoundImage{{Manifest: desc, Index: index}})
		if err != nil {
			t.Fatalf("BuildImageIndex: %v", err)
		}
		found, ok, err := FindIndexInImageIndex(idx, desc.Digest)
		if err != nil || !ok || found.Digest != index.Digest {
			t.Fatalf("FindIndexInImageIndex = %v, %v, %v", found.Digest, ok, err)
		}
	})
}

// FuzzFindIndexInImageIndex: no panics on arbitrary image indexes.
func FuzzFindIndexInImageIndex(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+dg("m").String()+`","size":1,"annotations":{"com.amazon.soci.index-digest":"`+dg("s").String()+`"}},{"digest":"`+dg("s").String()+`","size":2,"annotations":{"com.amazon.soci.image-manifest-digest":"`+dg("m").String()+`"}}]}`), dg("m").String())
	f.Fuzz(func(t *testing.T, b []byte, m string) {
		d, ok, err := FindIndexInImageIndex(b, digest.Digest(m))
		if err == nil && ok {
			if err := d.Digest.Validate(); err != nil {
				t.Fatalf("found an invalid digest %q", d.Digest)
			}
		}
	})
}
