package main

import (
	"path/filepath"
	"testing"

	"github.com/parley-im/parley/tools/testkit"
)

// buildBinary builds app/cmd/<name> once per test run, for tests that need
// a real process.
func buildBinary(t *testing.T, name string) string {
	t.Helper()
	return testkit.Binary(t, "./app/cmd/"+name)
}

func parleyBinary(t *testing.T) string { return buildBinary(t, "parley") }

// proc is a parley node running as its own process.
type proc struct {
	base string
	log  string
	args []string
	p    *testkit.Process
}

// startProc runs the parley binary with the mode's arguments plus extra.
func startProc(t *testing.T, m mode, extra ...string) *proc {
	t.Helper()
	requireMode(t, m)
	p := &proc{log: filepath.Join(t.TempDir(), "parley.log")}
	p.args = append(append([]string{"-addr", "127.0.0.1:0", "-log-format", "json", "-dev-tokens", "-shutdown-timeout", "5s"}, m.args...), extra...)
	p.launch(t)
	t.Cleanup(func() { p.kill() })
	return p
}

// launch starts the process; a restart keeps its address, as a supervisor
// would, and appends to the same log.
func (p *proc) launch(t *testing.T) {
	t.Helper()
	args := p.args
	if p.base != "" {
		args = append(append([]string(nil), args...), "-addr", p.base[len("http://"):])
	}
	lp, err := testkit.Launch(t.Context(), testkit.LaunchOptions{Binary: parleyBinary(t), Args: args, LogPath: p.log})
	if err != nil {
		t.Fatal(err)
	}
	p.p = lp
	// base is written once, before any reader exists.
	if p.base == "" {
		p.base = lp.Base
	}
}

// kill sends SIGKILL and waits; the kernel then kills its daprd too.
func (p *proc) kill() {
	if p.p != nil {
		p.p.Kill()
	}
}

// node returns a view of p usable by the helpers that take a *node.
func (p *proc) node() *node { return &node{base: p.base, log: p.log} }
