package testkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Build compiles the command in the package pkg of the checkout at root
// (say "./app/cmd/parley") into the file out.
func Build(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if data, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, data)
	}
	return nil
}

var (
	builtMu sync.Mutex
	built   = map[string]string{}
)

// Binary builds the command in pkg (say "./app/cmd/parley") once per test
// binary and returns its path; every test of the binary shares it. The
// file lives in a temporary folder that outlives the tests, since no single
// test owns it.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "parley-bin-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(pkg))
	if err := Build(t.Context(), root, pkg, p); err != nil {
		t.Fatal(err)
	}
	built[pkg] = p
	return p
}
