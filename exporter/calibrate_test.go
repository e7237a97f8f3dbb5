package exporter

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socikit/socikit/profile"
	"github.com/socikit/socikit/ztoc"
)

// benchRequestBytes is what one HTTP range request costs in the calibration,
// in bytes: the benchmark link pays ~20 ms per request and moves 25 MB/s
// (200 Mbit/s), so a request costs the time of 20 ms × 25 MB/s = 500 KB.
// It is the link the auto sizing was found wrong on; it is kept apart from
// the model's DefaultRequestBytes on purpose (the test judges the model).
const benchRequestBytes = 500_000

// calibRefSpan is the span size of the reference compression from which
// the compressed size of any byte range is interpolated (finer than every
// candidate, so a span's estimate is within a few reference spans' ratio
// error).
const calibRefSpan = 128 << 10

// TestCalibrateSpanSize evaluates the span-size model against real
// start-ups: for each layer of the benchmark images prepared by
// scripts/bench-images.sh (/var/cache/socikit-bench/APP: the context trees
// of the base and pkgs layers, tarred here in walk order, and startup.txt,
// the files read at start-up, each counted in the topmost layer holding
// it), and optionally one more layer (SOCIKIT_CALIBRATE_TAR, a tar, and
// SOCIKIT_CALIBRATE_FILES, files of its start-up paths one a line,
// separated by ':'), it computes for every candidate span size the zTOC
// bytes, the compressed bytes of the spans a start-up reading exactly the
// listed files fetches, the number of those spans (≈ requests) and
//
//	cost = zTOC bytes + fetched bytes + spans touched × benchRequestBytes
//
// then the regret, cost(pick) / cost(best candidate size), of the plans
// made without a start-up list, with it, and with reordering, by
// ChooseSpanSize (BuildLayer) and StreamPlanner (BuildLayerStream, what
// BuildKit's exporter uses unless reordering), under the current model and
// the previous one (v0: 32 files read, no request cost); then the cost per
// image and the regret of other no-list priors. Compressed sizes come from
// one real ztoc.Compress of each layer at calibRefSpan spans, interpolated
// (1-2 % below the real span bytes, the same for every size);
// With a byte-range profile of the start-up (profile.json beside
// startup.txt, or SOCIKIT_CALIBRATE_PROFILE, profile files separated by
// ':', with SOCIKIT_CALIBRATE_TAR), the start-up reads the profile's hot
// ranges only: every plan is evaluated against that, and the "prof"
// columns are the plans made with the profile (WithProfile) instead of
// its paths as a whole-file list.
// SOCIKIT_CALIBRATE_EXACT=1 also compresses every candidate and prints the
// estimate's error. SOCIKIT_CALIBRATE_CACHE=DIR keeps the reference
// compressions between runs; SOCIKIT_CALIBRATE_ONLY=SUBSTRING keeps the
// layers whose name holds it. Skipped with -short or without data.
//
//	go test -run Calibrate -v -timeout 30m ./exporter/
func TestCalibrateSpanSize(t *testing.T) {
	if testing.Short() {
		t.Skip("calibration: compresses ~1.5 GB")
	}
	const root = "/var/cache/socikit-bench"
	var cases []*calibCase
	for _, app := range []string{"python", "node", "jvm", "toolchain"} {
		dir := filepath.Join(root, app)
		if _, err := os.Stat(filepath.Join(dir, "startup.txt")); err != nil {
			continue
		}
		cs, err := benchImageCases(app, dir)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, cs...)
	}
	if tp, lps := os.Getenv("SOCIKIT_CALIBRATE_TAR"), os.Getenv("SOCIKIT_CALIBRATE_FILES"); tp != "" && lps != "" {
		for _, lp := range filepath.SplitList(lps) {
			list, err := readList(lp)
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimSuffix(filepath.Base(tp), ".tar") + "/" + strings.TrimSuffix(filepath.Base(lp), ".txt")
			cases = append(cases, &calibCase{name: name, tarPath: tp, startup: list})
		}
	}
	if tp, pps := os.Getenv("SOCIKIT_CALIBRATE_TAR"), os.Getenv("SOCIKIT_CALIBRATE_PROFILE"); tp != "" && pps != "" {
		for _, pp := range filepath.SplitList(pps) {
			prof, err := readProfile(pp)
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimSuffix(filepath.Base(tp), ".tar") + "/" + strings.TrimSuffix(filepath.Base(pp), ".json")
			cases = append(cases, &calibCase{name: name, tarPath: tp, startup: prof.Paths(), prof: prof})
		}
	}
	if only := os.Getenv("SOCIKIT_CALIBRATE_ONLY"); only != "" {
		cases = slices.DeleteFunc(cases, func(c *calibCase) bool { return !strings.Contains(c.name, only) })
	}
	if len(cases) == 0 {
		t.Skip("no benchmark data in " + root + " (scripts/bench-images.sh) and SOCIKIT_CALIBRATE_TAR unset")
	}
	cache := os.Getenv("SOCIKIT_CALIBRATE_CACHE")
	exact := os.Getenv("SOCIKIT_CALIBRATE_EXACT") != ""
	refs := map[[32]byte]*calibRef{}
	var rows []calibRow
	for _, c := range cases {
		t0 := time.Now()
		in, err := c.tar()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(in)
		ref := refs[sum]
		if ref == nil {
			if ref, err = compressRef(in, sum, cache); err != nil {
				t.Fatal(err)
			}
			refs[sum] = ref
		}
		l, err := Scan(bytes.NewReader(in), int64(len(in)))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d entries, %d files, tar %d B, gzip %d B (ratio %.3f), %d start-up files (%d B), prepared in %v",
			c.name, len(l.Entries), regFiles(l), len(in), ref.compressed(0, int64(len(in))), float64(ref.compressed(0, int64(len(in))))/float64(len(in)),
			len(c.startup), startupBytes(l, c.files()), time.Since(t0).Round(time.Millisecond))
		rows = append(rows, calibrate(t, c.name, in, l, ref, c.startup, c.prof, exact))
	}
	t.Logf("summary: regret = cost of the pick / cost of the best candidate span size (reorder: of the reordered layer), cost = zTOC + fetched + %d B × spans touched", benchRequestBytes)
	head := fmt.Sprintf("%-18s %6s %5s |", "layer", "read", "best")
	for _, c := range calibColumns {
		head += fmt.Sprintf(" %-13s", c)
	}
	t.Log(head)
	logSum := make([]float64, len(calibColumns))
	worst := make([]float64, len(calibColumns))
	for _, r := range rows {
		line := fmt.Sprintf("%-18s %6d %5s |", r.name, r.read, sizeString(r.best))
		for i, p := range r.picks {
			line += fmt.Sprintf(" %-13s", p)
			logSum[i] += math.Log(p.regret)
			worst[i] = max(worst[i], p.regret)
		}
		t.Log(line)
	}
	geo, wst := fmt.Sprintf("%-31s |", "geometric mean"), fmt.Sprintf("%-31s |", "worst")
	for i := range calibColumns {
		geo += fmt.Sprintf(" %-13.3f", math.Exp(logSum[i]/float64(len(rows))))
		wst += fmt.Sprintf(" %-13.3f", worst[i])
	}
	t.Log(geo)
	t.Log(wst)

	// Per image (the layers sharing a name prefix): the sums, in seconds
	// on the benchmark link (cost / 25 MB/s: bytes, plus 20 ms a request).
	t.Logf("per image: lazy-start cost of the base and pkgs layers, MB-equivalent (s at 25 MB/s)")
	head = fmt.Sprintf("%-10s |", "image")
	for _, size := range DefaultSpanCandidates {
		head += fmt.Sprintf(" %-14s", "fixed "+sizeString(size))
	}
	for _, c := range calibColumns[:4] {
		head += fmt.Sprintf(" %-14s", c)
	}
	t.Log(head)
	var images []string
	sums := map[string][]int64{}
	for _, r := range rows {
		img, _, _ := strings.Cut(r.name, "/")
		if sums[img] == nil {
			images = append(images, img)
			sums[img] = make([]int64, len(DefaultSpanCandidates)+4)
		}
		for i, size := range DefaultSpanCandidates {
			sums[img][i] += r.fixed[size].cost()
		}
		for i, p := range r.picks[:4] {
			sums[img][len(DefaultSpanCandidates)+i] += p.eval.cost()
		}
	}
	for _, img := range images {
		line := fmt.Sprintf("%-10s |", img)
		for _, c := range sums[img] {
			line += fmt.Sprintf(" %-14s", fmt.Sprintf("%.1f (%.2f)", float64(c)/1e6, float64(c)/25e6))
		}
		t.Log(line)
	}

	// The no-list prior: regret of other read fractions and floors, for
	// the two-pass and the streaming planner.
	t.Logf("prior p = max(fraction, floor / files): geometric mean and worst regret without a list")
	t.Logf("%8s %5s | %-13s %-13s | %-13s %-13s", "fraction", "floor", "two-pass geo", "worst", "stream geo", "worst")
	for _, floor := range []float64{0, 4, 8, 16, 32} {
		for _, frac := range []float64{0.005, 0.01, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06} {
			var lg [2]float64
			var w [2]float64
			for _, r := range rows {
				o := nowOptions(t)
				o.priorFraction, o.priorFiles = frac, floor
				for k, p := range []ztoc.SpanPlanner{chooseSpanSize(r.lay.l, o).Planner(), newStreamPlanner(o)} {
					g := float64(r.lay.eval(simulate(r.lay.l, p)).cost()) / r.bestCost
					lg[k] += math.Log(g)
					w[k] = max(w[k], g)
				}
			}
			n := float64(len(rows))
			t.Logf("%8.4f %5.0f | %-13.3f %-13.3f | %-13.3f %-13.3f", frac, floor, math.Exp(lg[0]/n), w[0], math.Exp(lg[1]/n), w[1])
		}
	}
}

// calibCase is a layer and the start-up paths (image or layer paths) read
// from it.
type calibCase struct {
	name    string
	ctxDir  string // a context tree to tar, or
	tarPath string // a tar file
	startup []string
	// prof, if set, is the start-up's byte-range profile (startup is then
	// its paths): the start-up reads its ranges only.
	prof *profile.Profile
}

// files is the start-up the case evaluates plans against.
func (c *calibCase) files() []startupFile {
	if c.prof != nil {
		return startupFiles(c.prof, nil)
	}
	return wholeFiles(c.startup)
}

func readProfile(name string) (*profile.Profile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return profile.Decode(f)
}

func (c *calibCase) tar() ([]byte, error) {
	if c.tarPath != "" {
		return os.ReadFile(c.tarPath)
	}
	return tarTree(c.ctxDir)
}

// benchImageCases returns the base and pkgs layers of a benchmark image
// with the start-up files each shows: a path belongs to the topmost layer
// holding it (as overlayfs resolves it).
func benchImageCases(app, dir string) ([]*calibCase, error) {
	list, err := readList(filepath.Join(dir, "startup.txt"))
	if err != nil {
		return nil, err
	}
	// A byte-range profile of the same start-up, if the image has one:
	// each layer gets the files of its start-up list.
	var prof *profile.Profile
	if _, err := os.Stat(filepath.Join(dir, "profile.json")); err == nil {
		if prof, err = readProfile(filepath.Join(dir, "profile.json")); err != nil {
			return nil, err
		}
		list = prof.Paths()
	}
	ctx := filepath.Join(dir, "context")
	base := &calibCase{name: app + "/base", ctxDir: filepath.Join(ctx, "base")}
	pkgs := &calibCase{name: app + "/pkgs", ctxDir: filepath.Join(ctx, "pkgs")}
	for _, p := range list {
		if rest, ok := strings.CutPrefix(p, "/app/"); ok {
			if _, err := os.Lstat(filepath.Join(ctx, "app", rest)); err == nil {
				continue
			}
		}
		for _, c := range []*calibCase{pkgs, base} {
			if _, err := os.Lstat(filepath.Join(c.ctxDir, p)); err == nil {
				c.startup = append(c.startup, p)
				break
			}
		}
	}
	if prof != nil {
		for _, c := range []*calibCase{base, pkgs} {
			in := map[string]bool{}
			for _, p := range c.startup {
				in[p] = true
			}
			c.prof = &profile.Profile{Version: profile.Version}
			for _, f := range prof.Files {
				if in[f.Path] {
					c.prof.Files = append(c.prof.Files, f)
				}
			}
		}
	}
	return []*calibCase{base, pkgs}, nil
}

func readList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var list []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			list = append(list, s)
		}
	}
	return list, sc.Err()
}

// tarTree writes the tree under dir as a tar in lexical walk order, names
// relative to dir (as BuildKit's `COPY dir/ /` diff does), owners 0:0,
// files with several links inside the tree as hard links to the first.
func tarTree(dir string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return nil // sockets and the like: not in a layer
		}
		h.Name, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(rel), 0, 0, "", ""
		if fi.IsDir() {
			h.Name += "/"
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				inodes[st.Ino] = h.Name
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// calibRef is a real compression of a layer at calibRefSpan spans: the
// uncompressed start and compressed size of each span, and the zTOC size.
type calibRef struct {
	UStart, CSize []int64
	Size          int64
	ZtocBytes     int64
	cum           []int64 // compressed bytes before span i
}

func compressRef(in []byte, sum [32]byte, cache string) (*calibRef, error) {
	file := ""
	if cache != "" {
		file = filepath.Join(cache, fmt.Sprintf("ref-%s-%d.gob", hex.EncodeToString(sum[:8]), calibRefSpan))
		if f, err := os.Open(file); err == nil {
			defer f.Close()
			ref := &calibRef{}
			if err := gob.NewDecoder(f).Decode(ref); err == nil {
				ref.init()
				return ref, nil
			}
		}
	}
	z, err := ztoc.Compress(io.Discard, bytes.NewReader(in), ztoc.WithSpanSize(calibRefSpan), ztoc.WithCompressionLevel(DefaultCompressionLevel))
	if err != nil {
		return nil, err
	}
	ix, err := ztoc.NewIndex(z)
	if err != nil {
		return nil, err
	}
	zb, err := ztoc.Marshal(z)
	if err != nil {
		return nil, err
	}
	ref := &calibRef{Size: int64(len(in)), ZtocBytes: int64(len(zb))}
	for _, s := range ix.Spans() {
		ref.UStart = append(ref.UStart, s.UncompressedStart)
		ref.CSize = append(ref.CSize, s.CompressedEnd-s.CompressedStart)
	}
	ref.init()
	if file != "" {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return nil, err
		}
		f, err := os.Create(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := gob.NewEncoder(f).Encode(ref); err != nil {
			return nil, err
		}
	}
	return ref, nil
}

func (r *calibRef) init() {
	r.cum = make([]int64, len(r.CSize)+1)
	for i, n := range r.CSize {
		r.cum[i+1] = r.cum[i] + n
	}
}

// at returns the compressed bytes before uncompressed offset x, linear
// inside each reference span.
func (r *calibRef) at(x float64) float64 {
	i := sort.Search(len(r.UStart), func(i int) bool { return float64(r.UStart[i]) > x }) - 1
	i = max(i, 0)
	end := r.Size
	if i+1 < len(r.UStart) {
		end = r.UStart[i+1]
	}
	if end <= r.UStart[i] {
		return float64(r.cum[i+1])
	}
	f := min(1, (x-float64(r.UStart[i]))/float64(end-r.UStart[i]))
	return float64(r.cum[i]) + f*float64(r.CSize[i])
}

// compressed estimates the compressed size of uncompressed bytes [a, b).
func (r *calibRef) compressed(a, b int64) int64 {
	return int64(math.Round(r.at(float64(b)) - r.at(float64(a))))
}

// spans returns the reference's number of spans.
func (r *calibRef) spans() int { return len(r.UStart) }

// calibLayout is a layout of a layer's entries (the original or a
// reordering) mapped back to the reference compression.
type calibLayout struct {
	l   *Layer
	ref *calibRef
	// segs map layout offsets to original offsets, sorted by new offset.
	segs []calibSeg
	hot  []interval // the bytes the start-up reads (hotLayer.intervals)
	read int        // the files it reads
}

type calibSeg struct{ new, orig, n int64 }

func newLayout(t *testing.T, orig, l *Layer, order []int, ref *calibRef, files []startupFile) *calibLayout {
	c := &calibLayout{l: l, ref: ref}
	if order == nil {
		c.segs = []calibSeg{{0, 0, orig.Size}}
	} else {
		for j, i := range order {
			e := &orig.Entries[i]
			c.segs = append(c.segs, calibSeg{l.Entries[j].HeaderOffset, e.HeaderOffset, e.End() - e.HeaderOffset})
		}
		c.segs = append(c.segs, calibSeg{l.TrailerOffset, orig.TrailerOffset, orig.Size - orig.TrailerOffset})
	}
	h := resolveHot(l, files, nowOptions(t))
	c.hot, c.read = h.intervals(l), len(h.idx)
	return c
}

// compressed estimates the compressed size of layout bytes [a, b).
func (c *calibLayout) compressed(a, b int64) int64 {
	k := sort.Search(len(c.segs), func(k int) bool { return c.segs[k].new+c.segs[k].n > a })
	var n int64
	for ; k < len(c.segs) && c.segs[k].new < b; k++ {
		s := c.segs[k]
		lo, hi := max(a, s.new), min(b, s.new+s.n)
		n += c.ref.compressed(s.orig+lo-s.new, s.orig+hi-s.new)
	}
	return n
}

// calibEval is what a start-up reading the hot files costs with a plan.
type calibEval struct {
	spans, touched, ranges int
	ztoc, fetch            int64
}

func (e calibEval) cost() int64 { return e.ztoc + e.fetch + int64(e.touched)*benchRequestBytes }

// eval evaluates the span starts of a plan: the zTOC is the reference's
// real one with ztocBytesPerSpan per span more or less.
func (c *calibLayout) eval(starts []int64) calibEval {
	e := calibEval{spans: len(starts)}
	e.ztoc = c.ref.ZtocBytes + int64(len(starts)-c.ref.spans())*ztocBytesPerSpan
	seen := map[int]bool{}
	for _, iv := range c.hot {
		first, last := spanOf(starts, iv.start), spanOf(starts, iv.end-1)
		for s := first; s <= last; s++ {
			seen[s] = true
		}
	}
	ids := make([]int, 0, len(seen))
	for s := range seen {
		ids = append(ids, s)
	}
	slices.Sort(ids)
	for k, s := range ids {
		end := c.l.Size
		if s+1 < len(starts) {
			end = starts[s+1]
		}
		e.fetch += c.compressed(starts[s], end)
		if k == 0 || ids[k-1] != s-1 {
			e.ranges++
		}
	}
	e.touched = len(ids)
	return e
}

// calibPick is a plan chosen by a model and its regret.
type calibPick struct {
	size   int64 // 0: several (a stream's choice changes)
	cuts   int
	regret float64
	eval   calibEval
}

func (p calibPick) String() string {
	s := "var"
	if p.size > 0 {
		s = sizeString(p.size)
	}
	if p.cuts > 0 {
		s += fmt.Sprintf("+%dc", p.cuts)
	}
	return fmt.Sprintf("%s %.3f", s, p.regret)
}

// calibColumns name the picks of a calibRow: the previous model (v0) and
// the current one, two-pass (ChooseSpanSize, as BuildLayer) and streaming
// (StreamPlanner, as BuildKit's exporter without reordering), without and
// with the start-up list, then reordered (BuildLayer with WithReorder);
// then, with the byte-range profile (WithProfile; the list's whole files
// when the case has no profile), two-pass and reordered.
var calibColumns = []string{"none v0", "none now", "stream v0", "stream now", "list v0", "list now", "slist v0", "slist now", "reorder v0", "reorder now", "prof now", "prof reorder"}

type calibRow struct {
	name     string
	read     int
	best     int64
	bestCost float64
	picks    []calibPick // as calibColumns
	fixed    map[int64]calibEval
	lay      *calibLayout
}

// v0Options are the options making the model the one before calibration:
// 32 files read without a list, no request cost.
func v0Options(t *testing.T, opts ...Option) *options {
	o, err := makeOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	o.priorFraction, o.priorFiles, o.requestBytes = 0, 32, 0
	return o
}

func nowOptions(t *testing.T, opts ...Option) *options {
	o, err := makeOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func calibrate(t *testing.T, name string, in []byte, l *Layer, ref *calibRef, startup []string, prof *profile.Profile, exact bool) calibRow {
	row := calibRow{name: name}
	files := wholeFiles(startup)
	if prof != nil {
		files = startupFiles(prof, nil)
	}
	lay := newLayout(t, l, l, nil, ref, files)
	row.lay, row.read = lay, lay.read
	t.Logf("  %-8s %6s %12s %8s %7s %12s %12s %8s", "span", "spans", "zTOC", "touched", "ranges", "fetched", "cost", "regret")
	evals := map[int64]calibEval{}
	var best int64 = -1
	for _, size := range DefaultSpanCandidates {
		e := lay.eval(simulate(l, &Planner{Size: size}))
		evals[size] = e
		if best < 0 || e.cost() < evals[best].cost() {
			best = size
		}
	}
	row.best, row.fixed = best, evals
	bestCost := float64(evals[best].cost())
	row.bestCost = bestCost
	for _, size := range DefaultSpanCandidates {
		e := evals[size]
		t.Logf("  %-8s %6d %12d %8d %7d %12d %12d %8.3f", sizeString(size), e.spans, e.ztoc, e.touched, e.ranges, e.fetch, e.cost(), float64(e.cost())/bestCost)
		if exact {
			var blob countWriter
			z, err := ztoc.Compress(&blob, bytes.NewReader(in), ztoc.WithSpanPlanner(&Planner{Size: size}), ztoc.WithSpanSize(size), ztoc.WithCompressionLevel(DefaultCompressionLevel))
			if err != nil {
				t.Fatal(err)
			}
			zb, err := ztoc.Marshal(z)
			if err != nil {
				t.Fatal(err)
			}
			read := spanBytesRead(t, z, startup)
			t.Logf("  %-8s exact: zTOC %d (estimate %+.2f %%), fetched %d (estimate %+.2f %%)", "", len(zb), pct(e.ztoc, int64(len(zb))), read, pct(e.fetch, read))
		}
	}
	// pick evaluates the plan a planner makes on a layout.
	pick := func(lay *calibLayout, p ztoc.SpanPlanner, base float64) calibPick {
		e := lay.eval(simulate(lay.l, p))
		c := calibPick{regret: float64(e.cost()) / base, eval: e}
		switch p := p.(type) {
		case *Planner:
			c.size, c.cuts = p.Size, len(p.Cuts)
		case *StreamPlanner:
			if c.size = p.cur.Size; p.choices > 1 {
				c.size = 0
			}
		}
		return c
	}
	list := WithStartupFiles(startup)
	var choices []SpanChoice
	for _, o := range []*options{v0Options(t), nowOptions(t)} {
		c := chooseSpanSize(l, o)
		choices = append(choices, c)
		row.picks = append(row.picks, pick(lay, c.Planner(), bestCost))
	}
	for _, o := range []*options{v0Options(t), nowOptions(t)} {
		row.picks = append(row.picks, pick(lay, newStreamPlanner(o), bestCost))
	}
	for _, o := range []*options{v0Options(t, list), nowOptions(t, list)} {
		row.picks = append(row.picks, pick(lay, chooseSpanSize(l, o).Planner(), bestCost))
	}
	for _, o := range []*options{v0Options(t, list), nowOptions(t, list)} {
		row.picks = append(row.picks, pick(lay, newStreamPlanner(o), bestCost))
	}

	// Reordered: the start-up files first, as BuildLayer does with
	// WithReorder; regret against the best plain candidate of that layout.
	order, _, err := planReorder(l, startup)
	if err != nil {
		t.Fatal(err)
	}
	rl := relayout(l, order)
	rlay := newLayout(t, l, rl, order, ref, files)
	var rbest int64 = -1
	for _, size := range DefaultSpanCandidates {
		if c := rlay.eval(simulate(rl, &Planner{Size: size})).cost(); rbest < 0 || c < rbest {
			rbest = c
		}
	}
	for _, o := range []*options{v0Options(t, list), nowOptions(t, list)} {
		row.picks = append(row.picks, pick(rlay, chooseSpanSize(rl, o).Planner(), float64(rbest)))
	}

	// With the profile: two-pass on the layer, and reordered by it (its
	// files read in part after the others), against the best plain
	// candidate of that layout.
	popt := WithStartupFiles(startup)
	if prof != nil {
		popt = WithProfile(prof)
	}
	po := nowOptions(t, popt)
	row.picks = append(row.picks, pick(lay, chooseSpanSize(l, po).Planner(), bestCost))
	porder, _, err := planReorder(l, resolveHot(l, po.files, po).order)
	if err != nil {
		t.Fatal(err)
	}
	pl := relayout(l, porder)
	play := newLayout(t, l, pl, porder, ref, files)
	var pbest int64 = -1
	for _, size := range DefaultSpanCandidates {
		if c := play.eval(simulate(pl, &Planner{Size: size})).cost(); pbest < 0 || c < pbest {
			pbest = c
		}
	}
	row.picks = append(row.picks, pick(play, chooseSpanSize(pl, po).Planner(), float64(pbest)))
	t.Logf("  model v0, no list: %v", choices[0])
	t.Logf("  model now, no list: %v", choices[1])
	t.Logf("  best %s (cost %d; reordered: %d); picks:", sizeString(best), int64(bestCost), rbest)
	for i, p := range row.picks {
		e := p.eval
		t.Logf("  %-11s %-9s %6d spans, zTOC %9d, fetched %9d, %4d spans touched: cost %10d, regret %.3f",
			calibColumns[i], strings.Fields(p.String())[0], e.spans, e.ztoc, e.fetch, e.touched, e.cost(), p.regret)
	}
	return row
}

func pct(est, real int64) float64 { return 100 * float64(est-real) / float64(real) }

func regFiles(l *Layer) int {
	n := 0
	for i := range l.Entries {
		if l.Entries[i].IsReg() && l.Entries[i].Size > 0 {
			n++
		}
	}
	return n
}

// startupBytes is the bytes of the start-up files the layer holds (the
// hot ranges of a profile).
func startupBytes(l *Layer, files []startupFile) int64 {
	var n int64
	h := resolveHot(l, files, &options{partial: defaultPartialRule, ratio: DefaultCompressionRatio})
	for _, i := range h.idx {
		n += rangeBytes(h.files[i].ranges)
	}
	return n
}
