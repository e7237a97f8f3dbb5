package cli

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestConvertProgressPlain: with stderr not a terminal, convert writes a
// plain line per layer indexed and per blob copied, and the SOCI index;
// --progress quiet writes none of them.
func TestConvertProgressPlain(t *testing.T) {
	t.Parallel()
	src, im := newLayoutImage(t)
	_, errOut, err := runErr(t, convertArgs(src, "oci-layout:"+filepath.Join(t.TempDir(), "out"))...)
	if err != nil {
		t.Fatalf("convert: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	want := map[string]bool{}
	for _, l := range im.layers {
		want["layer "+shortDigest(l.desc.Digest.String())+": indexed, "] = false
	}
	var other []string
	for _, line := range lines {
		matched := false
		for p := range want {
			if strings.HasPrefix(line, p) {
				want[p], matched = true, true
			}
		}
		switch {
		case matched:
		case strings.HasPrefix(line, "blob ") && strings.Contains(line, ": copied, "):
		case strings.HasPrefix(line, "SOCI index sha256:"):
		default:
			other = append(other, line)
		}
	}
	for p, seen := range want {
		if !seen {
			t.Errorf("no line %q...", p)
		}
	}
	if len(other) > 0 {
		t.Errorf("unexpected lines %q in\n%s", other, errOut)
	}

	_, errOut, err = runErr(t, convertArgs("--progress", "quiet", src, "oci-layout:"+filepath.Join(t.TempDir(), "out"))...)
	if err != nil || errOut != "" {
		t.Errorf("--progress quiet: %v, stderr %q", err, errOut)
	}
	if _, _, err := runErr(t, convertArgs("--progress", "loud", src, "oci-layout:"+filepath.Join(t.TempDir(), "out"))...); err == nil {
		t.Error("--progress loud: no error")
	}
}
