package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/tools/testkit"
)

// launchParleyMemory starts a real parley in memory mode with the suite's
// settings (no send rate limit, no abuse guard) and stops it when the test
// ends.
func launchParleyMemory(t *testing.T) *testkit.Process {
	t.Helper()
	testkit.SkipShort(t)
	bin := testkit.Binary(t, "./app/cmd/parley")
	dir := t.TempDir()
	settings := filepath.Join(dir, "settings.yaml")
	if err := os.WriteFile(settings, []byte(suiteSettings), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := testkit.Launch(t.Context(), testkit.LaunchOptions{
		Binary: bin,
		Args: []string{"-backend", "memory", "-addr", "127.0.0.1:0", "-dev-tokens", "-settings", settings,
			"-log-level", "warn", "-shutdown-timeout", "3s"},
		LogPath: filepath.Join(dir, "parley.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.Stop(10 * time.Second) {
			t.Errorf("parley did not stop on SIGTERM; its log ends:\n%s", testkit.Tail(p.LogPath, 20))
		}
	})
	return p
}

// TestGroupScenarioAgainstParley runs the group scenario against a real
// parley: every message a sender gets ACKed reaches every other member's
// device live, once, and never the connection that sent it.
func TestGroupScenarioAgainstParley(t *testing.T) {
	p := launchParleyMemory(t)
	e, err := newEnv(t.Context(), common{target: p.Base, serverPID: p.Cmd.Process.Pid, sourceBase: "127.0.0.2", progress: "off", concurrency: 16}, 50, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	const members = 50
	r, err := runGroup(t.Context(), e, groupConfig{members: members, senders: 2, duration: 2 * time.Second, drain: 10 * time.Second, inflight: 2, body: 64})
	if err != nil {
		t.Fatal(err)
	}
	if r.Acked == 0 || r.Acked != r.Sent || len(r.Errors) > 0 {
		t.Fatalf("sent %d, ACKed %d, errors %v: want every send ACKed", r.Sent, r.Acked, r.Errors)
	}
	if want := r.Acked * (members - 1); r.Expected != want || r.Delivered != want {
		t.Errorf("delivered %d live, owed %d; want %d ACKed × %d other members = %d", r.Delivered, r.Expected, r.Acked, members-1, want)
	}
	if r.Lost != 0 || r.SyncRecovered != 0 || r.Duplicates != 0 || r.Echoes != 0 || r.DroppedConnections != 0 {
		t.Errorf("lost %d, recovered by sync %d, duplicates %d, echoes %d, dropped %d: want all 0",
			r.Lost, r.SyncRecovered, r.Duplicates, r.Echoes, r.DroppedConnections)
	}
	if r.DeliverLatency.Count != uint64(r.Delivered) || r.AckLatency.Count != uint64(r.Acked) {
		t.Errorf("latencies recorded: %d deliveries, %d ACKs; want %d and %d", r.DeliverLatency.Count, r.AckLatency.Count, r.Delivered, r.Acked)
	}
	if r.DeliveriesPerSec <= 0 || !strings.HasPrefix(r.Conv, "g:") {
		t.Errorf("deliveries/s %v, conv %q", r.DeliveriesPerSec, r.Conv)
	}
}

func TestGroupConfigBounds(t *testing.T) {
	t.Parallel()
	ok := groupConfig{members: 2000, senders: 10, duration: time.Second, inflight: 1}
	for _, tc := range []struct {
		name string
		edit func(c *groupConfig)
		ok   bool
	}{
		{"defaults", func(*groupConfig) {}, true},
		{"one_member", func(c *groupConfig) { c.members, c.senders = 1, 1 }, false},
		{"more_than_one_process_holds", func(c *groupConfig) { c.members = groupMaxMembers + 1 }, false},
		{"more_senders_than_members", func(c *groupConfig) { c.senders = 2001 }, false},
		{"no_senders", func(c *groupConfig) { c.senders = 0 }, false},
		{"no_window", func(c *groupConfig) { c.inflight = 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.edit(&c)
			if err := c.check(); (err == nil) != tc.ok {
				t.Errorf("check() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestGroupMemberMissing: a member is owed every ACKed message but its
// own, and a seq pushed twice is a duplicate.
func TestGroupMemberMissing(t *testing.T) {
	t.Parallel()
	m := &groupMember{}
	for _, seq := range []uint64{3, 64, 200} {
		if m.mark(seq) {
			t.Errorf("first push of %d counted as a duplicate", seq)
		}
	}
	if !m.mark(64) {
		t.Error("second push of 64 not counted as a duplicate")
	}
	acked := []groupSend{{3, 1}, {4, 1}, {5, 7}, {64, 2}, {200, 1}, {300, 2}}
	got := m.missing(acked, 7)
	if want := []uint64{4, 300}; !slices.Equal(got, want) {
		t.Errorf("missing %v, want %v (5 is its own)", got, want)
	}
}
