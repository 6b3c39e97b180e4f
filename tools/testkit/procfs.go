package testkit

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ChildPIDs lists the direct children of pid, from /proc: the daprd a
// parley launched, or the workers of a PostgreSQL postmaster. Outside Linux
// it finds none.
func ChildPIDs(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(n); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// Alive reports whether pid is a running process, per /proc: a zombie
// (exited, not yet reaped) counts as gone, since it holds no resources
// but its slot in the process table.
func Alive(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z"
}

// statFields returns the fields of /proc/<pid>/stat after the command
// name, which may hold spaces: state, ppid, and so on.
func statFields(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}
