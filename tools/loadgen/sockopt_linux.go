package main

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (Linux 4.2): bind the
// source address but let connect pick the port by the whole 4-tuple, so a
// port in use towards another destination, or in TIME_WAIT from an earlier
// run, does not count against this one.
const ipBindAddressNoPort = 24

func bindAddressNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}

// workerAttr makes the kernel end a worker when the load generator that
// started it dies, so no worker outlives its run.
func workerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
