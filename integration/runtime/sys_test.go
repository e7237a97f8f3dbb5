//go:build integration

package runtime

import "syscall"

// syscallZero probes a process for existence.
var syscallZero = syscall.Signal(0)

func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
