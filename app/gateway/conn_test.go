package gateway

import (
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

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

// TestRecvFloodDoesNotKnockTheSenderOff: 3,000 acknowledgements of one
// message in one write cost the sender at most a couple of "delivered"
// events; the sender stays connected.
func TestRecvFloodDoesNotKnockTheSenderOff(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	alice, bob := e.dial("alice"), e.dial("bob")
	if err := alice.WriteJSON(map[string]any{"type": "send", "id": "1", "to": "bob", "cmid": "c1", "body": "hi"}); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, alice); !strings.Contains(got, `"ack"`) {
		t.Fatalf("got %s, want the ack", got)
	}
	if got := readFrame(t, bob); !strings.Contains(got, `"msg"`) {
		t.Fatalf("bob got %s, want the message", got)
	}
	flood := make([]byte, 0, 3000*64)
	for range 3000 {
		flood = append(flood, maskedText(`{"type":"recv","conv":"d:alice~bob","seq":1}`)...)
	}
	if _, err := bob.NetConn().Write(flood); err != nil {
		t.Fatal(err)
	}
	// Alice is still there once the flood is handled (or bob is cut for
	// it): her ping is answered, after at most two delivered events.
	waitFor(t, "the flood to be handled", func() bool {
		return len(e.hub.Sessions("bob")) == 0 || !e.hub.Sessions("bob")[0].(*conn).isReading()
	})
	if err := alice.WriteJSON(map[string]any{"type": "ping", "id": "still-there"}); err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for {
		got := readFrame(t, alice)
		if strings.Contains(got, `"pong"`) {
			break
		}
		if strings.Contains(got, `"delivered"`) {
			delivered++
		}
	}
	if delivered > 2 {
		t.Fatalf("alice got %d delivered events for one message", delivered)
	}
}

// TestFrameFloodIsCut: a client that sends frames far past the rate is
// slowed, then closed with 4011; another client on the node is untouched.
func TestFrameFloodIsCut(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withConfig(Config{NodeID: "t", MaxFrameRate: 50, MaxFrameBurst: 50}))
	flooder, other := e.dial("mallory"), e.dial("alice")
	var flood []byte
	for range 2000 {
		flood = append(flood, maskedText(`{"type":"ping"}`)...)
	}
	if _, err := flooder.NetConn().Write(flood); err != nil {
		t.Fatal(err)
	}
	_ = flooder.SetReadDeadline(time.Now().Add(5 * time.Second))
	var err error
	for err == nil {
		_, _, err = flooder.ReadMessage()
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseFlooding {
		t.Fatalf("flooder's read ended with %v, want close code %d", err, CloseFlooding)
	}
	if err := other.WriteJSON(map[string]any{"type": "ping", "id": "fine"}); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, other); !strings.Contains(got, `"id":"fine"`) {
		t.Fatalf("the other client got %s", got)
	}
}

// TestConnStaysInItsSizeClass: an idle connection's largest allocation is
// its conn; past 512 bytes Go rounds it up to 576, 64 bytes more for each
// of tens of thousands of connections.
func TestConnStaysInItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(conn{}); size > 512 {
		t.Fatalf("conn is %d bytes, want at most 512: move rarely used state out of it", size)
	}
}
