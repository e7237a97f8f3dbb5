//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkExportImageVsSoci builds the same image, FROM the busybox base
// plus a COPY of the Go toolchain's source tree (GOROOT/src, ~157 MB in
// ~15k files), and exports it, in turn, with type=image and type=soci,
// both pushing to the sandbox registry, --no-cache each time so that every
// export compresses its layers. It reports the exporter's time (the
// "exporting to ..." step as buildctl's plain progress prints it: layer
// compression, SOCI index, push) and the compressed size of the COPY layer,
// for each type and as soci/image ratios (medians over b.N runs).
//
// Not run in CI:
//
//	scripts/buildkit-build.sh
//	cd integration/e2e && go test -tags integration -run '^$' -bench ExportImageVsSoci -benchtime 3x
func BenchmarkExportImageVsSoci(b *testing.B) {
	s := NewSandbox(b)
	h := prepareHello(b)
	dir := b.TempDir()
	src := filepath.Join(runtime.GOROOT(), "src")
	if out, err := exec.Command("cp", "-a", src, filepath.Join(dir, "src")).CombinedOutput(); err != nil {
		b.Fatalf("copy %s: %v\n%s", src, err, out)
	}
	must(b, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM base\nCOPY src /goroot/src\n"), 0o644))
	h.Dir = dir

	var exp [2][]float64  // export seconds: image, soci
	var size [2][]float64 // COPY layer bytes
	kinds := [2]string{"image", "soci"}
	for i := 0; i < b.N; i++ {
		for k, kind := range kinds {
			ref := fmt.Sprintf("%s/bench-%s:%d", s.Registry, kind, i)
			output := "type=" + kind + ",name=" + ref + ",push=true,registry.insecure=true"
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			out, err := s.Buildctl(ctx, append(h.buildctlArgs(), "--no-cache", "--progress=plain", "--output", output)...)
			cancel()
			if err != nil {
				b.Fatalf("%s build: %v\n%s", kind, err, out)
			}
			secs, err := exportSeconds(out)
			if err != nil {
				b.Fatalf("%s build: %v\n%s", kind, err, out)
			}
			exp[k] = append(exp[k], secs)
			size[k] = append(size[k], float64(lastLayerSize(b, ref)))
			b.Logf("run %d %s: export %.2fs (%s), COPY layer %.0f bytes", i, kind, secs, exportSteps(out), size[k][len(size[k])-1])
		}
	}
	ei, es := median(exp[0]), median(exp[1])
	si, ss := median(size[0]), median(size[1])
	b.ReportMetric(ei, "image-export-s")
	b.ReportMetric(es, "soci-export-s")
	b.ReportMetric(es/ei, "export-time-ratio")
	b.ReportMetric(si, "image-layer-B")
	b.ReportMetric(ss, "soci-layer-B")
	b.ReportMetric(ss/si, "layer-size-ratio")
}

var exporterStep = regexp.MustCompile(`(?m)^#(\d+) exporting to `)

// exportSeconds returns the duration of the exporter step in buildctl's
// plain progress output ("#N exporting to ..." ... "#N DONE 1.2s").
func exportSeconds(out string) (float64, error) {
	m := exporterStep.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no exporter step in the progress output")
	}
	done := regexp.MustCompile(`(?m)^#` + m[1] + ` DONE ([0-9.]+)s$`).FindStringSubmatch(out)
	if done == nil {
		return 0, fmt.Errorf("exporter step #%s has no DONE line", m[1])
	}
	return strconv.ParseFloat(done[1], 64)
}

var exportStep = regexp.MustCompile(`(?m)^#\d+ ((?:exporting layers|building SOCI index|pushing layers|rewriting layers)[^\n]*?) ([0-9.]+s) done$`)

// exportSteps lists the timed sub-steps of the exporter step.
func exportSteps(out string) string {
	var s []string
	for _, m := range exportStep.FindAllStringSubmatch(out, -1) {
		s = append(s, m[1]+" "+m[2])
	}
	return strings.Join(s, ", ")
}

// lastLayerSize returns the compressed size of the last layer of the
// image pushed as ref (for a v2 SOCI image, of its indexed manifest).
func lastLayerSize(b *testing.B, ref string) int64 {
	b.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	must(b, err)
	desc, err := remote.Get(r)
	must(b, err)
	body := desc.Manifest
	if strings.Contains(string(desc.MediaType), "index") {
		var idx ocispec.Index
		must(b, json.Unmarshal(body, &idx))
		for _, m := range idx.Manifests {
			if m.Platform != nil && m.Platform.OS != "unknown" && m.ArtifactType == "" {
				body = fetchManifest(b, r.Context(), m.Digest)
				break
			}
		}
	}
	var m ocispec.Manifest
	must(b, json.Unmarshal(body, &m))
	if len(m.Layers) == 0 {
		b.Fatalf("%s: no layers", ref)
	}
	return m.Layers[len(m.Layers)-1].Size
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
