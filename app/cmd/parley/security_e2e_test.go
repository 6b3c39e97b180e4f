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
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.base, "http")+"/v1/ws?token="+tok, nil)
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
