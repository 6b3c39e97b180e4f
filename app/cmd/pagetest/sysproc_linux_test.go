//go:build linux

package pagetest

import "syscall"

// sysProcAttr makes the kernel kill parley (and so its daprd) if the test
// binary dies before its cleanup runs.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
