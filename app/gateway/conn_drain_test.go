package gateway

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

type slowState struct {
	*memory.StateStore
	entered chan struct{}
	release chan struct{}
	done    atomic.Bool
}

func (s *slowState) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	close(s.entered)
	<-s.release
	defer s.done.Store(true)
	return s.StateStore.Get(ctx, key)
}

// Shutdown checks c.reading (false), then a frame arrives and readReady
// starts handling it, then the drain goroutine Shutdown spawned runs:
// drain() tears the connection down although its read is in flight, and
// Shutdown returns while the frame is still being handled.
func TestShutdownWaitsForTheFrameInHand(t *testing.T) {
	auth, _ := NewAuthenticator([]byte("reader-test-secret-reader-test-secret"))
	st := &slowState{StateStore: memory.NewStateStore(), entered: make(chan struct{}), release: make(chan struct{})}
	hub := delivery.NewHub()
	srv := New(Config{NodeID: "t"}, zap.NewNop(), auth, settings.NewLive(settings.Defaults()), hub,
		UseCases{List: chat.NewListConversationsHandler(store.New(st))}, nil, nil)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	tok, _ := auth.Issue("alice", time.Hour)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/v1/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, _, _ = ws.ReadMessage() // hello
	c := hub.Sessions("alice")[0].(*conn)

	// Shutdown's loop: draining set, c seen idle.
	srv.draining.Store(true)
	c.mu.Lock()
	reading := c.reading
	c.mu.Unlock()
	if reading {
		t.Fatal("expected idle")
	}
	// A frame arrives before the drain goroutine runs.
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"convs","id":"1"}`))
	<-st.entered
	go c.drain() // the goroutine Shutdown spawned

	go func() { time.Sleep(500 * time.Millisecond); close(st.release) }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = srv.Shutdown(ctx)
	t.Logf("Shutdown returned %v; handler finished: %v", err, st.done.Load())
	if !st.done.Load() {
		t.Errorf("Shutdown returned while a frame was still being handled")
	}
	time.Sleep(50 * time.Millisecond)
}
