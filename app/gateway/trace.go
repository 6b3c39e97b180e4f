package gateway

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
)

// tracer makes the gateway's spans from the process-wide provider, which
// records nothing until the main sets tracing up (app/tracing): then each
// send is a span whose children are the sidecar calls it makes and the
// hand-offs to other nodes.
var tracer = otel.Tracer("github.com/parley-im/parley/app/gateway")

// traceSend describes a send's outcome on its span: the ids that lead to
// its log line, or the protocol code it was refused with. An unrecorded
// span (not sampled) costs nothing here.
func traceSend(span trace.Span, res *chat.SendResult, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		code := toAPIError(err).Code
		span.SetAttributes(attribute.String("parley.code", code))
		span.SetStatus(codes.Error, code)
		return
	}
	m := &res.Message
	span.SetAttributes(attribute.String("parley.conv", string(m.Conv)), attribute.Int64("parley.seq", int64(m.Seq)),
		attribute.String("parley.msg_id", m.ID), attribute.Bool("parley.duplicate", res.Duplicate))
}

// traceFields returns the trace and span ids of the span in ctx, for the
// send's log line: a slow message found in the log leads to its trace, and
// a trace to its line. An unsampled send gives nothing: its ids lead to no
// recorded trace, and with tracing off there are none, so a line never
// carries empty ids.
func traceFields(ctx context.Context) []zap.Field {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsSampled() {
		return nil
	}
	return []zap.Field{zap.String("trace_id", sc.TraceID().String()), zap.String("span_id", sc.SpanID().String())}
}
