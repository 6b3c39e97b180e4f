// Command cluster runs a local parley cluster for development: N parley
// nodes, each launching its own daprd, all sharing the backend of one
// profile. Ctrl-C stops every node, and each stops its daprd.
//
//	go run ./app/cmd/cluster -n 3 -profile redis
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/parley-im/parley/tools/testkit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	n := fs.Int("n", 3, "number of nodes")
	profile := fs.String("profile", "redis", "components/<profile>; it must have a shared backend (redis, postgres-rabbitmq, mysql-mqtt)")
	firstPort := fs.Int("port", 8080, "the first node listens here, the next on the following ports")
	appID := fs.String("app-id", "parley", "Dapr app-id shared by the nodes")
	devTokens := fs.Bool("dev-tokens", true, "enable POST /v1/dev/token on every node (development only)")
	logDir := fs.String("log-dir", filepath.Join(os.TempDir(), "parley-cluster"), "one log file per node here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 16 {
		return fmt.Errorf("-n %d: use 1 to 16 nodes", *n)
	}
	switch *profile {
	case "local", "sqlite":
		return fmt.Errorf("-profile %s keeps its state inside each daprd, so nodes would not share it; use redis, postgres-rabbitmq or mysql-mqtt", *profile)
	}
	if err := os.MkdirAll(*logDir, 0o755); err != nil {
		return err
	}
	root, err := testkit.RepoRoot()
	if err != nil {
		return fmt.Errorf("run from inside the parley checkout: %w", err)
	}
	bin := filepath.Join(*logDir, "parley")
	fmt.Fprintln(os.Stderr, "building parley…")
	if err := testkit.Build(ctx, root, "./app/cmd/parley", bin); err != nil {
		return err
	}
	var secret [32]byte
	_, _ = rand.Read(secret[:])
	var procs []*exec.Cmd
	exited := make(chan error, *n)
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(syscall.SIGTERM)
		}
		for range procs {
			<-exited // each node stops its daprd before it exits
		}
	}()
	for i := range *n {
		node := fmt.Sprintf("node-%d", i+1)
		addr := fmt.Sprintf("127.0.0.1:%d", *firstPort+i)
		logPath := filepath.Join(*logDir, node+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			return err
		}
		cmd := exec.Command(bin, "-backend", "dapr", "-sidecar", "launch", "-profile", *profile,
			"-addr", addr, "-node-id", node, "-app-id", *appID,
			fmt.Sprintf("-dev-tokens=%v", *devTokens), "-settings", "deploy/local/settings.yaml", "-log-format", "json")
		cmd.Dir = root // parley finds components/ and the settings file from there
		cmd.Stdout, cmd.Stderr = logf, logf
		// The shared secret goes in the environment, not the command line
		// that every user of the machine can read.
		cmd.Env = append(os.Environ(), "PARLEY_JWT_SECRET="+hex.EncodeToString(secret[:]))
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", node, err)
		}
		procs = append(procs, cmd)
		go func() {
			err := cmd.Wait()
			logf.Close()
			exited <- fmt.Errorf("%s exited: %v (see %s)", node, err, logPath)
		}()
		fmt.Fprintf(os.Stderr, "  %s  http://localhost:%d/  log %s\n", node, *firstPort+i, logPath)
	}
	fmt.Fprintf(os.Stderr, "\n%d nodes on profile %s; GET /v1/route on any node lists them. Ctrl-C stops all.\n", *n, *profile)
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "stopping…")
		return nil
	case err := <-exited:
		exited <- nil // keep the count for the deferred wait
		return err
	}
}
