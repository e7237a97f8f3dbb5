package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/socikit/socikit/integration/harness/images"
	"github.com/socikit/socikit/integration/harness/results"
	"github.com/socikit/socikit/soci"
)

// benchImage is one app's image in every variant the contenders pull.
type benchImage struct {
	info       results.Image
	refs       map[string]string // variant tag → reference
	indexBytes map[string]int64  // variant tag → SOCI index manifest + zTOC bytes
}

// buildkitd is our buildkitd, started by scripts/buildkit-start.sh.
type buildkitd struct {
	addr, root string
}

func startBuildkitd(ctx context.Context, c config) (*buildkitd, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.repo, "scripts/buildkit-start.sh"))
	cmd.Env = append(os.Environ(), "BUILDKITD_ROOT="+c.buildkitdRoot, "BUILDKITD_REGISTRIES="+c.registry)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("buildkit-start.sh: %v\n%s", err, stderr.Bytes())
	}
	return &buildkitd{addr: strings.TrimSpace(string(out)), root: c.buildkitdRoot}, nil
}

func (b *buildkitd) stop() {
	pid, err := os.ReadFile(filepath.Join(b.root, "buildkitd.pid"))
	if err != nil {
		return
	}
	_ = exec.Command("kill", strings.TrimSpace(string(pid))).Run()
	for i := 0; i < 100 && exec.Command("kill", "-0", strings.TrimSpace(string(pid))).Run() == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// maxPrefetchAttr keeps the soci-prefetch attribute under Linux's limit
// for one argument (MAX_ARG_STRLEN, 128 KiB) with room for the rest.
const maxPrefetchAttr = 100 << 10

// buildImage builds the app's image with our buildkitd three ways (plain
// `type=image`; `type=soci` with tuned spans; `type=soci` reordered from
// the start-up profile) and indexes the plain one twice (`socikit convert`
// with fixed 4 MiB spans; upstream SOCI's builder), all pushed to the
// registry.
func buildImage(ctx context.Context, c config, bk *buildkitd, app string) (*benchImage, error) {
	a, err := images.Load(filepath.Join(c.contexts, app))
	if err != nil {
		return nil, fmt.Errorf("%w (run scripts/bench-images.sh %s)", err, app)
	}
	repo := c.registry + "/bench/" + app
	img := &benchImage{refs: map[string]string{}, indexBytes: map[string]int64{}}
	for _, v := range []string{"plain", "auto", "reorder", "convert4m", "upstream"} {
		img.refs[v] = repo + ":" + v
	}
	prefetch := a.PrefetchAttr()
	if len(prefetch) > maxPrefetchAttr {
		cut := strings.LastIndexByte(prefetch[:maxPrefetchAttr], ',')
		prefetch = prefetch[:cut]
		logf("%s: prefetch list cut to %d bytes (%d of %d paths)", app, len(prefetch), strings.Count(prefetch, ",")+1, len(a.Prefetch))
	}
	outputs := map[string]string{
		"plain": "type=image,name=" + img.refs["plain"] + ",push=true,registry.insecure=true",
		"auto":  "type=soci,name=" + img.refs["auto"] + ",push=true,registry.insecure=true",
		// buildctl reads --output as CSV: the comma-separated list is one
		// quoted field.
		"reorder": "type=soci,name=" + img.refs["reorder"] + ",push=true,registry.insecure=true,soci-reorder=true," + `"soci-prefetch=` + prefetch + `"`,
	}
	for _, v := range []string{"plain", "auto", "reorder"} {
		start := time.Now()
		if err := runCmd(ctx, filepath.Join(c.repo, "bin/buildctl"), "--addr", bk.addr, "build",
			"--frontend", "dockerfile.v0", "--local", "context="+a.Context, "--local", "dockerfile="+a.Dir,
			"--output", outputs[v]); err != nil {
			return nil, fmt.Errorf("build %s: %w", v, err)
		}
		logf("%s: built and pushed %s in %v", app, v, time.Since(start).Round(time.Millisecond))
	}
	start := time.Now()
	if err := runCmd(ctx, filepath.Join(c.repo, "bin/socikit"), "convert", "--plain-http", "--span-size", "4194304",
		img.refs["plain"], img.refs["convert4m"]); err != nil {
		return nil, err
	}
	logf("%s: socikit convert (4 MiB spans) in %v", app, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if err := runCmd(ctx, filepath.Join(c.repo, "bin/upstreamindex"), "-plain-http", img.refs["plain"], img.refs["upstream"]); err != nil {
		return nil, err
	}
	logf("%s: upstream SOCI index in %v", app, time.Since(start).Round(time.Millisecond))

	for _, v := range []string{"auto", "reorder", "convert4m", "upstream"} {
		n, err := sociIndexBytes(ctx, img.refs[v])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", img.refs[v], err)
		}
		img.indexBytes[v] = n
	}
	img.info, err = describe(ctx, app, a, img.refs["plain"])
	if err != nil {
		return nil, err
	}
	return img, nil
}

func runCmd(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		cmdline := strings.Join(args, " ")
		if len(cmdline) > 300 {
			cmdline = cmdline[:300] + "..."
		}
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(name), cmdline, err, lastLines(out, 20))
	}
	return nil
}

// sociIndexBytes returns the size of the SOCI v2 index manifest of ref's
// (single) image and of the zTOCs it lists.
func sociIndexBytes(ctx context.Context, ref string) (int64, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return 0, err
	}
	idx, err := remote.Index(r, remote.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return 0, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return 0, err
	}
	for _, m := range im.Manifests {
		desc, ok, err := soci.FindIndexInImageIndex(raw, digest.Digest(m.Digest.String()))
		if err != nil || !ok {
			continue
		}
		h, err := v1.NewHash(desc.Digest.String())
		if err != nil {
			return 0, err
		}
		b, err := remote.Get(r.Context().Digest(h.String()), remote.WithContext(ctx))
		if err != nil {
			return 0, err
		}
		ix, err := soci.ParseIndex(b.Manifest)
		if err != nil {
			return 0, err
		}
		n := int64(len(b.Manifest))
		for _, l := range ix.Layers {
			n += l.Ztoc.Size
		}
		for _, p := range ix.Prefetches {
			n += p.Prefetch.Size
		}
		return n, nil
	}
	return 0, fmt.Errorf("no SOCI index in the image index")
}

// describe fills the image's sizes: compressed from the registry,
// uncompressed and the start-up files from the build context (layers are
// base/, pkgs/, app/ in that order, as the Dockerfile COPYs them).
func describe(ctx context.Context, app string, a *images.App, ref string) (results.Image, error) {
	info := results.Image{Name: app, Ready: a.Ready}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return info, err
	}
	im, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return info, err
	}
	layers, err := im.Layers()
	if err != nil {
		return info, err
	}
	parts := []string{"base", "pkgs", "app"}
	if len(layers) != len(parts) {
		return info, fmt.Errorf("%s has %d layers, want %d (%s)", ref, len(layers), len(parts), strings.Join(parts, ", "))
	}
	info.Layers = len(layers)
	for i, l := range layers {
		size, err := l.Size()
		if err != nil {
			return info, err
		}
		raw, err := treeSize(filepath.Join(a.Context, parts[i]))
		if err != nil {
			return info, err
		}
		info.CompressedBytes += size
		info.UncompressedSize += raw
	}
	// The start-up files, in the order they are first opened, as one gzip
	// tar stream: what their bytes cost on the wire when fetched together.
	// The last layer holding a path is the one a reader sees.
	cw := &countWriter{}
	gz := gzip.NewWriter(cw)
	tw := tar.NewWriter(gz)
	for _, p := range a.StartupFiles {
		for i := len(parts) - 1; i >= 0; i-- {
			rel := strings.TrimPrefix(p, "/")
			if parts[i] == "app" {
				var ok bool
				if rel, ok = strings.CutPrefix(rel, "app/"); !ok {
					continue
				}
			}
			fi, err := os.Lstat(filepath.Join(a.Context, parts[i], rel))
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			info.StartupFiles++
			info.StartupBytes += fi.Size()
			if err := addFile(tw, filepath.Join(a.Context, parts[i], rel), p, fi); err != nil {
				return info, err
			}
			break
		}
	}
	if err := tw.Close(); err != nil {
		return info, err
	}
	if err := gz.Close(); err != nil {
		return info, err
	}
	info.StartupCompressed = cw.n
	return info, nil
}

func addFile(tw *tar.Writer, path, name string, fi os.FileInfo) error {
	hdr, err := tar.FileInfoHeader(fi, "")
	if err != nil {
		return err
	}
	hdr.Name = name
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// treeSize approximates the tar size of a directory: regular files'
// bytes rounded up to 512, plus a 512-byte header per entry.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n += 512
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += (fi.Size() + 511) &^ 511
		}
		return nil
	})
	return n, err
}

// checkRegistry fails early when the shaped registry is not up.
func checkRegistry(ctx context.Context, reg string) error {
	if _, err := getStats(ctx, reg); err != nil {
		return fmt.Errorf("the registry %s does not answer (scripts/bench-net.sh up): %w", reg, err)
	}
	return nil
}
