package gateway

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/infrastructure/memory"
)

func newGuard(t *testing.T, r abuse.Rules) *abuse.Guard {
	t.Helper()
	g, err := abuse.New(memory.NewStateStore(), abuse.Config{Rules: r})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// dialRefused dials with token and returns the refusal's status, error
// code and Retry-After.
func (e *testEnv) dialRefused(token string) (int, string, string) {
	e.t.Helper()
	return e.dialRefusedFrom(token, "")
}

// dialRefusedFrom is dialRefused for a client whose address a trusted proxy
// gives in X-Forwarded-For (none when empty).
func (e *testEnv) dialRefusedFrom(token, forwardedFor string) (int, string, string) {
	e.t.Helper()
	h := http.Header{}
	if forwardedFor != "" {
		h.Set("X-Forwarded-For", forwardedFor)
	}
	ws, resp, err := websocket.DefaultDialer.Dial(e.wsURL()+"?token="+token, h)
	if err == nil {
		_ = ws.Close()
		e.t.Fatal("the connection was accepted")
	}
	if resp == nil {
		e.t.Fatalf("no HTTP answer: %v", err)
	}
	defer resp.Body.Close()
	var b errorBody
	data, _ := io.ReadAll(resp.Body)
	_ = stdjson.Unmarshal(data, &b)
	return resp.StatusCode, b.Error.Code, resp.Header.Get("Retry-After")
}

// closeCode reads until the connection closes and returns its close code.
func closeCode(t *testing.T, ws *websocket.Conn) int {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			t.Fatalf("read ended without a close frame: %v", err)
		}
	}
}

// TestSuspensionRules: each rule of the guard, met at the door or on an
// open connection, refuses or closes with what the client is told.
func TestSuspensionRules(t *testing.T) {
	t.Parallel()
	t.Run("banned_ip_refused_before_upgrade", func(t *testing.T) {
		t.Parallel()
		g := newGuard(t, abuse.Rules{})
		e := newTestEnv(t, withGuard(g))
		if err := g.Ban(context.Background(), abuse.IP(netip.MustParseAddr("127.0.0.1")), time.Now().Add(time.Minute), "test"); err != nil {
			t.Fatal(err)
		}
		st, code, ra := e.dialRefused(e.token("alice"))
		if n, _ := strconv.Atoi(ra); st != http.StatusForbidden || code != CodeBanned || n < 1 || n > 60 {
			t.Fatalf("got %d %s Retry-After %q, want 403 banned with Retry-After up to 60", st, code, ra)
		}
	})
	t.Run("auth_failures_suspend_the_address", func(t *testing.T) {
		t.Parallel()
		// The client's address comes from the proxy in front: loopback
		// itself is never suspended by a rule (everyone behind a local
		// proxy shares it).
		const client = "203.0.113.7"
		e := newTestEnv(t, withConfig(Config{NodeID: "t", TrustForwardedFor: true}),
			withGuard(newGuard(t, abuse.Rules{MaxAuthFailures: 2})))
		for i := range 2 {
			if st, code, _ := e.dialRefusedFrom("forged", client); st != http.StatusUnauthorized || code != CodeUnauthorized {
				t.Fatalf("failure %d: %d %s, want 401 unauthorized", i, st, code)
			}
		}
		if st, code, _ := e.dialRefusedFrom("forged", client); st != http.StatusForbidden || code != CodeBanned {
			t.Fatalf("third failure: %d %s, want 403 banned", st, code)
		}
		// A good token from the suspended address is refused too; another
		// address is not.
		if _, code, _ := e.dialRefusedFrom(e.token("alice"), client); code != CodeBanned {
			t.Fatalf("good token from a suspended address: %s", code)
		}
		for range 5 {
			if st, code, _ := e.dialRefused("forged"); st != http.StatusUnauthorized {
				t.Fatalf("failed logins from loopback: %d %s, want 401 every time", st, code)
			}
		}
	})
	t.Run("too_many_connects_suspend_the_user", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t, withGuard(newGuard(t, abuse.Rules{MaxConnectsPerUser: 2})))
		e.dial("alice")
		e.dial("alice")
		if st, code, _ := e.dialRefused(e.token("alice")); st != http.StatusForbidden || code != CodeBanned {
			t.Fatalf("third connect: %d %s, want 403 banned", st, code)
		}
		e.dial("bob") // the address is not suspended
	})
	t.Run("rate_limited_sends_close_with_4012", func(t *testing.T) {
		t.Parallel()
		e := newTestEnv(t, withGuard(newGuard(t, abuse.Rules{MaxRateLimited: 1})))
		e.live.Update(map[string]string{"parley.send_rate_per_sec": "1"})
		ws := e.dial("alice")
		for i := range 10 {
			sendFrame(t, ws, map[string]any{"type": "send", "to": "bob", "cmid": "c" + itoa(i), "body": "x"})
		}
		if code := closeCode(t, ws); code != CloseBanned {
			t.Fatalf("close code %d, want %d", code, CloseBanned)
		}
		if _, code, _ := e.dialRefused(e.token("alice")); code != CodeBanned {
			t.Fatalf("reconnect: %s, want banned", code)
		}
	})
}

// TestOperatorBans: the operator API is off without a token, refuses a
// wrong one, and a ban it sets closes the user's open connection with 4012
// and refuses the next; lifting it lets the user in.
func TestOperatorBans(t *testing.T) {
	t.Parallel()
	off := newTestEnv(t, withGuard(newGuard(t, abuse.Rules{})))
	if st, _ := adminDo(t, off, "", http.MethodGet, "/v1/admin/bans", ""); st != http.StatusNotFound {
		t.Fatalf("operator API with no admin token: %d, want 404", st)
	}
	e := newTestEnv(t, withConfig(Config{NodeID: "t", AdminToken: "op-secret"}), withGuard(newGuard(t, abuse.Rules{})))
	if st, _ := adminDo(t, e, "wrong", http.MethodGet, "/v1/admin/bans", ""); st != http.StatusUnauthorized {
		t.Fatalf("wrong admin token: %d, want 401", st)
	}
	if st, _ := adminDo(t, e, "op-secret", http.MethodPost, "/v1/admin/bans", `{"subject":"user:bob"}`); st != http.StatusBadRequest {
		t.Fatalf("ban without an end: %d, want 400", st)
	}
	bob := e.dial("bob")
	st, body := adminDo(t, e, "op-secret", http.MethodPost, "/v1/admin/bans", `{"subject":"user:bob","for_s":60,"reason":"spam"}`)
	if st != http.StatusOK || !strings.Contains(body, `"subject":"user:bob"`) {
		t.Fatalf("ban: %d %s", st, body)
	}
	if code := closeCode(t, bob); code != CloseBanned {
		t.Fatalf("bob's connection closed with %d, want %d", code, CloseBanned)
	}
	if _, code, _ := e.dialRefused(e.token("bob")); code != CodeBanned {
		t.Fatalf("bob reconnecting: %s, want banned", code)
	}
	if _, body := adminDo(t, e, "op-secret", http.MethodGet, "/v1/admin/bans", ""); !strings.Contains(body, `"reason":"spam"`) {
		t.Fatalf("list: %s", body)
	}
	if st, body := adminDo(t, e, "op-secret", http.MethodDelete, "/v1/admin/bans/user:bob", ""); st != http.StatusOK {
		t.Fatalf("unban: %d %s", st, body)
	}
	e.dial("bob")
}

func adminDo(t *testing.T, e *testEnv, token, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.hs.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestUnauthorizedSaysWhy: a refused token gets 401, the reason, and the
// RFC 6750 challenge.
func TestUnauthorizedSaysWhy(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	req, _ := http.NewRequest(http.MethodGet, e.hs.URL+"/v1/conversations", nil)
	req.Header.Set("Authorization", "Bearer not.a.jwt")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) ||
		!strings.Contains(string(data), "malformed") || !strings.Contains(string(data), `"retryable":false`) {
		t.Fatalf("got %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), data)
	}
}
