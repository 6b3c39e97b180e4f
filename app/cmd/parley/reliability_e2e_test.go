package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// settingsFile writes live settings for a test node.
func settingsFile(t *testing.T, kv map[string]string) string {
	t.Helper()
	var b strings.Builder
	for k, v := range kv {
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	p := filepath.Join(t.TempDir(), "settings.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// rawDial opens a WebSocket that nobody reads: it neither answers pings
// nor drains messages, like a frozen or vanished device.
func rawDial(t *testing.T, n *node, user string) *websocket.Conn {
	t.Helper()
	u := strings.Replace(n.base, "http://", "ws://", 1) + "/v1/ws?token=" + token(t, n, user)
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { ws.Close() })
	// The hello frame says the server has registered the connection.
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatalf("hello for %s: %v", user, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return ws
}

func online(t *testing.T, n *node) []string {
	t.Helper()
	var out struct {
		Users []string `json:"users"`
	}
	if err := client.DoJSON(ctxT(t, 10*time.Second), http.MethodGet, n.base+"/v1/users/online", token(t, n, "observer"), nil, &out); err != nil {
		t.Fatal(err)
	}
	return out.Users
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// TestUnacknowledgedDeliveryIsRetriedThenClosed: a device that does not
// ACK gets the message again after the ACK timeout, up to the number of
// tries, then is closed with 4009, and finds the message by sync.
func TestUnacknowledgedDeliveryIsRetriedThenClosed(t *testing.T) {
	for _, m := range modes("local") {
		t.Run(m.name, func(t *testing.T) {
			n := startNode(t, m, "-settings", settingsFile(t, map[string]string{
				"parley.ack_timeout_ms": "300", "parley.ack_tries": "3", "parley.heartbeat_idle_ms": "60000",
			}))
			ctx := ctxT(t, 30*time.Second)
			bob := dial(t, n, "bob", "phone", client.Options{NoAck: true})
			alice := dial(t, n, "alice", "web")
			alicePhone := dial(t, n, "alice", "phone")
			ack, err := alice.Send(ctx, "bob", "", "r1", "are you there?")
			if err != nil {
				t.Fatal(err)
			}
			var copies int
			start := time.Now()
			for m := range bob.Messages {
				if m.Id != ack.Id {
					t.Fatalf("unexpected message %v", m)
				}
				copies++
			}
			took := time.Since(start)
			if copies != 3 {
				t.Errorf("device got the message %d times, want 3 (one per try)", copies)
			}
			if code := closeCode(bob.Err()); code != 4009 {
				t.Errorf("connection ended with %v, want close code 4009", bob.Err())
			}
			if took < 800*time.Millisecond {
				t.Errorf("closed after %v; three tries 300ms apart take at least 900ms", took)
			}
			// The acknowledging device (the sender's other one) was not
			// retried at all.
			got := collect(t, alicePhone, 1, 5*time.Second)
			select {
			case extra := <-alicePhone.Messages:
				t.Errorf("an acknowledged device got a retransmission: %v (had %v)", extra, got)
			case <-time.After(time.Second):
			}
			again := dial(t, n, "bob", "phone")
			hist, err := again.Sync(ctx, ack.Conv, 0)
			if err != nil || len(hist) != 1 || hist[0].Id != ack.Id {
				t.Errorf("sync after re-connect = %v, %v; want the message", hist, err)
			}
		})
	}
}

// TestSendIsIdempotent: a retry with the same client message id gets the
// same id and seq and stores nothing new, over WebSocket and HTTP alike,
// until the key expires.
func TestSendIsIdempotent(t *testing.T) {
	for _, m := range modes("local") {
		t.Run(m.name, func(t *testing.T) {
			n := startNode(t, m, "-settings", settingsFile(t, map[string]string{"parley.idempotency_ttl_s": "2"}))
			ctx := ctxT(t, 30*time.Second)
			alice := dial(t, n, "alice", "web")
			first, err := alice.Send(ctx, "bob", "", "same-cmid", "once")
			if err != nil {
				t.Fatal(err)
			}
			retry, err := alice.Send(ctx, "bob", "", "same-cmid", "once")
			if err != nil {
				t.Fatal(err)
			}
			var viaHTTP pb.Message
			err = client.DoJSON(ctx, http.MethodPost, n.base+"/v1/messages", token(t, n, "alice"),
				[]byte(`{"to":"bob","cmid":"same-cmid","body":"once"}`), &viaHTTP)
			if err != nil {
				t.Fatal(err)
			}
			if retry.Id != first.Id || retry.Seq != first.Seq || viaHTTP.Id != first.Id || viaHTTP.Seq != first.Seq {
				t.Fatalf("retries got %s#%d and %s#%d, want %s#%d", retry.Id, retry.Seq, viaHTTP.Id, viaHTTP.Seq, first.Id, first.Seq)
			}
			hist, err := alice.Sync(ctx, first.Conv, 0)
			if err != nil || len(hist) != 1 {
				t.Fatalf("history after retries = %v, %v; want one message", hist, err)
			}
			// While the key lives, the same cmid for another body is
			// refused with cmid_reused and stores nothing; after the key's
			// TTL the client message id is free again.
			_, err = alice.Send(ctx, "bob", "", "same-cmid", "again")
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != "cmid_reused" {
				t.Fatalf("same cmid, other body: %v, want error cmid_reused", err)
			}
			testkit.Eventually(t, 20*time.Second, func() bool {
				later, err := alice.Send(ctx, "bob", "", "same-cmid", "again")
				if errors.As(err, &ce) && ce.Code == "cmid_reused" {
					return false
				}
				if err != nil {
					t.Fatal(err)
				}
				return later.Seq != first.Seq
			}, "idempotency key did not expire within 20s of a 2s TTL")
		})
	}
}

// TestSilentPeerIsDetectedAndRemoved: a connection that does not answer
// pings is closed and leaves the online list within two heartbeat periods;
// a live idle one stays.
func TestSilentPeerIsDetectedAndRemoved(t *testing.T) {
	n := startNode(t, modes()[0], "-settings", settingsFile(t, map[string]string{"parley.heartbeat_idle_ms": "300"}))
	_ = rawDial(t, n, "ghost")
	live := dial(t, n, "carol", "web")
	if u := online(t, n); !slices.Contains(u, "ghost") {
		t.Fatalf("online = %v, want ghost listed at first", u)
	}
	testkit.Eventually(t, 5*time.Second, func() bool { return !slices.Contains(online(t, n), "ghost") },
		"a peer that never answers pings is still online (heartbeat 300ms)")
	// carol stays idle for three heartbeat periods: a wait with nothing to
	// wait for, which is the point.
	pause(t.Context(), time.Second)
	if u := online(t, n); !slices.Contains(u, "carol") {
		t.Errorf("an idle peer that answers pings was dropped: online = %v", u)
	}
	select {
	case <-live.Done():
		t.Errorf("live idle connection closed: %v", live.Err())
	default:
	}
}

// TestSlowConsumerIsDisconnected: a device that stops reading is cut off,
// and the sender is never slowed by it. The server sends close code 4008,
// but a peer whose receive buffer is full may never see it, so the test
// checks that the connection ended early and the user went offline.
func TestSlowConsumerIsDisconnected(t *testing.T) {
	n := startNode(t, modes()[0], "-settings", settingsFile(t, map[string]string{"parley.send_rate_per_sec": "100000"}))
	ctx := ctxT(t, 60*time.Second)
	slow := rawDial(t, n, "slowpoke")
	alice := dial(t, n, "alice", "web")
	body := strings.Repeat("z", 16000)
	var worst time.Duration
	for i := range 600 {
		start := time.Now()
		if _, err := alice.Send(ctx, "slowpoke", "", fmt.Sprintf("s%d", i), body); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		worst = max(worst, time.Since(start))
	}
	if worst > 2*time.Second {
		t.Errorf("a send took %v while the receiver was stalled: the sender waited on it", worst)
	}
	if u := online(t, n); slices.Contains(u, "slowpoke") {
		t.Errorf("stalled reader still online: %v", u)
	}
	// Read what the server managed to send before it gave up.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	var err error
	got := 0
	for {
		if _, _, err = slow.ReadMessage(); err != nil {
			break
		}
		got++
	}
	if got >= 600 {
		t.Errorf("stalled reader got all %d messages: it was never cut off", got)
	}
	if code := closeCode(err); code != 4008 && code != websocket.CloseAbnormalClosure {
		t.Errorf("stalled reader ended with %v, want 4008 or an abnormal close", err)
	}
}

// TestGracefulShutdown: clients are told to reconnect with 1001, in-flight
// replies are flushed, and no goroutine outlives the node.
func TestGracefulShutdown(t *testing.T) {
	for _, m := range modes("local") {
		t.Run(m.name, func(t *testing.T) {
			requireMode(t, m)
			before := runtime.NumGoroutine()
			n := startNode(t, m)
			ctx := ctxT(t, 30*time.Second)
			var clients []*client.Client
			for i := range 5 {
				c := dial(t, n, fmt.Sprintf("u%d", i), "web")
				if _, err := c.Send(ctx, "peer", "", "x", "hi"); err != nil {
					t.Fatal(err)
				}
				clients = append(clients, c)
			}
			start := time.Now()
			n.stop(t)
			if took := time.Since(start); took > 6*time.Second {
				t.Errorf("shutdown took %v with a 5s deadline", took)
			}
			for i, c := range clients {
				select {
				case <-c.Done():
				case <-time.After(5 * time.Second):
					t.Fatalf("client %d not closed by shutdown", i)
				}
				if code := closeCode(c.Err()); code != websocket.CloseGoingAway {
					t.Errorf("client %d ended with %v, want 1001 going away", i, c.Err())
				}
				_ = c.Close()
			}
			gctx, cancelG := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancelG()
			now := 0
			if testkit.Until(gctx, func() bool {
				http.DefaultClient.CloseIdleConnections()
				now = runtime.NumGoroutine()
				return now <= before
			}) != nil {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines before the node, %d after it stopped:\n%s", before, now, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// TestSidecarDownGivesRetryableError: with daprd killed, a send gets a
// retryable "unavailable" error, never an ACK; the connection stays, and
// sending works again once daprd is back.
func TestSidecarDownGivesRetryableError(t *testing.T) {
	const profile = daprdtest.Redis
	requireMode(t, mode{name: "dapr-" + profile})
	appID := daprdtest.UniqueName("parley-e2e")
	sc := daprdtest.StartForTest(t, profile, daprdtest.WithAppID(appID))
	n := startNode(t, mode{name: "external", args: []string{
		"-backend", "dapr", "-sidecar", "external", "-dapr-grpc", sc.GRPCAddr(), "-dapr-http", sc.HTTPAddr(), "-app-id", appID,
	}})
	ctx := ctxT(t, 90*time.Second)
	alice := dial(t, n, "alice", "web")
	before, err := alice.Send(ctx, "bob", "", "up-1", "before")
	if err != nil {
		t.Fatal(err)
	}
	sc.Kill()
	_, err = alice.Send(ctx, "bob", "", "down-1", "while down")
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "unavailable" || !e.Retryable {
		t.Fatalf("send with daprd down = %v, want a retryable unavailable error", err)
	}
	if err := sc.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var after *pb.Message
	for {
		after, err = alice.Send(ctx, "bob", "", "down-1", "while down")
		if err == nil {
			break
		}
		if !errors.As(err, &e) || !e.Retryable || ctx.Err() != nil {
			t.Fatalf("send after restart: %v", err)
		}
		pause(ctx, 200*time.Millisecond) // a client's retry backoff while daprd comes back
	}
	if after.Seq != before.Seq+1 {
		t.Errorf("seq after recovery = %d, want %d", after.Seq, before.Seq+1)
	}
	hist, err := alice.Sync(ctx, before.Conv, 0)
	if err != nil || len(hist) != 2 {
		t.Errorf("history = %v, %v; want exactly the two ACKed messages", hist, err)
	}
}
