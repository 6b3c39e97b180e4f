package daprd_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	"github.com/parley-im/parley/tools/testkit"
)

func TestRepoRootFindsTheModule(t *testing.T) {
	t.Parallel()
	root, err := daprd.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(data), "module "+daprd.ModulePath) {
		t.Fatalf("RepoRoot = %s, whose go.mod does not declare %s", root, daprd.ModulePath)
	}
}

func TestStartWithoutBinarySaysHowToBuildIt(t *testing.T) {
	t.Parallel()
	_, err := daprd.Start(context.Background(), daprd.Options{
		Binary:        filepath.Join(t.TempDir(), "daprd"),
		ResourcesPath: t.TempDir(),
		AppID:         "x",
	})
	if err == nil || !strings.Contains(err.Error(), "make sidecar") {
		t.Fatalf("Start without a binary = %v, want an error that says to run make sidecar", err)
	}
}

func healthy(addr string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/v1.0/healthz/outbound")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode/100 == 2
}

func TestKillAndRestartKeepThePorts(t *testing.T) {
	s := daprdtest.StartForTest(t, daprdtest.Local)
	grpcAddr, httpAddr := s.GRPCAddr(), s.HTTPAddr()
	if !healthy(httpAddr) {
		t.Fatal("daprd not healthy after Start")
	}
	s.Kill()
	if healthy(httpAddr) {
		t.Fatal("daprd still answers after Kill")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.GRPCAddr() != grpcAddr || s.HTTPAddr() != httpAddr || !healthy(httpAddr) {
		t.Fatalf("after Restart: grpc %s http %s healthy %v; want the same ports, healthy", s.GRPCAddr(), s.HTTPAddr(), healthy(httpAddr))
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if healthy(httpAddr) {
		t.Fatal("daprd still answers after Stop")
	}
}

// TestMissingConfigTableSaysWhatToDo: a daprd that stops because the
// PostgreSQL configuration table is missing makes Start say how to create
// it.
func TestMissingConfigTableSaysWhatToDo(t *testing.T) {
	t.Parallel()
	daprdtest.RequireServers(t, daprdtest.PostgresRabbitMQ)
	root := daprdtest.RequireBinary(t)
	// The profile's configuration store alone, on a table that does not exist.
	yaml, err := os.ReadFile(filepath.Join(root, "components", daprdtest.PostgresRabbitMQ, "configstore.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	missing := strings.ReplaceAll(daprdtest.UniqueName("no_such_table"), "-", "_")
	yaml = []byte(strings.ReplaceAll(string(yaml), `value: "parley_config"`, `value: "`+missing+`"`))
	resources := t.TempDir()
	if err := os.WriteFile(filepath.Join(resources, "configstore.yaml"), yaml, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := daprd.Start(ctx, daprd.Options{
		ResourcesPath: resources, AppID: daprdtest.UniqueName("parley-notable"), Dir: t.TempDir(),
		LogPath: filepath.Join(t.TempDir(), "daprd.log"),
	})
	msg := ""
	if err != nil {
		msg = err.Error()
	} else {
		// daprd may answer its health check before the store's start-up
		// fails (seen under load); it stops moments later, and its log
		// gives the same hint.
		defer func() { _ = s.Stop(ctx) }()
		stopped, cancelStopped := context.WithTimeout(ctx, 30*time.Second)
		defer cancelStopped()
		_ = testkit.Until(stopped, func() bool { return !healthy(s.HTTPAddr()) }) // the hint is checked either way
		data, _ := os.ReadFile(s.LogPath())
		msg = daprd.Hint(string(data), resources)
	}
	if !strings.Contains(msg, "what to do: create the configuration table") || !strings.Contains(msg, filepath.Join(resources, "configstore.yaml")) {
		t.Fatalf("daprd without table %s: %q, want it to say how to create the table", missing, msg)
	}
}
