//go:build integration

package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// blobFunc returns the bytes of a blob (from a registry or an OCI layout).
type blobFunc func(t *testing.T, d digest.Digest) []byte

// checkSociImage checks a SOCI v2 image index: the image manifest annotated
// with its SOCI index, the SOCI index descriptor in the image index, a zTOC
// for every layer (the tests build with soci-min-layer-size=0), and every
// regular file read through the zTOC equal to the layer's tar. It returns the
// image manifest descriptor (from the image index) and the SOCI index.
func checkSociImage(t *testing.T, rootIndex []byte, blob blobFunc) (ocispec.Descriptor, *soci.Index) {
	t.Helper()
	var idx ocispec.Index
	must(t, json.Unmarshal(rootIndex, &idx))
	var img *ocispec.Descriptor
	for k := range idx.Manifests {
		if idx.Manifests[k].Annotations[soci.AnnotationIndexDigest] != "" {
			if img != nil {
				t.Fatalf("two manifests annotated %s in %s", soci.AnnotationIndexDigest, rootIndex)
			}
			img = &idx.Manifests[k]
		}
	}
	if img == nil {
		t.Fatalf("no manifest annotated %s in %s", soci.AnnotationIndexDigest, rootIndex)
	}
	sdesc, ok, err := soci.FindIndexInImageIndex(rootIndex, img.Digest)
	if err != nil || !ok {
		t.Fatalf("SOCI index descriptor for %s: ok=%v err=%v\n%s", img.Digest, ok, err, rootIndex)
	}
	mb := blob(t, img.Digest)
	if d, ok, err := soci.IndexDigestFromManifest(mb); err != nil || !ok || d != sdesc.Digest {
		t.Fatalf("manifest annotation names %v (ok=%v, err=%v), image index lists %s", d, ok, err, sdesc.Digest)
	}
	var m ocispec.Manifest
	must(t, json.Unmarshal(mb, &m))
	ix, err := soci.ParseIndex(blob(t, sdesc.Digest))
	if err != nil {
		t.Fatalf("parse SOCI index %s: %v", sdesc.Digest, err)
	}
	if ix.Version != soci.V2 {
		t.Fatalf("SOCI index version %v, want v2", ix.Version)
	}
	checkLayers(t, m, ix, blob)
	return *img, ix
}

// checkLayers checks that every layer of m has a zTOC in ix that parses and
// reads every regular file of the layer back byte for byte.
func checkLayers(t *testing.T, m ocispec.Manifest, ix *soci.Index, blob blobFunc) {
	t.Helper()
	if len(m.Layers) < 3 {
		t.Fatalf("%d layers, want base + RUN + COPY", len(m.Layers))
	}
	ztocs := map[digest.Digest]soci.LayerZtoc{}
	for _, l := range ix.Layers {
		ztocs[l.LayerDigest] = l
	}
	for i, l := range m.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer %d media type %s", i, l.MediaType)
		}
		lz, ok := ztocs[l.Digest]
		if !ok {
			t.Errorf("layer %d (%s, %d bytes) has no zTOC", i, l.Digest, l.Size)
			continue
		}
		lb := blob(t, l.Digest)
		zb := blob(t, lz.Ztoc.Digest)
		z, err := ztoc.Unmarshal(zb)
		if err != nil {
			t.Fatalf("layer %d: ztoc.Unmarshal: %v", i, err)
		}
		if z.CompressedArchiveSize != int64(len(lb)) {
			t.Errorf("layer %d: zTOC compressed size %d, blob %d", i, z.CompressedArchiveSize, len(lb))
		}
		want := tarFiles(t, lb)
		n := checkZtocFiles(t, i, z, lb, want)
		t.Logf("layer %d: %d bytes, %d files, %d spans, zTOC %d bytes", i, len(lb), n, z.MaxSpanID+1, len(zb))
	}
}

// untar extracts an OCI layout tar (regular files and directories only).
func untar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Open(file)
	must(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		must(t, err)
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
			t.Fatalf("tar entry %q escapes the layout", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			must(t, os.MkdirAll(p, 0o755))
		case tar.TypeReg:
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			b, err := io.ReadAll(tr)
			must(t, err)
			must(t, os.WriteFile(p, b, 0o644))
		default:
			t.Fatalf("unexpected tar entry %q type %c in an OCI layout", h.Name, h.Typeflag)
		}
	}
}

// layoutBlobs returns a blobFunc reading an OCI layout directory, checking
// each blob's digest.
func layoutBlobs(dir string) blobFunc {
	return func(t *testing.T, d digest.Digest) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()))
		if err != nil {
			t.Fatalf("blob %s missing from the layout: %v", d, err)
		}
		if got := digest.FromBytes(b); got != d {
			t.Fatalf("blob %s has digest %s", d, got)
		}
		return b
	}
}

func readIndexJSON(t *testing.T, dir string) ocispec.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	must(t, err)
	var idx ocispec.Index
	must(t, json.Unmarshal(b, &idx))
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		t.Errorf("no oci-layout file: %v", err)
	}
	return idx
}

// buildOCI builds examples/hello with --output type=oci,dest=... plus output
// and returns the extracted layout directory and its index.json.
func buildOCI(t *testing.T, s *Sandbox, h helloInput, output string) (string, ocispec.Index) {
	t.Helper()
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	log, err := s.Buildctl(ctx, append(h.buildctlArgs(), "--output", "type=oci,dest="+out+output)...)
	if err != nil {
		t.Fatalf("buildctl build: %v\n%s\n-- buildkitd log --\n%s", err, log, s.Log())
	}
	fi, err := os.Stat(out)
	must(t, err)
	t.Logf("type=oci%s: %s, %d bytes", output, time.Since(start).Round(time.Millisecond), fi.Size())
	dir := filepath.Join(tmp, "layout")
	untar(t, out, dir)
	return dir, readIndexJSON(t, dir)
}

// TestOCIWithSoci exports examples/hello as an OCI layout tar through
// --output type=oci with soci-* attributes: the layout holds the SOCI v2
// image index (image manifest + SOCI index) and every blob under it.
func TestOCIWithSoci(t *testing.T) {
	s := NewSandbox(t)
	h := prepareHello(t)

	t.Run("v2", func(t *testing.T) {
		dir, idx := buildOCI(t, s, h, ",name=example.com/hello:ci,soci-min-layer-size=0,soci-span-size=1M")
		if len(idx.Manifests) != 1 {
			t.Fatalf("index.json lists %d manifests, want the image index only: %+v", len(idx.Manifests), idx.Manifests)
		}
		root := idx.Manifests[0]
		if root.MediaType != ocispec.MediaTypeImageIndex {
			t.Fatalf("index.json entry media type %s, want an image index", root.MediaType)
		}
		if got := root.Annotations[ocispec.AnnotationRefName]; got != "ci" {
			t.Errorf("ref name annotation %q, want ci", got)
		}
		if got := root.Annotations["io.containerd.image.name"]; got != "example.com/hello:ci" {
			t.Errorf("image name annotation %q", got)
		}
		blob := layoutBlobs(dir)
		img, ix := checkSociImage(t, blob(t, root.Digest), blob)
		if img.Platform == nil || img.Platform.OS != "linux" {
			t.Errorf("image manifest platform %+v", img.Platform)
		}
		t.Logf("image %s, SOCI index with %d zTOCs", img.Digest, len(ix.Layers))
	})

	t.Run("v1", func(t *testing.T) {
		dir, idx := buildOCI(t, s, h, ",soci-index=v1,soci-min-layer-size=0")
		var img, sidx *ocispec.Descriptor
		for k := range idx.Manifests {
			d := &idx.Manifests[k]
			switch {
			case d.ArtifactType == soci.MediaTypeIndexV1:
				sidx = d
			case d.MediaType == ocispec.MediaTypeImageManifest:
				img = d
			}
		}
		if img == nil || sidx == nil {
			t.Fatalf("index.json should list the image manifest and the v1 SOCI index: %+v", idx.Manifests)
		}
		blob := layoutBlobs(dir)
		mb := blob(t, img.Digest)
		if _, ok, _ := soci.IndexDigestFromManifest(mb); ok {
			t.Errorf("v1: image manifest is annotated with a v2 index")
		}
		ix, err := soci.ParseIndex(blob(t, sidx.Digest))
		if err != nil {
			t.Fatalf("parse v1 SOCI index: %v", err)
		}
		if ix.Version != soci.V1 || ix.Subject == nil || ix.Subject.Digest != img.Digest {
			t.Fatalf("v1 SOCI index version %v subject %+v, want the image %s", ix.Version, ix.Subject, img.Digest)
		}
		var m ocispec.Manifest
		must(t, json.Unmarshal(mb, &m))
		checkLayers(t, m, ix, blob)
	})

	t.Run("tar=false", func(t *testing.T) {
		// dest=DIR: the client's OCI layout directory receives the blobs and
		// an index.json entry for the image index.
		dir := filepath.Join(t.TempDir(), "layout")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		log, err := s.Buildctl(ctx, append(h.buildctlArgs(), "--output", "type=oci,tar=false,dest="+dir+",name=example.com/hello:dir,soci-min-layer-size=0")...)
		if err != nil {
			t.Fatalf("buildctl build: %v\n%s\n-- buildkitd log --\n%s", err, log, s.Log())
		}
		idx := readIndexJSON(t, dir)
		if len(idx.Manifests) != 1 || idx.Manifests[0].MediaType != ocispec.MediaTypeImageIndex {
			t.Fatalf("index.json %+v, want one image index", idx.Manifests)
		}
		blob := layoutBlobs(dir)
		checkSociImage(t, blob(t, idx.Manifests[0].Digest), blob)
	})

	t.Run("stock", func(t *testing.T) {
		// Without soci-* attributes type=oci is BuildKit's own exporter.
		dir, idx := buildOCI(t, s, h, "")
		if len(idx.Manifests) != 1 || idx.Manifests[0].MediaType != ocispec.MediaTypeImageManifest {
			t.Fatalf("stock type=oci: index.json %+v, want one image manifest", idx.Manifests)
		}
		mb := layoutBlobs(dir)(t, idx.Manifests[0].Digest)
		if _, ok, _ := soci.IndexDigestFromManifest(mb); ok {
			t.Fatalf("stock type=oci produced a SOCI-bound manifest")
		}
	})

	t.Run("push-refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out := filepath.Join(t.TempDir(), "out.tar")
		log, err := s.Buildctl(ctx, append(h.buildctlArgs(), "--output", "type=oci,dest="+out+",name="+s.Registry+"/oci:push,push=true,soci-min-layer-size=0")...)
		if err == nil || !strings.Contains(log, "type=soci") {
			t.Fatalf("type=oci,push=true with soci-* attributes: err=%v, want an error pointing to type=soci\n%s", err, log)
		}
	})
}
