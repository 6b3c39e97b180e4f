package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	h := &Histogram{}
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		q    float64
		want time.Duration
	}{
		{"median", 0.5, 500 * time.Millisecond},
		{"p99", 0.99, 990 * time.Millisecond},
		{"p999", 0.999, 999 * time.Millisecond},
		{"max", 1, 1000 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := h.Quantile(tc.q)
			if diff := float64(got-tc.want) / float64(tc.want); diff < -0.02 || diff > 0.02 {
				t.Errorf("Quantile(%v) = %v, want %v within 2%%", tc.q, got, tc.want)
			}
		})
	}
}

func TestHistogramSnapshotMerges(t *testing.T) {
	t.Parallel()
	a, b := &Histogram{}, &Histogram{}
	a.Record(time.Millisecond)
	b.Record(3 * time.Second)
	data, err := json.Marshal(b.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var s HistSnapshot
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	a.Merge(s)
	if a.Count() != 2 || a.Quantile(1) != 3*time.Second {
		t.Errorf("merged: count %d max %v, want 2 and 3s", a.Count(), a.Quantile(1))
	}
}

func TestBucketsCoverEveryValue(t *testing.T) {
	t.Parallel()
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1<<64 - 1} {
		i := bucketOf(v)
		lo, w := bucketRange(i)
		if i < 0 || i >= nBuckets || v < lo || v-lo >= w {
			t.Errorf("value %d: bucket %d holds [%d, %d+%d)", v, i, lo, lo, w)
		}
	}
}

func TestTargetMustBeLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		target string
		ok     bool
	}{
		{"ipv4_loopback", "http://127.0.0.1:8080", true},
		{"other_loopback_address", "http://127.3.4.5:8080", true},
		{"ipv6_loopback", "http://[::1]:8080", true},
		{"localhost", "http://localhost:8080", true},
		{"private_address", "http://10.0.0.1:8080", false},
		{"public_address", "http://1.1.1.1:80", false},
		{"mapped_private", "http://[::ffff:192.168.1.1]:80", false},
		{"no_port", "http://127.0.0.1", false},
		{"wrong_scheme", "https://127.0.0.1:443", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := loopbackTarget(context.Background(), tc.target)
			if (err == nil) != tc.ok {
				t.Errorf("loopbackTarget(%q) = %v, want ok=%v", tc.target, err, tc.ok)
			}
		})
	}
}

func TestSourcePoolStaysInLoopback(t *testing.T) {
	t.Parallel()
	p, err := newSourcePool("127.0.0.254", 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range p.addrs {
		got = append(got, a.String())
	}
	if want := "127.0.0.254 127.0.1.1 127.0.1.2"; strings.Join(got, " ") != want {
		t.Errorf("addresses %v, want %s", got, want)
	}
	if _, err := newSourcePool("10.0.0.2", 1); err == nil {
		t.Error("a source outside 127.0.0.0/8 was accepted")
	}
	if _, err := newSourcePool("127.255.255.250", 10); err == nil {
		t.Error("a pool running past 127.255.255.255 was accepted")
	}
}

func TestDialRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	p, err := newSourcePool("127.0.0.2", 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.dialFunc(0)(context.Background(), "tcp", "192.0.2.1:80")
	if !errors.Is(err, errNotLoopback) {
		t.Errorf("dial 192.0.2.1: %v, want errNotLoopback", err)
	}
}

func TestLatencySVG(t *testing.T) {
	t.Parallel()
	h := &Histogram{}
	for i := range 5000 {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	svg := string(latencySVG("t <&>", []latencySeries{{"a", h}, {"empty", &Histogram{}}}))
	for _, want := range []string{"<svg", "</svg>", "t &lt;&amp;&gt;", "99.9%", "<path"} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
}

func TestMedianRun(t *testing.T) {
	t.Parallel()
	runs := []*DirectResult{{AckedPerSec: 5}, {AckedPerSec: 9}, {AckedPerSec: 7}}
	if got := medianRun(runs).AckedPerSec; got != 7 {
		t.Fatalf("median of 5, 9, 7 = %v, want 7", got)
	}
	if got := medianRun(runs[:2]).AckedPerSec; got != 5 {
		t.Fatalf("median of 5, 9 = %v, want the lower, 5", got)
	}
	if runs[1].AckedPerSec != 9 {
		t.Fatal("medianRun reordered its argument")
	}
}

func TestSuiteTableRatios(t *testing.T) {
	t.Parallel()
	direct := func(rate float64) *DirectResult {
		return &DirectResult{AckedPerSec: rate, DeliveredPerSec: rate, TargetRate: rate}
	}
	res := &SuiteResult{Machine: "test", Modes: []*ModeResult{
		{Mode: "memory", Direct: direct(40000), DirectRuns: []float64{39000, 40000, 41000}, Rate: direct(40000), targetRate: 40000, targetP99: 25},
		{Mode: "dapr-local", Direct: direct(20000), DirectRuns: []float64{20000}, DirectLost: 3, targetRate: 20000, targetP99: 50},
		{Mode: "dapr-redis", Skipped: "redis does not answer"},
	}}
	table := suiteTable(res)
	for _, want := range []string{
		"| metric | memory | dapr-local | dapr-redis | dapr-local / memory | dapr-redis / memory |", "0.50×",
		"dapr-redis skipped: redis does not answer",
		"| dapr-local throughput ≥0.5× in-memory (flat out, median runs) | 0.50× | yes |",
		"| **direct, flat out**: ACKed msg/s, each run | 39000 / 40000 / 41000 | 20000 | skipped |",
		"| lost, all runs (must be 0) | 0 | 3 | skipped |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// TestRouteRSSIsPerNode: under -route each node's RSS growth is divided by
// the connections that node holds, never by the whole cluster's, and the
// total is every measured node's growth over their connections.
func TestRouteRSSIsPerNode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                 string
		nodes                []NodeMemory
		wantPerNode          []float64
		wantPerConn, wantAll float64
	}{
		{
			name: "three_even_nodes",
			nodes: []NodeMemory{
				{URL: "n1", PID: 1, Connected: 1000, BeforeRSSKB: 20000, HeldRSSKB: 30000},
				{URL: "n2", PID: 2, Connected: 1000, BeforeRSSKB: 20000, HeldRSSKB: 30000},
				{URL: "n3", PID: 3, Connected: 1000, BeforeRSSKB: 20000, HeldRSSKB: 30000},
			},
			// One node's 10,000 KB over all 3,000 connections would say 3.33.
			wantPerNode: []float64{10, 10, 10}, wantPerConn: 10, wantAll: 30,
		},
		{
			name: "uneven_nodes",
			nodes: []NodeMemory{
				{URL: "n1", PID: 1, Connected: 3000, BeforeRSSKB: 10000, HeldRSSKB: 40000},
				{URL: "n2", PID: 2, Connected: 1000, BeforeRSSKB: 10000, HeldRSSKB: 30000},
			},
			wantPerNode: []float64{10, 20}, wantPerConn: 12.5, wantAll: 17.5,
		},
		{
			name: "unmeasured_node_left_out",
			nodes: []NodeMemory{
				{URL: "n1", PID: 1, Connected: 1000, BeforeRSSKB: 10000, HeldRSSKB: 18000},
				{URL: "n2", PID: 0, Connected: 1000},
			},
			wantPerNode: []float64{8, 0}, wantPerConn: 8, wantAll: 18,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			perConn, all := nodeTotals(tc.nodes)
			if perConn != tc.wantPerConn || all != tc.wantAll {
				t.Errorf("totals = %v KB/conn growth, %v KB/conn held; want %v and %v", perConn, all, tc.wantPerConn, tc.wantAll)
			}
			for i, n := range tc.nodes {
				if n.RSSPerConnKB != tc.wantPerNode[i] {
					t.Errorf("node %s: %v KB per connection, want %v", n.URL, n.RSSPerConnKB, tc.wantPerNode[i])
				}
			}
		})
	}
}

func TestConnectionsTextShowsEveryNode(t *testing.T) {
	t.Parallel()
	nodes := []NodeMemory{
		{URL: "http://127.0.0.1:8080", PID: 11, Connected: 2000, BeforeRSSKB: 10000, HeldRSSKB: 30000},
		{URL: "http://127.0.0.1:8081", PID: 0, Connected: 2000},
	}
	r := &ConnectionsResult{Requested: 4000, Connected: 4000, Nodes: nodes, ServerPID: 11}
	r.RSSPerConnKB, r.RSSTotalPerConnKB = nodeTotals(r.Nodes)
	text := r.text()
	for _, want := range []string{
		"node http://127.0.0.1:8080 (pid 11): 2000 connections, RSS 10000 KB before, 30000 KB held, 10.00 KB per connection",
		"node http://127.0.0.1:8081: 2000 connections, RSS not measured",
		"cluster RSS: 10.00 KB per connection over 1 of 2 nodes (15.00 KB counting the baselines)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "server RSS:") {
		t.Errorf("report under -route still has the one-node line:\n%s", text)
	}
}
