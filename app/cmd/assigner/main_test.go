package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSidecar stands in for the assigner's daprd: it answers parley's
// v1/online with the users it holds online, and records v1/assign calls.
type fakeSidecar struct {
	mu      sync.Mutex
	online  []string
	down    bool
	assigns []string
}

func (f *fakeSidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	if f.down {
		http.Error(w, "parley unreachable", http.StatusInternalServerError)
		return
	}
	switch r.URL.Path {
	case "/v1.0/invoke/parley/method/v1/online":
		var req struct{ Users []string }
		_ = json.Unmarshal(body, &req)
		var on []string
		for _, u := range req.Users {
			if slices.Contains(f.online, u) {
				on = append(on, u)
			}
		}
		_ = json.NewEncoder(w).Encode(map[string][]string{"online": on})
	case "/v1.0/invoke/parley/method/v1/assign":
		f.assigns = append(f.assigns, string(body))
		_, _ = w.Write([]byte(`{"conv":{"agent":"ben"}}`))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeSidecar) set(online []string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.online, f.down = online, down
}

func newTestAssigner(t *testing.T, agents string, check bool) (*httptest.Server, *fakeSidecar) {
	t.Helper()
	side := &fakeSidecar{}
	sideSrv := httptest.NewServer(side)
	t.Cleanup(sideSrv.Close)
	shops, err := parseAgents(agents)
	if err != nil {
		t.Fatal(err)
	}
	a := &assigner{shops: shops, next: map[string]int{}, onlineCheck: check,
		parley: &parleyClient{base: sideSrv.URL + "/v1.0/invoke/parley/method/", http: &http.Client{Timeout: 5 * time.Second}}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /assign", a.serveAssign)
	mux.HandleFunc("POST /transfer", a.serveTransfer)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, side
}

func post(t *testing.T, srv *httptest.Server, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(out))
}

// TestAssignRoundRobinOverOnlineAgents: customers go to the shop's online
// agents in turn; an agent who goes offline is skipped; with nobody online
// the answer names nobody; with parley unreachable it is an error parley
// retries on.
func TestAssignRoundRobinOverOnlineAgents(t *testing.T) {
	t.Parallel()
	srv, side := newTestAssigner(t, "shop=ann,ben,cid;other=zoe", true)
	ask := func(shop string) (int, string) {
		return post(t, srv, "/assign", `{"conv":"s:`+shop+`~carol","shop":"`+shop+`","customer":"carol"}`)
	}
	side.set([]string{"ann", "ben", "cid", "zoe"}, false)
	var got []string
	for range 4 {
		_, body := ask("shop")
		got = append(got, body)
	}
	want := []string{`{"agent":"ann"}`, `{"agent":"ben"}`, `{"agent":"cid"}`, `{"agent":"ann"}`}
	if !slices.Equal(got, want) {
		t.Fatalf("turns %v, want %v", got, want)
	}
	side.set([]string{"ann", "cid"}, false)
	if _, body := ask("shop"); body != `{"agent":"cid"}` {
		t.Errorf("ben offline: got %s, want cid (after ann, skipping ben)", body)
	}
	if _, body := ask("other"); body != `{}` {
		t.Errorf("nobody of the other shop online: got %s, want no agent", body)
	}
	if _, body := ask("unknown"); body != `{}` {
		t.Errorf("a shop with no agents: got %s, want no agent", body)
	}
	side.set(nil, true)
	if status, _ := ask("shop"); status != http.StatusServiceUnavailable {
		t.Errorf("parley unreachable: status %d, want 503", status)
	}
}

// TestAssignWithoutOnlineCheck: every listed agent takes a turn, and parley
// is not asked.
func TestAssignWithoutOnlineCheck(t *testing.T) {
	t.Parallel()
	srv, side := newTestAssigner(t, "shop=ann,ben", false)
	side.set(nil, true)
	for _, want := range []string{"ann", "ben", "ann"} {
		if _, body := post(t, srv, "/assign", `{"conv":"s:shop~carol","shop":"shop","customer":"carol"}`); body != `{"agent":"`+want+`"}` {
			t.Fatalf("got %s, want %s", body, want)
		}
	}
}

// TestTransferInvokesParley: a transfer becomes a v1/assign call on parley,
// whose reply is passed back.
func TestTransferInvokesParley(t *testing.T) {
	t.Parallel()
	srv, side := newTestAssigner(t, "shop=ann,ben", true)
	status, body := post(t, srv, "/transfer", `{"conv":"s:shop~carol","to":"ben"}`)
	if status != http.StatusOK || body != `{"conv":{"agent":"ben"}}` {
		t.Fatalf("transfer = %d %s", status, body)
	}
	side.mu.Lock()
	defer side.mu.Unlock()
	if len(side.assigns) != 1 || !strings.Contains(side.assigns[0], `"agent":"ben"`) || !strings.Contains(side.assigns[0], `"conv":"s:shop~carol"`) {
		t.Errorf("parley got %v", side.assigns)
	}
	if status, _ := post(t, srv, "/transfer", `{"conv":"s:shop~carol"}`); status != http.StatusBadRequest {
		t.Errorf("transfer with no agent: status %d, want 400", status)
	}
}

func TestParseAgents(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{name: "two_shops", in: "a=x,y; b=z", ok: true},
		{name: "no_equals", in: "a", ok: false},
		{name: "no_agents", in: "a=", ok: false},
		{name: "no_shop", in: "=x", ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := parseAgents(tc.in); (err == nil) != tc.ok {
				t.Errorf("parseAgents(%q) = %v, want ok %v", tc.in, err, tc.ok)
			}
		})
	}
}
