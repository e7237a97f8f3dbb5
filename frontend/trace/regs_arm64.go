//go:build linux && arm64

package trace

import "golang.org/x/sys/unix"

// regs is the NT_PRSTATUS register set (struct user_pt_regs) of a 64-bit
// tracee, read with PTRACE_GETREGSET: arm64 has no PTRACE_GETREGS.
type regs unix.PtraceRegsArm64

// syscall returns the number (x8) and the arguments (x0-x5) of the system
// call a tracee stopped in. x0 is the first argument at the entry stop
// only: at the exit stop it holds the return value, so the tracer keeps
// the arguments seen at entry.
func (r *regs) syscall() (nr uint64, args [6]uint64) {
	return r.Regs[8], [6]uint64{r.Regs[0], r.Regs[1], r.Regs[2], r.Regs[3], r.Regs[4], r.Regs[5]}
}

// ret is the return value at a syscall-exit stop.
func (r *regs) ret() uint64 { return r.Regs[0] }

// native is true: an AArch32 task has a shorter register set (see getRegs).
func (r *regs) native() bool { return true }

// injectSupported: no seccomp filter on arm64. Changing the system call
// at an entry stop there takes NT_ARM_SYSTEM_CALL, and the injection is
// not tested on arm64: every system call stops instead (filter.go).
const injectSupported = false

// filterArch is seccomp_data.arch of native system calls.
const filterArch = unix.AUDIT_ARCH_AARCH64

// sp, setSyscall and rewind are unused on arm64 (injectSupported).
func (r *regs) sp() uint64                           { return r.Sp }
func (r *regs) setSyscall(nr uint64, args ...uint64) {}
func (r *regs) rewind(nr uint64, args ...uint64)     {}

// archOpenFlags: arm64 has only openat, openat2 and open_by_handle_at.
func archOpenFlags(nr uint64, a *[6]uint64) uint64 { return 0 }

// archKinds are the system calls of interest that only arm64 has: none,
// the legacy ones (open, dup2, pipe, ...) do not exist there.
var archKinds = map[uint64]kind{}
