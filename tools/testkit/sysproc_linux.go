//go:build linux

package testkit

import "syscall"

// dieWithParent makes the kernel kill a launched process when the process
// that launched it dies, so that no parley outlives a crashed test or tool.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
