package tracing_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/goleak"

	"github.com/parley-im/parley/app/tracing"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// collector is a loopback endpoint that hands every request body it gets
// to bodies.
func collector(t *testing.T, path string) (*httptest.Server, <-chan []byte) {
	t.Helper()
	bodies := make(chan []byte, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		select {
		case bodies <- b:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, bodies
}

// The tests that call Setup with an exporter are not parallel: Setup
// installs the process-wide tracer provider.

func TestZipkinExporterSendsParleySpans(t *testing.T) {
	srv, bodies := collector(t, "/api/v2/spans")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown, err := tracing.Setup(ctx, tracing.Config{
		Exporter: tracing.ExporterZipkin, Endpoint: srv.URL + "/api/v2/spans", SampleRatio: 1, NodeID: "n1",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(ctx, "send message")
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-bodies:
		var spans []struct {
			TraceID       string `json:"traceId"`
			Name          string `json:"name"`
			LocalEndpoint struct {
				ServiceName string `json:"serviceName"`
			} `json:"localEndpoint"`
		}
		if err := json.Unmarshal(b, &spans); err != nil {
			t.Fatalf("zipkin body is not a span list: %v", err)
		}
		if len(spans) != 1 || spans[0].Name != "send message" || spans[0].LocalEndpoint.ServiceName != "parley" ||
			spans[0].TraceID != span.SpanContext().TraceID().String() {
			t.Fatalf("got spans %+v, want the one \"send message\" span of service parley", spans)
		}
	case <-ctx.Done():
		t.Fatal("no span reached the zipkin endpoint")
	}
}

func TestOTLPHTTPExporterSendsSpans(t *testing.T) {
	srv, bodies := collector(t, "/v1/traces")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown, err := tracing.Setup(ctx, tracing.Config{
		Exporter: tracing.ExporterOTLPHTTP, Endpoint: strings.TrimPrefix(srv.URL, "http://"), SampleRatio: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(ctx, "deliver")
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-bodies:
		if !strings.Contains(string(b), "deliver") {
			t.Fatalf("OTLP request does not carry the span %q", "deliver")
		}
	case <-ctx.Done():
		t.Fatal("no span reached the OTLP endpoint")
	}
}

// TestSampleRatioZeroKeepsOnlyTracesStartedElsewhere: with a ratio of 0
// parley starts no trace of its own, but a request that arrives in a
// sampled trace is recorded, and its context propagates.
func TestSampleRatioZeroKeepsOnlyTracesStartedElsewhere(t *testing.T) {
	srv, bodies := collector(t, "/api/v2/spans")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown, err := tracing.Setup(ctx, tracing.Config{Exporter: tracing.ExporterZipkin, Endpoint: srv.URL + "/api/v2/spans"})
	if err != nil {
		t.Fatal(err)
	}
	_, own := otel.Tracer("test").Start(ctx, "own")
	own.End()
	if own.SpanContext().IsSampled() {
		t.Error("a trace parley started was sampled at ratio 0")
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	inCtx := otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier{"traceparent": parent})
	_, child := otel.Tracer("test").Start(inCtx, "child")
	child.End()
	if !child.SpanContext().IsSampled() || child.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("a span under a sampled traceparent: sampled=%v trace=%s, want sampled in the caller's trace",
			child.SpanContext().IsSampled(), child.SpanContext().TraceID())
	}
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-bodies:
		if strings.Contains(string(b), `"own"`) || !strings.Contains(string(b), `"child"`) {
			t.Errorf("exported %s, want the child span only", b)
		}
	case <-ctx.Done():
		t.Fatal("no span reached the zipkin endpoint")
	}
}

func TestSetupRefusesBadConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  tracing.Config
		want string
	}{
		{"unknown_exporter", tracing.Config{Exporter: "jaeger", Endpoint: "x:1"}, "unknown exporter"},
		{"no_endpoint", tracing.Config{Exporter: tracing.ExporterOTLPGRPC}, "needs an endpoint"},
		{"ratio_above_one", tracing.Config{Exporter: tracing.ExporterOTLPGRPC, Endpoint: "127.0.0.1:4317", SampleRatio: 1.5}, "not between 0 and 1"},
		{"zipkin_not_a_url", tracing.Config{Exporter: tracing.ExporterZipkin, Endpoint: "127.0.0.1:9411"}, "not a URL"},
		{"zipkin_host_port_only", tracing.Config{Exporter: tracing.ExporterZipkin, Endpoint: "localhost:9411"}, "not a URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tracing.Setup(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Setup(%+v) = %v, want an error saying %q", tc.cfg, err, tc.want)
			}
		})
	}
}

func TestSetupOffByDefault(t *testing.T) {
	t.Parallel()
	shutdown, err := tracing.Setup(context.Background(), tracing.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
