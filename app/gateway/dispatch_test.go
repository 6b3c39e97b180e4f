package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/domain"
)

// TestTextFrameNotUTF8: a JSON text frame that is not UTF-8 gets an error
// frame with code invalid_utf8, nothing else happens, and the connection
// goes on.
func TestTextFrameNotUTF8(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ws := e.dial("alice")
	if err := ws.WriteMessage(websocket.TextMessage, []byte("{\"type\":\"ping\",\"id\":\"\xff\"}")); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, ws); !strings.Contains(got, `"code":"invalid_utf8"`) {
		t.Fatalf("want an invalid_utf8 error frame, got %.120s", got)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"after"}`)); err != nil {
		t.Fatal(err)
	}
	if got := readFrame(t, ws); !strings.Contains(got, `"type":"pong"`) || !strings.Contains(got, `"id":"after"`) {
		t.Fatalf("want the pong after the bad frame, got %.120s", got)
	}
}

// TestFramesAreAnsweredInOrder: many frames in one write are each
// answered, in order, over the gateway's own reader and writer.
func TestFramesAreAnsweredInOrder(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ws := e.dial("alice")
	var b []byte
	for i := range 100 {
		b = append(b, maskedText(`{"type":"ping","id":"n`+itoa(i)+`"}`)...)
	}
	if _, err := ws.NetConn().Write(b); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if got := readFrame(t, ws); !strings.Contains(got, `"id":"n`+itoa(i)+`"`) {
			t.Fatalf("reply %d is %s", i, got)
		}
	}
}

// TestSyncAndReadNeedAConversation: sync and read without conv are
// answered invalid_conversation.
func TestSyncAndReadNeedAConversation(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ws := e.dial("alice")
	for _, typ := range []string{"sync", "read"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"`+typ+`","id":"q","seq":1}`)); err != nil {
			t.Fatal(err)
		}
		if got := readFrame(t, ws); !strings.Contains(got, `"code":"invalid_conversation"`) {
			t.Fatalf("%s without conv: got %s", typ, got)
		}
	}
}

// TestNoPushOfWhatASyncGave: once a sync answer gave a device a
// conversation up to a seq, a push of that seq or an older one (a node's
// backlog, a late hand-off) is not sent to it; a newer one is.
func TestNoPushOfWhatASyncGave(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	alice := e.dial("alice")
	for i := range 3 {
		sendFrame(t, alice, map[string]any{"type": "send", "id": fmt.Sprint(i), "to": "bob", "cmid": fmt.Sprintf("c%d", i), "body": "x"})
		if got := readFrame(t, alice); !strings.Contains(got, `"ack"`) {
			t.Fatalf("got %s, want an ack", got)
		}
	}
	ws := e.dial("bob") // connects after the three were stored: none is pushed
	sendFrame(t, ws, map[string]any{"type": "sync", "id": "s", "conv": "d:alice~bob", "seq": 0})
	if got := readFrame(t, ws); !strings.Contains(got, `"sync_result"`) || !strings.Contains(got, `"seq":3`) {
		t.Fatalf("got %s, want the sync answer up to seq 3", got)
	}
	conv := &domain.Conversation{ID: "d:alice~bob", Kind: domain.Direct, Members: []domain.UserID{"alice", "bob"}}
	for _, seq := range []uint64{2, 3, 4} {
		e.hub.Deliver(context.Background(), conv, &domain.Message{ID: fmt.Sprintf("m%d", seq), Conv: conv.ID, Seq: seq, Sender: "alice", Body: "x"}, "")
	}
	if got := readFrame(t, ws); !strings.Contains(got, `"seq":4`) {
		t.Fatalf("first push %s, want seq 4 only", got)
	}
}
