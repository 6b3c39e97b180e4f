// Package app_test keeps the layers pointing inward: it reads the real
// dependency graph with `go list -deps`, so a wrong import anywhere fails here.
package app_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/parley-im/parley"

// deps lists the packages of pattern, each with its transitive imports.
func deps(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Deps ","}}`, pattern).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pattern, err, out)
	}
	res := map[string][]string{}
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		pkg, d, _ := strings.Cut(strings.TrimSpace(line), "|")
		res[pkg] = strings.Split(d, ",")
	}
	return res
}

func TestDomainImportsNothingOfParley(t *testing.T) {
	for pkg, ds := range deps(t, module+"/domain/...") {
		for _, d := range ds {
			if strings.HasPrefix(d, module+"/") && !strings.HasPrefix(d, module+"/domain") {
				t.Errorf("%s imports %s: the domain must import nothing of this project", pkg, d)
			}
		}
	}
}

func TestAppImportsNoAdapter(t *testing.T) {
	// Nor tooling: tools/ and client/ sit beside the server, not under it.
	forbidden := []string{module + "/infrastructure/dapr", module + "/infrastructure/memory", "github.com/dapr/",
		module + "/tools/", module + "/client"}
	n := 0
	for pkg, ds := range deps(t, module+"/app/...") {
		if strings.HasPrefix(pkg, module+"/app/cmd/") {
			continue // the mains are where adapters are chosen
		}
		n++
		for _, d := range ds {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s: only app/cmd may pick an adapter", pkg, d)
				}
			}
		}
	}
	if n < 5 {
		t.Fatalf("checked only %d app packages; the pattern is wrong", n)
	}
}

// TestAdaptersImportNoApp: the adapters implement the core's interfaces;
// they never reach up into the use cases, and nothing below app/cmd imports
// a main.
func TestAdaptersImportNoApp(t *testing.T) {
	n := 0
	for pkg, ds := range deps(t, module+"/infrastructure/...") {
		if strings.HasSuffix(pkg, "/daprdtest") || strings.HasSuffix(pkg, "/contract") {
			continue // support for tests, which share tools/testkit
		}
		n++
		for _, d := range ds {
			if strings.HasPrefix(d, module+"/app/") || strings.HasPrefix(d, module+"/tools/") {
				t.Errorf("%s imports %s: infrastructure must not depend on the app or on tooling", pkg, d)
			}
		}
	}
	if n < 4 {
		t.Fatalf("checked only %d infrastructure packages; the pattern is wrong", n)
	}
}

// TestSDKImportsNoServer: the Go SDK is what users go get; it speaks the
// public protocol and must not drag the server in.
func TestSDKImportsNoServer(t *testing.T) {
	for pkg, ds := range deps(t, module+"/client/...") {
		for _, d := range ds {
			if strings.HasPrefix(d, module+"/") && !strings.HasPrefix(d, module+"/client") && !strings.HasPrefix(d, module+"/proto/") {
				t.Errorf("%s imports %s: the SDK may import only the protocol", pkg, d)
			}
		}
	}
}
