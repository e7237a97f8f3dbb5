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

	"github.com/socikit/socikit/internal/cli"
)

// TestCIExample runs examples/ci/soci-layout.sh as examples/ci/README.md
// shows it (base image from a local OCI layout instead of Docker Hub), then
// checks the OCI layout tar and reads it back with `socikit inspect`.
func TestCIExample(t *testing.T) {
	s := NewSandbox(t)
	h := prepareHello(t)
	out := filepath.Join(t.TempDir(), "hello-soci.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "examples/ci/soci-layout.sh"), h.Dir, out,
		"--oci-layout", "base="+h.Layout, "--opt", "context:base=oci-layout://base@"+h.Base.String())
	cmd.Env = append(os.Environ(), "BUILDKIT_HOST="+s.Addr, "BUILDCTL="+s.BuildctlPath,
		"SOCI_ATTRS=name=example.com/hello:ci,soci-index=v2,soci-min-layer-size=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("examples/ci/soci-layout.sh: %v\n%s\n-- buildkitd log --\n%s", err, b, s.Log())
	}
	dir := filepath.Join(t.TempDir(), "layout")
	untar(t, out, dir)
	idx := readIndexJSON(t, dir)
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %+v", idx.Manifests)
	}
	blob := layoutBlobs(dir)
	img, ix := checkSociImage(t, blob(t, idx.Manifests[0].Digest), blob)

	var stdout, stderr bytes.Buffer
	if err := cli.Run(ctx, []string{"inspect", "--json", out}, cli.WithOutput(&stdout, &stderr)); err != nil {
		t.Fatalf("socikit inspect %s: %v\n%s", out, err, stderr.String())
	}
	var info struct {
		Indexes []struct {
			Digest         string `json:"digest"`
			Version        string `json:"version"`
			ManifestDigest string `json:"manifest_digest"`
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		t.Fatalf("socikit inspect --json: %v\n%s", err, stdout.String())
	}
	if len(info.Indexes) != 1 || info.Indexes[0].ManifestDigest != img.Digest.String() || !strings.EqualFold(info.Indexes[0].Version, "v2") {
		t.Fatalf("socikit inspect: %s", stdout.String())
	}
	t.Logf("socikit inspect: image %s, SOCI index %s with %d zTOCs", img.Digest, info.Indexes[0].Digest, len(ix.Layers))
}
