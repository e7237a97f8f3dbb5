//go:build integration

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
	"github.com/socikit/socikit/ztoc"
)

// buildHello builds examples/hello FROM the busybox base layout with extra
// --output attributes (and extra buildctl arguments) and returns buildctl's
// output.
func buildHello(t *testing.T, s *Sandbox, ref string, output string, extra ...string) (string, error) {
	t.Helper()
	h := prepareHello(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return s.Buildctl(ctx, append(append(h.buildctlArgs(), extra...),
		"--output", "type=soci,name="+ref+",push=true,registry.insecure=true"+output)...)
}

// helloInput is examples/hello ready to build: a build context with a few
// MB of extra content, and the busybox base image as an OCI layout.
type helloInput struct {
	Dir    string        // build context (and Dockerfile) directory
	Layout string        // OCI layout of the base image
	Base   digest.Digest // manifest digest of the base image in Layout
}

// prepareHello copies examples/hello into a temporary build context, adds
// the payload files and makes the base layout.
func prepareHello(t testing.TB) helloInput {
	t.Helper()
	layout, base := makeBaseLayout(t)
	ctxDir := t.TempDir()
	src := filepath.Join(repoRoot(t), "examples/hello")
	ents, err := os.ReadDir(src)
	must(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(ctxDir, e.Name()), b, 0o644))
	}
	// A few MB of COPY content: compressible text and a random blob.
	var txt bytes.Buffer
	for i := 0; txt.Len() < 2<<20; i++ {
		txt.WriteString(strings.Repeat("socikit e2e line ", 3) + time.Unix(int64(i), 0).UTC().String() + "\n")
	}
	must(t, os.WriteFile(filepath.Join(ctxDir, "payload.txt"), txt.Bytes(), 0o644))
	rnd := make([]byte, 1<<20)
	for i := range rnd {
		rnd[i] = byte((i*2654435761)>>13 ^ i>>3)
	}
	must(t, os.WriteFile(filepath.Join(ctxDir, "payload.bin"), rnd, 0o644))
	return helloInput{Dir: ctxDir, Layout: layout, Base: base}
}

// buildctlArgs are the buildctl build arguments for h, without --output.
func (h helloInput) buildctlArgs() []string {
	return []string{"build",
		"--frontend", "dockerfile.v0",
		"--local", "context=" + h.Dir, "--local", "dockerfile=" + h.Dir,
		"--oci-layout", "base=" + h.Layout,
		"--opt", "context:base=oci-layout://base@" + h.Base.String(),
	}
}

func TestSociPushV2(t *testing.T) {
	s := NewSandbox(t)
	ref := s.Registry + "/hello:latest"
	start := time.Now()
	// --no-cache: the new layers are written from the differ's stream
	// (cached blobs of them would be converted to the same result; see
	// cached_test.go).
	out, err := buildHello(t, s, ref, ",soci-min-layer-size=0,soci-span-size=1M,soci-prefetch=/data/random.bin", "--no-cache")
	if err != nil {
		t.Fatalf("buildctl build: %v\n%s\n-- buildkitd log --\n%s", err, out, s.Log())
	}
	t.Logf("build + push took %s", time.Since(start))

	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	rootDesc, err := remote.Get(r)
	must(t, err)
	if rootDesc.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("root media type %s, want an OCI image index", rootDesc.MediaType)
	}
	var idx ocispec.Index
	must(t, json.Unmarshal(rootDesc.Manifest, &idx))
	var img *ocispec.Descriptor
	for i := range idx.Manifests {
		if idx.Manifests[i].Annotations[soci.AnnotationIndexDigest] != "" {
			img = &idx.Manifests[i]
		}
	}
	if img == nil {
		t.Fatalf("no manifest annotated %s in %s", soci.AnnotationIndexDigest, rootDesc.Manifest)
	}
	sdesc, ok, err := soci.FindIndexInImageIndex(rootDesc.Manifest, img.Digest)
	if err != nil || !ok {
		t.Fatalf("SOCI index descriptor for %s: ok=%v err=%v\n%s", img.Digest, ok, err, rootDesc.Manifest)
	}
	if got := img.Annotations[soci.AnnotationIndexDigest]; got != sdesc.Digest.String() {
		t.Fatalf("manifest names index %s, image index lists %s", got, sdesc.Digest)
	}
	repo := r.Context()
	mb := fetchManifest(t, repo, img.Digest)
	var m ocispec.Manifest
	must(t, json.Unmarshal(mb, &m))
	if d, ok, err := soci.IndexDigestFromManifest(mb); err != nil || !ok || d != sdesc.Digest {
		t.Fatalf("manifest annotation: %v %v %v", d, ok, err)
	}
	ib := fetchManifest(t, repo, sdesc.Digest)
	ix, err := soci.ParseIndex(ib)
	if err != nil {
		t.Fatalf("parse SOCI index: %v\n%s", err, ib)
	}
	if ix.Version != soci.V2 {
		t.Fatalf("index version %v", ix.Version)
	}
	ztocs := map[digest.Digest]soci.LayerZtoc{}
	for _, l := range ix.Layers {
		ztocs[l.LayerDigest] = l
	}
	if len(m.Layers) < 3 {
		t.Fatalf("%d layers, want base + RUN + COPY", len(m.Layers))
	}
	files := 0
	for i, l := range m.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer %d media type %s", i, l.MediaType)
		}
		lz, ok := ztocs[l.Digest]
		if !ok {
			t.Errorf("layer %d (%s, %d bytes) has no zTOC", i, l.Digest, l.Size)
			continue
		}
		blob := fetchBlob(t, repo, l.Digest)
		zb := fetchBlob(t, repo, lz.Ztoc.Digest)
		z, err := ztoc.Unmarshal(zb)
		if err != nil {
			t.Fatalf("layer %d: ztoc.Unmarshal: %v", i, err)
		}
		// New layers come from the one-pass writer (every checkpoint
		// byte-aligned); the base layer, compressed by someone else, was
		// indexed with ztoc.Build (checkpoints at block ends, mid-byte).
		aligned, ncp := checkpointsAligned(t, z)
		switch {
		case i > 0 && !aligned:
			t.Errorf("layer %d: a checkpoint has Bits != 0: not written by the one-pass writer", i)
		case i == 0 && aligned && ncp > 1:
			t.Errorf("base layer: all %d checkpoints byte-aligned: re-compressed instead of indexed with ztoc.Build?", ncp)
		}
		if z.CompressedArchiveSize != int64(len(blob)) {
			t.Errorf("layer %d: zTOC compressed size %d, blob %d", i, z.CompressedArchiveSize, len(blob))
		}
		want := tarFiles(t, blob) // also proves the layer is plain gzip
		n := checkZtocFiles(t, i, z, blob, want)
		files += n
		t.Logf("layer %d: %d bytes, %d files, %d spans, zTOC %d bytes, span size %d", i, len(blob), n, z.MaxSpanID+1, len(zb), lz.SpanSize)
	}
	if len(ix.Prefetches) != 1 {
		t.Errorf("%d prefetch blobs, want 1 for /data/random.bin", len(ix.Prefetches))
	}
	t.Logf("image %s, SOCI index %s, %d files verified", img.Digest, sdesc.Digest, files)
}

func TestSociBadAttributes(t *testing.T) {
	s := NewSandbox(t)
	for _, tc := range []struct {
		attrs, want string
	}{
		{",soci-foo=1", "soci-foo"},
		{",SOCI-Span-Size=12abc", "SOCI-Span-Size"},
		{",soci-span-size=100", "soci-span-size"},
		{",soci-index=v3", "soci-index"},
		{",soci-min-layer-size=0,soci-prefetch=/no/such/file", "/no/such/file"},
	} {
		t.Run(tc.attrs[1:], func(t *testing.T) {
			out, err := buildHello(t, s, s.Registry+"/bad:latest", tc.attrs)
			if err == nil {
				t.Fatalf("build succeeded, want an error naming %q\n%s", tc.want, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("error does not name %q:\n%s", tc.want, out)
			}
		})
	}
	// Nothing was pushed under the name.
	r, err := name.ParseReference(s.Registry+"/bad:latest", name.Insecure)
	must(t, err)
	if _, err := remote.Get(r); err == nil {
		t.Fatalf("bad builds pushed %s", r)
	}
}

func fetchManifest(t testing.TB, repo name.Repository, d digest.Digest) []byte {
	t.Helper()
	desc, err := remote.Get(repo.Digest(d.String()))
	if err != nil {
		t.Fatalf("get manifest %s: %v", d, err)
	}
	return desc.Manifest
}

func fetchBlob(t *testing.T, repo name.Repository, d digest.Digest) []byte {
	t.Helper()
	l, err := remote.Layer(repo.Digest(d.String()))
	must(t, err)
	rc, err := l.Compressed()
	must(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("fetch blob %s: %v", d, err)
	}
	return b
}

// tarFiles reads a gzip layer with compress/gzip and returns its regular
// files (last entry of a name wins).
func tarFiles(t *testing.T, blob []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			must(t, err)
			files[h.Name] = b
		}
	}
	return files
}

func TestSociPushV1(t *testing.T) {
	s := NewSandbox(t)
	ref := s.Registry + "/hello-v1:latest"
	out, err := buildHello(t, s, ref, ",soci-index=v1,soci-min-layer-size=0")
	if err != nil {
		t.Fatalf("buildctl build: %v\n%s\n-- buildkitd log --\n%s", err, out, s.Log())
	}
	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	desc, err := remote.Get(r)
	must(t, err)
	if _, ok, _ := soci.IndexDigestFromManifest(desc.Manifest); ok {
		t.Fatalf("v1: image manifest is annotated with a v2 index")
	}
	refs, err := remote.Referrers(r.Context().Digest(desc.Digest.String()))
	if err != nil {
		t.Fatalf("referrers: %v", err)
	}
	im, err := refs.IndexManifest()
	must(t, err)
	found := false
	for _, m := range im.Manifests {
		if m.ArtifactType == soci.MediaTypeIndexV1 {
			ix, err := soci.ParseIndex(fetchManifest(t, r.Context(), digest.Digest(m.Digest.String())))
			if err != nil {
				t.Fatalf("parse v1 index: %v", err)
			}
			if ix.Subject == nil || ix.Subject.Digest.String() != desc.Digest.String() {
				t.Fatalf("v1 index subject %v, want %s", ix.Subject, desc.Digest)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no v1 SOCI index among the referrers of %s: %+v", desc.Digest, im.Manifests)
	}
}

// checkZtocFiles reads every regular file of layer i through its zTOC and
// the blob, compares it with want (the layer's tar content by name) and
// returns how many files it read.
func checkZtocFiles(t *testing.T, i int, z *ztoc.Ztoc, blob []byte, want map[string][]byte) int {
	t.Helper()
	zr, err := ztoc.NewReader(z, bytes.NewReader(blob))
	must(t, err)
	n := 0
	for k := range z.Files {
		e := &z.Files[k]
		if e.Type != ztoc.TypeReg {
			continue
		}
		got, err := zr.ReadFile(e)
		if err != nil {
			t.Fatalf("layer %d: read %s through the zTOC: %v", i, e.Name, err)
		}
		if w, ok := want[e.Name]; !ok || !bytes.Equal(got, w) {
			t.Errorf("layer %d: %s through the zTOC differs from the tar (%d vs %d bytes)", i, e.Name, len(got), len(w))
		}
		n++
	}
	if n != len(want) {
		t.Errorf("layer %d: zTOC lists %d regular files, tar has %d", i, n, len(want))
	}
	return n
}
