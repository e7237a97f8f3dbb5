//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	uz "github.com/awslabs/soci-snapshotter/ztoc"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
)

// sociHello is examples/hello built once with type=soci and pushed to the
// sandbox registry, shared by the tests of this file.
type sociHello struct {
	Ref      string
	Repo     name.Repository
	Manifest ocispec.Manifest
	Index    *soci.Index
}

var (
	sociHelloOnce sync.Once
	sociHelloImg  *sociHello
	sociHelloErr  string
)

// pushSociHello builds and pushes examples/hello as a SOCI v2 image (every
// layer indexed: soci-min-layer-size=0) on first use and returns it.
func pushSociHello(t *testing.T) *sociHello {
	t.Helper()
	s := NewSandbox(t)
	sociHelloOnce.Do(func() {
		ref := s.Registry + "/hello-runtime:latest"
		start := time.Now()
		out, err := buildHello(t, s, ref, ",soci-min-layer-size=0")
		if err != nil {
			sociHelloErr = fmt.Sprintf("buildctl build: %v\n%s\n-- buildkitd log --\n%s", err, out, s.Log())
			return
		}
		t.Logf("build + push took %s", time.Since(start).Round(time.Millisecond))
		r, err := name.ParseReference(ref, name.Insecure)
		must(t, err)
		root, err := remote.Get(r)
		must(t, err)
		var idx ocispec.Index
		must(t, json.Unmarshal(root.Manifest, &idx))
		var img *ocispec.Descriptor
		for i := range idx.Manifests {
			if idx.Manifests[i].Annotations[soci.AnnotationIndexDigest] != "" {
				img = &idx.Manifests[i]
			}
		}
		if img == nil {
			sociHelloErr = fmt.Sprintf("no manifest annotated %s in %s", soci.AnnotationIndexDigest, root.Manifest)
			return
		}
		sdesc, ok, err := soci.FindIndexInImageIndex(root.Manifest, img.Digest)
		if err != nil || !ok {
			sociHelloErr = fmt.Sprintf("SOCI index for %s: ok=%v err=%v", img.Digest, ok, err)
			return
		}
		h := &sociHello{Ref: ref, Repo: r.Context()}
		must(t, json.Unmarshal(fetchManifest(t, h.Repo, img.Digest), &h.Manifest))
		h.Index, err = soci.ParseIndex(fetchManifest(t, h.Repo, sdesc.Digest))
		if err != nil {
			sociHelloErr = "parse SOCI index: " + err.Error()
			return
		}
		sociHelloImg = h
	})
	if sociHelloImg == nil {
		if sociHelloErr == "" {
			sociHelloErr = "failed in an earlier test"
		}
		t.Fatalf("soci hello image: %s", sociHelloErr)
	}
	return sociHelloImg
}

// TestSociImageUpstreamAccepts: upstream SOCI v0.16.1, as a library, parses
// every zTOC of the pushed image and extracts every regular file of every
// layer byte-identical to the layer's tar.
func TestSociImageUpstreamAccepts(t *testing.T) {
	h := pushSociHello(t)
	ztocs := map[digest.Digest]digest.Digest{}
	for _, l := range h.Index.Layers {
		ztocs[l.LayerDigest] = l.Ztoc.Digest
	}
	if len(h.Manifest.Layers) < 3 {
		t.Fatalf("%d layers, want base + RUN + COPY", len(h.Manifest.Layers))
	}
	start := time.Now()
	total := 0
	for i, l := range h.Manifest.Layers {
		zd, ok := ztocs[l.Digest]
		if !ok {
			t.Errorf("layer %d (%s) has no zTOC", i, l.Digest)
			continue
		}
		blob := fetchBlob(t, h.Repo, l.Digest)
		zb := fetchBlob(t, h.Repo, zd)
		zt, err := upstreamUnmarshal(zb)
		if err != nil {
			t.Fatalf("layer %d: upstream ztoc.Unmarshal: %v", i, err)
		}
		if int64(zt.CompressedArchiveSize) != int64(len(blob)) {
			t.Errorf("layer %d: upstream reads compressed size %d, blob has %d bytes", i, zt.CompressedArchiveSize, len(blob))
		}
		want := tarFiles(t, blob)
		sr := io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob)))
		n := 0
		seen := map[string]bool{}
		for _, m := range zt.FileMetadata {
			if m.Type != "reg" {
				continue
			}
			if seen[m.Name] {
				// ExtractFile takes the first entry of a name; the
				// examples have no duplicates.
				t.Errorf("layer %d: %s listed twice", i, m.Name)
				continue
			}
			seen[m.Name] = true
			got, err := upstreamExtract(zt, sr, m.Name)
			if err != nil {
				t.Fatalf("layer %d: upstream ExtractFile %s: %v", i, m.Name, err)
			}
			if w, ok := want[m.Name]; !ok || !bytes.Equal(got, w) {
				t.Errorf("layer %d: %s extracted by upstream differs from the tar (%d vs %d bytes, in tar: %v)", i, m.Name, len(got), len(w), ok)
			}
			n++
		}
		if n != len(want) {
			t.Errorf("layer %d: upstream lists %d regular files, tar has %d", i, n, len(want))
		}
		total += n
		t.Logf("layer %d: %d bytes, zTOC %d bytes, %d spans, %d regular files extracted by upstream", i, len(blob), len(zb), zt.MaxSpanID+1, n)
	}
	t.Logf("upstream extracted %d files in %s", total, time.Since(start).Round(time.Millisecond))
}

func upstreamUnmarshal(b []byte) (z *uz.Ztoc, err error) {
	defer func() {
		if r := recover(); r != nil {
			z, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return uz.Unmarshal(bytes.NewReader(b))
}

func upstreamExtract(zt *uz.Ztoc, sr *io.SectionReader, file string) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return zt.ExtractFile(sr, file)
}

// TestSociImageRunsPlain: the pushed SOCI image is an ordinary image to a
// plain runtime: containerd 2.4.2 pulls it with its default overlayfs
// snapshotter (no socikit involved) and runs it.
func TestSociImageRunsPlain(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: containerd, overlayfs, runc")
	}
	root := repoRoot(t)
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "socikit-snapshotter"} {
		if _, err := os.Stat(filepath.Join(root, "bin", b)); err != nil {
			t.Skipf("bin/%s missing: run scripts/containerd-build.sh", b)
		}
	}
	h := pushSociHello(t)

	dir, err := os.MkdirTemp("", "socikit-e2e-ctrd-")
	must(t, err)
	start := time.Now()
	out, err := exec.Command(filepath.Join(root, "scripts/containerd-start.sh"), dir).CombinedOutput()
	t.Cleanup(func() {
		args := []string{dir}
		if os.Getenv("E2E_KEEP") == "" && !t.Failed() {
			args = []string{"--rm", dir}
		}
		if out, err := exec.Command(filepath.Join(root, "scripts/containerd-stop.sh"), args...).CombinedOutput(); err != nil {
			t.Logf("containerd-stop.sh: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("containerd-start.sh: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "containerd.sock")
	t.Logf("containerd started in %s", time.Since(start).Round(time.Millisecond))

	// ctr returns ctr's stdout; on an error, stdout and stderr (stderr
	// also carries warnings, such as containerd's cgroup v1 deprecation).
	ctr := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(root, "bin/ctr"), append([]string{"-a", sock, "-n", "e2e"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return stdout.String() + stderr.String(), err
		}
		return stdout.String(), nil
	}
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
		return string(b)
	}

	start = time.Now()
	if out, err := ctr(2*time.Minute, "image", "pull", "--plain-http", h.Ref); err != nil {
		t.Fatalf("ctr image pull: %v\n%s\n-- containerd log --\n%s", err, out, logs())
	}
	t.Logf("pull (overlayfs) took %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	id := fmt.Sprintf("e2e-plain-%d", time.Now().UnixNano())
	out2, err := ctr(2*time.Minute, "run", "--rm", h.Ref, id, "/bin/sh", "-c", "echo ok; wc -c /data/random.bin; ls /app")
	if err != nil {
		t.Fatalf("ctr run: %v\n%s\n-- containerd log --\n%s", err, out2, logs())
	}
	t.Logf("run took %s; output:\n%s", time.Since(start).Round(time.Millisecond), out2)
	if !strings.HasPrefix(out2, "ok\n") {
		t.Errorf("container output does not start with \"ok\":\n%s", out2)
	}
	for _, w := range []string{"3000000 /data/random.bin", "payload.bin", "Dockerfile"} {
		if !strings.Contains(out2, w) {
			t.Errorf("container output lacks %q:\n%s", w, out2)
		}
	}
	// Nothing of the pull went through socikit.
	if out, err := ctr(30*time.Second, "snapshots", "--snapshotter", "socikit", "ls"); err != nil {
		t.Errorf("ctr snapshots ls (socikit): %v\n%s", err, out)
	} else if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) > 1 {
		t.Errorf("socikit snapshotter has snapshots after a plain pull:\n%s", out)
	}
	if out, err := ctr(30*time.Second, "snapshots", "ls"); err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) < 1+len(h.Manifest.Layers) {
		t.Errorf("overlayfs snapshots after the pull (want %d layers): %v\n%s", len(h.Manifest.Layers), err, out)
	}
}
