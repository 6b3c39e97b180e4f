package wsconn

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// clientFrame builds a masked client frame as a browser would send it.
func clientFrame(fin bool, opcode byte, payload []byte, key [4]byte) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xFFFF:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

func TestParseFrameReadsEveryLengthForm(t *testing.T) {
	t.Parallel()
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	for _, size := range []int{0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 100000} {
		payload := bytes.Repeat([]byte("parley!"), size/7+1)[:size]
		wire := clientFrame(true, OpBinary, payload, key)
		// Cut anywhere before the end, the frame is incomplete.
		for _, cut := range []int{0, 1, 2, len(wire) / 2, len(wire) - 1} {
			if cut >= len(wire) {
				continue
			}
			part := append([]byte(nil), wire[:cut]...)
			if _, _, need, err := ParseFrame(part, 1<<20); !errors.Is(err, ErrNeedMore) {
				t.Fatalf("size %d cut at %d: err %v, want ErrNeedMore", size, cut, err)
			} else if need != 0 && need != len(wire) {
				t.Fatalf("size %d cut at %d: need %d, want %d", size, cut, need, len(wire))
			}
		}
		// Two frames back to back: the first is read, the second is left.
		buf := append(append([]byte(nil), wire...), clientFrame(true, OpText, []byte("next"), key)...)
		f, n, _, err := ParseFrame(buf, 1<<20)
		if err != nil || n != len(wire) || !f.Fin || f.Opcode != OpBinary || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("size %d: frame %+v n %d err %v", size, f.Opcode, n, err)
		}
		f, _, _, err = ParseFrame(buf[n:], 1<<20)
		if err != nil || string(f.Payload) != "next" {
			t.Fatalf("size %d: second frame %q, %v", size, f.Payload, err)
		}
	}
}

func TestParseFrameRefusesWhatClientsMustNotSend(t *testing.T) {
	t.Parallel()
	key := [4]byte{1, 2, 3, 4}
	unmasked := clientFrame(true, OpText, []byte("hi"), key)
	unmasked[1] &^= 0x80
	rsv := clientFrame(true, OpText, []byte("hi"), key)
	rsv[0] |= 0x40
	for name, tc := range map[string]struct {
		wire  []byte
		limit int
		code  int
	}{
		"unmasked":               {unmasked, 1024, websocket.CloseProtocolError},
		"reserved bits":          {rsv, 1024, websocket.CloseProtocolError},
		"unknown opcode":         {clientFrame(true, 0x3, nil, key), 1024, websocket.CloseProtocolError},
		"fragmented ping":        {clientFrame(false, OpPing, nil, key), 1024, websocket.CloseProtocolError},
		"control over 125 bytes": {clientFrame(true, OpPing, make([]byte, 126), key), 1024, websocket.CloseProtocolError},
		"over the limit":         {clientFrame(true, OpText, make([]byte, 2000), key), 1024, websocket.CloseMessageTooBig},
		"64-bit length top bit":  {[]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, 1024, websocket.CloseProtocolError},
	} {
		_, _, _, err := ParseFrame(tc.wire, tc.limit)
		var fe *CloseError
		if !errors.As(err, &fe) || fe.Code != tc.code {
			t.Errorf("%s: err %v, want a frame error with code %d", name, err, tc.code)
		}
	}
}

// FuzzParseFrame: any bytes give a frame, a need for more, or a frame
// error; never a panic, never a frame past the input.
func FuzzParseFrame(f *testing.F) {
	key := [4]byte{9, 8, 7, 6}
	f.Add(clientFrame(true, OpText, []byte(`{"type":"ping"}`), key))
	f.Add(clientFrame(false, OpBinary, make([]byte, 300), key))
	f.Add(clientFrame(true, OpClose, []byte{0x03, 0xe8}, key))
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, n, need, err := ParseFrame(data, 4096)
		switch {
		case err == nil:
			if n <= 0 || n > len(data) || len(fr.Payload) > 4096 {
				t.Fatalf("frame of %d bytes from %d, payload %d", n, len(data), len(fr.Payload))
			}
		case errors.Is(err, ErrNeedMore):
			if need != 0 && need <= len(data) {
				t.Fatalf("need %d with %d bytes in hand", need, len(data))
			}
		default:
			var fe *CloseError
			if !errors.As(err, &fe) || fe.Code == 0 || fe.Reason == "" {
				t.Fatalf("unexpected error %v", err)
			}
		}
	})
}

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
		defer ws.Close()
		var buf []byte
		for i, p := range payloads {
			op := byte(websocket.TextMessage)
			if i%2 == 1 {
				op = byte(websocket.BinaryMessage)
			}
			buf = AppendFrame(buf, op, p)
		}
		_, _ = ws.NetConn().Write(buf)
		// Wait for the client to leave, so that the handler does not
		// outlive the test.
		_, _, _ = ws.ReadMessage()
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
