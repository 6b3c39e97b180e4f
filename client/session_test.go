package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

func TestDirectConversationOrdersTheUsers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, a, b, want string }{
		{"ascending", "alice", "bob", "d:alice~bob"},
		{"descending", "bob", "alice", "d:alice~bob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := client.DirectConversation(tc.a, tc.b); got != tc.want {
				t.Fatalf("client.DirectConversation(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

// nextMessage returns the session's next message, failing after 5 s.
func nextMessage(t *testing.T, s *client.Session) *pb.Message {
	t.Helper()
	select {
	case m, ok := <-s.Messages:
		if !ok {
			t.Fatal("Messages closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}

// TestSessionReconnectsCatchesUpAndDropsDuplicates: the first connection
// delivers only what is new; after the connection drops, the session dials
// again by itself, syncs the conversation from the last seq it holds, and
// delivers each message once although the server sends some twice.
func TestSessionReconnectsCatchesUpAndDropsDuplicates(t *testing.T) {
	t.Parallel()
	srv := newFakeServer(t)
	states := make(chan bool, 16)
	s, err := client.NewSession(srv.URL, client.SessionOptions{
		Token:      func(context.Context) (string, error) { return "tok", nil },
		MinBackoff: 10 * time.Millisecond,
		OnState:    func(up bool, _ error) { states <- up },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const conv = "d:alice~bob"
	msg := func(seq uint64) *pb.Message {
		return &pb.Message{Id: "m" + string(rune('0'+seq)), Conv: conv, Seq: seq, From: "alice", Body: "b"}
	}

	// First connection: the conversation holds seqs 1 and 2 already.
	c1 := srv.Accept(t)
	req := c1.Read()
	if req.Type != "convs" {
		t.Fatalf("first frame %q, want convs", req.Type)
	}
	c1.Reply(req, &pb.Frame{Type: "conversations", Conversations: []*pb.Conversation{{Id: conv, LastSeq: 2}}})
	if !<-states {
		t.Fatal("first state is down, want up")
	}
	c1.Write(&pb.Frame{Type: "msg", Msg: msg(3)})
	if m := nextMessage(t, s); m.Seq != 3 {
		t.Fatalf("first message seq %d, want 3 (older ones are history)", m.Seq)
	}
	if f := c1.Read(); f.Type != "recv" || f.Seq != 3 {
		t.Fatalf("client answered %q seq %d, want recv 3", f.Type, f.Seq)
	}

	// The connection drops; 4 and 5 are stored meanwhile.
	_ = c1.ws.Close()
	if <-states {
		t.Fatal("state after the drop is up, want down")
	}
	c2 := srv.Accept(t)
	req = c2.Read()
	c2.Reply(req, &pb.Frame{Type: "conversations", Conversations: []*pb.Conversation{{Id: conv, LastSeq: 5}}})
	sync := c2.Read()
	if sync.Type != "sync" || sync.Conv != conv || sync.Seq != 3 {
		t.Fatalf("catch-up frame %q conv %q from %d, want sync %s from 3", sync.Type, sync.Conv, sync.Seq, conv)
	}
	c2.Reply(sync, &pb.Frame{Type: "sync_result", Conv: conv, Messages: []*pb.Message{msg(4), msg(5)}})
	if !<-states {
		t.Fatal("state after the reconnection is down, want up")
	}
	// A live push of 5 again, then 6: only 6 is new.
	c2.Write(&pb.Frame{Type: "msg", Msg: msg(5)})
	c2.Write(&pb.Frame{Type: "msg", Msg: msg(6)})
	for _, want := range []uint64{4, 5, 6} {
		if m := nextMessage(t, s); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	if d := s.Inbox().Duplicates(); d != 1 {
		t.Fatalf("duplicates dropped = %d, want 1", d)
	}
}

// TestSessionWaitsOutASuspension: a connection closed with 4012 is not
// dialled again before the time its close reason gives, although the
// backoff alone would dial at once; OnState reports the suspension.
func TestSessionWaitsOutASuspension(t *testing.T) {
	t.Parallel()
	srv := newFakeServer(t)
	states := make(chan error, 16)
	s, err := client.NewSession(srv.URL, client.SessionOptions{
		Token:      func(context.Context) (string, error) { return "tok", nil },
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
		OnState:    func(_ bool, err error) { states <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c1 := srv.Accept(t)
	c1.Reply(c1.Read(), &pb.Frame{Type: "conversations"})
	if err := <-states; err != nil {
		t.Fatalf("first state: %v, want up", err)
	}
	// RFC 3339 has whole seconds: the end is at least 1 s away.
	until := time.Now().Add(2 * time.Second).Truncate(time.Second)
	msg := websocket.FormatCloseMessage(4012, "suspended until "+until.UTC().Format(time.RFC3339))
	if err := c1.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	down := <-states
	if at, banned := client.BannedUntil(down); !banned || !at.Equal(until) {
		t.Fatalf("state after the close: %v; want a suspension until %v", down, until)
	}
	c2 := srv.Accept(t)
	if now := time.Now(); now.Before(until) {
		t.Fatalf("dialled again at %v, before the suspension ended at %v", now, until)
	}
	c2.Reply(c2.Read(), &pb.Frame{Type: "conversations"})
	if err := <-states; err != nil {
		t.Fatalf("state after the suspension: %v, want up", err)
	}
}

// TestSessionDeliversItsOwnEventsOnce: the event of a recall made through
// the session reaches Messages once, whether the server pushes it too or
// not, and the inbox shows the target recalled.
func TestSessionDeliversItsOwnEventsOnce(t *testing.T) {
	t.Parallel()
	srv := newFakeServer(t)
	s, err := client.NewSession(srv.URL, client.SessionOptions{
		Token:   func(context.Context) (string, error) { return "tok", nil },
		History: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const conv = "g:x"
	c := srv.Accept(t)
	c.Reply(c.Read(), &pb.Frame{Type: "conversations", Conversations: []*pb.Conversation{{Id: conv, LastSeq: 1}}})
	target := &pb.Message{Id: "m1", Conv: conv, Seq: 1, From: "alice", Body: "oops"}
	c.Reply(c.Read(), &pb.Frame{Type: "sync_result", Conv: conv, Messages: []*pb.Message{target}})
	if m := nextMessage(t, s); m.Id != "m1" {
		t.Fatalf("first message %v, want m1 from the catch-up", m)
	}
	if _, err := s.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	event := &pb.Message{Id: "e2", Conv: conv, Seq: 2, From: "alice", Ctype: "system", Body: `{"type":"message.recalled","actor":"alice","target":1}`}
	done := make(chan error, 1)
	go func() {
		_, err := s.Recall(ctxT(t), conv, 1, "")
		done <- err
	}()
	req := c.Read()
	if req.Type != "recall" || req.Seq != 1 {
		t.Fatalf("server read %v, want a recall of seq 1", req)
	}
	// The push comes before the answer, as the server's fan-out does.
	c.Write(&pb.Frame{Type: "msg", Msg: event})
	c.Reply(req, &pb.Frame{Type: "ack", Msg: event})
	if err := <-done; err != nil {
		t.Fatalf("Recall: %v", err)
	}
	if m := nextMessage(t, s); m.Id != "e2" {
		t.Fatalf("next message %v, want the event e2", m)
	}
	// A message after the event shows whether a second copy was queued.
	c.Write(&pb.Frame{Type: "msg", Msg: &pb.Message{Id: "m3", Conv: conv, Seq: 3, From: "bob", Body: "after"}})
	if m := nextMessage(t, s); m.Id != "m3" {
		t.Fatalf("message after the event: %v, want m3 (the event came twice)", m)
	}
	if m := s.Inbox().Message(conv, 1); !m.GetRecalled() || m.GetBody() != "" {
		t.Errorf("inbox holds %v, want m1 recalled", m)
	}
}
