package gateway

import (
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestStalledDevicesDoNotSlowTheSender: devices that never read, with tiny
// receive buffers, are cut as slow consumers, and cutting them costs the
// sender nothing: every ACK comes back quickly.
func TestStalledDevicesDoNotSlowTheSender(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withConfig(Config{NodeID: "t", MaxQueueFrames: 4}))
	// The receive buffer is set before connecting: the window is agreed
	// on in the handshake.
	tiny := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024) })
	}}
	stalled := &websocket.Dialer{NetDialContext: tiny.DialContext}
	for range 4 {
		e.dialWith(stalled, "bob")
	}
	if errs := e.live.Update(map[string]string{"parley.send_rate_per_sec": "100000"}); len(errs) > 0 {
		t.Fatal(errs)
	}
	alice := e.dial("alice")
	body := strings.Repeat("x", 15<<10)
	var worst time.Duration
	for i := range 120 {
		start := time.Now()
		if err := alice.WriteJSON(map[string]any{"type": "send", "id": itoa(i), "to": "bob", "cmid": "c" + itoa(i), "body": body}); err != nil {
			t.Fatal(err)
		}
		for {
			got := readFrame(t, alice)
			if strings.Contains(got, `"type":"ack"`) {
				break
			}
			if strings.Contains(got, `"type":"error"`) {
				t.Fatalf("send %d: %s", i, got)
			}
		}
		worst = max(worst, time.Since(start))
	}
	waitFor(t, "the stalled devices to be cut", func() bool { return len(e.hub.Sessions("bob")) == 0 })
	if worst > 300*time.Millisecond {
		t.Fatalf("the slowest ACK took %v while stalled devices were cut", worst)
	}
}

// TestConnectionLimitHoldsUnderConcurrentUpgrades: many upgrades of one
// user at once admit at most MaxConnsPerUser; the others get 429, and the
// slots come back when connections end.
func TestConnectionLimitHoldsUnderConcurrentUpgrades(t *testing.T) {
	t.Parallel()
	const limit = 4
	e := newTestEnv(t, withConfig(Config{NodeID: "t", MaxConnsPerUser: limit}))
	url := e.wsURL() + "?token=" + e.token("alice")
	var (
		mu    sync.Mutex
		conns []*websocket.Conn
		wg    sync.WaitGroup
		other []error
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, res, err := websocket.DefaultDialer.Dial(url, nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				conns = append(conns, ws)
			case res == nil || res.StatusCode != 429:
				other = append(other, err)
			}
		}()
	}
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("upgrades failed other than with 429: %v", errors.Join(other...))
	}
	hellos := 0
	for _, ws := range conns {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, data, err := ws.ReadMessage(); err == nil && strings.Contains(string(data), `"hello"`) {
			hellos++
		}
	}
	if hellos > limit || len(conns) > limit {
		t.Fatalf("%d upgrades and %d hellos for one user; the limit is %d", len(conns), hellos, limit)
	}
	for _, ws := range conns {
		_ = ws.Close()
	}
	waitFor(t, "the connections to end", func() bool { return len(e.hub.Sessions("alice")) == 0 })
	waitFor(t, "the slots to come back", func() bool {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			return false
		}
		_ = ws.Close()
		return true
	})
}
