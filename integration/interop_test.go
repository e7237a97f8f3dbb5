//go:build integration

package interop

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	uz "github.com/awslabs/soci-snapshotter/ztoc"

	"github.com/socikit/socikit/ztoc"
)

// TestInterop runs every check on the GOROOT/src layers (gzip level 6 from
// compress/gzip and from klauspost, two concatenated gzip members,
// uncompressed) and the synthetic layers (gzip, uncompressed), at each span
// size:
//
//   - ours-to-upstream: socikit's zTOC, unmarshalled by upstream, indexes
//     the tar right and upstream's extraction returns every span and file
//     byte-identical;
//   - upstream-to-ours: upstream's zTOC, unmarshalled by socikit, indexes the
//     tar right and socikit's Reader returns every span and file
//     byte-identical;
//   - parity: both marshalled zTOCs have the same sha256.
func TestInterop(t *testing.T) {
	var layers []*layer
	layers = append(layers, syntheticLayers(t)...)
	layers = append(layers, gorootLayers(t)...)
	for _, l := range layers {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			for _, span := range l.spans {
				t.Run(spanName(span), func(t *testing.T) { interopCase(t, l, span) })
			}
		})
	}
}

func interopCase(t *testing.T, l *layer, span int64) {
	t0 := time.Now()
	_, upBytes, upErr := upstreamBuild(l.path, l.algo, span)
	tUp := time.Since(t0)
	t0 = time.Now()
	ours, ourBytes, ourErr := ourBuild(l.path, span)
	tOurs := time.Since(t0)
	if upErr != nil {
		t.Fatalf("upstream BuildZtoc: %v", upErr)
	}
	if ourErr != nil {
		t.Fatalf("socikit Build: %v", ourErr)
	}
	t.Logf("built: upstream %v (%d bytes), socikit %v (%d bytes, %d spans)", tUp.Round(time.Millisecond), len(upBytes),
		tOurs.Round(time.Millisecond), len(ourBytes), ours.MaxSpanID+1)
	ours = nil

	t.Run("ours-to-upstream", func(t *testing.T) {
		zt, err := upstreamUnmarshal(ourBytes)
		if err != nil {
			t.Fatalf("upstream Unmarshal of socikit's zTOC: %v", err)
		}
		if err := verifyTOC(l.tar, upstreamEnts(zt), int64(zt.UncompressedArchiveSize)); err != nil {
			t.Fatalf("socikit's zTOC, as upstream reads it, mis-indexes the layer: %v", err)
		}
		st, err := checkUpstreamReads(l.path, l.tar, zt)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("upstream read socikit's zTOC: %v", st)
	})
	t.Run("upstream-to-ours", func(t *testing.T) {
		z, err := ourUnmarshal(upBytes)
		if err != nil {
			t.Fatalf("socikit Unmarshal of upstream's zTOC: %v", err)
		}
		if err := verifyTOC(l.tar, ourEnts(z), z.UncompressedArchiveSize); err != nil {
			t.Fatalf("upstream's zTOC, as socikit reads it, mis-indexes the layer: %v", err)
		}
		st, err := checkOurReads(l.path, l.tar, z)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("socikit read upstream's zTOC: %v", st)
	})
	t.Run("parity", func(t *testing.T) {
		if !bytes.Equal(ourBytes, upBytes) {
			t.Fatalf("zTOCs differ: socikit %s, upstream %s\n%s", sha256Digest(ourBytes), sha256Digest(upBytes), describeDiff(ourBytes, upBytes))
		}
		t.Logf("identical: %s", sha256Digest(ourBytes))
	})
}

// ---- Go's archive/tar edge cases ---------------------------------------------

type verdict struct {
	layer, span, outcome, detail string
}

// TestGoTarTestdata indexes every tar of Go's archive/tar testdata, gzipped
// and uncompressed, with both builders. Whatever upstream indexes right, we
// index with parity; whatever upstream rejects, we reject (an error, no
// panic); we never mis-index. Where upstream mis-indexes (it does not check
// what it indexes), we may reject or index right.
func TestGoTarTestdata(t *testing.T) {
	var mu sync.Mutex
	var verdicts []verdict
	t.Run("cases", func(t *testing.T) {
		for _, l := range goTestdataLayers(t) {
			t.Run(l.name, func(t *testing.T) {
				t.Parallel()
				for _, span := range l.spans {
					t.Run(spanName(span), func(t *testing.T) {
						v := edgeCase(t, l, span)
						v.layer, v.span = l.name, spanName(span)
						mu.Lock()
						verdicts = append(verdicts, v)
						mu.Unlock()
					})
				}
			})
		}
	})
	sort.Slice(verdicts, func(i, j int) bool {
		if verdicts[i].layer != verdicts[j].layer {
			return verdicts[i].layer < verdicts[j].layer
		}
		return verdicts[i].span < verdicts[j].span
	})
	var b strings.Builder
	counts := map[string]int{}
	for _, v := range verdicts {
		counts[v.outcome]++
		fmt.Fprintf(&b, "%-40s %-12s %-28s %s\n", v.layer, v.span, v.outcome, v.detail)
	}
	t.Logf("archive/tar testdata verdicts:\n%s%v", b.String(), counts)
}

func edgeCase(t *testing.T, l *layer, span int64) (v verdict) {
	_, upBytes, upErr := upstreamBuild(l.path, l.algo, span)
	_, ourBytes, ourErr := ourBuild(l.path, span)
	if errors.Is(ourErr, errPanic) {
		t.Fatalf("socikit Build: %v", ourErr)
	}
	var upVerify, ourVerify error
	var upView, ourView *uz.Ztoc
	if upErr == nil {
		var err error
		if upView, err = upstreamUnmarshal(upBytes); err != nil {
			upVerify = fmt.Errorf("upstream cannot unmarshal its own zTOC: %w", err)
		} else {
			upVerify = verifyTOC(l.tar, upstreamEnts(upView), int64(upView.UncompressedArchiveSize))
		}
	}
	if ourErr == nil {
		var err error
		if ourView, err = upstreamUnmarshal(ourBytes); err != nil {
			t.Fatalf("upstream cannot unmarshal socikit's zTOC: %v", err)
		}
		ourVerify = verifyTOC(l.tar, upstreamEnts(ourView), int64(ourView.UncompressedArchiveSize))
		if ourVerify != nil {
			t.Errorf("socikit mis-indexes: %v", ourVerify)
		}
	}
	switch {
	case upErr != nil && ourErr != nil:
		t.Logf("both reject: upstream: %v; socikit: %v", upErr, ourErr)
		return verdict{outcome: "both reject", detail: "upstream: " + oneLine(upErr) + " | socikit: " + oneLine(ourErr)}
	case upErr != nil:
		t.Errorf("upstream rejects (%v) but socikit indexes it", upErr)
		return verdict{outcome: "FAIL: only upstream rejects", detail: oneLine(upErr)}
	case ourErr != nil && upVerify == nil:
		t.Errorf("upstream indexes it right but socikit rejects it: %v", ourErr)
		return verdict{outcome: "FAIL: only socikit rejects", detail: oneLine(ourErr)}
	case ourErr != nil:
		t.Logf("upstream mis-indexes (%v); socikit rejects (%v)", upVerify, ourErr)
		return verdict{outcome: "upstream mis-indexes, socikit rejects", detail: "upstream: " + oneLine(upVerify) + " | socikit: " + oneLine(ourErr)}
	}
	// Both indexed.
	if ourVerify != nil {
		return verdict{outcome: "FAIL: socikit mis-indexes", detail: oneLine(ourVerify)}
	}
	if st, err := checkUpstreamReads(l.path, l.tar, ourView); err != nil {
		t.Errorf("upstream reading socikit's zTOC: %v", err)
	} else {
		t.Logf("upstream read socikit's zTOC: %v", st)
	}
	if upVerify != nil {
		t.Logf("upstream mis-indexes (%v); socikit indexes right", upVerify)
		return verdict{outcome: "upstream mis-indexes, socikit right", detail: oneLine(upVerify)}
	}
	if z, err := ourUnmarshal(upBytes); err != nil {
		t.Errorf("socikit Unmarshal of upstream's zTOC: %v", err)
	} else if st, err := checkOurReads(l.path, l.tar, z); err != nil {
		t.Errorf("socikit reading upstream's zTOC: %v", err)
	} else {
		t.Logf("socikit read upstream's zTOC: %v", st)
	}
	if !bytes.Equal(ourBytes, upBytes) {
		d := describeDiff(ourBytes, upBytes)
		t.Errorf("zTOCs differ:\n%s", d)
		return verdict{outcome: "FAIL: both index, no parity", detail: oneLine(errors.New(d))}
	}
	return verdict{outcome: "both index, parity", detail: fmt.Sprintf("%d entries", len(l.tar.entries))}
}

func oneLine(err error) string {
	s := err.Error()
	s = strings.ReplaceAll(s, "\n", " / ")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// ---- socikit's build-side writer --------------------------------------------------

// TestCompressWriter gzips tars with ztoc.Compress and checks that the blob
// is a gzip stream of the tar, that upstream reads the zTOC it returns
// (every span and file byte-identical), and that both builders, indexing
// the blob afresh, agree byte for byte.
func TestCompressWriter(t *testing.T) {
	type tc struct {
		name  string
		ti    *tarInfo
		spans []int64
	}
	var cases []tc
	syn := syntheticLayers(t)[0]
	cases = append(cases, tc{"synthetic", syn.tar, allSpans})
	gr := gorootLayer(t, "goroot-uncompressed")
	cases = append(cases, tc{"goroot", gr.tar, []int64{span4M}})
	seen := map[string]bool{}
	for _, l := range goTestdataLayers(t) {
		if !seen[l.tar.name] {
			seen[l.tar.name] = true
			cases = append(cases, tc{"gotar-" + l.tar.name, l.tar, []int64{span64K}})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, span := range c.spans {
				t.Run(spanName(span), func(t *testing.T) { compressCase(t, c.ti, span) })
			}
		})
	}
}

func compressCase(t *testing.T, ti *tarInfo, span int64) {
	path := filepath.Join(t.TempDir(), "layer.tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	z, err := func() (z *ztoc.Ztoc, err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: Compress: %v", errPanic, r)
			}
		}()
		return ztoc.Compress(f, bytes.NewReader(ti.raw), ztoc.WithSpanSize(span), ztoc.WithCompressionLevel(6), ztoc.WithBuildToolIdentifier(buildTool))
	}()
	elapsed := time.Since(t0)
	if cerr := f.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	if errors.Is(err, errPanic) {
		t.Fatal(err)
	}
	if why := unindexable(ti); why != "" {
		// Upstream cannot index this tar right: Compress must refuse it.
		if err == nil {
			t.Fatalf("Compress accepted a tar upstream cannot index (%s)", why)
		}
		t.Logf("Compress rejects it (%s): %v", why, err)
		return
	}
	if err != nil {
		t.Fatalf("Compress: %v", err)
	}
	blob, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := stdgzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatalf("compress/gzip cannot open the blob: %v", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("compress/gzip cannot read the blob: %v", err)
	}
	if !bytes.Equal(plain, ti.raw) {
		t.Fatalf("the blob decompresses to %d bytes that are not the tar's %d (first difference at %d)", len(plain), len(ti.raw), firstDiff(plain, ti.raw))
	}
	t.Logf("Compress: %d -> %d bytes in %v, %d spans", len(ti.raw), len(blob), elapsed.Round(time.Millisecond), z.MaxSpanID+1)

	zb, err := ztoc.Marshal(z)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	zt, err := upstreamUnmarshal(zb)
	if err != nil {
		t.Fatalf("upstream Unmarshal: %v", err)
	}
	if err := verifyTOC(ti, upstreamEnts(zt), int64(zt.UncompressedArchiveSize)); err != nil {
		t.Fatalf("Compress's zTOC mis-indexes the tar: %v", err)
	}
	st, err := checkUpstreamReads(path, ti, zt)
	if err != nil {
		t.Fatalf("upstream reading Compress's zTOC: %v", err)
	}
	t.Logf("upstream read Compress's zTOC: %v", st)

	// Indexing the blob afresh: both builders agree.
	_, upBytes, upErr := upstreamBuild(path, "gzip", span)
	_, ourBytes, ourErr := ourBuild(path, span)
	switch {
	case upErr != nil && ourErr != nil:
		t.Logf("both builders reject the blob: upstream %v; socikit %v", upErr, ourErr)
	case upErr != nil || ourErr != nil:
		t.Errorf("re-indexing the blob: upstream %v; socikit %v", upErr, ourErr)
	case !bytes.Equal(ourBytes, upBytes):
		t.Errorf("re-indexing the blob: zTOCs differ:\n%s", describeDiff(ourBytes, upBytes))
	default:
		same := bytes.Equal(zb, ourBytes)
		t.Logf("re-indexing the blob: parity (%s); Compress's own zTOC identical to it: %v", sha256Digest(ourBytes), same)
	}
}

// unindexable says why no zTOC can index the tar right: archive/tar cannot
// read it, or it holds an entry type upstream rejects or a sparse file.
func unindexable(ti *tarInfo) string {
	if ti.readErr != nil {
		return "archive/tar: " + ti.readErr.Error()
	}
	for _, e := range ti.entries {
		if _, ok := tarTypeNames[e.hdr.Typeflag]; !ok {
			return fmt.Sprintf("entry %q has type %q", e.hdr.Name, e.hdr.Typeflag)
		}
		if e.sparse {
			return fmt.Sprintf("entry %q is sparse", e.hdr.Name)
		}
	}
	return ""
}
