package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The seccomp filter: with it, a tracee stops only at the system calls the
// tracer looks at (a PTRACE_EVENT_SECCOMP stop, then, for those whose
// result matters, a syscall-exit stop) instead of at the entry and exit of
// every system call. The tracer installs it in the start-up command at its
// first system call, by making the tracee run prctl(PR_SET_NO_NEW_PRIVS)
// and seccomp(SECCOMP_SET_MODE_FILTER) in place of that call (the kernel
// restarts interrupted system calls the same way); descendants inherit it.
//
// It is used only where it changes nothing the start-up could notice:
// when the tracer runs as root (no_new_privs, which an unprivileged filter
// needs, only stops set-user-ID and file capability gains on exec), on
// Linux 4.8 or later (the order of seccomp and syscall stops the tracer
// relies on), and on amd64 (the injection is arch-specific and tested
// there only). Otherwise, or if installing it fails, every system call
// stops.

// filterProgram returns the classic BPF program: SECCOMP_RET_TRACE for
// the system calls of interest (mmap only with MAP_FIXED, madvise only
// with an advice that drops pages, fcntl only F_DUPFD and
// F_DUPFD_CLOEXEC), SECCOMP_RET_ALLOW for all else,
// including other architectures' and x32 calls.
func filterProgram(arch uint32) []unix.SockFilter {
	const (
		ldW   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		nrOff = 0
		arOff = 4
	)
	argOff := func(i int) uint32 { return uint32(16 + 8*i) } // low half (little-endian)

	var always, mmap, madvise, fcntl []uint32
	for nr, k := range kinds {
		switch k {
		case kNone, kClose, kCloseRange:
			// Not needed to keep the descriptor cache right: every call
			// that makes a descriptor is traced and refreshes its slot
			// (syscalls.go), and close is the commonest call after read.
		case kMmap:
			mmap = append(mmap, uint32(nr))
		case kMadvise:
			madvise = append(madvise, uint32(nr))
		case kFcntl:
			fcntl = append(fcntl, uint32(nr))
		default:
			always = append(always, uint32(nr))
		}
	}
	// Instructions with symbolic jump targets, resolved below.
	type ins struct {
		f      unix.SockFilter
		jt, jf string // label or "" (next)
		label  string
	}
	var p []ins
	add := func(code uint16, k uint32, jt, jf string) {
		p = append(p, ins{f: unix.SockFilter{Code: code, K: k}, jt: jt, jf: jf})
	}
	label := func(l string) { p = append(p, ins{label: l}) }

	add(ldW, arOff, "", "")
	add(jeq, arch, "", "allow")
	add(ldW, nrOff, "", "")
	add(jset, 0x40000000, "allow", "") // x32
	for _, nr := range always {
		add(jeq, nr, "trace", "")
	}
	for _, nr := range mmap {
		add(jeq, nr, "mmap", "")
	}
	for _, nr := range madvise {
		add(jeq, nr, "madvise", "")
	}
	for _, nr := range fcntl {
		add(jeq, nr, "fcntl", "")
	}
	add(ret, unix.SECCOMP_RET_ALLOW, "", "")
	label("mmap")
	add(ldW, argOff(3), "", "")
	add(jset, unix.MAP_FIXED, "trace", "allow")
	label("madvise")
	add(ldW, argOff(2), "", "")
	for _, a := range []uint32{unix.MADV_DONTNEED, unix.MADV_FREE, unix.MADV_REMOVE, unix.MADV_COLD, unix.MADV_PAGEOUT} {
		add(jeq, a, "trace", "")
	}
	add(ret, unix.SECCOMP_RET_ALLOW, "", "")
	label("fcntl")
	add(ldW, argOff(1), "", "")
	add(jeq, unix.F_DUPFD, "trace", "")
	add(jeq, unix.F_DUPFD_CLOEXEC, "trace", "allow")
	label("trace")
	add(ret, unix.SECCOMP_RET_TRACE, "", "")
	label("allow")
	add(ret, unix.SECCOMP_RET_ALLOW, "", "")

	// Resolve the labels to instruction indexes, then to relative jumps.
	idx := map[string]int{}
	var out []unix.SockFilter
	var pending []ins
	for _, in := range p {
		if in.label != "" {
			idx[in.label] = len(pending)
			continue
		}
		pending = append(pending, in)
	}
	for i, in := range pending {
		f := in.f
		for _, j := range []struct {
			l   string
			dst *uint8
		}{{in.jt, &f.Jt}, {in.jf, &f.Jf}} {
			if j.l == "" {
				continue
			}
			off := idx[j.l] - i - 1
			if off < 0 || off > 255 {
				panic(fmt.Sprintf("trace: seccomp filter jump of %d", off))
			}
			*j.dst = uint8(off)
		}
		out = append(out, f)
	}
	return out
}

// filterBytes lays out a sock_fprog and its filter for the tracee's memory
// at address addr: the filter first, then the sock_fprog pointing at it.
// It returns the bytes and the sock_fprog's address.
func filterBytes(prog []unix.SockFilter, addr uint64) ([]byte, uint64) {
	b := make([]byte, 0, len(prog)*8+16)
	for _, f := range prog {
		b = binary.LittleEndian.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = binary.LittleEndian.AppendUint32(b, f.K)
	}
	fprog := addr + uint64(len(b))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(prog)))
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint64(b, addr)
	return b, fprog
}

// kernelAtLeast tells whether the running kernel is at least major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	return releaseAtLeast(rel, major, minor)
}

func releaseAtLeast(rel string, major, minor int) bool {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	for i, c := range parts[1] {
		if c < '0' || c > '9' {
			parts[1] = parts[1][:i]
			break
		}
	}
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// useFilter tells whether the tracer should install the seccomp filter.
func useFilter() bool {
	return injectSupported && os.Geteuid() == 0 && kernelAtLeast(4, 8)
}

// injection is the state of the filter's installation in the root task.
type injection struct {
	stage int
	saved regs   // registers at the first syscall-entry stop
	addr  uint64 // where the filter was written
	orig  []byte // the memory it overwrote
	fprog uint64
}

var errShortRegs = errors.New("trace: short register set (a 32-bit task)")

// injectStep advances the installation of the filter in tk, at one of its
// syscall stops (the tracer resumes it with PTRACE_SYSCALL meanwhile):
//
//	0, first syscall-entry stop: write the filter below the stack pointer,
//	   turn the call into prctl(PR_SET_NO_NEW_PRIVS, 1);
//	1, its exit: rewind to the syscall instruction as seccomp(SET_MODE_FILTER);
//	2, its entry;
//	3, its exit: rewind to the original call, restore the memory.
//
// On any failure the original call is restored and tracing goes on
// without the filter.
func (t *tracer) injectStep(tk *task) {
	in := tk.inject
	r, ok := getRegs(tk.tid)
	if !ok {
		tk.inject = nil
		if in.stage == 0 {
			t.syscallEntry(tk) // a 32-bit task: no filter
		}
		return
	}
	switch in.stage {
	case 0:
		in.saved = r
		prog := filterProgram(filterArch)
		size := uint64(len(prog)*8 + 16)
		in.addr = (r.sp() - 8192 - size) &^ 15
		b, fprog := filterBytes(prog, in.addr)
		orig := make([]byte, len(b))
		giveUp := func() {
			tk.inject = nil
			if in.orig != nil {
				// Fails only if the task is gone (ESRCH): its end
				// comes through wait4.
				_, _ = unix.PtracePokeData(tk.tid, uintptr(in.addr), in.orig)
			}
			t.syscallEntry(tk)
		}
		if _, err := unix.PtracePeekData(tk.tid, uintptr(in.addr), orig); err != nil {
			giveUp()
			return
		}
		in.orig = orig
		if _, err := unix.PtracePokeData(tk.tid, uintptr(in.addr), b); err != nil {
			giveUp()
			return
		}
		in.fprog = fprog
		r.setSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
		if setRegs(tk.tid, &r) != nil {
			giveUp()
			return
		}
		in.stage = 1
	case 1:
		if r.ret() != 0 {
			t.injectRestore(tk)
			return
		}
		r = in.saved
		r.rewind(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, in.fprog, 0, 0)
		if setRegs(tk.tid, &r) != nil {
			t.injectRestore(tk)
			return
		}
		in.stage = 2
	case 2:
		in.stage = 3
	case 3:
		t.filtered = r.ret() == 0
		t.injectRestore(tk)
	}
}

// injectRestore puts back the memory and, at a syscall-exit stop, the
// original system call, to be made again.
func (t *tracer) injectRestore(tk *task) {
	in := tk.inject
	tk.inject = nil
	// Both fail only if the task is gone (ESRCH): its end comes through
	// wait4.
	if in.orig != nil {
		_, _ = unix.PtracePokeData(tk.tid, uintptr(in.addr), in.orig)
	}
	r := in.saved
	nr, args := r.syscall()
	r.rewind(nr, args[:]...)
	_ = setRegs(tk.tid, &r)
}

// setRegs writes a tracee's general registers (PTRACE_SETREGSET,
// NT_PRSTATUS).
func setRegs(tid int, r *regs) error {
	return ptraceRegset(unix.PTRACE_SETREGSET, tid, r)
}
