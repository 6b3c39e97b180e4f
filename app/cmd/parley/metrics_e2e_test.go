package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/tools/testkit"
)

// TestMetricsEndToEnd: a parley process serves /metrics on -metrics-addr,
// and a scripted conversation moves its counters by exactly what happened:
// two devices connect, alice sends bob three messages that bob's device
// acknowledges, alice sends one undecodable frame, and both leave.
func TestMetricsEndToEnd(t *testing.T) {
	addr := freeAddr(t)
	p := startProc(t, mode{name: "memory", args: []string{"-backend", "memory"}}, "-metrics-addr", addr)
	n := p.node()
	scrapeURL := "http://" + addr + "/metrics"

	// Before any client: the families exist, at zero.
	before := scrape(t, scrapeURL)
	for _, k := range []string{"parley_connections_opened_total", "parley_messages_stored_total", "parley_messages_delivered_total"} {
		if v, ok := before[k]; !ok || v != 0 {
			t.Fatalf("before any client %s = %v (present %v), want 0", k, v, ok)
		}
	}
	if _, ok := before["go_goroutines"]; !ok {
		t.Error("the Go runtime metrics are missing")
	}

	alice := dial(t, n, "alice", "web")
	bob := dial(t, n, "bob", "web")
	ctx := ctxT(t, 30*time.Second)
	for i := range 3 {
		if _, err := alice.Send(ctx, "bob", "", fmt.Sprintf("m-%d", i), fmt.Sprintf("hello %d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// bob's client acknowledges each push with a recv frame as it reads it.
	collect(t, bob, 3, 10*time.Second)
	if err := alice.WriteRaw(websocket.TextMessage, []byte(`{"type":`)); err != nil {
		t.Fatal(err)
	}

	want := map[string]float64{
		"parley_connections_opened_total":            2,
		"parley_connections":                         2,
		"parley_messages_stored_total":               3,
		"parley_messages_pushed_total":               3,
		"parley_messages_delivered_total":            3,
		`parley_errors_total{code="bad_frame"}`:      1,
		`parley_frames_received_total{type="send"}`:  3,
		`parley_frames_received_total{type="recv"}`:  3,
		`parley_frames_received_total{type="other"}`: 1,
		`parley_frames_sent_total{type="hello"}`:     2,
		`parley_frames_sent_total{type="ack"}`:       3,
		`parley_frames_sent_total{type="msg"}`:       3,
		`parley_frames_sent_total{type="error"}`:     1,
		"parley_send_ack_seconds_count":              3,
		"parley_store_deliver_seconds_count":         3,
		"parley_write_queue_fill_ratio_count":        1, // bob's first push: one in queueFillEvery
		"parley_messages_retransmitted_total":        0,
	}
	got := waitMetrics(t, scrapeURL, want)
	// Nothing else went wrong: no other error code, no drop, no cut.
	for k, v := range got {
		if v == 0 || want[k] != 0 {
			continue
		}
		for _, prefix := range []string{"parley_errors_total", "parley_messages_dropped_total", "parley_slow_consumer_cuts_total",
			"parley_rate_limited_total", "parley_ban_hits_total"} {
			if strings.HasPrefix(k, prefix) {
				t.Errorf("%s = %v, want 0", k, v)
			}
		}
	}
	// The memory backend makes no sidecar call.
	for k, v := range got {
		if strings.HasPrefix(k, "parley_sidecar_calls_total") && v != 0 {
			t.Errorf("%s = %v on the memory backend, want 0", k, v)
		}
	}

	// Both leave with a normal close: counted by code, the gauge back to 0.
	_ = alice.Close()
	_ = bob.Close()
	waitMetrics(t, scrapeURL, map[string]float64{
		`parley_connections_closed_total{code="1000"}`: 2,
		"parley_connections":                           0,
		"parley_connections_opened_total":              2,
	})
}

// TestMetricsOff: with an empty -metrics-addr parley serves no metrics
// and still serves chat.
func TestMetricsOff(t *testing.T) {
	p := startProc(t, mode{name: "memory", args: []string{"-backend", "memory"}}, "-metrics-addr", "")
	if _, err := client.DevToken(ctxT(t, 10*time.Second), p.base, "alice"); err != nil {
		t.Fatalf("parley does not serve: %v", err)
	}
	data, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "metrics are") {
		t.Errorf("want no metrics listener with -metrics-addr empty; log:\n%s", testkit.Tail(p.log, 20))
	}
}

// freeAddr returns a loopback address with a port free at the time of the
// call.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitMetrics scrapes url until every series in want has its value, and
// returns the last scrape; it fails after 10 s with the values it saw.
func waitMetrics(t *testing.T, url string, want map[string]float64) map[string]float64 {
	t.Helper()
	var got map[string]float64
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := testkit.Until(ctx, func() bool {
		got = scrape(t, url)
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	})
	if err != nil {
		var diff []string
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				diff = append(diff, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
			}
		}
		t.Fatalf("metrics did not reach the expected values:\n%s", strings.Join(diff, "\n"))
	}
	return got
}

// scrape reads url in the Prometheus text format into series (name with
// its labels as exposed) and values.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad line %q", url, line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return out
}

// TestDaprdTraceEnv: a daprd that parley launches exports to the collector
// of -trace-exporter and -trace-endpoint, through the variables that
// sidecar/config.yaml reads.
func TestDaprdTraceEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, exporter, endpoint string
		want                     []string
	}{
		{"off", "", "", nil},
		{"otlp_grpc", "otlp-grpc", "127.0.0.1:4317", []string{"PARLEY_DAPR_OTLP_ENDPOINT=127.0.0.1:4317", "PARLEY_DAPR_OTLP_PROTOCOL=grpc"}},
		{"otlp_http_url", "otlp-http", "http://collector:4318/v1/traces", []string{"PARLEY_DAPR_OTLP_ENDPOINT=collector:4318", "PARLEY_DAPR_OTLP_PROTOCOL=http"}},
		{"zipkin", "zipkin", "http://127.0.0.1:9411/api/v2/spans", []string{"PARLEY_DAPR_ZIPKIN_ENDPOINT=http://127.0.0.1:9411/api/v2/spans"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := daprdTraceEnv(tc.exporter, tc.endpoint); !slices.Equal(got, tc.want) {
				t.Errorf("daprdTraceEnv(%q, %q) = %q, want %q", tc.exporter, tc.endpoint, got, tc.want)
			}
		})
	}
}

// TestTraceFlagsRefused: a tracing setup that cannot work is refused at
// start, naming the flag.
func TestTraceFlagsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown_exporter", []string{"-trace-exporter", "jaeger", "-trace-endpoint", "x:1"}, "-trace-exporter"},
		{"exporter_without_endpoint", []string{"-trace-exporter", "zipkin"}, "-trace-endpoint"},
		{"sample_above_one", []string{"-trace-sample", "1.5"}, "-trace-sample"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseOptions(append([]string{"-backend", "memory"}, tc.args...), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseOptions(%q) = %v, want an error naming %s", tc.args, err, tc.want)
			}
		})
	}
}
