package dapr

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/parley-im/parley/infrastructure"
)

// Observer is told of every call the adapter makes to daprd, to count and
// time them. The adapter calls it on the caller's goroutine, after each
// call: it must be cheap and safe for concurrent use.
//
// app/metrics' *Metrics implements it; the wiring in app/cmd passes it in
// Config.Observer, so this package needs nothing from app.
type Observer interface {
	// SidecarCall reports one gRPC call to daprd: op is one of the Op*
	// constants, outcome one of the Outcome* constants, d how long the
	// call took. For a stream (subscriptions), d is the time to open it.
	SidecarCall(op, outcome string, d time.Duration)
	// SidecarBatch reports how many state calls of one kind ("get", "set",
	// "transact") went out as one daprd call: 1 for a call that went
	// alone through the batcher.
	SidecarBatch(op string, size int)
}

// The operations an Observer is told of, by the daprd method they call.
const (
	OpStateGet               = "state_get"               // GetState
	OpStateBulkGet           = "state_bulk_get"          // GetBulkState: BulkGet and coalesced Gets
	OpStateSet               = "state_set"               // SaveState: one Set or a coalesced batch
	OpStateDelete            = "state_delete"            // DeleteState, DeleteBulkState
	OpStateTransaction       = "state_transaction"       // ExecuteStateTransaction
	OpPublish                = "publish"                 // PublishEvent
	OpBulkPublish            = "bulk_publish"            // BulkPublishEvent
	OpSubscribe              = "subscribe"               // a streaming subscription opened
	OpInvoke                 = "invoke"                  // InvokeService
	OpConfigurationGet       = "configuration_get"       // GetConfiguration
	OpConfigurationSubscribe = "configuration_subscribe" // a configuration watch opened
	OpMetadata               = "metadata"                // GetMetadata
	OpOther                  = "other"
)

// The outcomes of a call.
const (
	OutcomeOK          = "ok"
	OutcomeConflict    = "conflict"    // a concurrency check failed (Aborted and the like)
	OutcomeNotFound    = "not_found"   //
	OutcomeInvalid     = "invalid"     // refused as malformed
	OutcomeUnavailable = "unavailable" // daprd or its backend failed or timed out
	OutcomeCanceled    = "canceled"    // the caller gave up
)

// opOf names the operation of a full gRPC method name, such as
// "/dapr.proto.runtime.v1.Dapr/GetState".
func opOf(method string) string {
	switch method[strings.LastIndexByte(method, '/')+1:] {
	case "GetState":
		return OpStateGet
	case "GetBulkState":
		return OpStateBulkGet
	case "SaveState":
		return OpStateSet
	case "DeleteState", "DeleteBulkState":
		return OpStateDelete
	case "ExecuteStateTransaction":
		return OpStateTransaction
	case "PublishEvent":
		return OpPublish
	case "BulkPublishEvent", "BulkPublishEventAlpha1":
		return OpBulkPublish
	case "SubscribeTopicEventsAlpha1", "SubscribeTopicEvents":
		return OpSubscribe
	case "InvokeService":
		return OpInvoke
	case "GetConfiguration", "GetConfigurationAlpha1":
		return OpConfigurationGet
	case "SubscribeConfiguration", "SubscribeConfigurationAlpha1":
		return OpConfigurationSubscribe
	case "GetMetadata":
		return OpMetadata
	}
	return OpOther
}

// outcomeOf sorts a call's error the way opError does.
func outcomeOf(op string, err error) string {
	if err == nil {
		return OutcomeOK
	}
	if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return OutcomeCanceled
	}
	var kind error
	if op == OpInvoke {
		kind = invokeKind(context.Background(), err)
	} else {
		kind = kindOfCode(status.Code(err))
	}
	switch {
	case errors.Is(kind, infrastructure.ErrConflict):
		return OutcomeConflict
	case errors.Is(kind, infrastructure.ErrNotFound):
		return OutcomeNotFound
	case errors.Is(kind, infrastructure.ErrInvalidArgument):
		return OutcomeInvalid
	}
	return OutcomeUnavailable
}

// observeDialOptions returns the interceptors that report every call to
// obs (none when obs is nil), and the stats handler that starts a client
// span per call and sends its W3C trace context (traceparent) to daprd, so
// that daprd's spans join the caller's trace.
func observeDialOptions(obs Observer, tp trace.TracerProvider) []grpc.DialOption {
	handlerOpts := []otelgrpc.Option{
		// The trace context always travels, whatever the process-wide
		// propagator is: daprd reads traceparent.
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		// Call counts and durations are parley's own Prometheus metrics
		// (Observer); OpenTelemetry metrics would count them twice.
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
	}
	if tp != nil {
		handlerOpts = append(handlerOpts, otelgrpc.WithTracerProvider(tp))
	}
	opts := []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(handlerOpts...))}
	if obs == nil {
		return opts
	}
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		op := opOf(method)
		obs.SidecarCall(op, outcomeOf(op, err), time.Since(start))
		return err
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		start := time.Now()
		s, err := streamer(ctx, desc, cc, method, opts...)
		op := opOf(method)
		obs.SidecarCall(op, outcomeOf(op, err), time.Since(start))
		return s, err
	}
	return append(opts, grpc.WithChainUnaryInterceptor(unary), grpc.WithChainStreamInterceptor(stream))
}
