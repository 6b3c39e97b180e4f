//go:build linux

package daprd

import "syscall"

// sysProcAttr makes the kernel kill daprd when the process that started it
// dies, so a test binary that crashes or times out leaves no sidecar behind.
//
// daprd also gets a process group of its own. A Ctrl-C at a terminal sends
// SIGINT to the whole foreground group; in parley's group daprd would get it
// too and start shutting down, and the SIGTERM that Stop sends a moment later
// would then make it exit at once, logging a fatal "Received signal
// 'terminated' during shutdown". Out of that group, daprd hears only Stop's
// one SIGTERM, and a clean stop reads clean.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
