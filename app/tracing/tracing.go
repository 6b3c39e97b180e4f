// Package tracing sets up OpenTelemetry tracing for the process: a tracer
// provider that exports spans to an OTLP collector or a Zipkin endpoint, and
// the W3C trace-context propagator. It is off unless Config.Exporter is set.
//
// The dapr adapter's gRPC client makes a span per sidecar call from the
// process-wide provider and sends its traceparent to daprd, which exports
// its own spans to the endpoint given in sidecar/config.yaml: with both
// pointed at one collector, one message's trace shows parley and daprd.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/zipkin"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// The exporters Config.Exporter names.
const (
	ExporterNone     = ""
	ExporterOTLPGRPC = "otlp-grpc"
	ExporterOTLPHTTP = "otlp-http"
	ExporterZipkin   = "zipkin"
)

// Config says where spans go.
type Config struct {
	// Exporter is one of the Exporter* constants. Zero value means
	// tracing is off: Setup installs nothing and returns a no-op shutdown.
	Exporter string
	// Endpoint is where the exporter sends spans:
	//   - otlp-grpc: host:port, e.g. "127.0.0.1:4317" (plain text);
	//   - otlp-http: host:port or a URL, e.g. "127.0.0.1:4318";
	//   - zipkin: the spans URL, e.g. "http://127.0.0.1:9411/api/v2/spans".
	// Required when Exporter is set.
	Endpoint string
	// SampleRatio is the share of new traces recorded, from 0 to 1; a
	// trace that arrives sampled (a traceparent from a client) is always
	// recorded. Zero value means 0: only traces started elsewhere.
	SampleRatio float64
	// ServiceName names this process in the spans. Zero value means "parley".
	ServiceName string
	// NodeID names this node in the spans (service.instance.id). Zero
	// value means none.
	NodeID string
}

// Setup installs the process-wide tracer provider and the W3C propagators
// (trace context and baggage) described by cfg. The returned shutdown
// flushes the spans not yet exported and stops the exporter; call it once,
// when the process stops, with a ctx that bounds the flush.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if cfg.Exporter == ExporterNone {
		return noop, nil
	}
	if cfg.Endpoint == "" {
		return nil, fmt.Errorf("tracing: exporter %s needs an endpoint", cfg.Exporter)
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, fmt.Errorf("tracing: sample ratio %v is not between 0 and 1", cfg.SampleRatio)
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "parley"
	}

	var exp sdktrace.SpanExporter
	switch cfg.Exporter {
	case ExporterOTLPGRPC:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(cfg.Endpoint), otlptracegrpc.WithInsecure())
	case ExporterOTLPHTTP:
		opts := []otlptracehttp.Option{otlptracehttp.WithInsecure()}
		if strings.Contains(cfg.Endpoint, "://") {
			opts = []otlptracehttp.Option{otlptracehttp.WithEndpointURL(cfg.Endpoint)}
		} else {
			opts = append(opts, otlptracehttp.WithEndpoint(cfg.Endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	case ExporterZipkin:
		if u, perr := url.Parse(cfg.Endpoint); perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("tracing: zipkin endpoint %q is not a URL such as http://host:9411/api/v2/spans", cfg.Endpoint)
		}
		exp, err = zipkin.New(cfg.Endpoint)
	default:
		return nil, fmt.Errorf("tracing: unknown exporter %q (want %s, %s or %s)",
			cfg.Exporter, ExporterOTLPGRPC, ExporterOTLPHTTP, ExporterZipkin)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: start the %s exporter for %s: %w", cfg.Exporter, cfg.Endpoint, err)
	}

	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(cfg.ServiceName))}
	if cfg.NodeID != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceInstanceID(cfg.NodeID)))
	}
	res, err := resource.New(ctx, attrs...)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: describe the process: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: flush and stop: %w", err)
		}
		return nil
	}, nil
}
