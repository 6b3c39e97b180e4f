package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// serveHTTP serves e's gateway with the http.Server of HTTPServer on a
// loopback port and returns its address.
func serveHTTP(t *testing.T, e *testEnv) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := e.srv.HTTPServer(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestUnauthenticatedSlowBodyIsRefusedAtOnce: a POST without a token gets
// 401 before its body arrives; the server does not wait for the body.
func TestUnauthenticatedSlowBodyIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	c, err := net.Dial("tcp", e.hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"to\":"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer while the body is pending: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"code":"unauthorized"`) {
		t.Fatalf("got %d %s, want 401 unauthorized", res.StatusCode, body)
	}
}

// TestIdleKeepAliveIsClosed: a keep-alive connection that sends nothing
// more is closed after IdleTimeout.
func TestIdleKeepAliveIsClosed(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withConfig(Config{NodeID: "t", IdleTimeout: 100 * time.Millisecond}))
	addr := serveHTTP(t, e)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read gave %v, want EOF from the server's close", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("closed after %v", took)
	}
}

// TestWebSocketOutlivesTheHTTPTimeouts: the request timeouts do not cut a
// WebSocket: it answers after they have passed.
func TestWebSocketOutlivesTheHTTPTimeouts(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withConfig(Config{NodeID: "t", ReadTimeout: 100 * time.Millisecond, HTTPWriteTimeout: 100 * time.Millisecond, ReadHeaderTimeout: 100 * time.Millisecond}))
	addr := serveHTTP(t, e)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws?token="+e.token("alice"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	readFrame(t, ws) // hello
	// Let both request deadlines pass: that is the condition under test.
	<-time.After(300 * time.Millisecond)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"late"}`)); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, ws); !strings.Contains(got, `"id":"late"`) {
		t.Fatalf("got %s, want the pong", got)
	}
}

// TestHTTPAuthentication: the HTTP API takes "Authorization: Bearer" only;
// a token in the query, another scheme, or an exp given as a string is
// refused with 401 and the JSON error shape.
func TestHTTPAuthentication(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	good := e.token("alice")
	stringExp, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": "9999999999",
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		query  string
		header string
		want   int
	}{
		{"bearer_header", "", "Bearer " + good, http.StatusOK},
		{"query_token", "?token=" + good, "", http.StatusUnauthorized},
		{"header_without_bearer", "", good, http.StatusUnauthorized},
		{"other_scheme", "", "Basic " + good, http.StatusUnauthorized},
		{"exp_as_string", "", "Bearer " + stringExp, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest("GET", e.hs.URL+"/v1/conversations"+tc.query, nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", res.StatusCode, body, tc.want)
			}
			if tc.want == http.StatusUnauthorized && !strings.Contains(string(body), `"code":"unauthorized"`) {
				t.Fatalf("body %s", body)
			}
		})
	}
}

// TestWebSocketOrigins: a foreign page is refused with 403 in the JSON
// error shape; the page's own origin, no origin, and an allowed one pass.
func TestWebSocketOrigins(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withConfig(Config{NodeID: "t", AllowedOrigins: []string{"https://app.example.com"}}))
	for _, tc := range []struct {
		name   string
		origin string
		ok     bool
	}{
		{"no_origin", "", true},
		{"same_origin", e.hs.URL, true},
		{"allowed_origin", "https://app.example.com", true},
		{"foreign_origin", "https://evil.example.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			ws, res, err := websocket.DefaultDialer.Dial(e.wsURL()+"?token="+e.token("alice"), h)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				_ = ws.Close()
				return
			}
			if err == nil {
				_ = ws.Close()
				t.Fatal("a foreign origin was let in")
			}
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"code":"origin_not_allowed"`) ||
				!strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("got %d %s %q", res.StatusCode, body, res.Header.Get("Content-Type"))
			}
		})
	}
}
