package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// TestSuiteTableGroupRows: the group's figures appear in each mode's
// column, with the ratio to memory, and against the targets, judged
// on the run at the target rate: memory 60,000 deliveries/s and daprd +
// redis half of it, both at p99 ≤ 100 ms.
func TestSuiteTableGroupRows(t *testing.T) {
	t.Parallel()
	group := func(members int, rate, p99 float64, lost int64) *GroupResult {
		return &GroupResult{Members: members, Senders: 10, AckedPerSec: rate / float64(members-1), DeliveriesPerSec: rate,
			DeliverLatency: Summary{P50Ms: p99 / 4, P99Ms: p99}, Lost: lost, DroppedConnections: 2, DroppedSenders: 1,
			ServerCPUPerDeliveryUs: 9.5, LoadgenCPUPerDeliveryUs: 11.25}
	}
	atTarget := func(g *GroupResult, rate float64) *GroupResult {
		g.TargetRate = rate
		return g
	}
	res := &SuiteResult{Machine: "test", Modes: []*ModeResult{
		{Mode: "memory", Group: group(2000, 74000, 900, 0), GroupAtTarget: atTarget(group(2000, 64000, 80, 0), 31)},
		{Mode: "dapr-local"},
		{Mode: "dapr-redis", Group: group(2000, 50000, 800, 0), GroupAtTarget: atTarget(group(2000, 24000, 90, 0), 15.5)},
	}}
	table := suiteTable(res)
	for _, want := range []string{
		"| **group, all online**: members × senders | 2000 × 10 | – | 2000 × 10 |",
		"| deliveries/s (messages × recipients) | 74000 | – | 50000 |  | 0.68× |",
		"| at the target rate: deliveries/s | 64000 | – | 24000 |  | 0.38× |",
		"| at the target rate: send→deliver p99 (ms) | 80.00 | – | 90.00 |",
		"| connections dropped (senders) | 2 (1) | – | 2 (1) |",
		"| CPU per delivery, µs: server / sidecar / load generator | 9.50 / 0.00 / 11.25 | – |",
		"| memory: a group of 2000 members all online on one node, ≥60000 deliveries/s, p99 send→deliver ≤100 ms | group of 2000 at 31.0 msg/s: 64000 deliveries/s, p99 80.00 ms, lost 0 | yes |",
		"| dapr-redis: a group of 2000 members all online on one node, ≥30000 deliveries/s, p99 send→deliver ≤100 ms | group of 2000 at 15.5 msg/s: 24000 deliveries/s, p99 90.00 ms, lost 0 | **no** |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	for _, tc := range []struct {
		name string
		g    *GroupResult
	}{
		{"smaller_group", group(500, 90000, 50, 0)},
		{"slow_p99", group(2000, 90000, 150, 0)},
		{"lost", group(2000, 90000, 50, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			table := suiteTable(&SuiteResult{Modes: []*ModeResult{{Mode: "memory", Group: tc.g, GroupAtTarget: tc.g}}})
			if !strings.Contains(table, "ms, lost "+strconv.FormatInt(tc.g.Lost, 10)+" | **no** |") {
				t.Errorf("target met by %+v:\n%s", tc.g, table)
			}
		})
	}
}

// TestGroupTargetRate: the rate of the run at the target makes the goal's
// deliveries per second with a 3% margin.
func TestGroupTargetRate(t *testing.T) {
	for _, tc := range []struct {
		goal    float64
		members int
		want    float64
	}{{60000, 2000, 31}, {30000, 2000, 15.5}, {100, 2, 103}} {
		if got := groupTargetRate(tc.goal, tc.members); got != tc.want {
			t.Errorf("groupTargetRate(%v, %d) = %v, want %v", tc.goal, tc.members, got, tc.want)
		}
	}
}
