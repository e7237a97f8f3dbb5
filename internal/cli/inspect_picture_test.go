package cli

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socikit/socikit/internal/spanmap"
	"github.com/socikit/socikit/profile"
)

func TestInspectProfile(t *testing.T) {
	t.Parallel()
	srcDir, _ := newLayoutImage(t)
	tmp := t.TempDir()
	dst := filepath.Join(tmp, "out")
	run(t, convertArgs("--prefetch", "one/filec", srcDir, "oci-layout:"+dst)...)
	info := inspectJSON(t, dst)
	spans := 0
	for _, l := range info.Indexes[0].Layers {
		spans += l.Spans
	}

	p := &profile.Profile{Version: profile.Version, Platform: "linux/amd64", Files: []profile.File{
		{Path: "/one/filea", Ranges: []profile.Range{{Offset: 0, Length: 100}}},
		{Path: "/two/hard", Ranges: []profile.Range{{Offset: 10, Length: 10}}}, // hard link to two/fileb
		{Path: "/three/link", Ranges: []profile.Range{{Offset: 0, Length: 1}}}, // symlink to three/filea
		{Path: "/missing", Ranges: []profile.Range{{Offset: 0, Length: 1}}},
	}}
	b, err := profile.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	prof := filepath.Join(tmp, "profile.json")
	if err := os.WriteFile(prof, b, 0o644); err != nil {
		t.Fatal(err)
	}

	// Text summary; the path not found is reported on stderr.
	out, errOut, err := runErr(t, "inspect", "--profile", prof, dst)
	if err != nil || !strings.Contains(out, "TOTAL") || !strings.Contains(errOut, "/missing") {
		t.Fatalf("inspect --profile: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}

	// JSON.
	var res spanmap.Result
	if err := json.Unmarshal([]byte(run(t, "inspect", "--profile", prof, "--json", dst)), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Layers) != 3 || res.NotFound != 1 || res.Totals.FilesFound != 3 {
		t.Fatalf("inspect --profile --json: %+v", res)
	}
	for i, l := range res.Layers {
		if l.FilesFound != 1 || l.SpansTouched != 1 || l.HotBytes == 0 || l.FetchBytes == 0 {
			t.Errorf("layer %d: %+v", i, l)
		}
	}

	// SVG: parses, one cell per span, the same bytes twice.
	svg := filepath.Join(tmp, "out.svg")
	run(t, "inspect", "--profile", prof, "--svg", svg, dst)
	a, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if n := countSpanCells(t, a); n != spans {
		t.Errorf("%d span cells, want %d", n, spans)
	}
	if again := run(t, "inspect", "--svg", "-", "--profile", prof, dst); again != string(a) {
		t.Error("the same inspect drew different SVGs")
	}
	// Without a profile: prefetch only.
	plain := run(t, "inspect", "--svg", "-", dst)
	if n := countSpanCells(t, []byte(plain)); n != spans || strings.Contains(plain, `class="span hot`) || !strings.Contains(plain, `class="span prefetch"`) {
		t.Errorf("SVG without profile: %d cells (want %d), hot or no prefetch cells", n, spans)
	}

	// From a registry: the same picture but for the image name.
	reg := newRegistry(t, false) + "/app:1"
	run(t, convertArgs("--prefetch", "one/filec", srcDir, reg)...)
	fromReg := run(t, "inspect", "--plain-http", "--svg", "-", "--profile", prof, reg)
	if n := countSpanCells(t, []byte(fromReg)); n != spans || strings.ReplaceAll(fromReg, reg, dst) != string(a) {
		t.Errorf("SVG of the registry image: %d cells (want %d), or it differs from the layout's", n, spans)
	}

	if _, _, err := runErr(t, "inspect", "--profile", prof, "--files", dst); err == nil {
		t.Error("--files with --profile: no error")
	}
	if _, _, err := runErr(t, "inspect", "--profile", filepath.Join(tmp, "nope.json"), dst); err == nil {
		t.Error("missing profile file: no error")
	}
}

func countSpanCells(t *testing.T, b []byte) int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	n := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			for _, a := range se.Attr {
				if a.Name.Local == "class" && strings.HasPrefix(a.Value, "span ") {
					n++
				}
			}
		}
	}
}
