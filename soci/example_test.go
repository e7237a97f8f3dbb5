package soci_test

import (
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
)

// Example builds a v2 SOCI index for a single-platform image and binds it.
func Example() {
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",` +
		`"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + digest.FromString("config").String() + `","size":6},` +
		`"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"` + digest.FromString("layer").String() + `","size":20971520}]}`)

	ix := &soci.Index{
		Version: soci.V2,
		Layers: []soci.LayerZtoc{{
			LayerDigest:    digest.FromString("layer"),
			LayerMediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip",
			Ztoc:           ocispec.Descriptor{Digest: digest.FromString("ztoc"), Size: 4096},
			SpanSize:       1 << 22,
		}},
		BuildTool: "socikit",
	}
	_, indexDesc, err := ix.Marshal() // push these bytes and soci.EmptyConfigJSON
	if err != nil {
		panic(err)
	}
	platform := &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	_, manifestDesc, err := soci.BindV2(manifest, platform, indexDesc)
	if err != nil {
		panic(err)
	}
	imageIndex, _, err := soci.BuildImageIndex(nil, []soci.BoundImage{{Manifest: manifestDesc, Index: indexDesc}})
	if err != nil {
		panic(err)
	}
	found, ok, err := soci.FindIndexInImageIndex(imageIndex, manifestDesc.Digest)
	fmt.Println(ok, err, found.Digest == indexDesc.Digest, found.ArtifactType)
	// Output: true <nil> true application/vnd.amazon.soci.index.v2+json
}
