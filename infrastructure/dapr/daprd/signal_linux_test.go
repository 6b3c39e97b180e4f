//go:build linux

package daprd_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// signalHelperEnv, when set, turns this test binary into a small program
// that launches daprd and stops it on SIGINT, as `make run` does: the value
// is daprd's log path.
const signalHelperEnv = "PARLEY_DAPRD_SIGNAL_HELPER"

// TestCtrlCStopsDaprdCleanly plays a Ctrl-C at a terminal: SIGINT goes to
// every process of the foreground process group. The program that launched
// daprd stops it, and daprd's log must show a clean shutdown, not the
// fatal "Received signal 'terminated' during shutdown" that a second signal
// causes.
func TestCtrlCStopsDaprdCleanly(t *testing.T) {
	if path := os.Getenv(signalHelperEnv); path != "" {
		runSignalHelper(t, path)
		return
	}
	daprdtest.RequireBinary(t)
	logPath := filepath.Join(t.TempDir(), "daprd.log")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCtrlCStopsDaprdCleanly$")
	cmd.Env = append(os.Environ(), signalHelperEnv+"="+logPath)
	// The helper leads a group of its own, as a shell gives a foreground job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var output []string
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
ready:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				_ = cmd.Wait()
				t.Fatalf("helper exited before daprd was ready:\n%s", strings.Join(output, "\n"))
			}
			output = append(output, l)
			if l == "daprd ready" {
				break ready
			}
		case <-deadline.C:
			_ = cmd.Process.Kill()
			t.Fatalf("daprd not ready within 60s:\n%s", strings.Join(output, "\n"))
		}
	}

	// Ctrl-C: the terminal signals the whole foreground group.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		output = append(output, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v\n%s", err, strings.Join(output, "\n"))
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "level=fatal") {
			t.Errorf("daprd's log after a Ctrl-C has a fatal line: %s", l)
		}
	}
	if !strings.Contains(string(log), "Received signal 'terminated'") {
		t.Errorf("daprd's log does not show the SIGTERM of Stop:\n%s", log)
	}
	if strings.Contains(string(log), "Received signal 'interrupt'") {
		t.Errorf("daprd got the terminal's SIGINT itself:\n%s", log)
	}
}

// runSignalHelper launches daprd with the local profile, waits for SIGINT,
// then stops daprd.
func runSignalHelper(t *testing.T, logPath string) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := daprd.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := daprd.Start(startCtx, daprd.Options{
		ResourcesPath: filepath.Join(root, "components", daprdtest.Local),
		AppID:         daprdtest.UniqueName("parley-signal"),
		Dir:           t.TempDir(),
		LogPath:       logPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("daprd ready")
	<-ctx.Done()
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancelStop()
	if err := s.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
}
