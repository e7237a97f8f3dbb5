package trace

import (
	"errors"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ptraceOptions: follow every new task, report exec and exit, kill the
// tracees if the tracer dies, and tell syscall stops apart.
const ptraceOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK |
	unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_TRACEEXIT | unix.PTRACE_O_EXITKILL | unix.PTRACE_O_TRACESYSGOOD

// waitFlags: all tracees (threads too), but only this thread's: a
// program embedding the package may have children of its own.
const waitFlags = unix.WALL | unix.WNOTHREAD

// tracer traces one start-up command and its descendants. Everything but
// the fields under mu and stopping belongs to the tracer thread.
type tracer struct {
	rec  *recorder
	smp  *sampler
	excl []string

	// Set before run, read by the tracer thread.
	argv0 string
	argv  []string
	env   []string
	dir   string
	files []uintptr

	// wantFilter: install the seccomp filter in the root task (useFilter);
	// filtered: it is installed, tracees stop only at the calls of interest.
	wantFilter, filtered bool

	stopping atomic.Bool
	mu       sync.Mutex
	live     map[int]creds // processes (thread group ids) being traced

	// Results for the controller.
	started  chan error              // nil once the command runs traced
	rootExit chan syscall.WaitStatus // the start-up command's exit
	done     chan struct{}           // closed when no tracee is left

	// Tracer thread only.
	root    int
	stops   int
	fs      fsState // the tracer thread's fsuid and fsgid (creds.go)
	tasks   map[int]*task
	procs   map[int]*proc
	sb      sampleBuf
	linkBuf [4096]byte
	infoBuf [4096]byte
	pathBuf []byte
}

// task is one traced thread.
type task struct {
	tid, tgid int
	fresh     bool // auto-attached, its initial SIGSTOP not yet seen
	inSyscall bool // between a syscall-entry stop and its exit stop
	skip      bool // the syscall entered is of no interest at exit
	exiting   bool // in or past its PTRACE_EVENT_EXIT stop
	nr        uint64
	args      [6]uint64
	inject    *injection // the seccomp filter's installation, in the root
}

// proc is one traced process (thread group).
type proc struct {
	threads     map[int]*task
	fds         map[int]fdEntry
	exitSampled bool  // sampled as it exits as a whole
	creds       creds // to read its /proc files with
}

func newTracer(rec *recorder, excl []string) *tracer {
	t := &tracer{
		rec:      rec,
		excl:     excl,
		live:     map[int]creds{},
		started:  make(chan error, 1),
		rootExit: make(chan syscall.WaitStatus, 1),
		done:     make(chan struct{}),
		tasks:    map[int]*task{},
		procs:    map[int]*proc{},
	}
	t.smp = newSampler(rec, t.wanted)
	return t
}

// wanted tells whether reads of path are recorded: a clean absolute path
// within the profile's limits, not under an excluded prefix.
func (t *tracer) wanted(path string) bool {
	if !validPath(path) {
		return false
	}
	return !excluded(t.excl, path)
}

// errStart wraps the error of starting the command (fork, ptrace, exec).
type errStart struct{ err error }

func (e errStart) Error() string { return e.err.Error() }
func (e errStart) Unwrap() error { return e.err }

// run starts the command and traces it until no tracee is left. It runs
// on a goroutine of its own and keeps it locked to its OS thread: ptrace
// requests are only accepted from the tracer thread. The thread is never
// unlocked, so it ends with the goroutine, and with it any tracee left
// (PTRACE_O_EXITKILL and Pdeathsig).
func (t *tracer) run() {
	runtime.LockOSThread()
	defer close(t.done)
	t.fs = newFSState()
	pid, err := syscall.ForkExec(t.argv0, t.argv, &syscall.ProcAttr{
		Dir:   t.dir,
		Env:   t.env,
		Files: t.files,
		Sys:   &syscall.SysProcAttr{Ptrace: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		t.started <- errStart{err}
		return
	}
	// The child stops with SIGTRAP after its execve.
	var ws syscall.WaitStatus
	if _, err := wait4(pid, &ws); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL) // best effort: err is what counts
		t.started <- err
		return
	}
	if !ws.Stopped() {
		t.started <- errors.New("the start-up command ended before its first instruction: " + waitString(ws))
		return
	}
	opts := ptraceOptions
	if t.wantFilter {
		opts |= unix.PTRACE_O_TRACESECCOMP
	}
	if err := unix.PtraceSetOptions(pid, opts); err != nil {
		// Best effort: the options error is what counts.
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_, _ = wait4(pid, &ws)
		t.started <- errors.New("ptrace: setting the options: " + err.Error())
		return
	}
	t.root = pid
	root := t.addTask(pid)
	root.fresh = false
	if t.wantFilter {
		root.inject = &injection{}
	}
	t.noteExec(pid)
	t.started <- nil
	t.resume(t.tasks[pid], 0)
	t.loop()
}

func wait4(pid int, ws *syscall.WaitStatus) (int, error) {
	for {
		wpid, err := syscall.Wait4(pid, ws, waitFlags, nil)
		if err != syscall.EINTR {
			return wpid, err
		}
	}
}

// loop handles the tracees' stops until none is left.
func (t *tracer) loop() {
	var ws syscall.WaitStatus
	for {
		tid, err := wait4(-1, &ws)
		if err != nil {
			return // ECHILD: no tracee left
		}
		t.stops++
		t.handle(tid, ws)
	}
}

func (t *tracer) handle(tid int, ws syscall.WaitStatus) {
	tk := t.tasks[tid]
	if tk == nil {
		// A new task reported before its parent's fork/clone event.
		tk = t.addTask(tid)
	}
	if ws.Exited() || ws.Signaled() {
		t.removeTask(tk)
		if tid == t.root {
			t.rootExit <- ws
		}
		return
	}
	if !ws.Stopped() {
		return
	}
	if p := t.procs[tk.tgid]; p != nil {
		switchFS(&t.fs, p.creds)
	}
	sig := ws.StopSignal()
	fresh := tk.fresh
	tk.fresh = false
	switch {
	case sig == syscall.SIGTRAP|0x80:
		t.syscallStop(tk)
		t.resume(tk, 0)
	case sig == syscall.SIGTRAP && ws.TrapCause() > 0:
		t.event(tk, ws.TrapCause())
		if t.tasks[tk.tid] == tk { // not replaced by an exec
			t.resume(tk, 0)
		}
	case fresh && sig == syscall.SIGSTOP:
		// The initial stop of an auto-attached task: not a signal to deliver.
		t.resume(tk, 0)
	case isStopSignal(sig) && groupStop(tk.tid):
		// A group-stop. Without PTRACE_SEIZE the tracer cannot keep the
		// tracee stopped and still learn of its SIGCONT: let it run on,
		// as strace does.
		t.resume(tk, 0)
	default:
		// A signal-delivery-stop: deliver the signal.
		t.resume(tk, int(sig))
	}
}

func isStopSignal(s syscall.Signal) bool {
	return s == syscall.SIGSTOP || s == syscall.SIGTSTP || s == syscall.SIGTTIN || s == syscall.SIGTTOU
}

// groupStop tells a group-stop from a signal-delivery-stop:
// PTRACE_GETSIGINFO fails with EINVAL in a group-stop.
func groupStop(tid int) bool {
	var si [128]byte
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(tid), 0, uintptr(unsafe.Pointer(&si[0])), 0, 0)
	return e == unix.EINVAL
}

// resume restarts a stopped tracee: to its next syscall stop while
// recording without the seccomp filter, or while a system call whose exit
// matters is under way; else without syscall stops (seccomp stops still
// come). ESRCH (it was killed meanwhile) is ignored: its end comes
// through wait4.
func (t *tracer) resume(tk *task, sig int) {
	if t.stopping.Load() || t.filtered && !tk.inSyscall && tk.inject == nil {
		_ = unix.PtraceCont(tk.tid, sig)
		return
	}
	_ = unix.PtraceSyscall(tk.tid, sig)
}

// addTask registers a new traced thread and, for a new thread group, a
// new process.
func (t *tracer) addTask(tid int) *task {
	tgid := tid
	st, ok := readStatus(tid)
	if ok {
		tgid = st.tgid
	}
	tk := &task{tid: tid, tgid: tgid, fresh: true}
	t.tasks[tid] = tk
	p := t.procs[tgid]
	if p == nil {
		p = &proc{threads: map[int]*task{}, fds: map[int]fdEntry{}, creds: credsOf(st)}
		t.procs[tgid] = p
		t.mu.Lock()
		t.live[tgid] = p.creds
		t.mu.Unlock()
	}
	p.threads[tid] = tk
	if t.stopping.Load() {
		_ = syscall.Kill(tid, syscall.SIGKILL) // ESRCH: it is gone already
	}
	return tk
}

// refreshCreds reads the ids of tk's process again (they changed if
// reading its /proc files is refused) and tells whether they changed.
func (t *tracer) refreshCreds(tk *task) bool {
	p := t.procs[tk.tgid]
	st, ok := readStatus(tk.tid)
	if p == nil || !ok || credsOf(st) == p.creds {
		return false
	}
	p.creds = credsOf(st)
	t.mu.Lock()
	if _, live := t.live[tk.tgid]; live {
		t.live[tk.tgid] = p.creds
	}
	t.mu.Unlock()
	switchFS(&t.fs, p.creds)
	return true
}

// removeTask forgets a thread that is gone, and its process with its last
// thread.
func (t *tracer) removeTask(tk *task) {
	if t.tasks[tk.tid] == tk {
		delete(t.tasks, tk.tid)
	}
	p := t.procs[tk.tgid]
	if p == nil || p.threads[tk.tid] != tk {
		return
	}
	delete(p.threads, tk.tid)
	if len(p.threads) > 0 {
		return
	}
	delete(t.procs, tk.tgid)
	t.mu.Lock()
	delete(t.live, tk.tgid)
	t.mu.Unlock()
	t.smp.forget(tk.tgid)
}

// event handles a PTRACE_EVENT stop.
func (t *tracer) event(tk *task, ev int) {
	switch ev {
	case unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_VFORK, unix.PTRACE_EVENT_CLONE:
		msg, err := unix.PtraceGetEventMsg(tk.tid)
		if err == nil && msg > 0 && msg <= math.MaxInt32 && t.tasks[int(msg)] == nil {
			t.addTask(int(msg))
		}
	case unix.PTRACE_EVENT_EXEC:
		// The process has a new image: its descriptors marked close-on-exec
		// are gone and its mappings are new. If a thread other than the
		// leader exec'd, it now has the leader's tid and the other threads
		// are gone (reported dead, or never).
		p := t.procs[tk.tgid]
		if former, err := unix.PtraceGetEventMsg(tk.tid); err == nil && int(former) != tk.tid {
			if ft := t.tasks[int(former)]; ft != nil {
				delete(t.tasks, ft.tid)
				tk.inSyscall, tk.skip, tk.nr, tk.args = ft.inSyscall, ft.skip, ft.nr, ft.args
			}
		}
		if p != nil {
			clear(p.threads)
			p.threads[tk.tid] = tk
			clear(p.fds)
		}
		tk.exiting = false
		if p != nil {
			p.exitSampled = false
		}
		t.refreshCreds(tk) // a set-user-ID program
		t.smp.forget(tk.tgid)
		t.noteExec(tk.tgid)
	case unix.PTRACE_EVENT_SECCOMP:
		// The filter's stop at the entry of a call of interest (Linux 4.8
		// and later: after the syscall-entry stop, if there was one).
		if !tk.inSyscall && !t.stopping.Load() {
			t.syscallEntry(tk)
		}
	case unix.PTRACE_EVENT_EXIT:
		tk.exiting = true
		p := t.procs[tk.tgid]
		if t.stopping.Load() || p == nil || p.exitSampled {
			return
		}
		// Sample the process as it ends, while its memory is still there:
		// at its last thread's exit, or at the exit of a thread a signal
		// killed (the thread group goes with it, and from Linux 5.x the
		// others, SIGKILLed, may not stop here). exit_group was sampled at
		// its entry.
		all := true
		for _, o := range p.threads {
			all = all && o.exiting
		}
		if msg, err := unix.PtraceGetEventMsg(tk.tid); all || err == nil && msg&0x7f != 0 {
			p.exitSampled = true
			t.smp.sample(tk.tgid, 0, math.MaxUint64, &t.sb)
		}
	}
}

// noteExec notes the files the kernel mapped for a new image, the
// executable first, then its interpreter, as opened.
func (t *tracer) noteExec(pid int) {
	if exe, err := readlink("/proc/"+strconv.Itoa(pid)+"/exe", t.linkBuf[:]); err == nil && t.smp.mappedFileWanted(exe) {
		t.rec.noteOpen(exe)
	}
	if !t.smp.readMaps(pid, &t.sb) {
		return
	}
	for i := range t.sb.parsed {
		if m := &t.sb.parsed[i]; m.file() && t.smp.mappedFileWanted(m.path) {
			t.rec.noteOpen(m.path)
		}
	}
}

// syscallStop handles a syscall-entry or syscall-exit stop.
func (t *tracer) syscallStop(tk *task) {
	if t.stopping.Load() {
		return
	}
	if tk.inject != nil {
		t.injectStep(tk)
		return
	}
	if tk.inSyscall {
		tk.inSyscall = false
		if tk.skip {
			return
		}
		r, ok := getRegs(tk.tid)
		if !ok {
			return
		}
		t.syscallExit(tk, kindOf(tk.nr), r.ret())
		return
	}
	t.syscallEntry(tk)
}

// syscallEntry handles the entry of a system call: a syscall-entry stop,
// or a seccomp stop. With the filter, a call whose exit does not matter
// runs on without a syscall-exit stop.
func (t *tracer) syscallEntry(tk *task) {
	tk.inSyscall = true
	tk.skip = true
	defer func() {
		if t.filtered && tk.skip {
			tk.inSyscall = false
		}
	}()
	r, ok := getRegs(tk.tid)
	if !ok || !r.native() {
		return
	}
	tk.nr, tk.args = r.syscall()
	k := kindOf(tk.nr)
	tk.skip = !k.atExit()
	a := &tk.args
	switch k {
	case kClose, kCloseRange, kRead, kPread, kPreadv2, kSendfile, kCopyIn:
		if t.fdEntryAtEntry(tk, k) {
			tk.skip = true
		}
	case kExec:
		// The old image's pages, before the kernel drops them.
		t.smp.sample(tk.tgid, 0, math.MaxUint64, &t.sb)
	case kExitGroup, kExit:
		// The process ends (exit of its only thread): its pages, while
		// they are there.
		if p := t.procs[tk.tgid]; p != nil && !p.exitSampled && (k == kExitGroup || len(p.threads) == 1) {
			p.exitSampled = true
			t.smp.sample(tk.tgid, 0, math.MaxUint64, &t.sb)
		}
	case kUnmap:
		t.sampleDropped(tk.tgid, a[0], a[1])
	case kMremap:
		t.sampleDropped(tk.tgid, a[0], a[1])
		if a[3]&unix.MREMAP_FIXED != 0 {
			t.sampleDropped(tk.tgid, a[4], a[2])
		}
	case kMadvise:
		if dropsPages(a[2]) {
			t.sampleDropped(tk.tgid, a[0], a[1])
		}
	case kMmap:
		if a[3]&unix.MAP_FIXED != 0 {
			t.sampleDropped(tk.tgid, a[0], a[1])
		}
	}
}

// sampleDropped samples [addr, addr+n) of a process that is about to
// unmap it or drop its pages, if it may hold file pages not yet sampled.
func (t *tracer) sampleDropped(tgid int, addr, n uint64) {
	hi := addr + n
	if hi < addr {
		hi = math.MaxUint64
	}
	if t.smp.needsSample(tgid, addr, hi) {
		t.smp.sample(tgid, addr, hi, &t.sb)
	}
}

// getRegs reads a tracee's general registers with PTRACE_GETREGSET
// (NT_PRSTATUS), on amd64 as on arm64. ok is false if the tracee is gone
// or is a 32-bit task: the kernel then returns its shorter register set,
// whose system call numbers are another table's (not decoded).
func getRegs(tid int) (r regs, ok bool) {
	return r, ptraceRegset(unix.PTRACE_GETREGSET, tid, &r) == nil
}

// ptraceRegset gets or sets the NT_PRSTATUS register set; a short one (a
// 32-bit task's) is an error.
func ptraceRegset(req, tid int, r *regs) error {
	iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(r))}
	iov.SetLen(int(unsafe.Sizeof(*r)))
	const ntPRStatus = 1
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), ntPRStatus, uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return e
	}
	if iov.Len != uint64(unsafe.Sizeof(*r)) {
		return errShortRegs
	}
	return nil
}

// liveProc is a process being traced and the ids to read its /proc
// files with.
type liveProc struct {
	pid   int
	creds creds
}

// liveProcs returns the processes being traced.
func (t *tracer) liveProcs() []liveProc {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]liveProc, 0, len(t.live))
	for pid, c := range t.live {
		out = append(out, liveProc{pid, c})
	}
	return out
}

// stop ends tracing: no more recording, every tracee killed (tasks that
// appear later are killed by addTask).
func (t *tracer) stop() {
	t.stopping.Store(true)
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid := range t.live {
		_ = syscall.Kill(pid, syscall.SIGKILL) // ESRCH: it is gone already
	}
}

func waitString(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exited with status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "killed by signal " + signalName(ws.Signal())
	}
	return "stopped"
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return strconv.Itoa(int(s)) + " (" + n + ")"
	}
	return strconv.Itoa(int(s))
}
