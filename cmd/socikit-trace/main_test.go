package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socikit/socikit/frontend/trace"
	"github.com/socikit/socikit/profile"
)

func readStatus(t *testing.T, name string) trace.Status {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var st trace.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	out, status := filepath.Join(dir, "profile.json"), filepath.Join(dir, "status.json")
	code := run([]string{"--ready", "ready", "--timeout", "20s", "--out", out, "--status", status, "--exclude", "/nonexistent",
		"--", "/bin/sh", "-c", "cat /etc/os-release >/dev/null; echo ready; sleep 100"})
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	st := readStatus(t, status)
	if !st.OK {
		if strings.Contains(st.Cause, "ptrace") {
			t.Skip(st.Cause)
		}
		t.Fatalf("status %+v", st)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Files) != st.Files || st.Files == 0 || p.Source != profile.SourceBuild || p.Ready != "ready" {
		t.Errorf("status %+v, profile of %d files, source %q, ready %q", st, len(p.Files), p.Source, p.Ready)
	}

	// A failed start-up: status written, exit 0, no profile.
	os.Remove(out)
	code = run([]string{"--ready", "ready", "--out", out, "--status", status, "--", "/app/x"})
	if code != 0 {
		t.Errorf("exit %d", code)
	}
	if st := readStatus(t, status); st.OK || st.Cause != `start-up command "/app/x" not found in the image` {
		t.Errorf("status %+v", st)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("profile written: %v", err)
	}
	// Without --status, the exit code tells.
	if code := run([]string{"--", "/app/x"}); code != 1 {
		t.Errorf("exit %d without --status", code)
	}
}

func TestCLIUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"--ready", "x"}, {"--timeout", "x", "--", "true"}, {"--exclude", "relative", "--", "true"}, {"--bogus"}} {
		if code := run(args); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

// TestMain runs the command itself when asked (the test binary is then
// socikit-trace, for runs under setpriv).
func TestMain(m *testing.M) {
	if os.Getenv("SOCIKIT_TRACE_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// A start-up that drops privileges (root, then uid 1000), traced by root
// without CAP_SYS_PTRACE, as in a build step: its reads after the drop are
// recorded (the tracer reads its /proc files with its ids as fsuid).
func TestCLIPrivilegeDrop(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if os.Geteuid() != 0 || err != nil {
		t.Skip("needs root and setpriv")
	}
	osRelease, err := filepath.EvalSymlinks("/etc/os-release")
	if err != nil {
		t.Skip(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"--interval=10ms", "--no-filter"} {
		dir := t.TempDir()
		out, status := filepath.Join(dir, "profile.json"), filepath.Join(dir, "status.json")
		cmd := exec.Command(setpriv, "--bounding-set", "-sys_ptrace,-sys_admin", self, mode, "--out", out, "--status", status,
			"--", setpriv, "--reuid", "1000", "--regid", "1000", "--clear-groups", "/bin/cat", "/etc/os-release")
		cmd.Env = append(os.Environ(), "SOCIKIT_TRACE_MAIN=1")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", mode, err, b)
		}
		st := readStatus(t, status)
		if !st.OK {
			if strings.Contains(st.Cause, "ptrace") {
				t.Skip(st.Cause)
			}
			t.Fatalf("%s: status %+v", mode, st)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		p, err := profile.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if p.Lookup(osRelease) == nil {
			t.Errorf("%s: %s, read as uid 1000, is not in the profile: %q", mode, osRelease, p.Paths())
		}
	}
}
