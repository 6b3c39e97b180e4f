//go:build !linux

package pagetest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
