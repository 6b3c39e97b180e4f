package client_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	jsoniter "github.com/json-iterator/go"
	"google.golang.org/protobuf/proto"

	pb "github.com/parley-im/parley/proto/parley/v1"
)

var json = jsoniter.ConfigFastest

// fakeServer speaks the server's side of parley's protocol as a script
// written in each test: it accepts WebSocket connections, says hello, and
// hands each connection to the test, which reads what the client sent and
// answers. A token "refused" gets the HTTP error body a real server sends.
type fakeServer struct {
	URL   string
	conns chan *fakeConn
}

// fakeConn is the server's end of one client connection.
type fakeConn struct {
	t      *testing.T
	ws     *websocket.Conn
	binary bool
	// Device and Token are what the client put in the URL.
	Device, Token string
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	s := &fakeServer{conns: make(chan *fakeConn, 8)}
	up := websocket.Upgrader{Subprotocols: []string{"parley.v1.proto"}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/dev/token", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ User string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.User == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"code":"bad_request","message":"user is required"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"token":"tok-` + in.User + `"}`))
	})
	mux.HandleFunc("GET /v1/ws", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("token") == "refused" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"token expired"}}`))
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &fakeConn{t: t, ws: ws, binary: ws.Subprotocol() == "parley.v1.proto", Device: q.Get("device"), Token: q.Get("token")}
		c.Write(&pb.Frame{Type: "hello", User: "u", Conn: "c1", Node: "n1"})
		s.conns <- c
	})
	srv := httptest.NewServer(mux)
	s.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		for {
			select {
			case c := <-s.conns:
				_ = c.ws.Close()
			default:
				return
			}
		}
	})
	return s
}

// Accept returns the next connection the server took.
func (s *fakeServer) Accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { _ = c.ws.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not connect within 5s")
		return nil
	}
}

// Read returns the next frame the client sent.
func (c *fakeConn) Read() *pb.Frame {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, data, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("server read: %v", err)
	}
	var f pb.Frame
	if c.binary {
		if mt != websocket.BinaryMessage {
			c.t.Fatalf("a protobuf client sent a frame of type %d", mt)
		}
		err = proto.Unmarshal(data, &f)
	} else {
		if mt != websocket.TextMessage {
			c.t.Fatalf("a JSON client sent a frame of type %d", mt)
		}
		err = json.Unmarshal(data, &f)
	}
	if err != nil {
		c.t.Fatalf("server decode %q: %v", data, err)
	}
	return &f
}

// Write sends f to the client in the connection's encoding.
func (c *fakeConn) Write(f *pb.Frame) {
	c.t.Helper()
	var data []byte
	var err error
	mt := websocket.TextMessage
	if c.binary {
		mt = websocket.BinaryMessage
		data, err = proto.Marshal(f)
	} else {
		data, err = json.Marshal(f)
	}
	if err == nil {
		err = c.ws.WriteMessage(mt, data)
	}
	if err != nil {
		c.t.Fatalf("server write: %v", err)
	}
}

// Reply answers the request req with f, under req's id.
func (c *fakeConn) Reply(req, f *pb.Frame) {
	c.t.Helper()
	f.Id = req.Id
	c.Write(f)
}
