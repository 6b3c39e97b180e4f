package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/app/metrics"
)

// onMessage records what one 1:1 message costs in metrics, end to end:
// the sender's send frame, four sidecar calls (three of them through the
// state batchers) and its ack; the push to the receiver's device, its recv
// frame, and the delivered event back to the sender.
func onMessage(m *metrics.Metrics, d time.Duration) {
	m.FrameIn("send")
	m.SidecarCall("state_get", "ok", d)
	m.SidecarBatch("get", 1)
	m.SidecarCall("state_transaction", "ok", d)
	m.SidecarBatch("transact", 4)
	m.SidecarCall("state_set", "ok", d)
	m.SidecarBatch("set", 8)
	m.SidecarCall("publish", "ok", d)
	m.MessageStored()
	m.SendAcked(d)
	m.FrameOut("ack")
	m.WriteQueueFill(1, 256)

	m.MessagePushed(d)
	m.FrameOut("msg")
	m.WriteQueueFill(2, 256)
	m.FrameIn("recv")
	m.MessageDelivered()
	m.FrameOut("delivered")
}

// BenchmarkMessage is the metrics cost of one message (see onMessage).
// The budget is 2% of a core's memory-mode throughput, ~20,000 msg/s:
// 1 µs per message.
func BenchmarkMessage(b *testing.B) {
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			onMessage(m, 420*time.Microsecond)
		}
	})
	// Every connection sends from its own goroutine: the counters are
	// shared, so this is the contended case.
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				onMessage(m, 420*time.Microsecond)
			}
		})
	})
	b.Run("nil", func(b *testing.B) {
		var m *metrics.Metrics
		b.ReportAllocs()
		for b.Loop() {
			onMessage(m, 420*time.Microsecond)
		}
	})
}
