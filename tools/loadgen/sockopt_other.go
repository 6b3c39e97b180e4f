//go:build !linux

package main

import "syscall"

func bindAddressNoPort(_, _ string, _ syscall.RawConn) error { return nil }

func workerAttr() *syscall.SysProcAttr { return nil }
