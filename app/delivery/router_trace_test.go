package delivery

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

// TestRouterHandOffJoinsTheSendersTrace: a message sent in a sampled trace
// is delivered on the other node in a span of that same trace, a child of
// the send's span, although the pub/sub between them carries no trace
// context of its own. Not parallel: it installs the process-wide tracer
// provider, as the main does.
func TestRouterHandOffJoinsTheSendersTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(noop.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	})

	ctx := context.Background()
	ps := memory.NewPubSub()
	hub2 := NewHub()
	n1 := NewRouter(NewHub(), cluster{}, ps, "n1", zap.NewNop())
	n2 := NewRouter(hub2, cluster{}, ps, "n2", zap.NewNop())
	if err := n2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	bob := &device{id: "b1", user: "bob"}
	hub2.Add(bob)

	sendCtx, send := otel.Tracer("test").Start(ctx, "send")
	n1.Deliver(sendCtx, pair, &domain.Message{ID: "m1", Conv: pair.ID, Seq: 1, Sender: "alice"}, "")
	send.End()
	// An unsampled send carries no trace context: its delivery is no span.
	unsampled := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: [16]byte{1}, SpanID: [8]byte{1},
	}))
	n1.Deliver(unsampled, pair, &domain.Message{ID: "m2", Conv: pair.ID, Seq: 2, Sender: "alice"}, "")

	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n1.Stop(stopCtx)
	deadline := time.Now().Add(10 * time.Second)
	for len(bob.seqs()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling a condition: the subscriber runs apart
	}
	n2.Stop(stopCtx)
	if got := bob.seqs(); len(got) != 2 {
		t.Fatalf("bob's device got %v, want seqs 1 and 2", got)
	}

	var delivers []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "deliver" {
			delivers = append(delivers, s)
		}
	}
	if len(delivers) != 1 {
		t.Fatalf("got %d deliver spans, want 1 (for the sampled send only)", len(delivers))
	}
	d, want := delivers[0], send.SpanContext()
	if d.SpanContext().TraceID() != want.TraceID() || d.Parent().SpanID() != want.SpanID() {
		t.Fatalf("deliver span is in trace %s under %s; want trace %s under the send span %s",
			d.SpanContext().TraceID(), d.Parent().SpanID(), want.TraceID(), want.SpanID())
	}
}
