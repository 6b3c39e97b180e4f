package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// zipkinSpan is the part of a Zipkin v2 span the tests read.
type zipkinSpan struct {
	TraceID       string `json:"traceId"`
	ID            string `json:"id"`
	ParentID      string `json:"parentId"`
	Name          string `json:"name"`
	LocalEndpoint struct {
		ServiceName string `json:"serviceName"`
	} `json:"localEndpoint"`
	Tags map[string]string `json:"tags"`
}

// node is the parley node that made s (its service.instance.id), or "" for
// a span of another service.
func (s zipkinSpan) node() string { return s.Tags["service.instance.id"] }

func (s zipkinSpan) String() string {
	who := s.LocalEndpoint.ServiceName
	if n := s.node(); n != "" {
		who += "/" + n
	}
	return who + ":" + s.Name
}

// zipkinReceiver is a Zipkin collector on loopback, as parley and daprd
// see one: it keeps the spans POSTed to /api/v2/spans.
type zipkinReceiver struct {
	srv *httptest.Server

	mu    sync.Mutex
	spans []zipkinSpan
}

func startZipkin(t *testing.T) *zipkinReceiver {
	t.Helper()
	z := &zipkinReceiver{}
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
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(z.srv.Close)
	return z
}

func (z *zipkinReceiver) url() string { return z.srv.URL + "/api/v2/spans" }

// find returns the first span received so far that match accepts.
func (z *zipkinReceiver) find(match func(zipkinSpan) bool) (zipkinSpan, bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, s := range z.spans {
		if match(s) {
			return s, true
		}
	}
	return zipkinSpan{}, false
}

// trace returns the spans received so far for traceID.
func (z *zipkinReceiver) trace(traceID string) []zipkinSpan {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []zipkinSpan
	for _, s := range z.spans {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}

// sendLine returns the fields of the "send" log line of message id in the
// JSON log at path, or nil while there is none.
func sendLine(t *testing.T, path, id string) map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue // the banner on stderr, daprd's lines
		}
		if line["msg"] == "send" && line["msg_id"] == id {
			return line
		}
	}
	return nil
}

// TestOneTraceAcrossNodes: with tracing on, one message sent on node 1 to
// a user on node 2 is one trace at the collector. It holds node 1's send,
// the sidecar calls the send made (recorded by daprd, under its app-id)
// and node 2's delivery, which joined the trace through the hand-off.
//
// Each node runs as its own process with its own daprd, as in production:
// a process has one tracer provider, which names its node.
func TestOneTraceAcrossNodes(t *testing.T) {
	m := mode{name: "dapr-" + daprdtest.Redis, args: []string{"-backend", "dapr", "-sidecar", "launch", "-profile", daprdtest.Redis}}
	requireMode(t, m)
	zipkin := startZipkin(t)
	appID := daprdtest.UniqueName("parley-trace")
	n1ID, n2ID := appID+"-n1", appID+"-n2"
	var procs []*proc
	for _, id := range []string{n1ID, n2ID} {
		procs = append(procs, startProc(t, m, "-app-id", appID, "-node-id", id, "-lease-ttl", "3s", "-metrics-addr", "",
			"-jwt-secret", "trace-test-secret-trace-test-secret!",
			"-trace-exporter", "zipkin", "-trace-endpoint", zipkin.url(), "-trace-sample", "1"))
	}
	n1, n2 := procs[0].node(), procs[1].node()
	ctx := ctxT(t, 90*time.Second)
	// Node 1 must see bob's connection on node 2 before alice sends, or
	// the message reaches bob by sync, with no hand-off to trace.
	bob := connectDevice(t, n2, "bob", "web")
	var route struct {
		Nodes []struct{ Node string } `json:"nodes"`
	}
	testkit.Eventually(t, 20*time.Second, func() bool {
		route.Nodes = nil
		if err := client.DoJSON(ctx, http.MethodGet, n1.base+"/v1/route", "", nil, &route); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(route.Nodes, func(n struct{ Node string }) bool { return n.Node == n2ID })
	}, "node 1 does not list node 2 after 20s: %v", &route.Nodes)
	alice := dial(t, n1, "alice", "web")

	const conv = "d:alice~bob"
	var ack *pb.Message
	// Presence on node 1 may lag bob's connect by a refresh: a message
	// that reached bob only by sync is not what this test is about, so
	// alice sends until one arrives live.
	testkit.Eventually(t, 30*time.Second, func() bool {
		a, err := alice.Send(ctx, "bob", "", daprdtest.UniqueName("cmid"), "traced")
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		ack = a
		wait, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return testkit.Until(wait, func() bool {
			return slices.ContainsFunc(bob.inbox.Messages(conv), func(m *pb.Message) bool { return m.Id == a.Id })
		}) == nil
	}, "no message from alice on node 1 reached bob on node 2 live")

	// Node 1's send span names the message; its trace is the one to check.
	var send zipkinSpan
	testkit.Eventually(t, 30*time.Second, func() bool {
		var ok bool
		send, ok = zipkin.find(func(s zipkinSpan) bool { return s.Name == "send" && s.Tags["parley.msg_id"] == ack.Id })
		return ok
	}, "no send span of message %s reached the collector", ack.Id)
	if send.node() != n1ID {
		t.Errorf("the send span names node %q, want %q", send.node(), n1ID)
	}

	// parley exports every few seconds, daprd on its own schedule.
	var spans []zipkinSpan
	has := func(match func(zipkinSpan) bool) bool { return slices.ContainsFunc(spans, match) }
	sidecar := func(s zipkinSpan) bool { return s.LocalEndpoint.ServiceName == appID }
	deliver := func(s zipkinSpan) bool { return s.Name == "deliver" && s.node() == n2ID }
	if testkit.Until(ctx, func() bool {
		spans = zipkin.trace(send.TraceID)
		return has(sidecar) && has(deliver)
	}) != nil {
		sort.Slice(spans, func(i, j int) bool { return spans[i].String() < spans[j].String() })
		t.Fatalf("trace %s lacks daprd's spans (service %s) or node 2's deliver span (%s); it holds %v",
			send.TraceID, appID, n2ID, spans)
	}
	// The delivery hangs under a span of the trace: the hand-off carried
	// the context rather than starting a trace that only shares the id.
	i := slices.IndexFunc(spans, deliver)
	if !slices.ContainsFunc(spans, func(s zipkinSpan) bool { return s.ID == spans[i].ParentID }) {
		t.Errorf("node 2's deliver span has parent %q, which is no span of trace %s", spans[i].ParentID, send.TraceID)
	}
}

// TestSendLogCarriesTraceIDs: the log line of a traced send names its
// trace and the send's span, the ones the collector received, so that a
// slow message found in the log leads to its trace.
func TestSendLogCarriesTraceIDs(t *testing.T) {
	t.Parallel()
	zipkin := startZipkin(t)
	// A process of its own: tracing is set up process-wide.
	p := startProc(t, modes()[0], "-metrics-addr", "", "-trace-exporter", "zipkin", "-trace-endpoint", zipkin.url(), "-trace-sample", "1")
	alice := dial(t, p.node(), "alice", "web")
	a, err := alice.Send(ctxT(t, 10*time.Second), "bob", "", "traced-1", "hello")
	if err != nil {
		t.Fatal(err)
	}
	var send zipkinSpan
	testkit.Eventually(t, 30*time.Second, func() bool {
		var ok bool
		send, ok = zipkin.find(func(s zipkinSpan) bool { return s.Name == "send" && s.Tags["parley.msg_id"] == a.Id })
		return ok
	}, "no send span of message %s reached the collector", a.Id)
	var line map[string]any
	testkit.Eventually(t, 10*time.Second, func() bool {
		line = sendLine(t, p.log, a.Id)
		return line != nil
	}, "no send line for message %s", a.Id)
	if line["trace_id"] != send.TraceID || line["span_id"] != send.ID {
		t.Errorf("the send line carries trace_id %v, span_id %v; the send span is %s/%s",
			line["trace_id"], line["span_id"], send.TraceID, send.ID)
	}
}

// TestSendLogWithoutTracing: a node without tracing logs its sends with no
// trace fields at all, not empty ones.
func TestSendLogWithoutTracing(t *testing.T) {
	t.Parallel()
	n := startNode(t, modes()[0])
	alice := dial(t, n, "alice", "web")
	a, err := alice.Send(ctxT(t, 10*time.Second), "bob", "", "untraced-1", "hello")
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	testkit.Eventually(t, 10*time.Second, func() bool {
		line = sendLine(t, n.log, a.Id)
		return line != nil
	}, "no send line for message %s", a.Id)
	for _, k := range []string{"trace_id", "span_id"} {
		if v, ok := line[k]; ok {
			t.Errorf("untraced send line carries %s=%q", k, fmt.Sprint(v))
		}
	}
	if !strings.Contains(fmt.Sprint(line["conv"]), "alice") {
		t.Errorf("send line lacks its conversation: %v", line)
	}
}
