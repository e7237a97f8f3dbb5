//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
)

// Annotations BuildKit puts on attestation manifests in an image index.
const (
	annotationRefType   = "vnd.docker.reference.type"
	annotationRefDigest = "vnd.docker.reference.digest"
	refTypeAttestation  = "attestation-manifest"
)

// Buildx is the docker CLI with the buildx plugin (scripts/buildx-build.sh)
// in a DOCKER_CONFIG of the test's own, and a remote-driver builder on the
// sandbox's buildkitd.
type Buildx struct {
	Docker  string // docker CLI
	Config  string // DOCKER_CONFIG
	Builder string // builder name
}

// NewBuildx sets up buildx for t, or skips t when the docker CLI or the
// buildx plugin is missing.
func NewBuildx(t *testing.T, s *Sandbox) *Buildx {
	t.Helper()
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker CLI missing: run scripts/buildx-build.sh")
	}
	bin := os.Getenv("BIN")
	if bin == "" {
		bin = filepath.Join(repoRoot(t), "bin")
	}
	plugin := filepath.Join(bin, "docker-buildx")
	if _, err := os.Stat(plugin); err != nil {
		t.Skipf("%s missing: run scripts/buildx-build.sh", plugin)
	}
	cfg := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(cfg, "cli-plugins"), 0o755))
	must(t, os.Symlink(plugin, filepath.Join(cfg, "cli-plugins", "docker-buildx")))
	bx := &Buildx{Docker: docker, Config: cfg, Builder: "socikit-test"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := bx.Run(ctx, "buildx", "create", "--name", bx.Builder, "--driver", "remote", s.Addr, "--use"); err != nil {
		t.Fatalf("docker buildx create: %v\n%s", err, out)
	}
	if out, err := bx.Run(ctx, "buildx", "inspect", "--bootstrap", bx.Builder); err != nil {
		t.Fatalf("docker buildx inspect: %v\n%s", err, out)
	} else if _, v, ok := strings.Cut(out, "BuildKit version:"); ok {
		v, _, _ = strings.Cut(v, "\n")
		t.Logf("buildx remote builder on %s, BuildKit %s", s.Addr, strings.TrimSpace(v))
	}
	return bx
}

// Run runs the docker CLI with the test's DOCKER_CONFIG and no daemon.
func (bx *Buildx) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bx.Docker, args...)
	env := []string{"DOCKER_CONFIG=" + bx.Config, "BUILDX_NO_DEFAULT_LOAD=1"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DOCKER_") && !strings.HasPrefix(e, "BUILDX_") && !strings.HasPrefix(e, "BUILDKIT_") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// TestBuildxSociPush builds examples/hello with a real docker buildx (remote
// driver) and --output type=soci: the pushed image index holds the rewritten
// image manifest, its SOCI index and the provenance attestation buildx adds
// by default, still attached to the rewritten manifest.
func TestBuildxSociPush(t *testing.T) {
	s := NewSandbox(t)
	bx := NewBuildx(t, s)
	h := prepareHello(t)
	ref := s.Registry + "/hello:buildx"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	// Keys in mixed case on purpose: buildx lower-cases them.
	out, err := bx.Run(ctx, "buildx", "build", "--builder", bx.Builder, "--progress", "plain",
		"--build-context", "base=oci-layout://"+h.Layout+"@"+h.Base.String(),
		"--output", "type=soci,name="+ref+",push=true,registry.insecure=true,SOCI-Min-Layer-Size=0,soci-span-size=1M",
		h.Dir)
	if err != nil {
		t.Fatalf("docker buildx build: %v\n%s\n-- buildkitd log --\n%s", err, out, s.Log())
	}
	t.Logf("docker buildx build + push: %s", time.Since(start).Round(time.Millisecond))
	checkBuildxSociPush(t, ref)
}

// checkBuildxSociPush checks the image buildx pushed to ref with
// --output type=soci: an OCI image index holding the rewritten image
// manifest, its SOCI index and buildx's provenance attestation, still
// attached to the rewritten manifest, the SOCI index and the attestation
// listed after the image.
func checkBuildxSociPush(t *testing.T, ref string) {
	t.Helper()

	r, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	root, err := remote.Get(r)
	must(t, err)
	if root.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("root media type %s, want an OCI image index", root.MediaType)
	}
	repo := r.Context()
	img, ix := checkSociImage(t, root.Manifest, func(t *testing.T, d digest.Digest) []byte {
		t.Helper()
		if b, err := remote.Get(repo.Digest(d.String())); err == nil {
			return b.Manifest
		}
		return fetchBlob(t, repo, d)
	})

	var idx ocispec.Index
	must(t, json.Unmarshal(root.Manifest, &idx))
	var att *ocispec.Descriptor
	for k := range idx.Manifests {
		if idx.Manifests[k].Annotations[annotationRefType] == refTypeAttestation {
			att = &idx.Manifests[k]
		}
	}
	if att == nil {
		t.Fatalf("no provenance attestation manifest in the pushed image index:\n%s", root.Manifest)
	}
	if got := att.Annotations[annotationRefDigest]; got != img.Digest.String() {
		t.Fatalf("attestation is attached to %s, want the rewritten image manifest %s", got, img.Digest)
	}
	var am ocispec.Manifest
	must(t, json.Unmarshal(fetchManifest(t, repo, att.Digest), &am))
	provenance := false
	for _, l := range am.Layers {
		if strings.HasPrefix(l.Annotations["in-toto.io/predicate-type"], "https://slsa.dev/provenance/") {
			provenance = true
		}
	}
	if !provenance {
		t.Errorf("attestation manifest %s has no SLSA provenance layer: %+v", att.Digest, am.Layers)
	}
	// The SOCI index and the attestation follow the image in the index.
	order := map[digest.Digest]int{}
	for k, d := range idx.Manifests {
		order[d.Digest] = k
	}
	sdesc, _, _ := soci.FindIndexInImageIndex(root.Manifest, img.Digest)
	if order[img.Digest] > order[sdesc.Digest] {
		t.Errorf("SOCI index listed before its image in %s", root.Manifest)
	}
	t.Logf("image %s, SOCI index %s (%d zTOCs), attestation %s", img.Digest, sdesc.Digest, len(ix.Layers), att.Digest)
}

// TestBuildxOCI exports examples/hello with buildx --output
// type=oci,dest=FILE and soci-* attributes: an OCI layout tar with the SOCI
// image index, its provenance attestation included, and no registry.
func TestBuildxOCI(t *testing.T) {
	s := NewSandbox(t)
	bx := NewBuildx(t, s)
	h := prepareHello(t)
	tmp := t.TempDir()
	tarFile := filepath.Join(tmp, "hello.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := bx.Run(ctx, "buildx", "build", "--builder", bx.Builder, "--progress", "plain",
		"--build-context", "base=oci-layout://"+h.Layout+"@"+h.Base.String(),
		"--output", "type=oci,dest="+tarFile+",name=example.com/hello:ci,soci-min-layer-size=0",
		h.Dir)
	if err != nil {
		t.Fatalf("docker buildx build: %v\n%s\n-- buildkitd log --\n%s", err, out, s.Log())
	}
	t.Logf("docker buildx build --output type=oci: %s", time.Since(start).Round(time.Millisecond))
	checkBuildxOCITar(t, tarFile)
}

// checkBuildxOCITar checks the OCI layout tar buildx wrote with --output
// type=oci,dest=FILE and soci-* attributes: one image index with the SOCI
// image and its provenance attestation, attached to the rewritten manifest.
func checkBuildxOCITar(t *testing.T, tarFile string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	untar(t, tarFile, dir)
	idx := readIndexJSON(t, dir)
	if len(idx.Manifests) != 1 || idx.Manifests[0].MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("index.json %+v, want one image index", idx.Manifests)
	}
	blob := layoutBlobs(dir)
	rb := blob(t, idx.Manifests[0].Digest)
	img, _ := checkSociImage(t, rb, blob)
	var root ocispec.Index
	must(t, json.Unmarshal(rb, &root))
	found := false
	for _, d := range root.Manifests {
		if d.Annotations[annotationRefType] == refTypeAttestation {
			found = true
			if got := d.Annotations[annotationRefDigest]; got != img.Digest.String() {
				t.Errorf("attestation is attached to %s, want %s", got, img.Digest)
			}
			blob(t, d.Digest) // in the layout
		}
	}
	if !found {
		t.Errorf("no attestation manifest in %s", rb)
	}
}
