package gateway

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/presence"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/domain"
)

type blockingCluster struct {
	mu     sync.Mutex
	blockX chan struct{}
}

func (b *blockingCluster) Connect(ctx context.Context, u domain.UserID, e presence.Entry) error {
	if u == "x" {
		<-b.blockX
	}
	return nil
}
func (b *blockingCluster) Disconnect(context.Context, domain.UserID, string) error { return nil }
func (b *blockingCluster) OnlineUsers(l []domain.UserID) []domain.UserID           { return nil }
func (b *blockingCluster) LiveNodes() []presence.Lease                             { return nil }

type gatedListener struct {
	net.Listener
	permits chan struct{}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	<-l.permits
	return l.Listener.Accept()
}

// A connection closed before start() registers it (here: a writer failure
// during cluster.Connect) makes watch() clobber the poller entry of the new
// connection that got its fd number: that connection is never read again.
func TestConnectionClosedBeforeWatchLeavesItsFdAlone(t *testing.T) {
	auth, _ := NewAuthenticator([]byte("reader-test-secret-reader-test-secret"))
	cl := &blockingCluster{blockX: make(chan struct{})}
	hub := delivery.NewHub()
	srv := New(Config{NodeID: "t"}, zap.NewNop(), auth, settings.NewLive(settings.Defaults()), hub, UseCases{}, cl, nil)
	hs := httptest.NewUnstartedServer(srv.Handler())
	gl := &gatedListener{Listener: hs.Listener, permits: make(chan struct{}, 4)}
	hs.Listener = gl
	gl.permits <- struct{}{} // X
	hs.Start()
	defer hs.Close()
	defer func() {
		for i := 0; i < 4; i++ {
			select {
			case gl.permits <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/v1/ws?token="
	tx, _ := auth.Issue("x", time.Hour)
	ty, _ := auth.Issue("y", time.Hour)

	wsx, _, err := websocket.DefaultDialer.Dial(url+tx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wsx.Close()
	var x *conn
	for i := 0; i < 100 && x == nil; i++ {
		if s := hub.Sessions("x"); len(s) == 1 {
			x = s[0].(*conn)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if x == nil {
		t.Fatal("x not in hub")
	}
	// Y's client socket is made now; the server does not accept it yet.
	type res struct {
		ws  *websocket.Conn
		err error
	}
	ych := make(chan res, 1)
	go func() {
		ws, _, err := websocket.DefaultDialer.Dial(url+ty, nil)
		ych <- res{ws, err}
	}()
	time.Sleep(100 * time.Millisecond)
	// X fails (as on a write error of a Push) while still in cluster.Connect.
	x.closeWith(CloseSlowConsumer, "write failed")
	gl.permits <- struct{}{} // accept Y: it gets X's old fd number
	r := <-ych
	if r.err != nil {
		t.Fatal(r.err)
	}
	wsy := r.ws
	defer wsy.Close()
	_ = wsy.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, _, err := wsy.ReadMessage(); err != nil { // hello
		t.Fatal(err)
	}
	y := hub.Sessions("y")[0].(*conn)
	t.Logf("x fd %d, y fd %d", x.fd, y.fd)
	if x.fd != y.fd {
		t.Log("the fd number was not reused this time; the new connection must work all the same")
	}
	close(cl.blockX) // X's start() runs now, after its close
	time.Sleep(100 * time.Millisecond)

	if err := wsy.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"q"}`)); err != nil {
		t.Fatal(err)
	}
	_ = wsy.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, data, err := wsy.ReadMessage()
	if err != nil {
		t.Fatalf("Y got no reply to its ping: %v (poller map entry for fd %d: %v)", err, y.fd, srv.poller.conns[int32(y.fd)] == y)
	}
	t.Logf("reply %s", data)
}
