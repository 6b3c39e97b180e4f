package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	"github.com/parley-im/parley/tools/testkit"
)

// dialCode tries to connect user to n and returns the refusal's error
// code, or "" when the connection was accepted (it is closed at once).
func dialCode(t *testing.T, n *node, tok string) string {
	t.Helper()
	return dialFrom(t, n, tok, "")
}

func adminCall(t *testing.T, n *node, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctxT(t, 10*time.Second), method, n.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer e2e-operator-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestSecurityBanHoldsAcrossCluster: on a three-node cluster over redis, a
// ban an operator sets on one node closes the user's open connection on
// another with 4012 and refuses the user on every node within about two
// seconds; lifting it lets the user back in everywhere.
func TestSecurityBanHoldsAcrossCluster(t *testing.T) {
	m := mode{name: "dapr-" + daprdtest.Redis, args: []string{"-backend", "dapr", "-sidecar", "launch", "-profile", daprdtest.Redis}}
	requireMode(t, m)
	appID := daprdtest.UniqueName("parley-sec")
	var nodes []*node
	for i := range 3 {
		p := startProc(t, m, "-app-id", appID, "-node-id", fmt.Sprintf("%s-n%d", appID, i+1), "-lease-ttl", "3s",
			"-jwt-secret", "security-test-secret-security-test-secret", "-admin-token", "e2e-operator-token")
		nodes = append(nodes, p.node())
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	// Wait until each node serves.
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		err := testkit.Until(ctx, func() bool {
			resp, err := http.Get(n.base + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		cancel()
		if err != nil {
			t.Fatalf("%s not ready\n%s", n.base, testkit.Tail(n.log, 30))
		}
	}
	tok := token(t, n1, "mallory")
	open := wsConnect(t, n3, "mallory")

	if st, body := adminCall(t, n1, http.MethodPost, "/v1/admin/bans", `{"subject":"user:mallory","for_s":300,"reason":"spam"}`); st != http.StatusOK {
		t.Fatalf("ban: %d %s", st, body)
	}
	banned := time.Now()
	// The open connection on another node is closed with 4012.
	_ = open.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := open.ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4012 {
			t.Fatalf("mallory's connection on n3 ended with %v, want close 4012", err)
		}
		break
	}
	// Every node refuses mallory within about two seconds.
	for _, n := range []*node{n1, n2, n3} {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		err := testkit.Until(ctx, func() bool { return dialCode(t, n, tok) == "banned" })
		cancel()
		if err != nil {
			t.Fatalf("%s still admits mallory %v after the ban", n.base, time.Since(banned))
		}
	}
	if took := time.Since(banned); took > 3*time.Second {
		t.Fatalf("the ban took %v to hold everywhere", took)
	}
	if st, body := adminCall(t, n2, http.MethodGet, "/v1/admin/bans", ""); st != http.StatusOK || !strings.Contains(body, `"user:mallory"`) {
		t.Fatalf("list on n2: %d %s", st, body)
	}
	// Others are not affected.
	if code := dialCode(t, n2, token(t, n2, "alice")); code != "" {
		t.Fatalf("alice refused with %s", code)
	}
	if st, body := adminCall(t, n3, http.MethodDelete, "/v1/admin/bans/user:mallory", ""); st != http.StatusOK {
		t.Fatalf("unban: %d %s", st, body)
	}
	for _, n := range []*node{n1, n2, n3} {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		err := testkit.Until(ctx, func() bool { return dialCode(t, n, tok) == "" })
		cancel()
		if err != nil {
			t.Fatalf("%s still refuses mallory after the unban", n.base)
		}
	}
}

// dialFrom is dialCode for a client whose address the proxy in front gives
// in X-Forwarded-For (none when addr is empty).
func dialFrom(t *testing.T, n *node, tok, addr string) string {
	t.Helper()
	h := http.Header{}
	if addr != "" {
		h.Set("X-Forwarded-For", addr)
	}
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.base, "http")+"/v1/ws?token="+tok, h)
	if err == nil {
		_ = ws.Close()
		return ""
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", n.base, err)
	}
	defer resp.Body.Close()
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &b)
	return b.Error.Code
}

// TestSecurityRulesHoldAcrossCluster: each automatic rule, broken on one
// node of a three-node cluster over redis, suspends the user or address on
// the other nodes too: too many connects by a user, too many refused
// tokens from an address, too many rate-limited sends by a user.
func TestSecurityRulesHoldAcrossCluster(t *testing.T) {
	m := mode{name: "dapr-" + daprdtest.Redis, args: []string{"-backend", "dapr", "-sidecar", "launch", "-profile", daprdtest.Redis}}
	requireMode(t, m)
	appID := daprdtest.UniqueName("parley-rules")
	settings := settingsFile(t, map[string]string{
		"parley.abuse.max_connects_per_user": "3", "parley.abuse.max_auth_failures": "2",
		"parley.abuse.max_rate_limited": "2", "parley.send_rate_per_sec": "1",
	})
	var nodes []*node
	for i := range 3 {
		p := startProc(t, m, "-app-id", appID, "-node-id", fmt.Sprintf("%s-n%d", appID, i+1), "-lease-ttl", "3s",
			"-jwt-secret", "security-test-secret-security-test-secret", "-settings", settings, "-trust-forwarded-for")
		nodes = append(nodes, p.node())
	}
	// refusedEverywhere waits until every node refuses a dial with banned.
	refusedEverywhere := func(what string, dial func(n *node) string) {
		t.Helper()
		for _, n := range nodes {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			err := testkit.Until(ctx, func() bool { return dial(n) == "banned" })
			cancel()
			if err != nil {
				t.Fatalf("%s: %s does not refuse with banned", what, n.base)
			}
		}
	}

	t.Run("connects_per_user", func(t *testing.T) {
		tok := token(t, nodes[0], "connector")
		for i := range 3 {
			if code := dialCode(t, nodes[0], tok); code != "" {
				t.Fatalf("connect %d refused with %s", i+1, code)
			}
		}
		if code := dialCode(t, nodes[0], tok); code != "banned" {
			t.Fatalf("the fourth connect on node 1: %q, want banned", code)
		}
		refusedEverywhere("a user who connected too often on node 1", func(n *node) string { return dialCode(t, n, tok) })
	})

	t.Run("auth_failures_per_address", func(t *testing.T) {
		const addr = "203.0.113.9"
		for i := range 2 {
			if code := dialFrom(t, nodes[1], "forged", addr); code != "unauthorized" {
				t.Fatalf("refused token %d: %q, want unauthorized", i+1, code)
			}
		}
		if code := dialFrom(t, nodes[1], "forged", addr); code != "banned" {
			t.Fatalf("the third refused token on node 2: %q, want banned", code)
		}
		good := token(t, nodes[0], "innocent")
		refusedEverywhere("an address with too many refused tokens on node 2", func(n *node) string { return dialFrom(t, n, good, addr) })
		if code := dialFrom(t, nodes[0], good, "203.0.113.10"); code != "" {
			t.Fatalf("another address was refused with %s", code)
		}
	})

	t.Run("rate_limited_sends", func(t *testing.T) {
		d := wsConnect(t, nodes[2], "flooder")
		for i := range 10 {
			d.write(map[string]any{"type": "send", "id": fmt.Sprint(i), "to": "victim", "cmid": fmt.Sprintf("c%d", i), "body": "x"})
		}
		tok := token(t, nodes[0], "flooder")
		refusedEverywhere("a user rate limited too often on node 3", func(n *node) string { return dialCode(t, n, tok) })
	})
}
