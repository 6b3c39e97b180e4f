package metrics_test

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/parley-im/parley/app/metrics"
)

func newMetrics(t *testing.T) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// series returns the value of the counter or gauge name{labels}, or the
// sample count of a histogram, and whether the series exists.
func series(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, mt := range f.GetMetric() {
			got := map[string]string{}
			for _, lp := range mt.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return value(mt), true
		}
	}
	return 0, false
}

func value(mt *dto.Metric) float64 {
	switch {
	case mt.Counter != nil:
		return mt.GetCounter().GetValue()
	case mt.Gauge != nil:
		return mt.GetGauge().GetValue()
	case mt.Histogram != nil:
		return float64(mt.GetHistogram().GetSampleCount())
	}
	return -1
}

func TestCountersMoveByWhatHappened(t *testing.T) {
	t.Parallel()
	type want struct {
		name   string
		labels map[string]string
		value  float64
	}
	cases := []struct {
		name  string
		drive func(m *metrics.Metrics)
		want  []want
	}{
		{
			name: "connections_open_and_close_by_code",
			drive: func(m *metrics.Metrics) {
				m.ConnOpened()
				m.ConnOpened()
				m.ConnOpened()
				m.ConnClosed(4008)
				m.ConnClosed(3999)
			},
			want: []want{
				{"parley_connections", nil, 1},
				{"parley_connections_opened_total", nil, 3},
				{"parley_connections_closed_total", map[string]string{"code": "4008"}, 1},
				{"parley_connections_closed_total", map[string]string{"code": "other"}, 1},
				{"parley_connections_closed_total", map[string]string{"code": "1000"}, 0},
			},
		},
		{
			name: "frames_by_type",
			drive: func(m *metrics.Metrics) {
				m.FrameIn("send")
				m.FrameIn("send")
				m.FrameIn("recv")
				m.FrameIn("nonsense")
				m.FrameOut("ack")
				m.FrameOut("msg")
				m.FrameOut("msg")
			},
			want: []want{
				{"parley_frames_received_total", map[string]string{"type": "send"}, 2},
				{"parley_frames_received_total", map[string]string{"type": "recv"}, 1},
				{"parley_frames_received_total", map[string]string{"type": "other"}, 1},
				{"parley_frames_sent_total", map[string]string{"type": "ack"}, 1},
				{"parley_frames_sent_total", map[string]string{"type": "msg"}, 2},
				{"parley_frames_sent_total", map[string]string{"type": "error"}, 0},
			},
		},
		{
			name: "message_lifecycle",
			drive: func(m *metrics.Metrics) {
				m.MessageStored()
				m.SendAcked(300 * time.Microsecond)
				m.MessagePushed(2 * time.Millisecond)
				m.MessagePushed(0) // store time unknown: counted, not timed
				m.MessageRetransmitted()
				m.MessageDelivered()
				m.MessageDropped(metrics.DropAckTimeout)
				m.MessageDropped(metrics.DropAckTimeout)
				m.MessageDropped(metrics.DropQueueFull)
			},
			want: []want{
				{"parley_messages_stored_total", nil, 1},
				{"parley_messages_pushed_total", nil, 2},
				{"parley_messages_delivered_total", nil, 1},
				{"parley_messages_retransmitted_total", nil, 1},
				{"parley_messages_dropped_total", map[string]string{"reason": "ack_timeout"}, 2},
				{"parley_messages_dropped_total", map[string]string{"reason": "queue_full"}, 1},
				{"parley_send_ack_seconds", nil, 1},
				{"parley_store_deliver_seconds", nil, 1},
			},
		},
		{
			name: "sidecar_calls_by_op_and_outcome",
			drive: func(m *metrics.Metrics) {
				m.SidecarCall("state_get", "ok", time.Millisecond)
				m.SidecarCall("state_get", "ok", time.Millisecond)
				m.SidecarCall("state_transaction", "conflict", time.Millisecond)
				m.SidecarCall("publish", "unavailable", time.Millisecond)
				m.SidecarCall("future_op", "weird", time.Millisecond)
				m.SidecarBatch("set", 1)
				m.SidecarBatch("set", 17)
				m.SidecarBatch("get", 3)
				m.SidecarBatch("insert", 5)
			},
			want: []want{
				{"parley_sidecar_calls_total", map[string]string{"op": "state_get", "outcome": "ok"}, 2},
				{"parley_sidecar_calls_total", map[string]string{"op": "state_transaction", "outcome": "conflict"}, 1},
				{"parley_sidecar_calls_total", map[string]string{"op": "publish", "outcome": "unavailable"}, 1},
				{"parley_sidecar_calls_total", map[string]string{"op": "other", "outcome": "error"}, 1},
				{"parley_sidecar_call_seconds", map[string]string{"op": "state_get"}, 2},
				{"parley_sidecar_batch_size", map[string]string{"op": "set"}, 2},
				{"parley_sidecar_batch_size", map[string]string{"op": "get"}, 1},
				{"parley_sidecar_batch_size", map[string]string{"op": "transact"}, 0},
				{"parley_sidecar_batch_size", map[string]string{"op": "insert"}, 1},
			},
		},
		{
			name: "queues_presence_limits_errors_reloads",
			drive: func(m *metrics.Metrics) {
				m.WriteQueueFill(3, 4)
				m.WriteQueueFill(1, 0) // no capacity: not observed
				m.SlowConsumerCut(metrics.SlowQueueFull)
				m.PresenceWrite(nil)
				m.PresenceWrite(errors.New("down"))
				m.LeaseRenewal(nil)
				m.RateLimited(metrics.LimitSend)
				m.BanHit(metrics.BanAddress)
				m.Error("not_member")
				m.Error("brand_new_code")
				m.SettingsReloaded(0)
				m.SettingsReloaded(2)
			},
			want: []want{
				{"parley_write_queue_fill_ratio", nil, 1},
				{"parley_slow_consumer_cuts_total", map[string]string{"reason": "queue_full"}, 1},
				{"parley_presence_writes_total", map[string]string{"outcome": "ok"}, 1},
				{"parley_presence_writes_total", map[string]string{"outcome": "error"}, 1},
				{"parley_lease_renewals_total", map[string]string{"outcome": "ok"}, 1},
				{"parley_lease_renewals_total", map[string]string{"outcome": "error"}, 0},
				{"parley_rate_limited_total", map[string]string{"limit": "send"}, 1},
				{"parley_ban_hits_total", map[string]string{"subject": "address"}, 1},
				{"parley_errors_total", map[string]string{"code": "not_member"}, 1},
				{"parley_errors_total", map[string]string{"code": "other"}, 1},
				{"parley_settings_reloads_total", map[string]string{"outcome": "ok"}, 1},
				{"parley_settings_reloads_total", map[string]string{"outcome": "error"}, 1},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, reg := newMetrics(t)
			tc.drive(m)
			for _, w := range tc.want {
				got, ok := series(t, reg, w.name, w.labels)
				if !ok {
					t.Errorf("%s%v: no such series", w.name, w.labels)
					continue
				}
				if got != w.value {
					t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
				}
			}
		})
	}
}

// TestEveryLabelValueReachesItsOwnSeries drives each label value a caller
// can pass and checks that exactly its own series moved: the switches that
// resolve label values must stay in step with the label lists.
func TestEveryLabelValueReachesItsOwnSeries(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	ops := metrics.SidecarOps
	outs := metrics.SidecarOutcomes
	for i, op := range ops {
		for j, out := range outs {
			for range i*len(outs) + j + 1 {
				m.SidecarCall(op, out, time.Microsecond)
			}
		}
	}
	for i, op := range ops {
		for j, out := range outs {
			got, _ := series(t, reg, "parley_sidecar_calls_total", map[string]string{"op": op, "outcome": out})
			if want := float64(i*len(outs) + j + 1); got != want {
				t.Errorf("sidecar_calls_total{op=%q,outcome=%q} = %v, want %v", op, out, got, want)
			}
		}
	}

	// Error codes and frame types: the n-th value is hit n+1 times.
	for _, tc := range []struct {
		metric, label string
		hit           func(string)
	}{
		{"parley_errors_total", "code", m.Error},
		{"parley_frames_received_total", "type", m.FrameIn},
		{"parley_frames_sent_total", "type", m.FrameOut},
	} {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var values []string
		for _, f := range fams {
			if f.GetName() == tc.metric {
				for _, mt := range f.GetMetric() {
					values = append(values, mt.GetLabel()[0].GetValue())
				}
			}
		}
		if len(values) < 3 {
			t.Fatalf("%s has %d series; want one per %s", tc.metric, len(values), tc.label)
		}
		for n, v := range values {
			for range n + 1 {
				tc.hit(v)
			}
		}
		for n, v := range values {
			if got, _ := series(t, reg, tc.metric, map[string]string{tc.label: v}); got != float64(n+1) {
				t.Errorf("%s{%s=%q} = %v, want %v", tc.metric, tc.label, v, got, n+1)
			}
		}
	}
}

// TestExpositionAfterASend checks, through testutil, the exact text a
// scrape shows after one message went from a sender to a receiver.
func TestExpositionAfterASend(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t)
	m.FrameIn("send")
	m.MessageStored()
	m.FrameOut("ack")
	m.MessagePushed(time.Millisecond)
	m.FrameOut("msg")
	m.FrameIn("recv")
	m.MessageDelivered()
	const want = `
# HELP parley_messages_delivered_total Pushed messages a device acknowledged with a recv frame.
# TYPE parley_messages_delivered_total counter
parley_messages_delivered_total 1
# HELP parley_messages_pushed_total Messages queued to a device's connection, first tries only.
# TYPE parley_messages_pushed_total counter
parley_messages_pushed_total 1
# HELP parley_messages_retransmitted_total Pushes sent again because no acknowledgement came in time.
# TYPE parley_messages_retransmitted_total counter
parley_messages_retransmitted_total 0
# HELP parley_messages_stored_total Messages stored (appended to a conversation); duplicates of a cmid excluded.
# TYPE parley_messages_stored_total counter
parley_messages_stored_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"parley_messages_stored_total", "parley_messages_pushed_total",
		"parley_messages_delivered_total", "parley_messages_retransmitted_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "parley_frames_received_total"); n != 12 {
		t.Errorf("parley_frames_received_total has %d series, want one per frame type (12)", n)
	}
}

func TestNilMetricsRecordsNothingAndDoesNotPanic(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	m.ConnOpened()
	m.ConnClosed(1000)
	m.FrameIn("send")
	m.FrameOut("ack")
	m.MessageStored()
	m.MessagePushed(time.Millisecond)
	m.MessageDelivered()
	m.MessageRetransmitted()
	m.MessageDropped(metrics.DropEncode)
	m.SendAcked(time.Millisecond)
	m.SidecarCall("publish", "ok", time.Millisecond)
	m.SidecarBatch("get", 2)
	m.WriteQueueFill(1, 2)
	m.SlowConsumerCut(metrics.SlowWriteFailed)
	m.PresenceWrite(nil)
	m.LeaseRenewal(nil)
	m.RateLimited(metrics.LimitLogin)
	m.BanHit(metrics.BanUser)
	m.Error("internal")
	m.SettingsReloaded(0)
}

func TestNewTwiceOnOneRegistryFails(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := metrics.New(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.New(reg); err == nil {
		t.Fatal("second New on one registry: want an error, got none")
	}
	if _, err := metrics.New(nil); err == nil {
		t.Fatal("New(nil): want an error, got none")
	}
}

func TestHandlerServesParleyMetrics(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.MessageStored()
	srv := httptest.NewServer(metrics.Handler(reg))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"parley_messages_stored_total 1", "go_goroutines ", "parley_sidecar_call_seconds_bucket{"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNamesListsEveryFamilyWithThePrefix(t *testing.T) {
	t.Parallel()
	names := metrics.Names()
	if len(names) < 20 {
		t.Fatalf("Names() = %d families, want every parley metric: %v", len(names), names)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "parley_") {
			t.Errorf("metric %q lacks the parley_ prefix", n)
		}
	}
}
