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

// checkpointsAligned reports whether every gzip checkpoint of z is
// byte-aligned (Bits == 0), as the one-pass writer makes them (it ends a
// deflate block with a flush at each span end), and how many there are.
// ztoc.Build checkpoints a blob compressed by someone else at block ends,
// which are rarely all byte-aligned.
func checkpointsAligned(t *testing.T, z *ztoc.Ztoc) (bool, int) {
	t.Helper()
	g, err := ztoc.ParseGzipCheckpoints(z.Checkpoints)
	if err != nil {
		t.Fatalf("parse checkpoints: %v", err)
	}
	for _, p := range g.Points {
		if p.Bits != 0 {
			return false, len(g.Points)
		}
	}
	return true, len(g.Points)
}

// sociImage is what a pushed v2 SOCI image is made of.
type sociImage struct {
	Root, Manifest, Index digest.Digest
	Layers, Ztocs         []digest.Digest
	SpanSizes             []int64
	Aligned               []bool
	Checkpoints           []int
}

// readSociImage reads the v2 SOCI image ref from the registry.
func readSociImage(t *testing.T, ref string) sociImage {
	t.Helper()
	return readSociImageArch(t, ref, "")
}

// readSociImageArch reads the image of one architecture ("" for any) of
// the v2 SOCI image ref from the registry.
func readSociImageArch(t *testing.T, ref, arch string) sociImage {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	root, err := remote.Get(r)
	if err != nil {
		t.Fatalf("get %s: %v", ref, err)
	}
	var idx ocispec.Index
	must(t, json.Unmarshal(root.Manifest, &idx))
	var si sociImage
	si.Root = digest.Digest(root.Digest.String())
	for _, m := range idx.Manifests {
		if arch != "" && (m.Platform == nil || m.Platform.Architecture != arch) {
			continue
		}
		if d := m.Annotations[soci.AnnotationIndexDigest]; d != "" {
			si.Manifest, si.Index = m.Digest, digest.Digest(d)
		}
	}
	if si.Index == "" {
		t.Fatalf("%s: no manifest (architecture %q) annotated with a SOCI index:\n%s", ref, arch, root.Manifest)
	}
	var m ocispec.Manifest
	must(t, json.Unmarshal(fetchManifest(t, r.Context(), si.Manifest), &m))
	ix, err := soci.ParseIndex(fetchManifest(t, r.Context(), si.Index))
	must(t, err)
	byLayer := map[digest.Digest]soci.LayerZtoc{}
	for _, l := range ix.Layers {
		byLayer[l.LayerDigest] = l
	}
	for _, l := range m.Layers {
		lz, ok := byLayer[l.Digest]
		if !ok {
			t.Fatalf("%s: layer %s has no zTOC", ref, l.Digest)
		}
		z, err := ztoc.Unmarshal(fetchBlob(t, r.Context(), lz.Ztoc.Digest))
		must(t, err)
		aligned, n := checkpointsAligned(t, z)
		si.Layers = append(si.Layers, l.Digest)
		si.Ztocs = append(si.Ztocs, lz.Ztoc.Digest)
		si.SpanSizes = append(si.SpanSizes, lz.SpanSize)
		si.Aligned = append(si.Aligned, aligned)
		si.Checkpoints = append(si.Checkpoints, n)
	}
	return si
}

// deterministicDockerfile is examples/hello without its /dev/urandom file.
const deterministicDockerfile = `FROM base
ARG SOURCE_DATE_EPOCH
RUN mkdir -p /data/text && \
    i=0; while [ $i -lt 400 ]; do \
      seq $i $((i + 1500)) > /data/text/file-$i.txt; i=$((i + 1)); \
    done
COPY . /app/
`

// TestSociDeterministic builds the same image twice, the second time with
// --no-cache, with SOURCE_DATE_EPOCH=0 and rewrite-timestamp=true, and
// expects the same layer, zTOC and SOCI index digests. It also checks
// that auto span sizing recorded the sizes it chose, and that the new
// layers came from the one-pass writer.
func TestSociDeterministic(t *testing.T) {
	s := NewSandbox(t)
	h := prepareHello(t)
	must(t, os.WriteFile(filepath.Join(h.Dir, "Dockerfile"), []byte(deterministicDockerfile), 0o644))
	var imgs []sociImage
	for k, extra := range [][]string{nil, {"--no-cache"}} {
		ref := s.Registry + "/det:" + []string{"one", "two"}[k]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		args := append(h.buildctlArgs(), "--opt", "build-arg:SOURCE_DATE_EPOCH=0")
		args = append(args, extra...)
		out, err := s.Buildctl(ctx, append(args, "--output",
			"type=soci,name="+ref+",push=true,registry.insecure=true,rewrite-timestamp=true,soci-min-layer-size=0")...)
		cancel()
		if err != nil {
			t.Fatalf("build %d: %v\n%s\n-- buildkitd log --\n%s", k, err, out, s.Log())
		}
		imgs = append(imgs, readSociImage(t, ref))
	}
	a, b := imgs[0], imgs[1]
	t.Logf("first:  %+v", a)
	t.Logf("second: %+v", b)
	if strings.Join(digestStrings(a.Layers), ",") != strings.Join(digestStrings(b.Layers), ",") {
		t.Errorf("layer digests differ:\n%v\n%v", a.Layers, b.Layers)
	}
	if strings.Join(digestStrings(a.Ztocs), ",") != strings.Join(digestStrings(b.Ztocs), ",") {
		t.Errorf("zTOC digests differ:\n%v\n%v", a.Ztocs, b.Ztocs)
	}
	if a.Index != b.Index || a.Manifest != b.Manifest || a.Root != b.Root {
		t.Errorf("SOCI index / manifest / root differ: %s %s %s vs %s %s %s", a.Index, a.Manifest, a.Root, b.Index, b.Manifest, b.Root)
	}
	for i := 1; i < len(a.Layers); i++ {
		if a.SpanSizes[i] <= 0 {
			t.Errorf("new layer %d: span size annotation %d, want the size auto sizing chose", i, a.SpanSizes[i])
		}
		if !a.Aligned[i] {
			t.Errorf("new layer %d: a checkpoint has Bits != 0: not written by the one-pass writer", i)
		}
	}
	if a.SpanSizes[0] != 4<<20 {
		t.Errorf("base layer: span size %d, want 4 MiB (auto for layers indexed with ztoc.Build)", a.SpanSizes[0])
	}
}

func digestStrings(ds []digest.Digest) []string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.String()
	}
	return s
}

// TestSociPushRefused pushes to a registry that refuses part of the push
// and expects a clear error and no SOCI index left referencing the image.
func TestSociPushRefused(t *testing.T) {
	s := NewSandbox(t)
	for _, tc := range []struct {
		repo, attrs string
	}{
		// v2: the SOCI index manifest is refused.
		{"refuse-soci-v2", ""},
		// v1: the image is refused (its tag), so its v1 index, a referrer
		// pushed after it, must not be pushed.
		{"refuse-tag-v1", ",soci-index=v1"},
		// a layer blob upload is refused.
		{"refuse-blob-v2", ""},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			ref := s.Registry + "/" + tc.repo + ":latest"
			out, err := buildHello(t, s, ref, ",soci-min-layer-size=0"+tc.attrs)
			if err == nil {
				t.Fatalf("build succeeded against a refusing registry:\n%s", out)
			}
			if !strings.Contains(out, "500") && !strings.Contains(out, "refused") && !strings.Contains(out, "Internal Server Error") {
				t.Errorf("error does not say the registry refused the push:\n%s", out)
			}
			t.Logf("error: %s", lastLines(out, 3))
			r, err := name.ParseReference(ref, name.Insecure)
			must(t, err)
			if _, err := remote.Get(r); err == nil {
				t.Errorf("%s resolves after a refused push", ref)
			}
			for _, body := range refusals.Accepted(tc.repo) {
				if bytes.Contains(body, []byte(soci.MediaTypeIndexV1)) || bytes.Contains(body, []byte(soci.MediaTypeIndexV2)) {
					t.Errorf("a SOCI index was stored:\n%s", body)
				}
				// Every manifest stored: none may have a SOCI index among its referrers.
				refs, err := remote.Referrers(r.Context().Digest(digest.FromBytes(body).String()))
				if err != nil {
					continue
				}
				im, err := refs.IndexManifest()
				must(t, err)
				for _, m := range im.Manifests {
					if m.ArtifactType == soci.MediaTypeIndexV1 || m.ArtifactType == soci.MediaTypeIndexV2 {
						t.Errorf("manifest %s has a SOCI index referrer %s", digest.FromBytes(body), m.Digest)
					}
				}
			}
			t.Logf("%d manifests stored before the refusal", len(refusals.Accepted(tc.repo)))
		})
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestSociCachedSpanChange builds the same image twice with different span
// sizes. BuildKit has the first build's soci-gzip blobs cached for the new
// layers, written for the first span size: the second build must write
// them again for its own (other blobs, one-pass zTOCs at the new size),
// while the base layer keeps its blob and is indexed again at the new size.
func TestSociCachedSpanChange(t *testing.T) {
	s := NewSandbox(t)
	var imgs []sociImage
	for _, size := range []string{"1048576", "524288"} {
		ref := s.Registry + "/span-change:" + size
		out, err := buildHello(t, s, ref, ",soci-min-layer-size=0,soci-span-size="+size)
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		imgs = append(imgs, readSociImage(t, ref))
	}
	a, b := imgs[0], imgs[1]
	if len(a.Layers) != len(b.Layers) {
		t.Fatalf("%d then %d layers", len(a.Layers), len(b.Layers))
	}
	if a.Layers[0] != b.Layers[0] {
		t.Errorf("base layer: %s then %s: a base layer must keep its blob", a.Layers[0], b.Layers[0])
	}
	for i := range b.Layers {
		if a.SpanSizes[i] != 1<<20 || b.SpanSizes[i] != 512<<10 {
			t.Errorf("layer %d: span sizes %d then %d, want 1 MiB then 512 KiB", i, a.SpanSizes[i], b.SpanSizes[i])
		}
		if a.Ztocs[i] == b.Ztocs[i] {
			t.Errorf("layer %d: the same zTOC %s for both span sizes", i, a.Ztocs[i])
		}
		if i == 0 {
			continue
		}
		if a.Layers[i] == b.Layers[i] {
			t.Errorf("layer %d: the blob written for 1 MiB spans was reused for 512 KiB", i)
		}
		if !a.Aligned[i] || !b.Aligned[i] {
			t.Errorf("layer %d: zTOCs from the one-pass writer: %v then %v, want both", i, a.Aligned[i], b.Aligned[i])
		}
	}
	t.Logf("checkpoints at 1 MiB %v, at 512 KiB %v", a.Checkpoints, b.Checkpoints)
}

// TestSociReorder builds with soci-reorder=true: in each new layer the
// prefetch files come first, the image config's diff_ids are the digests
// of the reordered tars, and the index has prefetch spans for them. The
// second case also rewrites timestamps (BuildKit's converter compresses
// the layers again).
func TestSociReorder(t *testing.T) {
	s := NewSandbox(t)
	for _, tc := range []struct {
		name  string
		attrs string
		extra []string
	}{
		{"plain", "", nil},
		{"rewrite-timestamp", ",rewrite-timestamp=true", []string{"--opt", "build-arg:SOURCE_DATE_EPOCH=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := s.Registry + "/reorder:" + tc.name
			out, err := buildHello(t, s, ref, ",soci-min-layer-size=0,soci-reorder=true,\"soci-prefetch=/data/random.bin,/app/payload.txt\""+tc.attrs,
				append([]string{"--no-cache"}, tc.extra...)...)
			if err != nil {
				t.Fatalf("build: %v\n%s\n-- buildkitd log --\n%s", err, out, s.Log())
			}
			si := readSociImage(t, ref)
			r, err := name.ParseReference(ref, name.Insecure)
			must(t, err)
			var m ocispec.Manifest
			must(t, json.Unmarshal(fetchManifest(t, r.Context(), si.Manifest), &m))
			var cfg ocispec.Image
			must(t, json.Unmarshal(fetchBlob(t, r.Context(), m.Config.Digest), &cfg))
			if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
				t.Fatalf("%d diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
			}
			firsts := map[string]bool{}
			for i, l := range m.Layers {
				plain := gunzip(t, fetchBlob(t, r.Context(), l.Digest))
				if d := digest.FromBytes(plain); d != cfg.RootFS.DiffIDs[i] {
					t.Errorf("layer %d: diff_id %s in the config, tar is %s", i, cfg.RootFS.DiffIDs[i], d)
				}
				if i == 0 {
					continue
				}
				first := firstRegular(t, plain)
				firsts[first] = true
				if !si.Aligned[i] {
					t.Errorf("layer %d: not from the one-pass writer", i)
				}
			}
			if !firsts["data/random.bin"] || !firsts["app/payload.txt"] {
				t.Errorf("first regular files of the new layers: %v, want data/random.bin and app/payload.txt", firsts)
			}
			ix, err := soci.ParseIndex(fetchManifest(t, r.Context(), si.Index))
			must(t, err)
			if len(ix.Prefetches) != 2 {
				t.Errorf("%d prefetch blobs, want 2", len(ix.Prefetches))
			}
		})
	}
}

func gunzip(t *testing.T, blob []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	must(t, err)
	b, err := io.ReadAll(zr)
	must(t, err)
	return b
}

// firstRegular returns the name of the first regular file in a tar.
func firstRegular(t *testing.T, plain []byte) string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(plain))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ""
		}
		must(t, err)
		if h.Typeflag == tar.TypeReg {
			return h.Name
		}
	}
}
