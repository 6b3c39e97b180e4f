package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	"github.com/parley-im/parley/tools/testkit"
)

// node is one parley process-in-a-goroutine started through run(), the same
// code path as the binary.
type node struct {
	base   string
	cancel context.CancelFunc
	done   chan error
	log    string
}

// mode names a backend setup the end-to-end tests run against.
type mode struct {
	name string
	args []string
}

// modes lists the in-memory adapter and a real daprd per profile given.
func modes(profiles ...string) []mode {
	out := []mode{{name: "memory", args: []string{"-backend", "memory"}}}
	for _, p := range profiles {
		out = append(out, mode{name: "dapr-" + p, args: []string{"-backend", "dapr", "-sidecar", "launch", "-profile", p}})
	}
	return out
}

// requireMode skips (or, under CI=true, fails) when the mode's sidecar
// binary or servers are missing.
// Every end-to-end test passes here first, so -short skips them all.
func requireMode(t *testing.T, m mode) {
	t.Helper()
	testkit.SkipShort(t)
	if !strings.HasPrefix(m.name, "dapr-") {
		return // memory, or a sidecar the test started itself
	}
	daprdtest.RequireBinary(t)
	daprdtest.RequireServers(t, strings.TrimPrefix(m.name, "dapr-"))
}

// startNode runs parley with args plus a loopback port, a unique app-id and
// a log file, and stops it when the test ends.
func startNode(t *testing.T, m mode, extra ...string) *node {
	t.Helper()
	requireMode(t, m)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	logPath := filepath.Join(dir, "parley.log")
	args := append([]string{
		"-addr", "127.0.0.1:0", "-ready-file", ready, "-log-format", "json", "-log-level", "info", "-metrics-addr", "",
		"-app-id", daprdtest.UniqueName("parley-e2e"), "-dev-tokens", "-shutdown-timeout", "5s",
	}, m.args...)
	args = append(args, extra...)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{cancel: cancel, done: make(chan error, 1), log: logPath}
	go func() {
		n.done <- run(ctx, args, logf)
		logf.Close()
	}()
	// The ready file appears once parley serves; run returning first means
	// it never will.
	exited := false
	wctx, cancelWait := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancelWait()
	err = testkit.Until(wctx, func() bool {
		if data, err := os.ReadFile(ready); err == nil && len(data) > 0 {
			n.base = "http://" + string(data)
			return true
		}
		select {
		case err := <-n.done:
			n.done <- err
			exited = true
			cancelWait()
		default:
		}
		return false
	})
	if err != nil {
		if exited {
			t.Fatalf("parley exited before serving: %v\n%s", <-n.done, testkit.Tail(logPath, 40))
		}
		cancel()
		t.Fatalf("parley not serving after 60s\n%s", testkit.Tail(logPath, 40))
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t *testing.T) {
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("parley exited with %v", err)
		}
		n.done <- nil // let a second stop return at once
	case <-time.After(30 * time.Second):
		t.Errorf("parley did not stop within 30s\n%s", testkit.Tail(n.log, 40))
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func token(t *testing.T, n *node, user string) string {
	t.Helper()
	tok, err := client.DevToken(ctxT(t, 10*time.Second), n.base, user)
	if err != nil {
		t.Fatalf("dev token for %s: %v", user, err)
	}
	return tok
}

func dial(t *testing.T, n *node, user, device string, o ...client.Options) *client.Client {
	t.Helper()
	var opts client.Options
	if len(o) > 0 {
		opts = o[0]
	}
	opts.Device = device
	c, err := client.Dial(ctxT(t, 10*time.Second), n.base, token(t, n, user), opts)
	if err != nil {
		t.Fatalf("dial %s/%s: %v", user, device, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// collect reads n messages from c, failing after d.
func collect(t *testing.T, c *client.Client, n int, d time.Duration) []string {
	t.Helper()
	var got []string
	timeout := time.After(d)
	for len(got) < n {
		select {
		case m, ok := <-c.Messages:
			if !ok {
				t.Fatalf("connection closed after %d of %d messages: %v", len(got), n, c.Err())
			}
			got = append(got, fmt.Sprintf("%s#%d:%s", m.Conv, m.Seq, m.Body))
		case <-timeout:
			t.Fatalf("got %d of %d messages within %v", len(got), n, d)
		}
	}
	return got
}

// pause waits d or until ctx ends. It models a client's own timing (a
// retry backoff, a pace between sends, how long an outage lasts), never a
// wait for a state: those use testkit.Eventually.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
