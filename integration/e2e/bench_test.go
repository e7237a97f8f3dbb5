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
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/socikit/socikit/soci"
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
// Two two-step routes index the pushed type=image image afterwards, each
// timed from start to end of its process (pull the layers from the
// registry, index, push the zTOCs, the SOCI index and the rewritten
// manifests to another tag of the same repository):
//   - upstream: integration/internal/upstreamindex, upstream SOCI
//     v0.16.1's zTOC builder (cgo zlib, 4 MiB spans), as `soci create`
//     would index the image after the build;
//   - convert: `socikit convert` (4 MiB spans, its default).
//
// The route's time is then the type=image export plus the indexing, and
// it is compared with the type=soci export: (image + index) / soci.
// Every route indexes the same layers (10 MiB minimum, the default of each).
//
// Not run in CI:
//
//	scripts/buildkit-build.sh
//	cd integration/e2e && go test -tags integration -run '^$' -bench ExportImageVsSoci -benchtime 3x
func BenchmarkExportImageVsSoci(b *testing.B) {
	s := NewSandbox(b)
	tools := benchTools(b)
	h := prepareHello(b)
	dir := b.TempDir()
	src := filepath.Join(runtime.GOROOT(), "src")
	if out, err := exec.Command("cp", "-a", src, filepath.Join(dir, "src")).CombinedOutput(); err != nil {
		b.Fatalf("copy %s: %v\n%s", src, err, out)
	}
	must(b, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM base\nCOPY src /goroot/src\n"), 0o644))
	h.Dir = dir

	var exp [2][]float64     // export seconds: image, soci
	var size [2][]float64    // COPY layer bytes
	var idx [2][]float64     // indexing seconds after type=image: upstream, convert
	var ztocB, span [3]int64 // COPY layer's zTOC bytes and span size (last run): soci, upstream, convert
	var report strings.Builder
	benchf := func(format string, args ...any) { fmt.Fprintf(&report, format+"\n", args...) }
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
			benchf("    run %d %s: export %.2fs (%s), COPY layer %.0f bytes", i, kind, secs, exportSteps(out), size[k][len(size[k])-1])
			if kind == "soci" {
				z := lastLayerZtoc(b, ref)
				ztocB[0], span[0] = z.Ztoc.Size, z.SpanSize
			}
		}
		image := fmt.Sprintf("%s/bench-image:%d", s.Registry, i)
		for k, cmd := range [2][]string{
			{tools.upstreamIndex, "-plain-http", image, image + "-upstream"},
			{tools.socikit, "convert", "-plain-http", image, image + "-convert"},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			start := time.Now()
			out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput()
			secs := time.Since(start).Seconds()
			cancel()
			if err != nil {
				b.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
			}
			idx[k] = append(idx[k], secs)
			z := lastLayerZtoc(b, cmd[len(cmd)-1])
			if z.LayerDigest != lastLayer(b, image) {
				b.Fatalf("%s: zTOC for layer %s, not the COPY layer of %s", cmd[len(cmd)-1], z.LayerDigest, image)
			}
			ztocB[k+1], span[k+1] = z.Ztoc.Size, z.SpanSize
			benchf("    run %d image + %s: index %.2fs, total %.2fs", i, filepath.Base(cmd[0]), secs, exp[0][i]+secs)
		}
	}
	ei, es := median(exp[0]), median(exp[1])
	si, ss := median(size[0]), median(size[1])
	iu, ic := median(idx[0]), median(idx[1])
	tu, tc := median(sum(exp[0], idx[0])), median(sum(exp[0], idx[1]))
	b.ReportMetric(ei, "image-export-s")
	b.ReportMetric(es, "soci-export-s")
	b.ReportMetric(es/ei, "export-time-ratio")
	b.ReportMetric(si, "image-layer-B")
	b.ReportMetric(ss, "soci-layer-B")
	b.ReportMetric(ss/si, "layer-size-ratio")
	b.ReportMetric(iu, "upstream-index-s")
	b.ReportMetric(tu/es, "image+upstream/soci")
	b.ReportMetric(ic, "convert-s")
	b.ReportMetric(tc/es, "image+convert/soci")
	benchf("    medians of %d runs:\n"+
		"| route | export | index | total | total / soci | COPY layer zTOC |\n"+
		"|---|---|---|---|---|---|\n"+
		"| type=soci | %.2f s | - | %.2f s | 1 | %d B, %s spans |\n"+
		"| type=image | %.2f s | - | %.2f s | %.3f | - |\n"+
		"| type=image, then upstream SOCI v0.16.1 index | %.2f s | %.2f s | %.2f s | %.3f | %d B, %s spans |\n"+
		"| type=image, then socikit convert | %.2f s | %.2f s | %.2f s | %.3f | %d B, %s spans |\n"+
		"COPY layer: image %.0f B, soci %.0f B (%.4f)",
		b.N, es, es, ztocB[0], spanString(span[0]), ei, ei, ei/es,
		ei, iu, tu, tu/es, ztocB[1], spanString(span[1]),
		ei, ic, tc, tc/es, ztocB[2], spanString(span[2]), si, ss, ss/si)
	setBenchReport(b, report.String())
}

// benchToolPaths are the indexers of the two-step routes, built once.
type benchToolPaths struct {
	upstreamIndex string // integration/internal/upstreamindex
	socikit       string // cmd/socikit
}

var (
	benchToolsOnce sync.Once
	benchToolsVal  benchToolPaths
	benchToolsErr  error
)

// benchTools builds upstreamindex (with cgo: upstream SOCI's zTOC builder
// uses zlib) and socikit, outside any timing.
func benchTools(b *testing.B) benchToolPaths {
	b.Helper()
	benchToolsOnce.Do(func() {
		root := repoRoot(b)
		dir, err := os.MkdirTemp("", "socikit-bench-tools-")
		if err != nil {
			benchToolsErr = err
			return
		}
		stops = append(stops, func() { os.RemoveAll(dir) })
		benchToolsVal = benchToolPaths{upstreamIndex: filepath.Join(dir, "upstreamindex"), socikit: filepath.Join(dir, "socikit")}
		for _, c := range []struct{ dir, out, pkg string }{
			{filepath.Join(root, "integration"), benchToolsVal.upstreamIndex, "./internal/upstreamindex"},
			{root, benchToolsVal.socikit, "./cmd/socikit"},
		} {
			cmd := exec.Command("go", "build", "-o", c.out, c.pkg)
			cmd.Dir = c.dir
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				benchToolsErr = fmt.Errorf("go build %s: %v\n%s", c.pkg, err, out)
				return
			}
		}
	})
	if benchToolsErr != nil {
		b.Fatal(benchToolsErr)
	}
	return benchToolsVal
}

// lastLayerZtoc returns the SOCI index entry of the last layer of the v2
// SOCI image ref (the image index's manifest annotated with its index).
func lastLayerZtoc(b *testing.B, ref string) soci.LayerZtoc {
	b.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	must(b, err)
	root, err := remote.Get(r)
	must(b, err)
	var idx ocispec.Index
	must(b, json.Unmarshal(root.Manifest, &idx))
	for _, m := range idx.Manifests {
		if d := m.Annotations[soci.AnnotationIndexDigest]; d != "" {
			var man ocispec.Manifest
			must(b, json.Unmarshal(fetchManifest(b, r.Context(), m.Digest), &man))
			ix, err := soci.ParseIndex(fetchManifest(b, r.Context(), digest.Digest(d)))
			must(b, err)
			last := man.Layers[len(man.Layers)-1].Digest
			for _, l := range ix.Layers {
				if l.LayerDigest == last {
					return l
				}
			}
			b.Fatalf("%s: the last layer %s has no zTOC", ref, last)
		}
	}
	b.Fatalf("%s: no manifest annotated with a SOCI index:\n%s", ref, root.Manifest)
	return soci.LayerZtoc{}
}

// lastLayer returns the digest of the last layer of the image ref (one
// manifest).
func lastLayer(b *testing.B, ref string) digest.Digest {
	b.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	must(b, err)
	desc, err := remote.Get(r)
	must(b, err)
	var m ocispec.Manifest
	must(b, json.Unmarshal(desc.Manifest, &m))
	if len(m.Layers) == 0 {
		b.Fatalf("%s: no layers", ref)
	}
	return m.Layers[len(m.Layers)-1].Digest
}

func spanString(n int64) string {
	if n%(1<<20) == 0 && n > 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// benchReports are the reports of the benchmarks, by name, printed by
// TestMain after every result line: the testing package keeps only the
// first lines of a benchmark's log, and what a benchmark prints itself
// lands inside its result line, which benchstat then cannot read.
var benchReports = map[string]string{}
var benchNames []string

// setBenchReport records b's report; a later run of b (the testing package
// runs a benchmark with b.N = 1 first) replaces it.
func setBenchReport(b *testing.B, s string) {
	if _, ok := benchReports[b.Name()]; !ok {
		benchNames = append(benchNames, b.Name())
	}
	benchReports[b.Name()] = s
}

// printBenchReports prints the recorded reports.
func printBenchReports() {
	for _, n := range benchNames {
		fmt.Printf("--- REPORT: %s\n%s", n, benchReports[n])
	}
}

// sum returns a[i] + b[i].
func sum(a, b []float64) []float64 {
	s := make([]float64, len(a))
	for i := range a {
		s[i] = a[i] + b[i]
	}
	return s
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
