// Package trace records a start-up profile: it runs a command as a traced
// child and records which byte ranges of which files the command and its
// descendants read, in first-access order, including the pages of files
// they map and touch. The `# syntax=` frontend runs it (as socikit-trace,
// cmd/socikit-trace) in an exec on the image's final rootfs during the
// build; the result is a profile.Profile with Source profile.SourceBuild.
// docs/profile.md, "Recording inside the build", has the measurements.
//
// # Technique
//
// The command is started with PTRACE_TRACEME and traced from one locked
// OS thread, following forks, vforks, clones and execs. That needs no
// capability and no BuildKit entitlement: a process may trace its own
// child under the default seccomp profile of containerd and BuildKit
// (which allows ptrace from Linux 4.8 on) and under Yama ptrace_scope 0
// or 1.
//
//   - Reads through system calls are recorded at their syscall-exit stop:
//     read and readv (offset: the descriptor's position after the read,
//     from /proc/PID/fdinfo, minus the bytes read), pread64, preadv and
//     preadv2 (the offset argument), sendfile, copy_file_range and splice
//     (the offset the pointer argument points to, or the position). The
//     path is /proc/PID/fd/FD's, cached per process and descriptor (see
//     fdEntry). Only regular files are recorded; deleted files and
//     excluded prefixes (/proc, /sys, /dev and Options.Exclude) are not.
//     Paths are those of the files opened, symbolic links resolved.
//   - Mapped files: the pages a process has touched are the present (or
//     swapped) pages of its file mappings, read from /proc/PID/maps and
//     /proc/PID/pagemap (its flag bits are readable without
//     CAP_SYS_ADMIN; only the frame numbers are hidden). Every traced
//     process is sampled every Options.Interval; at the entry of execve
//     (the old image) and exit_group; at the entry of munmap, mremap,
//     madvise(MADV_DONTNEED and the like) and mmap(MAP_FIXED) over a range
//     that may hold file pages not sampled yet; when its last thread exits
//     or a signal kills it; and at the ready line. This covers the
//     executable and the dynamic loader, which the kernel maps.
//   - Order: a file's place is that of its first open for reading (seen at
//     the open's exit; the executable and its interpreter at the exec),
//     or of its first recorded read if that came first; the ranges of a
//     file are in the order they were seen: a read's at once, a mapped
//     page's at the first sample that found it, in address order within
//     a sample.
//   - Reading a tracee's /proc files takes its ids or CAP_SYS_PTRACE (not
//     in a build step): a root tracer reads them with the tracee's ids as
//     its threads' fsuid and fsgid, so start-ups that drop privileges
//     (gosu, su-exec) are recorded too (creds.go).
//   - As root on amd64 (Linux 4.8+), the tracer installs a seccomp filter
//     in the command at its first system call, so that tracees stop only
//     at the system calls above instead of at every one (filter.go);
//     Options.NoFilter turns that off.
//
// # Precision
//
// Reads are exact. A read fault on a file mapping also maps the pages
// around it that are already in the page cache (fault-around: the 64 KiB
// window, aligned in the process's address space, around the fault by
// default, debugfs fault_around_bytes), so one touched page can bring up
// to 15 untouched neighbours into the profile when the file was cached,
// as it usually is in a build that has just written the image's files.
// Not recorded: reads through io_uring; reads by the kernel on a
// process's behalf other than mappings (exec reading the ELF headers and
// the #! line); mapped pages touched and then dropped between two samples
// of a process that lives on by other means than munmap, mremap, madvise
// and mmap(MAP_FIXED) (memory pressure reclaiming them, truncation); the
// pages of a process killed by SIGKILL from outside the traced tree since
// its last sample; the system calls of 32-bit (i386, x32, AArch32)
// processes, whose mapped pages are still sampled; processes that are not
// dumpable (between a setuid and the next exec, or by prctl), whose /proc
// files take CAP_SYS_PTRACE.
//
// A start-up that itself uses ptrace (a debugger) cannot run traced; a
// process that stops itself with SIGSTOP runs on (see tracer.handle).
//
// Run reaps only its own tracees (wait4 with __WNOTHREAD on its tracer
// thread), so a program embedding the package may run other children,
// but not two Runs' tracees on one thread: each Run has its own.
package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/socikit/socikit/profile"
)

// DefaultExclude are the path prefixes never recorded.
var DefaultExclude = []string{"/proc", "/sys", "/dev"}

// Defaults of Options.
const (
	DefaultTimeout  = 60 * time.Second
	DefaultInterval = 10 * time.Millisecond
)

// Options of Run.
type Options struct {
	// Command is the start-up command and its arguments; a name without a
	// slash is looked up in the PATH of Env.
	Command []string
	// Ready is the ready text: the run ends at the first line of the
	// command's output (stdout or stderr) containing it. Empty: the run
	// ends when the command exits.
	Ready string
	// Timeout bounds the run (DefaultTimeout if zero). With Ready set, no
	// ready line within it fails the run; without, the command is stopped
	// and what was recorded is kept.
	Timeout time.Duration
	// Exclude are path prefixes not recorded, on top of DefaultExclude
	// (the tracer's own mounts, for instance).
	Exclude []string
	// Env is the command's environment (os.Environ() if nil); Dir its
	// working directory ("" for the current one).
	Env []string
	Dir string
	// Stdin is the command's standard input (/dev/null if nil). Its
	// standard output and error are copied to Stdout and Stderr
	// (os.Stdout and os.Stderr if nil) while watched for the ready line.
	Stdin          *os.File
	Stdout, Stderr io.Writer
	// Interval is the period of mapped-page sampling (DefaultInterval if
	// zero). A sample that takes long stretches it (to three times the
	// sample's duration), bounding the tracer's share of the CPU.
	Interval time.Duration
	// NoFilter: do not install the seccomp filter that makes tracees stop
	// only at the system calls of interest; stop at every one.
	NoFilter bool
	// MaxFiles and MaxRanges cap what is recorded (profile.MaxFiles and
	// profile.MaxRanges if zero): recording stops at the cap and the
	// Status says so.
	MaxFiles, MaxRanges int
}

// Status is how a run went, as socikit-trace writes it (--status).
type Status struct {
	// OK is true when a profile was made.
	OK bool `json:"ok"`
	// Cause tells why the run ended, or why no profile was made.
	Cause string `json:"cause"`
	// Files, Ranges and Bytes (merged) are the profile's.
	Files  int   `json:"files"`
	Ranges int   `json:"ranges"`
	Bytes  int64 `json:"bytes"`
	// Seconds is the time from the start to the ready line or the exit.
	Seconds float64 `json:"seconds"`
	// Truncated is set when recording stopped at MaxFiles or MaxRanges.
	Truncated bool `json:"truncated,omitempty"`
	// Filtered tells that the seccomp filter was installed; Stops is the
	// number of ptrace stops (the tracing's cost).
	Filtered bool `json:"seccomp_filter,omitempty"`
	Stops    int  `json:"stops,omitempty"`
}

// Run runs o.Command traced and returns its start-up profile, or a nil
// profile and a Status telling why there is none (the command could not
// start or be traced, exited before the ready line, timed out). The error
// is for invalid options only. The profile has Source profile.SourceBuild,
// Command and Ready set, and the platform Run runs on.
func Run(ctx context.Context, o Options) (*profile.Profile, Status, error) {
	if len(o.Command) == 0 || o.Command[0] == "" {
		return nil, Status{}, errors.New("trace: no command")
	}
	if strings.ContainsAny(o.Ready, "\n\r") {
		return nil, Status{}, errors.New("trace: the ready text must be a part of one line")
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MaxFiles <= 0 || o.MaxFiles > profile.MaxFiles {
		o.MaxFiles = profile.MaxFiles
	}
	if o.MaxRanges <= 0 || o.MaxRanges > profile.MaxRanges {
		o.MaxRanges = profile.MaxRanges
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	excl, err := cleanExcludes(o.Exclude)
	if err != nil {
		return nil, Status{}, err
	}
	r := &run{o: o, start: time.Now()}
	p, st := r.run(ctx, excl)
	return p, st, nil
}

func cleanExcludes(extra []string) ([]string, error) {
	var out []string
	for _, e := range append(append([]string{}, DefaultExclude...), extra...) {
		if !strings.HasPrefix(e, "/") {
			return nil, fmt.Errorf("trace: exclude %q: not an absolute path", e)
		}
		out = append(out, filepath.Clean(e))
	}
	return out, nil
}

// excluded tells whether path is one of the prefixes or under one.
func excluded(prefixes []string, path string) bool {
	for _, x := range prefixes {
		if x == "/" || path == x || strings.HasPrefix(path, x) && path[len(x)] == '/' {
			return true
		}
	}
	return false
}

// validPath tells whether a profile may hold path.
func validPath(p string) bool {
	return len(p) > 1 && p[0] == '/' && len(p) <= profile.MaxPathLen &&
		profile.CleanPath(p) == p && strings.IndexByte(p, 0) < 0
}

type run struct {
	o     Options
	start time.Time
}

func (r *run) fail(cause string) (*profile.Profile, Status) {
	return nil, Status{Cause: cause, Seconds: time.Since(r.start).Seconds()}
}

func (r *run) run(ctx context.Context, excl []string) (*profile.Profile, Status) {
	o := &r.o
	argv0, notFound := lookCommand(o.Command[0], o.Env, o.Dir)
	if notFound != "" {
		return r.fail(notFound)
	}
	stdin := o.Stdin
	if stdin == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return r.fail("open " + os.DevNull + ": " + err.Error())
		}
		defer f.Close()
		stdin = f
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return r.fail("pipe: " + err.Error())
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return r.fail("pipe: " + err.Error())
	}

	rec := newRecorder(o.MaxFiles, o.MaxRanges)
	t := newTracer(rec, excl)
	t.wantFilter = !o.NoFilter && useFilter()
	t.argv0, t.argv, t.env, t.dir = argv0, o.Command, o.Env, o.Dir
	t.files = []uintptr{stdin.Fd(), outW.Fd(), errW.Fd()}
	go t.run()
	err = <-t.started
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		<-t.done
		return r.fail(startCause(o.Command[0], argv0, err))
	}

	// The command's output, passed through and watched.
	found := make(chan struct{})
	once := &sync.Once{}
	var readers sync.WaitGroup
	for _, s := range []struct {
		w io.Writer
		r *os.File
	}{{o.Stdout, outR}, {o.Stderr, errR}} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			(&readyWatcher{ready: []byte(o.Ready), once: once, found: found}).copy(s.w, s.r)
		}()
	}
	outputDone := make(chan struct{})
	go func() { readers.Wait(); close(outputDone) }()

	// Periodic samples of every traced process, and the last one, from a
	// thread of its own: it takes each tracee's ids as its fsuid (creds.go),
	// and is never unlocked, so it ends with the goroutine.
	stopSampling := make(chan bool, 1) // true: a last sample first
	sampling := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer close(sampling)
		var sb sampleBuf
		fs := newFSState()
		sampleAll := func() {
			for _, lp := range t.liveProcs() {
				switchFS(&fs, lp.creds)
				t.smp.sample(lp.pid, 0, math.MaxUint64, &sb)
			}
		}
		wait := o.Interval
		for {
			select {
			case last := <-stopSampling:
				if last {
					sampleAll()
				}
				return
			case <-time.After(wait):
			}
			t0 := time.Now()
			sampleAll()
			wait = max(o.Interval, 3*time.Since(t0))
		}
	}()

	timer := time.NewTimer(o.Timeout)
	defer timer.Stop()
	readyText := o.Ready
	var (
		ok      bool
		cause   string
		elapsed time.Duration
	)
	readyCh := (<-chan struct{})(found)
	if readyText == "" {
		readyCh = nil
	}
	rootExit := t.rootExit
	done := (<-chan struct{})(t.done)
	var exitWS *syscall.WaitStatus
wait:
	for {
		select {
		case <-readyCh:
			ok, cause = true, fmt.Sprintf("ready line %q seen", readyText)
			break wait
		case ws := <-rootExit:
			rootExit = nil
			exitWS = &ws
			if readyText == "" {
				ok, cause = true, "start-up command "+waitString(ws)
				break wait
			}
			// The ready line may still be in the pipe: give the readers
			// a moment.
			if r.readyAfterAll(found, outputDone) {
				ok, cause = true, fmt.Sprintf("ready line %q seen", readyText)
				break wait
			}
			if !ws.Exited() || ws.ExitStatus() != 0 {
				cause = fmt.Sprintf("start-up %s before printing the ready line %q", waitString(ws), readyText)
				break wait
			}
			// Exited 0: a start-up that daemonizes goes on in its
			// descendants.
		case <-done:
			if exitWS == nil {
				select {
				case ws := <-rootExit:
					exitWS = &ws
				default:
				}
			}
			exited := "ended"
			if exitWS != nil {
				exited = waitString(*exitWS)
			}
			switch {
			case readyText == "":
				ok, cause = true, "start-up command "+exited
			case r.readyAfterAll(found, outputDone):
				ok, cause = true, fmt.Sprintf("ready line %q seen", readyText)
			default:
				cause = fmt.Sprintf("start-up %s before printing the ready line %q", exited, readyText)
			}
			break wait
		case <-timer.C:
			if readyText != "" {
				cause = fmt.Sprintf("no ready line after %s", fmtDuration(o.Timeout))
			} else {
				ok, cause = true, fmt.Sprintf("start-up command still running after %s: stopped it there", fmtDuration(o.Timeout))
			}
			break wait
		case <-ctx.Done():
			cause = "cancelled: " + context.Cause(ctx).Error()
			break wait
		}
	}
	elapsed = time.Since(r.start)

	// Stop: a last sample of every process still running (what it has
	// touched since its last sample), then kill them all.
	stopSampling <- ok
	<-sampling
	rec.stop()
	t.stop()
	select {
	case <-t.done:
	case <-time.After(10 * time.Second):
		// A tracee stuck in the kernel (uninterruptible sleep): go on; it
		// dies with the tracer thread.
	}
	select {
	case <-outputDone:
	case <-time.After(time.Second):
		// A descendant that escaped the kill holds the pipes.
	}
	outR.Close()
	errR.Close()

	files, truncated := rec.result()
	st := Status{OK: ok, Cause: cause, Seconds: elapsed.Seconds(), Truncated: truncated != ""}
	select {
	case <-t.done: // the counters are the tracer thread's
		st.Filtered, st.Stops = t.filtered, t.stops
	default:
	}
	if !ok {
		return nil, st
	}
	if truncated != "" {
		st.Cause += "; " + truncated
	}
	p := &profile.Profile{
		Version:  profile.Version,
		Platform: "linux/" + runtime.GOARCH,
		Source:   profile.SourceBuild,
		Command:  append([]string(nil), o.Command...),
		Ready:    o.Ready,
		Files:    files,
	}
	if p.Files == nil {
		p.Files = []profile.File{}
	}
	st.Files = len(p.Files)
	for _, f := range p.Files {
		st.Ranges += len(f.Ranges)
	}
	st.Bytes = p.Bytes()
	return p, st
}

// fmtDuration writes whole seconds as "60s", others as time.Duration does.
func fmtDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// readyAfterAll waits a little for the output readers to see the ready
// line after the command exited.
func (r *run) readyAfterAll(found, outputDone <-chan struct{}) bool {
	select {
	case <-found:
		return true
	default:
	}
	select {
	case <-found:
		return true
	case <-outputDone:
		select {
		case <-found:
			return true
		default:
			return false
		}
	case <-time.After(200 * time.Millisecond):
		return false
	}
}

// lookCommand finds the command's executable as execve will see it:
// names with a slash as they are (relative to dir), others in env's PATH.
// It returns a cause when there is none.
func lookCommand(name string, env []string, dir string) (string, string) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		return name, checkExecutable(name, p)
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	var firstCause string
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		cause := checkExecutable(name, p)
		if cause == "" {
			return p, ""
		}
		if firstCause == "" && !strings.Contains(cause, "not found") {
			firstCause = cause
		}
	}
	if firstCause != "" {
		return "", firstCause
	}
	return "", fmt.Sprintf("start-up command %q not found in the image (PATH=%s)", name, pathEnv)
}

func checkExecutable(name, p string) string {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("start-up command %q not found in the image", name)
	case err != nil:
		return fmt.Sprintf("start-up command %q: %v", name, err)
	case fi.IsDir():
		return fmt.Sprintf("start-up command %q is a directory", name)
	case fi.Mode()&0o111 == 0:
		return fmt.Sprintf("start-up command %q is not executable (mode %v)", name, fi.Mode().Perm())
	}
	return ""
}

// startCause explains an error starting the command under ptrace.
func startCause(name, argv0 string, err error) string {
	var se errStart
	if !errors.As(err, &se) {
		return "tracing the start-up command: " + err.Error()
	}
	switch {
	case errors.Is(err, syscall.EPERM):
		return fmt.Sprintf("ptrace is not permitted here, so the start-up cannot be traced (starting %q with PTRACE_TRACEME: %v): "+
			"a seccomp profile (Docker's and containerd's default allow ptrace on Linux 4.8 and later only) or a Yama ptrace_scope of 2 or 3 refuses it", name, err)
	case errors.Is(err, syscall.ENOSYS):
		return fmt.Sprintf("ptrace is not available here, so the start-up cannot be traced (starting %q: %v): an emulated platform (QEMU user mode) or a sandbox without ptrace (gVisor)?", name, err)
	case errors.Is(err, syscall.ENOENT):
		return fmt.Sprintf("start-up command %q could not be executed: its interpreter (the ELF program interpreter or the #! line's program) is missing from the image", argv0)
	case errors.Is(err, syscall.ENOEXEC):
		return fmt.Sprintf("start-up command %q is not an executable for linux/%s (exec format error)", argv0, runtime.GOARCH)
	case errors.Is(err, syscall.EACCES):
		return fmt.Sprintf("start-up command %q is not executable (permission denied; a noexec mount?)", argv0)
	}
	return fmt.Sprintf("could not start the start-up command %q: %v", name, err)
}
