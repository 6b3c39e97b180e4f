package testkit

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a testing.TB that notes how a helper ended the test instead
// of ending it.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Skipf(f string, args ...any)  { r.skipped = f }
func (r *recorder) Fatalf(f string, args ...any) { r.failed = f }

func TestUnavailableSkipsOrFailsUnderCI(t *testing.T) {
	for _, tc := range []struct {
		name, ci   string
		wantFailed bool
	}{
		{"laptop_skips", "", false},
		{"ci_fails", "true", true},
		{"ci_other_value_skips", "1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci) // not parallel: the environment is the process's
			r := &recorder{TB: t}
			Unavailable(r, "redis down")
			if got := r.failed != ""; got != tc.wantFailed || (r.skipped == "") == (r.failed == "") {
				t.Errorf("CI=%q: skipped %q failed %q, want failed=%v", tc.ci, r.skipped, r.failed, tc.wantFailed)
			}
		})
	}
}

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := Until(ctx, func() bool { return calls.Add(1) == 4 }); err != nil {
		t.Fatalf("Until = %v, want nil on the 4th check", err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("cond checked %d times, want 4", n)
	}
}

func TestUntilStopsWithTheContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Until(ctx, func() bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Until = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Until returned %s after its deadline", d)
	}
}

func TestEventuallyFailsWithTheMessage(t *testing.T) {
	t.Parallel()
	r := &recorder{TB: t}
	Eventually(r, 20*time.Millisecond, func() bool { return false }, "bob has %d messages", 3)
	if !strings.Contains(r.failed, "bob has %d messages") {
		t.Errorf("Eventually failed with %q, want the caller's message", r.failed)
	}
}

func TestRepoRootFindsTheModule(t *testing.T) {
	t.Parallel()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.HasPrefix(string(data), "module "+ModulePath+"\n") {
		t.Fatalf("RepoRoot = %s, whose go.mod does not declare %s", root, ModulePath)
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "testkit")); err != nil {
		t.Errorf("RepoRoot = %s, which does not hold tools/testkit", root)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		n    int
		want string
	}{
		{"last_two", path, 2, "two\nthree"},
		{"more_than_the_file", path, 10, "one\ntwo\nthree"},
		{"missing_file", path + ".none", 5, "(no file " + path + ".none)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Tail(tc.path, tc.n); got != tc.want {
				t.Errorf("Tail(%d) = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
}

func TestReadRESP(t *testing.T) {
	t.Parallel()
	in := "*2\r\n$1\r\n0\r\n*2\r\n$5\r\napp||\r\n$3\r\nkey\r\n:7\r\n$-1\r\n+OK\r\n-ERR no\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	v, err := ReadRESP(r)
	if err != nil {
		t.Fatal(err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 || arr[0] != "0" || len(arr[1].([]any)) != 2 || arr[1].([]any)[0] != "app||" {
		t.Errorf("SCAN reply %#v", v)
	}
	if v, err := ReadRESP(r); err != nil || v != int64(7) {
		t.Errorf("integer reply %v %v, want 7", v, err)
	}
	if v, err := ReadRESP(r); err != nil || v != nil {
		t.Errorf("null bulk reply %v %v, want nil", v, err)
	}
	if v, err := ReadRESP(r); err != nil || v != "OK" {
		t.Errorf("status reply %v %v, want OK", v, err)
	}
	if _, err := ReadRESP(r); err == nil || err.Error() != "ERR no" {
		t.Errorf("error reply = %v, want the error ERR no", err)
	}
}

// TestRedisDoSpeaksRESP runs a one-connection fake server that checks the
// command's encoding and answers it.
func TestRedisDoSpeaksRESP(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		buf := make([]byte, 0, 64)
		r := bufio.NewReader(c)
		for !strings.HasSuffix(string(buf), "val ue\r\n") {
			b, err := r.ReadByte()
			if err != nil {
				break
			}
			buf = append(buf, b)
		}
		got <- string(buf)
		_, _ = c.Write([]byte("+OK\r\n"))
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	v, err := RedisDo(ctx, ln.Addr().String(), "SET", "k", "val ue")
	if err != nil || v != "OK" {
		t.Fatalf("RedisDo = %v, %v, want OK", v, err)
	}
	if want := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\nval ue\r\n"; <-got != want {
		t.Errorf("the server read another command, want %q", want)
	}
}

// fakeParley writes a script that behaves like parley's ready file: it
// writes the address it was told, or exits at once saying why.
func fakeParley(t *testing.T, body string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the fake parley is a shell script")
	}
	path := filepath.Join(t.TempDir(), "parley")
	script := "#!/bin/sh\nready=\"$2\"\n" + body + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLaunchWaitsForTheReadyFile(t *testing.T) {
	t.Parallel()
	bin := fakeParley(t, `echo starting; sleep 0.2; printf '127.0.0.1:4321\n' > "$ready"; exec sleep 60`)
	log := filepath.Join(t.TempDir(), "parley.log")
	p, err := Launch(t.Context(), LaunchOptions{Binary: bin, LogPath: log, ReadyTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if p.Base != "http://127.0.0.1:4321" {
		t.Errorf("Base = %q, want http://127.0.0.1:4321", p.Base)
	}
	if p.Stop(5 * time.Second); !isClosed(p.Exited()) {
		t.Error("the process did not exit on Stop")
	}
	if got := Tail(log, 1); got != "starting" {
		t.Errorf("log ends %q, want the process's output", got)
	}
}

func TestLaunchReportsAnEarlyExitWithTheLog(t *testing.T) {
	t.Parallel()
	bin := fakeParley(t, `echo "bad flag -profile nope"; exit 2`)
	_, err := Launch(t.Context(), LaunchOptions{Binary: bin, LogPath: filepath.Join(t.TempDir(), "parley.log"), ReadyTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "exited before serving") || !strings.Contains(err.Error(), "bad flag -profile nope") {
		t.Fatalf("Launch = %v, want an early exit with the log's end", err)
	}
}

func TestLaunchGivesUpAfterTheTimeout(t *testing.T) {
	t.Parallel()
	bin := fakeParley(t, `echo "waiting for daprd"; exec sleep 60`)
	start := time.Now()
	_, err := Launch(t.Context(), LaunchOptions{Binary: bin, LogPath: filepath.Join(t.TempDir(), "parley.log"), ReadyTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "not serving after") || !strings.Contains(err.Error(), "waiting for daprd") {
		t.Fatalf("Launch = %v, want a timeout with the log's end", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Launch took %s with a 300ms timeout", d)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestChildPIDsAndAlive(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !slices.Contains(ChildPIDs(os.Getpid()), pid) {
		t.Errorf("ChildPIDs(self) = %v, want the started %d among them", ChildPIDs(os.Getpid()), pid)
	}
	if !Alive(pid) {
		t.Errorf("Alive(%d) = false for a running process", pid)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if Alive(pid) {
		t.Errorf("Alive(%d) = true after it was killed and reaped", pid)
	}
}
