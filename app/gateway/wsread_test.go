package gateway

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/settings"
)

// rawClient is a WebSocket client whose frames the test writes byte by byte.
type rawClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialRaw(t *testing.T) (*rawClient, *Server) {
	t.Helper()
	auth, err := NewAuthenticator([]byte("reader-test-secret-reader-test-secret"))
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{NodeID: "t"}, zap.NewNop(), auth, settings.NewLive(settings.Defaults()), delivery.NewHub(), UseCases{}, nil, nil)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	tok, err := auth.Issue("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/v1/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	c := &rawClient{t: t, ws: ws}
	if got := c.next(); !strings.Contains(got, `"hello"`) {
		t.Fatalf("first frame %s, want hello", got)
	}
	return c, srv
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.ws.NetConn().Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) next() string {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return string(data)
}

var testKey = [4]byte{0xa1, 0xb2, 0xc3, 0xd4}

// TestReaderPutsFramesTogether: a frame cut across TCP segments, a message
// in fragments with a ping between them, and many frames in one segment
// are all read whole and answered in order.
func TestReaderPutsFramesTogether(t *testing.T) {
	c, _ := dialRaw(t)

	wire := clientFrame(true, opText, []byte(`{"type":"ping","id":"cut"}`), testKey)
	for _, part := range [][]byte{wire[:1], wire[1:5], wire[5:9], wire[9:]} {
		c.write(part)
		time.Sleep(20 * time.Millisecond)
	}
	if got := c.next(); !strings.Contains(got, `"id":"cut"`) || !strings.Contains(got, `"pong"`) {
		t.Fatalf("after a cut frame got %s, want its pong", got)
	}

	pongs := make(chan string, 1)
	c.ws.SetPongHandler(func(s string) error { pongs <- s; return nil })
	msg := []byte(`{"type":"ping","id":"fragments"}`)
	var b []byte
	b = append(b, clientFrame(false, opText, msg[:10], testKey)...)
	b = append(b, clientFrame(true, opPing, []byte("are you there"), testKey)...)
	b = append(b, clientFrame(false, opContinuation, msg[10:20], testKey)...)
	b = append(b, clientFrame(true, opContinuation, msg[20:], testKey)...)
	c.write(b)
	if got := c.next(); !strings.Contains(got, `"id":"fragments"`) {
		t.Fatalf("after fragments got %s", got)
	}
	select {
	case p := <-pongs:
		if p != "are you there" {
			t.Errorf("pong carried %q, want the ping's payload", p)
		}
	case <-time.After(time.Second):
		t.Error("no pong for a ping between fragments")
	}

	b = b[:0]
	for i := range 200 {
		b = append(b, clientFrame(true, opText, []byte(`{"type":"ping","id":"n`+strconv.Itoa(i)+`"}`), testKey)...)
	}
	c.write(b)
	for i := range 200 {
		if got := c.next(); !strings.Contains(got, `"id":"n`+strconv.Itoa(i)+`"`) {
			t.Fatalf("reply %d is %s", i, got)
		}
	}
}

// TestReaderClosesOnProtocolErrors: a frame a client must not send ends
// the connection with the RFC's close code; a close frame is echoed.
func TestReaderClosesOnProtocolErrors(t *testing.T) {
	unmasked := clientFrame(true, opText, []byte("{}"), testKey)
	unmasked[1] &^= 0x80
	for name, tc := range map[string]struct {
		wire []byte
		code int
	}{
		"unmasked frame":        {unmasked, websocket.CloseProtocolError},
		"frame over 64 KiB":     {clientFrame(true, opText, make([]byte, 70000), testKey), websocket.CloseMessageTooBig},
		"stray continuation":    {clientFrame(true, opContinuation, []byte("x"), testKey), websocket.CloseProtocolError},
		"close frame is echoed": {clientFrame(true, opClose, []byte{0x0f, 0xa0}, testKey), 4000},
		"close code 1006":       {clientFrame(true, opClose, []byte{0x03, 0xee}, testKey), websocket.CloseProtocolError},
		"one-byte close":        {clientFrame(true, opClose, []byte{0x03}, testKey), websocket.CloseProtocolError},
		"close reason not utf8": {clientFrame(true, opClose, []byte{0x03, 0xe8, 0xff}, testKey), websocket.CloseProtocolError},
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := dialRaw(t)
			c.write(tc.wire)
			_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err := c.ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("read ended with %v, want close code %d", err, tc.code)
			}
		})
	}
}
