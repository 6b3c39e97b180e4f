//go:build !linux

package daprd

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: there the caller's
// Stop is the only way daprd ends.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
