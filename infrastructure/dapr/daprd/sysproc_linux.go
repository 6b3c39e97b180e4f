//go:build linux

package daprd

import "syscall"

// sysProcAttr makes the kernel kill daprd when the process that started it
// dies, so a test binary that crashes or times out leaves no sidecar behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
