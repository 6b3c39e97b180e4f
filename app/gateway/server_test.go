package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// TestShutdownDrainsConnectionsThePollerDoesNotWatch: a connection the
// poller cannot watch (TLS here; every connection off Linux) sits in a
// blocking read. Shutdown interrupts it, and the client gets 1001 at once,
// not when the deadline passes.
func TestShutdownDrainsConnectionsThePollerDoesNotWatch(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, withTLS())
	d := &websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws := e.dialWith(d, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Shutdown took %v: it waited for its deadline on an idle connection", took)
	}
	_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseGoingAway {
		t.Fatalf("client read ended with %v, want close code %d", err, CloseGoingAway)
	}
}

// gatedState blocks the first Get until released.
type gatedState struct {
	*memory.StateStore
	entered chan struct{}
	release chan struct{}
	done    atomic.Bool
	once    atomic.Bool
}

func (s *gatedState) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	if s.once.CompareAndSwap(false, true) {
		close(s.entered)
		<-s.release
		defer s.done.Store(true)
	}
	return s.StateStore.Get(ctx, key)
}

// TestShutdownWaitsForTheFrameInHand: Shutdown sees a connection idle,
// then a frame arrives and its handling starts before the drain runs. The
// drain must not tear the connection down under the running handler:
// Shutdown returns only once the frame is handled.
func TestShutdownWaitsForTheFrameInHand(t *testing.T) {
	t.Parallel()
	st := &gatedState{StateStore: memory.NewStateStore(), entered: make(chan struct{}), release: make(chan struct{})}
	e := newTestEnv(t, withUseCases(UseCases{List: chat.NewListConversationsHandler(store.New(st))}))
	ws := e.dial("alice")
	c := e.hub.Sessions("alice")[0].(*conn)

	// Shutdown's loop: draining set, c seen idle.
	e.srv.draining.Store(true)
	c.mu.Lock()
	reading := c.reading
	c.mu.Unlock()
	if reading {
		t.Fatal("expected idle")
	}
	// A frame arrives before the drain goroutine runs.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"convs","id":"1"}`)); err != nil {
		t.Fatal(err)
	}
	<-st.entered
	drained := make(chan struct{})
	go func() { c.drain(); close(drained) }() // the goroutine Shutdown spawns
	<-drained
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- e.srv.Shutdown(ctx)
	}()
	// The handler is still blocked: Shutdown must still be waiting.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a frame was still being handled", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(st.release)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !st.done.Load() {
		t.Fatal("Shutdown returned before the handler finished")
	}
}

// TestHelloIsAlwaysTheFirstFrame: a message pushed to a user while one of
// their devices connects never reaches that device before its hello.
func TestHelloIsAlwaysTheFirstFrame(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	// Fifty users, each connecting once: one user's connection limit is
	// not what this tests.
	users := make([]domain.UserID, 50)
	for i := range users {
		users[i] = domain.UserID("u" + strconv.Itoa(i))
	}
	conv := &domain.Conversation{ID: "g:everyone", Kind: domain.Group, Members: users}
	stop := make(chan struct{})
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			e.hub.Deliver(context.Background(), conv, &domain.Message{ID: "m", Conv: conv.ID, Seq: seq, Sender: "u0", Body: "x"}, "")
			runtime.Gosched()
		}
	}()
	defer func() { close(stop); <-pushed }()
	for _, u := range users {
		ws, _, err := websocket.DefaultDialer.Dial(e.wsURL()+"?token="+e.token(string(u)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readFrame(t, ws); !strings.Contains(got, `"hello"`) {
			t.Fatalf("first frame %s, want hello", got)
		}
		_ = ws.Close()
	}
}
