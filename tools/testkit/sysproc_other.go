//go:build !linux

package testkit

import "syscall"

// dieWithParent has no equivalent outside Linux: a launched process is
// stopped by its owner's cleanup only.
func dieWithParent() *syscall.SysProcAttr { return nil }
