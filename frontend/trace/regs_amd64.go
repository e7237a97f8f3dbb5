//go:build linux && amd64

package trace

import "golang.org/x/sys/unix"

// regs is the NT_PRSTATUS register set of a 64-bit tracee.
type regs unix.PtraceRegsAmd64

// syscall returns the number and the arguments of the system call a
// tracee stopped in (at entry and at exit: the kernel keeps them).
func (r *regs) syscall() (nr uint64, args [6]uint64) {
	return r.Orig_rax, [6]uint64{r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9}
}

// ret is the return value at a syscall-exit stop.
func (r *regs) ret() uint64 { return r.Rax }

// native tells whether the tracee makes 64-bit system calls: not an i386
// task (its register set is shorter, see getRegs) nor the x32 ABI (its
// numbers have bit 30 set and partly differ from amd64's).
func (r *regs) native() bool { return r.Orig_rax&0x40000000 == 0 || int64(r.Orig_rax) == -1 }

// injectSupported: the seccomp filter is installed on amd64 (filter.go).
const injectSupported = true

// filterArch is seccomp_data.arch of native system calls.
const filterArch = unix.AUDIT_ARCH_X86_64

// sp is the stack pointer.
func (r *regs) sp() uint64 { return r.Rsp }

// setSyscall changes, at a syscall-entry stop, the call to be made (the
// kernel reads orig_rax after the stop).
func (r *regs) setSyscall(nr uint64, args ...uint64) {
	r.Orig_rax = nr
	r.setArgs(args)
}

// rewind makes the tracee, at a syscall-exit stop, execute its syscall
// instruction (2 bytes) again as system call nr.
func (r *regs) rewind(nr uint64, args ...uint64) {
	r.Rip -= 2
	r.Rax = nr
	r.Orig_rax = nr
	r.setArgs(args)
}

func (r *regs) setArgs(a []uint64) {
	a = append(a, 0, 0, 0, 0, 0, 0)
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
}

// archOpenFlags returns the flags of open and creat (write-only).
func archOpenFlags(nr uint64, a *[6]uint64) uint64 {
	if nr == unix.SYS_CREAT {
		return unix.O_WRONLY
	}
	return a[1] // open(path, flags, mode)
}

// archKinds are the system calls of interest that only amd64 has (arm64
// has only their *at and numbered successors).
var archKinds = map[uint64]kind{
	unix.SYS_OPEN:         kOpen,
	unix.SYS_CREAT:        kOpen,
	unix.SYS_DUP2:         kNewFD,
	unix.SYS_EPOLL_CREATE: kNewFD,
	unix.SYS_EVENTFD:      kNewFD,
	unix.SYS_SIGNALFD:     kNewFD,
	unix.SYS_INOTIFY_INIT: kNewFD,
	unix.SYS_PIPE:         kFDsInMemory,
}
