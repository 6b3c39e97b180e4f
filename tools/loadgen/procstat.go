package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/parley-im/parley/tools/testkit"
)

// procStatus reads VmRSS (KiB) and Threads from /proc/<pid>/status.
func procStatus(pid int) (rssKB int64, threads int, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			rssKB, _ = strconv.ParseInt(f[0], 10, 64)
		case "Threads":
			threads, _ = strconv.Atoi(f[0])
		}
	}
	return rssKB, threads, nil
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// procCPU returns the user plus system CPU time pid has used.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields after it are fixed.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// listenerPID finds the process that listens on the TCP port, by matching
// the socket inode in /proc/net/tcp{,6} with the processes' descriptors.
func listenerPID(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process listens on port %d", port)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name())); err == nil && inodes[l] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("the listener on port %d belongs to no visible process", port)
}

// goroutineProbes are the endpoints that may tell a Go server's goroutine
// count, tried in order; parley may expose none of them.
var goroutineProbes = []struct {
	path string
	re   *regexp.Regexp
}{
	{"/debug/pprof/goroutine?debug=1", regexp.MustCompile(`goroutine profile: total (\d+)`)},
	{"/metrics", regexp.MustCompile(`(?m)^go_goroutines (\d+)`)},
	{"/debug/vars", regexp.MustCompile(`"goroutines":\s*(\d+)`)},
}

// goroutines asks base for the server's goroutine count. It returns -1 and
// the paths it tried when no endpoint answers with one.
func goroutines(ctx context.Context, base string) (int, string) {
	var tried []string
	for _, p := range goroutineProbes {
		tried = append(tried, p.path)
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, base+p.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusOK {
			continue
		}
		if m := p.re.FindSubmatch(data); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			return n, p.path
		}
	}
	return -1, "none of " + strings.Join(tried, ", ") + " answered with a goroutine count"
}

// serverSample is one reading of the server's resources.
type serverSample struct {
	RSSKB        int64         `json:"rss_kb"`
	Threads      int           `json:"threads"`
	SidecarRSSKB int64         `json:"sidecar_rss_kb,omitempty"`
	Goroutines   int           `json:"goroutines"` // -1: unknown
	CPU          time.Duration `json:"-"`
	SidecarCPU   time.Duration `json:"-"`
}

// serverProbe reads a server process (and its launched sidecar) and its
// goroutine endpoint, when it has one.
type serverProbe struct {
	pid       int
	debugBase string
	note      string
}

func (p *serverProbe) sample(ctx context.Context) serverSample {
	s := serverSample{Goroutines: -1}
	if p == nil || p.pid == 0 {
		return s
	}
	s.RSSKB, s.Threads, _ = procStatus(p.pid)
	s.CPU, _ = procCPU(p.pid)
	for _, c := range testkit.ChildPIDs(p.pid) {
		rss, _, _ := procStatus(c)
		s.SidecarRSSKB += rss
		cpu, _ := procCPU(c)
		s.SidecarCPU += cpu
	}
	if p.debugBase != "" {
		s.Goroutines, p.note = goroutines(ctx, p.debugBase)
	}
	return s
}
