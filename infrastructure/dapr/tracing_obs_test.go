package dapr_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"gopkg.in/yaml.v3"

	"github.com/parley-im/parley/app/tracing"
	"github.com/parley-im/parley/infrastructure/dapr"
	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// zipkinSpan is the part of a Zipkin v2 span the test reads.
type zipkinSpan struct {
	TraceID       string `json:"traceId"`
	ID            string `json:"id"`
	ParentID      string `json:"parentId"`
	Name          string `json:"name"`
	LocalEndpoint struct {
		ServiceName string `json:"serviceName"`
	} `json:"localEndpoint"`
}

// zipkinReceiver is a Zipkin collector on loopback: it keeps the spans
// POSTed to /api/v2/spans.
type zipkinReceiver struct {
	srv *httptest.Server

	mu    sync.Mutex
	spans []zipkinSpan
	got   chan struct{} // receives a value after each POST
}

func startZipkin(t *testing.T) *zipkinReceiver {
	t.Helper()
	z := &zipkinReceiver{got: make(chan struct{}, 1)}
	z.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/spans" {
			http.NotFound(w, r)
			return
		}
		var spans []zipkinSpan
		if err := json.NewDecoder(r.Body).Decode(&spans); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		z.mu.Lock()
		z.spans = append(z.spans, spans...)
		z.mu.Unlock()
		select {
		case z.got <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(z.srv.Close)
	return z
}

func (z *zipkinReceiver) url() string { return z.srv.URL + "/api/v2/spans" }

// trace returns the spans received so far for traceID, by service.
func (z *zipkinReceiver) trace(traceID string) map[string][]zipkinSpan {
	z.mu.Lock()
	defer z.mu.Unlock()
	out := map[string][]zipkinSpan{}
	for _, s := range z.spans {
		if s.TraceID == traceID {
			out[s.LocalEndpoint.ServiceName] = append(out[s.LocalEndpoint.ServiceName], s)
		}
	}
	return out
}

// configWithZipkin writes a copy of sidecar/config.yaml whose tracing
// exports every span to endpoint, and returns its path.
func configWithZipkin(t *testing.T, endpoint string) string {
	t.Helper()
	root := daprdtest.RequireBinary(t)
	data, err := os.ReadFile(filepath.Join(root, "sidecar", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("parse sidecar/config.yaml: %v", err)
	}
	spec, _ := cfg["spec"].(map[string]any)
	tr, _ := spec["tracing"].(map[string]any)
	if tr == nil {
		t.Fatal("sidecar/config.yaml has no spec.tracing")
	}
	tr["samplingRate"] = "1"
	tr["zipkin"] = map[string]any{"endpointAddress": endpoint}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOneTraceHoldsParleyAndDaprd: a state write and a publish made inside
// a parley span reach daprd with their trace context, so that parley's
// spans and daprd's land in one trace at the collector.
//
// Not parallel: tracing.Setup installs the process-wide tracer provider,
// as parley's main does.
func TestOneTraceHoldsParleyAndDaprd(t *testing.T) {
	zipkin := startZipkin(t)
	sc := daprdtest.StartForTest(t, daprdtest.Local,
		func(o *daprd.Options) { o.ConfigPath = configWithZipkin(t, zipkin.url()) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shutdown, err := tracing.Setup(ctx, tracing.Config{
		Exporter: tracing.ExporterZipkin, Endpoint: zipkin.url(), SampleRatio: 1, ServiceName: "parley",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdown(context.Background()) })

	c, err := dapr.New(ctx, dapr.Config{GRPCAddress: sc.GRPCAddr(), HTTPAddress: sc.HTTPAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := c.Backend()

	sendCtx, span := otel.Tracer("parley/test").Start(ctx, "send message")
	if err := b.State.Set(sendCtx, daprdtest.UniqueName("trace-key"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := b.PubSub.Publish(sendCtx, daprdtest.UniqueName("trace-topic"), []byte("m")); err != nil {
		t.Fatal(err)
	}
	span.End()
	traceID := span.SpanContext().TraceID().String()
	// Export parley's spans now rather than at the batcher's next tick.
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// daprd exports on its own schedule (every few seconds).
	for {
		got := zipkin.trace(traceID)
		if hasOp(got["parley"], "SaveState") && hasOp(got["parley"], "PublishEvent") &&
			hasOp(got[sc.AppID()], "SaveState") && hasOp(got[sc.AppID()], "PublishEvent") {
			return
		}
		select {
		case <-zipkin.got:
		case <-ctx.Done():
			names := map[string][]string{}
			for svc, spans := range got {
				for _, s := range spans {
					names[svc] = append(names[svc], s.Name)
				}
			}
			t.Fatalf("trace %s lacks the SaveState and PublishEvent spans of parley or daprd (%s); it has %v",
				traceID, sc.AppID(), names)
		}
	}
}

// hasOp reports whether one of spans is about the daprd method op.
func hasOp(spans []zipkinSpan, op string) bool {
	for _, s := range spans {
		if strings.Contains(strings.ToLower(s.Name), strings.ToLower(op)) {
			return true
		}
	}
	return false
}
