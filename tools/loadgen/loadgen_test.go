package main

import (
	"bufio"
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

func TestReadRESP(t *testing.T) {
	t.Parallel()
	in := "*2\r\n$1\r\n0\r\n*2\r\n$5\r\napp||\r\n$3\r\nkey\r\n:7\r\n-ERR no\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	v, err := readRESP(r)
	if err != nil {
		t.Fatal(err)
	}
	arr := v.([]any)
	if arr[0] != "0" || len(arr[1].([]any)) != 2 {
		t.Errorf("SCAN reply %v", v)
	}
	if v, err := readRESP(r); err != nil || v != int64(7) {
		t.Errorf("integer reply %v %v", v, err)
	}
	if _, err := readRESP(r); err == nil {
		t.Error("error reply not returned as an error")
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
