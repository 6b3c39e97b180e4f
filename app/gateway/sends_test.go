package gateway

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// gatedStore holds every lookup of an earlier attempt's record (the first
// read of a send) until want of them wait at once, or a second passes,
// then lets them go newest first: sends handled at once reach their
// claims in the reverse of the order they came.
type gatedStore struct {
	*memory.StateStore
	want int

	mu      sync.Mutex
	waiting []chan struct{}
	most    int // the most lookups that waited at once
	timer   *time.Timer
}

func (g *gatedStore) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	if !strings.HasPrefix(key, "idem:") {
		return g.StateStore.Get(ctx, key)
	}
	ch := make(chan struct{})
	g.mu.Lock()
	g.waiting = append(g.waiting, ch)
	g.most = max(g.most, len(g.waiting))
	if len(g.waiting) >= g.want {
		g.releaseLocked()
	} else if g.timer == nil {
		g.timer = time.AfterFunc(time.Second, func() {
			g.mu.Lock()
			g.releaseLocked()
			g.mu.Unlock()
		})
	}
	g.mu.Unlock()
	<-ch
	return g.StateStore.Get(ctx, key)
}

func (g *gatedStore) releaseLocked() {
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	for i := len(g.waiting) - 1; i >= 0; i-- {
		close(g.waiting[i])
		time.Sleep(5 * time.Millisecond) // newest first, each a head start
	}
	g.waiting = nil
}

func (g *gatedStore) mostAtOnce() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.most
}

// sendAll writes n send frames to bob without waiting for answers, and
// returns the answers in the order they came.
func sendAll(t *testing.T, ws *websocket.Conn, n int) []map[string]any {
	t.Helper()
	for i := 1; i <= n; i++ {
		f := fmt.Sprintf(`{"type":"send","id":"s%d","to":"bob","cmid":"c%d","body":"m%d"}`, i, i, i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	var out []map[string]any
	for len(out) < n {
		var f map[string]any
		if err := stdjson.Unmarshal([]byte(readFrame(t, ws)), &f); err != nil {
			t.Fatal(err)
		}
		if f["type"] == "ack" || f["type"] == "error" {
			out = append(out, f)
		}
	}
	return out
}

// TestSendsOfAConnectionOverlap: a device that sends without waiting for
// each ACK has its sends handled at once, and still sees them stored in
// the order it sent them, and answered in that order.
func TestSendsOfAConnectionOverlap(t *testing.T) {
	const n = 4
	st := &gatedStore{StateStore: memory.NewStateStore(), want: n}
	e := newTestEnv(t, withState(st))
	ws := e.dial("alice")
	answers := sendAll(t, ws, n)
	if got := st.mostAtOnce(); got != n {
		t.Errorf("%d sends were looked up at once, want all %d", got, n)
	}
	for i, f := range answers {
		if f["type"] != "ack" {
			t.Fatalf("answer %d: %v, want an ack", i+1, f)
		}
		msg, _ := f["msg"].(map[string]any)
		if id, seq := f["id"], msg["seq"]; id != fmt.Sprintf("s%d", i+1) || seq != float64(i+1) {
			t.Errorf("answer %d acks %v at seq %v; want s%d at seq %d", i+1, id, seq, i+1, i+1)
		}
	}
}

// TestSendsInFlightIsBounded: with MaxSendsInFlight 1 a connection's sends
// are handled one at a time, and every one is still stored.
func TestSendsInFlightIsBounded(t *testing.T) {
	const n = 3
	st := &gatedStore{StateStore: memory.NewStateStore(), want: n}
	e := newTestEnv(t, withState(st), withConfig(Config{NodeID: "t", MaxSendsInFlight: 1}))
	ws := e.dial("alice")
	answers := sendAll(t, ws, n)
	if got := st.mostAtOnce(); got != 1 {
		t.Errorf("%d sends were looked up at once, want 1", got)
	}
	for i, f := range answers {
		msg, _ := f["msg"].(map[string]any)
		if f["type"] != "ack" || msg["seq"] != float64(i+1) {
			t.Errorf("answer %d: %v, want the ack of seq %d", i+1, f, i+1)
		}
	}
}

// heldLookups holds every lookup of an earlier attempt's record until
// release is closed.
type heldLookups struct {
	*memory.StateStore
	waiting atomic.Int32
	release chan struct{}
}

func (h *heldLookups) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	if strings.HasPrefix(key, "idem:") {
		h.waiting.Add(1)
		<-h.release
	}
	return h.StateStore.Get(ctx, key)
}

// TestShutdownAnswersTheSendsInFlight: a shutdown that begins while a
// connection's sends are under way lets them end and sends their ACKs,
// in order, before it closes the connection with 1001.
func TestShutdownAnswersTheSendsInFlight(t *testing.T) {
	const n = 3
	st := &heldLookups{StateStore: memory.NewStateStore(), release: make(chan struct{})}
	e := newTestEnv(t, withState(st))
	ws := e.dial("alice")
	for i := 1; i <= n; i++ {
		f := fmt.Sprintf(`{"type":"send","id":"s%d","to":"bob","cmid":"c%d","body":"m%d"}`, i, i, i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the sends to be under way", func() bool { return st.waiting.Load() == n })
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- e.srv.Shutdown(ctx)
	}()
	waitFor(t, "the shutdown to begin", e.srv.draining.Load)
	close(st.release)
	for i := 1; i <= n; i++ {
		var f map[string]any
		if err := stdjson.Unmarshal([]byte(readFrame(t, ws)), &f); err != nil {
			t.Fatal(err)
		}
		if f["type"] != "ack" || f["id"] != fmt.Sprintf("s%d", i) {
			t.Fatalf("frame %d: %v, want the ack of s%d", i, f, i)
		}
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseGoingAway {
		t.Fatalf("after the ACKs the read ended with %v, want close code %d", err, CloseGoingAway)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
