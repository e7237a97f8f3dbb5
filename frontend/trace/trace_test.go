package trace

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/socikit/socikit/internal/depcheck"
	"github.com/socikit/socikit/profile"
)

var (
	ptraceOnce  sync.Once
	ptraceCause string
)

// needPtrace skips the test where this process may not trace its child.
func needPtrace(t *testing.T) {
	t.Helper()
	ptraceOnce.Do(func() {
		_, st, err := Run(context.Background(), Options{Command: []string{"/bin/sh", "-c", "exit 0"}, Timeout: 10 * time.Second})
		if err != nil {
			ptraceCause = err.Error()
		} else if !st.OK {
			ptraceCause = st.Cause
		}
	})
	if strings.Contains(ptraceCause, "ptrace") {
		t.Skipf("ptrace is not permitted here: %s", ptraceCause)
	}
	if ptraceCause != "" {
		t.Fatalf("tracing /bin/sh -c 'exit 0': %s", ptraceCause)
	}
}

// testFiles writes big (64 MiB, page cache warm), first.txt and last.txt.
func testFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("socikit-trace test data\n"), MiB/24+1)[:MiB]
	for i := 0; i < 64; i++ {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"first.txt", "last.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// covers tells whether the merged ranges cover [off, off+n).
func covers(rs []profile.Range, off, n int64) bool {
	for _, r := range profile.MergeRanges(rs) {
		if r.Offset <= off && off+n <= r.End() {
			return true
		}
	}
	return false
}

// TestTraceSyntheticStartup traces testprogSource, with the seccomp
// filter (where useFilter allows it) and without.
func TestTraceSyntheticStartup(t *testing.T) {
	needPtrace(t)
	for _, noFilter := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoFilter=%v", noFilter), func(t *testing.T) { testSynthetic(t, noFilter) })
	}
}

func testSynthetic(t *testing.T, noFilter bool) {
	prog := buildTestprog(t)
	dir := testFiles(t)
	var stdout bytes.Buffer
	t0 := time.Now()
	p, st, err := Run(context.Background(), Options{
		Command:  []string{prog, dir, "main"},
		Ready:    "ready",
		Timeout:  20 * time.Second,
		Stdout:   &stdout,
		NoFilter: noFilter,
	})
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status %+v, Run took %v", st, took)
	if !st.OK || p == nil {
		t.Fatalf("no profile: %s; output: %s", st.Cause, stdout.String())
	}
	if st.Cause != `ready line "ready" seen` {
		t.Errorf("cause %q", st.Cause)
	}
	if st.Filtered != (!noFilter && useFilter()) {
		t.Errorf("filtered: %v", st.Filtered)
	}
	if !strings.Contains(stdout.String(), "starting: almost\nready\n") {
		t.Errorf("the output was not passed through: %q", stdout.String())
	}
	// The ready line ends the run promptly, killing the program (it sleeps
	// for an hour).
	if took > 5*time.Second {
		t.Errorf("Run took %v after a start-up of %.2fs", took, st.Seconds)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pid")); err != nil {
		t.Error(err)
	} else if pid, _ := strconv.Atoi(string(b)); pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
		t.Errorf("the traced program (pid %d) is still there", pid)
	}

	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p.Source != profile.SourceBuild || p.Ready != "ready" || !slices.Equal(p.Command, []string{prog, dir, "main"}) {
		t.Errorf("profile header: source %q ready %q command %q", p.Source, p.Ready, p.Command)
	}
	for _, f := range p.Files {
		t.Logf("%s %v", f.Path, f.Ranges)
	}
	real := func(name string) string {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		r, err := filepath.EvalSymlinks(name)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	big := p.Lookup(real("big"))
	if big == nil {
		t.Fatalf("big is not in the profile: %q", p.Paths())
	}
	var known int64
	for _, r := range append(slices.Clone(knownReads), knownPages...) {
		known += r[1]
		if !covers(big.Ranges, r[0], r[1]) {
			t.Errorf("big: known range [%d,+%d) not covered by %v", r[0], r[1], profile.MergeRanges(big.Ranges))
		}
	}
	if got := big.Bytes(); got >= 2*known {
		t.Errorf("big: %d bytes recorded for %d bytes of known ranges", got, known)
	} else {
		t.Logf("big: %d bytes recorded for %d bytes of known ranges", got, known)
	}
	// First-access order.
	paths := p.Paths()
	i1, i2, i3 := slices.Index(paths, real("first.txt")), slices.Index(paths, real("big")), slices.Index(paths, real("last.txt"))
	if i1 < 0 || i3 < 0 || !(i1 < i2 && i2 < i3) {
		t.Errorf("first.txt, big, last.txt at %d, %d, %d in %q", i1, i2, i3, paths)
	}
	// The program itself, mapped by the kernel, comes first.
	if len(paths) == 0 || paths[0] != real(prog) {
		t.Errorf("the executable %s is not first: %q", prog, paths)
	}
	// Encodes.
	if _, err := profile.Marshal(p); err != nil {
		t.Error(err)
	}
}

func TestTraceShell(t *testing.T) {
	needPtrace(t)
	p, st, err := Run(context.Background(), Options{
		Command: []string{"/bin/sh", "-c", "cat /etc/os-release >/dev/null; echo ready"},
		Ready:   "ready",
		Timeout: 20 * time.Second,
		Stdout:  &bytes.Buffer{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !st.OK {
		t.Fatalf("no profile: %s", st.Cause)
	}
	t.Logf("status %+v, files %q", st, p.Paths())
	// /etc/os-release is usually a symlink: the profile names the file
	// read.
	osRelease, err := filepath.EvalSymlinks("/etc/os-release")
	if err != nil {
		t.Skip(err)
	}
	if f := p.Lookup(osRelease); f == nil {
		t.Errorf("%s (/etc/os-release) is not in the profile", osRelease)
	} else if fi, err := os.Stat(osRelease); err == nil && !covers(f.Ranges, 0, fi.Size()) {
		t.Errorf("%s: ranges %v do not cover its %d bytes", osRelease, f.Ranges, fi.Size())
	}
	// The shell's loader and libraries, mapped (ld.so only mmaps them
	// after reading their headers).
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if p.Lookup(sh) == nil {
		t.Errorf("the shell %s is not in the profile", sh)
	}
	ef, err := elf.Open(sh)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	libs, _ := ef.ImportedLibraries()
	var interp string
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			prog.ReadAt(b, 0)
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	if interp == "" || len(libs) == 0 {
		t.Skipf("%s is not dynamically linked", sh)
	}
	if ri, err := filepath.EvalSymlinks(interp); err != nil || p.Lookup(ri) == nil {
		t.Errorf("the loader %s is not in the profile", interp)
	} else if f := p.Lookup(ri); len(f.Ranges) == 0 || f.Bytes() < 4096 {
		t.Errorf("the loader %s: %v", interp, f.Ranges)
	}
	for _, lib := range libs {
		found := false
		for _, f := range p.Files {
			if filepath.Base(f.Path) == lib && f.Bytes() > 4096 {
				found = true
			}
		}
		if !found {
			t.Errorf("library %s of %s is not in the profile (or only its header)", lib, sh)
		}
	}
}

// The seccomp filter is installed where useFilter says, and cuts the stops.
func TestTraceFilter(t *testing.T) {
	needPtrace(t)
	if !useFilter() {
		t.Skip("no seccomp filter here (not root, not amd64 or Linux before 4.8)")
	}
	cmd := []string{"/bin/sh", "-c", "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; for i in 1 2 3 4 5 6 7 8; do cat /etc/os-release >/dev/null; done"}
	var out bytes.Buffer
	p1, st1, err := Run(context.Background(), Options{Command: cmd, Stdout: &out})
	if err != nil || !st1.OK {
		t.Fatal(err, st1)
	}
	if !st1.Filtered || !strings.Contains(out.String(), "NoNewPrivs:\t1") || !strings.Contains(out.String(), "Seccomp:\t2") {
		t.Errorf("status %+v, output %q", st1, out.String())
	}
	out.Reset()
	p2, st2, err := Run(context.Background(), Options{Command: cmd, Stdout: &out, NoFilter: true})
	if err != nil || !st2.OK {
		t.Fatal(err, st2)
	}
	if st2.Filtered || !strings.Contains(out.String(), "NoNewPrivs:\t0") {
		t.Errorf("status %+v, output %q", st2, out.String())
	}
	t.Logf("stops: %d with the filter, %d without", st1.Stops, st2.Stops)
	if st1.Stops >= st2.Stops {
		t.Errorf("stops: %d with the filter, %d without", st1.Stops, st2.Stops)
	}
	// The same files either way.
	if !slices.Equal(p1.Paths(), p2.Paths()) {
		t.Errorf("files with the filter %q, without %q", p1.Paths(), p2.Paths())
	}
}

func TestReleaseAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{"6.18.44-fc-v1252": true, "4.8.0": true, "4.7.10": false, "5.4": true, "3.10.0-1160.el7.x86_64": false, "4.19-rc1": true, "x": false, "4": false} {
		if releaseAtLeast(rel, 4, 8) != want {
			t.Errorf("%s: %v", rel, !want)
		}
	}
}

func TestFilterProgram(t *testing.T) {
	for _, arch := range []uint32{0xc000003e, 0xc00000b7} {
		prog := filterProgram(arch)
		if len(prog) < 20 || len(prog) > 4096 {
			t.Errorf("%d instructions", len(prog))
		}
		b, fprog := filterBytes(prog, 0x1000)
		if fprog != 0x1000+uint64(len(prog))*8 || len(b) != len(prog)*8+16 {
			t.Errorf("layout: %d bytes, sock_fprog at %#x", len(b), fprog)
		}
	}
}

func TestTraceTimeout(t *testing.T) {
	needPtrace(t)
	prog := buildTestprog(t)
	t0 := time.Now()
	p, st, err := Run(context.Background(), Options{
		Command: []string{prog, t.TempDir(), "sleep"},
		Ready:   "ready",
		Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p != nil || st.OK || st.Cause != "no ready line after 1s" {
		t.Errorf("profile %v, status %+v", p != nil, st)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestTraceTimeoutWithoutReady(t *testing.T) {
	needPtrace(t)
	p, st, err := Run(context.Background(), Options{
		Command: []string{"/bin/sh", "-c", "cat /etc/os-release >/dev/null; sleep 100"},
		Timeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || !st.OK || !strings.Contains(st.Cause, "still running after 500ms") {
		t.Errorf("profile %v, status %+v", p != nil, st)
	}
}

func TestTraceMissingCommand(t *testing.T) {
	for _, tc := range []struct {
		cmd   []string
		env   []string
		cause string
	}{
		{[]string{"/app/x"}, nil, `start-up command "/app/x" not found in the image`},
		{[]string{"no-such-command-socikit"}, []string{"PATH=/usr/bin:/bin"}, `start-up command "no-such-command-socikit" not found in the image (PATH=/usr/bin:/bin)`},
		{[]string{"/etc/os-release"}, nil, `start-up command "/etc/os-release" is not executable (mode -rw-r--r--)`},
		{[]string{"/"}, nil, `start-up command "/" is a directory`},
	} {
		p, st, err := Run(context.Background(), Options{Command: tc.cmd, Env: tc.env, Ready: "ready"})
		if err != nil {
			t.Fatal(err)
		}
		if p != nil || st.OK || st.Cause != tc.cause {
			t.Errorf("%q: profile %v, status %+v, want cause %q", tc.cmd, p != nil, st, tc.cause)
		}
	}
}

func TestTraceNotExecutableFormat(t *testing.T) {
	needPtrace(t)
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("\x7fELF garbage"), 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(missing, []byte("#!/no/such/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ cmd, cause string }{
		{bad, "exec format error"},
		{missing, "its interpreter"},
	} {
		p, st, err := Run(context.Background(), Options{Command: []string{tc.cmd}, Ready: "ready"})
		if err != nil {
			t.Fatal(err)
		}
		if p != nil || st.OK || !strings.Contains(st.Cause, tc.cause) {
			t.Errorf("%s: profile %v, status %+v", tc.cmd, p != nil, st)
		}
	}
}

func TestTraceEarlyExit(t *testing.T) {
	needPtrace(t)
	prog := buildTestprog(t)
	for _, tc := range []struct {
		cmd   []string
		cause string
	}{
		{[]string{"/bin/sh", "-c", "echo starting; exit 1"}, `start-up exited with status 1 before printing the ready line "ready"`},
		{[]string{"/bin/sh", "-c", "echo starting"}, `start-up exited with status 0 before printing the ready line "ready"`},
		{[]string{prog, "-", "exit", "7"}, `start-up exited with status 7 before printing the ready line "ready"`},
		{[]string{"/bin/sh", "-c", "kill -SEGV $$"}, `start-up killed by signal 11 (SIGSEGV) before printing the ready line "ready"`},
	} {
		p, st, err := Run(context.Background(), Options{Command: tc.cmd, Ready: "ready", Stdout: &bytes.Buffer{}})
		if err != nil {
			t.Fatal(err)
		}
		if p != nil || st.OK || st.Cause != tc.cause {
			t.Errorf("%q: profile %v, status %+v, want cause %q", tc.cmd, p != nil, st, tc.cause)
		}
	}
}

func TestTraceExitWithoutReady(t *testing.T) {
	needPtrace(t)
	p, st, err := Run(context.Background(), Options{Command: []string{"/bin/sh", "-c", "cat /etc/os-release >/dev/null; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	osRelease, _ := filepath.EvalSymlinks("/etc/os-release")
	if p == nil || !st.OK || st.Cause != "start-up command exited with status 3" || p.Lookup(osRelease) == nil {
		t.Errorf("profile %v, status %+v", p != nil, st)
	}
}

// A start-up that daemonizes: the command exits 0, its child prints the
// ready line.
func TestTraceDaemonizing(t *testing.T) {
	needPtrace(t)
	p, st, err := Run(context.Background(), Options{
		Command: []string{"/bin/sh", "-c", "(sleep 0.2; cat /etc/os-release >/dev/null; echo ready; sleep 100) & exit 0"},
		Ready:   "ready",
		Timeout: 10 * time.Second,
		Stdout:  &bytes.Buffer{},
	})
	if err != nil {
		t.Fatal(err)
	}
	osRelease, _ := filepath.EvalSymlinks("/etc/os-release")
	if p == nil || !st.OK || p.Lookup(osRelease) == nil {
		t.Errorf("profile %v, status %+v", p != nil, st)
	}
}

// Signals reach the traced program, stop signals included.
func TestTraceSignals(t *testing.T) {
	needPtrace(t)
	var out bytes.Buffer
	_, st, err := Run(context.Background(), Options{
		Command: []string{"/bin/sh", "-c", "trap 'echo got-usr1' USR1; kill -USR1 $$; kill -STOP $$; echo ready"},
		Ready:   "ready",
		Timeout: 10 * time.Second,
		Stdout:  &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !st.OK || !strings.Contains(out.String(), "got-usr1") {
		t.Errorf("status %+v, output %q", st, out.String())
	}
}

func TestTraceCaps(t *testing.T) {
	needPtrace(t)
	p, st, err := Run(context.Background(), Options{
		Command:  []string{"/bin/sh", "-c", "cat /etc/os-release /etc/passwd /etc/group >/dev/null"},
		MaxFiles: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || !st.OK || !st.Truncated || len(p.Files) != 2 || !strings.Contains(st.Cause, "limit of 2 files") {
		t.Errorf("profile %v, status %+v", p != nil, st)
	}
}

func TestTraceExcludes(t *testing.T) {
	needPtrace(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644)
	p, st, err := Run(context.Background(), Options{
		Command: []string{"/bin/sh", "-c", "cat " + dir + "/x /proc/self/status >/dev/null"},
		Exclude: []string{dir},
	})
	if err != nil || !st.OK {
		t.Fatal(err, st)
	}
	for _, f := range p.Files {
		if strings.HasPrefix(f.Path, dir) || strings.HasPrefix(f.Path, "/proc/") {
			t.Errorf("%s recorded", f.Path)
		}
	}
}

func TestRunOptions(t *testing.T) {
	for _, o := range []Options{{}, {Command: []string{""}}, {Command: []string{"x"}, Ready: "a\nb"}, {Command: []string{"x"}, Exclude: []string{"rel"}}} {
		if _, _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestNoBuildKitImports(t *testing.T) {
	bad, err := depcheck.Forbidden("github.com/socikit/socikit/frontend/trace",
		"github.com/moby/buildkit", "github.com/containerd", "github.com/hanwen/go-fuse")
	if err != nil {
		t.Skip(err)
	}
	if len(bad) > 0 {
		t.Errorf("frontend/trace depends on %q", bad)
	}
}
