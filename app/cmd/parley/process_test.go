package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure/dapr/daprd"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// buildBinary builds app/cmd/<name> once per test run, for tests that need
// a real process.
func buildBinary(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	root, err := daprd.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "parley-bin-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-o", p, filepath.Join(root, "app", "cmd", name)).CombinedOutput()
	if err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	built[name] = p
	return p
}

func parleyBinary(t *testing.T) string { return buildBinary(t, "parley") }

// proc is a parley node running as its own process.
type proc struct {
	base string
	cmd  *exec.Cmd
	log  string
	args []string
	dir  string
	done chan struct{}
}

// startProc runs the parley binary with the mode's arguments plus extra.
func startProc(t *testing.T, m mode, extra ...string) *proc {
	t.Helper()
	requireMode(t, m)
	p := &proc{dir: t.TempDir()}
	p.log = filepath.Join(p.dir, "parley.log")
	p.args = append(append([]string{"-addr", "127.0.0.1:0", "-log-format", "json", "-dev-tokens", "-shutdown-timeout", "5s"}, m.args...), extra...)
	p.launch(t)
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) launch(t *testing.T) {
	t.Helper()
	ready := filepath.Join(p.dir, "ready")
	_ = os.Remove(ready)
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-ready-file", ready}, p.args...)
	if p.base != "" {
		// A restart keeps its address, as a supervisor would.
		args = append(args, "-addr", p.base[len("http://"):])
	}
	cmd := exec.Command(parleyBinary(t), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if data, err := os.ReadFile(ready); err == nil && len(data) > 0 {
			// A restart keeps the address: base is written once, before any
			// reader exists.
			if p.base == "" {
				p.base = "http://" + string(data)
			}
			return
		}
		select {
		case <-p.done:
			t.Fatalf("parley exited before serving\n%s", tailFile(p.log))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("parley not serving after 90s\n%s", tailFile(p.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits; the kernel then kills its daprd too.
func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// node returns a view of p usable by the helpers that take a *node.
func (p *proc) node() *node { return &node{base: p.base, log: p.log} }
