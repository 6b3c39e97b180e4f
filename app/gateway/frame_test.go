package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// TestAppendFrameIsReadByAWebSocketClient: frames laid end to end by the
// writer are read back, one by one and intact, by a standard client, at
// every length encoding.
func TestAppendFrameIsReadByAWebSocketClient(t *testing.T) {
	t.Parallel()
	payloads := [][]byte{{}, []byte("hi"), bytes.Repeat([]byte("a"), 125), bytes.Repeat([]byte("b"), 126),
		bytes.Repeat([]byte("c"), 65535), bytes.Repeat([]byte("d"), 65536), bytes.Repeat([]byte("e"), 200000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		var buf []byte
		for i, p := range payloads {
			op := byte(websocket.TextMessage)
			if i%2 == 1 {
				op = byte(websocket.BinaryMessage)
			}
			buf = appendFrame(buf, op, p)
		}
		_, _ = ws.NetConn().Write(buf)
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadLimit(1 << 20)
	for i, want := range payloads {
		mt, got, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		wantType := websocket.TextMessage
		if i%2 == 1 {
			wantType = websocket.BinaryMessage
		}
		if mt != wantType || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: type %d, %d bytes; want type %d, %d bytes", i, mt, len(got), wantType, len(want))
		}
	}
}
