//go:build linux

package wsconn

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestWatchLeavesAClosedConnectionsFdAlone: a connection closed before it
// is watched (the gateway closes one whose first push fails while its
// presence is still being written) must not be registered: its fd number
// already belongs to a new connection, which would never be read again.
func TestWatchLeavesAClosedConnectionsFdAlone(t *testing.T) {
	t.Parallel()
	p, err := NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	accepted := make(chan *websocket.Conn)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		accepted <- ws
	}))
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	connect := func() (*websocket.Conn, *echo) {
		t.Helper()
		client, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := &echo{poller: p, reads: make(chan int, 64), ended: make(chan error, 1)}
		e.c.Init(<-accepted, &testCfg, e, p, false)
		return client, e
	}

	// Force the case: X is closed, and Y gets X's fd number. The kernel
	// hands out the lowest free number, so this takes a few tries at most
	// while other tests open sockets in parallel.
	var clientY *websocket.Conn
	var x, y *echo
	for try := 0; try < 20 && y == nil; try++ {
		clientX, cx := connect()
		cx.c.Close(0, "")
		<-cx.c.Done()
		_ = clientX.Close()
		cy, ey := connect()
		if ey.c.FD() == cx.c.FD() {
			x, y, clientY = cx, ey, cy
			break
		}
		_ = cy.Close()
		ey.c.Close(0, "")
		<-ey.c.Done()
	}
	if y == nil {
		t.Skip("the kernel never gave the new connection the closed one's fd number in 20 tries")
	}
	defer func() {
		_ = clientY.Close()
		y.c.Close(0, "")
		<-y.c.Done()
	}()

	if err := p.Watch(&x.c); err != nil {
		t.Fatalf("watch of the closed connection: %v", err)
	}
	if err := p.Watch(&y.c); err != nil {
		t.Fatalf("watch of the new connection, which has the fd number %d: %v", y.c.FD(), err)
	}
	if !p.watching(&y.c) {
		t.Fatal("the poller's entry for the fd is not the new connection")
	}
	if _, err := clientY.NetConn().Write(clientFrame(true, OpText, []byte("q"), testKey)); err != nil {
		t.Fatal(err)
	}
	_ = clientY.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, data, err := clientY.ReadMessage(); err != nil || string(data) != "q" {
		t.Fatalf("the new connection got %q, %v; want its message echoed", data, err)
	}
}
