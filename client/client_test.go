package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects to s and returns both ends; the client is closed when the
// test ends.
func dial(t *testing.T, s *fakeServer, o client.Options) (*client.Client, *fakeConn) {
	t.Helper()
	c, err := client.Dial(ctxT(t), s.URL, "tok-alice", o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, s.Accept(t)
}

// next returns the next message the client delivered.
func next(t *testing.T, c *client.Client) *pb.Message {
	t.Helper()
	select {
	case m, ok := <-c.Messages:
		if !ok {
			t.Fatalf("Messages closed: %v", c.Err())
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}

func TestDevToken(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	tok, err := client.DevToken(ctxT(t), s.URL, "alice")
	if err != nil || tok != "tok-alice" {
		t.Fatalf("DevToken = %q, %v; want tok-alice", tok, err)
	}
	_, err = client.DevToken(ctxT(t), s.URL, "")
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "bad_request" || e.Status != http.StatusBadRequest || e.Message != "user is required" {
		t.Fatalf("DevToken without a user = %v, want the server's bad_request error with status 400", err)
	}
}

func TestDialRefusedGivesTheServersError(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	_, err := client.Dial(ctxT(t), s.URL, "refused", client.Options{})
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "unauthorized" || e.Status != http.StatusUnauthorized {
		t.Fatalf("Dial with a refused token = %v, want *Error unauthorized, status 401", err)
	}
}

func TestDialKeepsHelloAndDevice(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{Device: "phone"})
	if c.Hello == nil || c.Hello.Conn != "c1" || c.Hello.Node != "n1" {
		t.Errorf("Hello = %v, want the server's hello frame", c.Hello)
	}
	if sc.Device != "phone" || sc.Token != "tok-alice" {
		t.Errorf("server saw device %q token %q, want phone and tok-alice", sc.Device, sc.Token)
	}
}

// TestSendReturnsTheAck covers both wire formats: what the server reads is
// the send the user made, and what Send returns is the server's ACK.
func TestSendReturnsTheAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		proto bool
	}{{"json", false}, {"protobuf", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newFakeServer(t)
			c, sc := dial(t, s, client.Options{Proto: tc.proto})
			body := strings.Repeat("é\"<>", 100) // escapes, multi-byte, past 126 bytes
			type result struct {
				m   *pb.Message
				err error
			}
			done := make(chan result, 1)
			go func() {
				m, err := c.Send(ctxT(t), "bob", "", "cmid-1", body)
				done <- result{m, err}
			}()
			req := sc.Read()
			if req.Type != "send" || req.To != "bob" || req.Cmid != "cmid-1" || req.Body != body || req.Id == "" {
				t.Fatalf("server read %v, want a send to bob with cmid-1, the body and an id", req)
			}
			sc.Reply(req, &pb.Frame{Type: "ack", Msg: &pb.Message{Id: "m1", Conv: "d:alice~bob", Seq: 7, Ts: 1234}})
			r := <-done
			if r.err != nil || r.m.Id != "m1" || r.m.Seq != 7 || r.m.Conv != "d:alice~bob" || r.m.Ts != 1234 {
				t.Fatalf("Send = %v, %v; want the ACK m1, seq 7", r.m, r.err)
			}
		})
	}
}

// TestRepliesFindTheirRequests: answers that come in another order than
// the requests still reach the caller that asked.
func TestRepliesFindTheirRequests(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	got := make(chan string, 2)
	for _, cmid := range []string{"a", "b"} {
		go func() {
			m, err := c.Send(ctxT(t), "bob", "", cmid, "x")
			if err != nil {
				got <- cmid + ":" + err.Error()
				return
			}
			got <- cmid + ":" + m.Id
		}()
	}
	first, second := sc.Read(), sc.Read()
	sc.Reply(second, &pb.Frame{Type: "ack", Msg: &pb.Message{Id: "id-" + second.Cmid}})
	sc.Reply(first, &pb.Frame{Type: "ack", Msg: &pb.Message{Id: "id-" + first.Cmid}})
	results := map[string]bool{<-got: true, <-got: true}
	if !results["a:id-a"] || !results["b:id-b"] {
		t.Errorf("results %v, want each send to get its own ACK", results)
	}
}

func TestErrorFrameIsAnError(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(ctxT(t), "bob", "", "c", "x")
		done <- err
	}()
	req := sc.Read()
	sc.Reply(req, &pb.Frame{Type: "error", Code: "unavailable", Message: "try later", Retryable: true})
	var e *client.Error
	if err := <-done; !errors.As(err, &e) || e.Code != "unavailable" || !e.Retryable || e.Message != "try later" {
		t.Fatalf("Send = %v, want *Error unavailable, retryable", err)
	}
}

func TestRequestEndsWithItsContext(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Send(ctx, "bob", "", "c", "x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with no reply = %v, want DeadlineExceeded", err)
	}
	// A late answer to the abandoned request goes nowhere; the connection
	// keeps working.
	sc.Reply(sc.Read(), &pb.Frame{Type: "ack", Msg: &pb.Message{Id: "late"}})
	done := make(chan error, 1)
	go func() {
		m, err := c.Send(ctxT(t), "bob", "", "c2", "y")
		if err == nil && m.Id != "m2" {
			err = errors.New("got the ACK " + m.Id)
		}
		done <- err
	}()
	sc.Reply(sc.Read(), &pb.Frame{Type: "ack", Msg: &pb.Message{Id: "m2"}})
	if err := <-done; err != nil {
		t.Fatalf("the next Send: %v, want the ACK m2", err)
	}
}

// TestReceivedMessagesAreAcknowledged: each pushed message reaches the
// user and the server gets a recv for it, unless NoAck is set.
func TestReceivedMessagesAreAcknowledged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		noAck bool
	}{{"auto_recv", false}, {"no_ack", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newFakeServer(t)
			c, sc := dial(t, s, client.Options{NoAck: tc.noAck})
			sc.Write(&pb.Frame{Type: "msg", Msg: &pb.Message{Id: "m1", Conv: "d:alice~bob", Seq: 3, From: "bob", Body: "hi"}})
			if m := next(t, c); m.Id != "m1" || m.Body != "hi" || m.From != "bob" {
				t.Fatalf("received %v, want bob's m1", m)
			}
			// A request after the push shows what, if anything, came first.
			go func() { _, _ = c.Sync(ctxT(t), "d:alice~bob", 3) }()
			f := sc.Read()
			if tc.noAck {
				if f.Type != "sync" {
					t.Fatalf("with NoAck the server read %v first, want the sync", f)
				}
				sc.Reply(f, &pb.Frame{Type: "sync"})
				return
			}
			if f.Type != "recv" || f.Conv != "d:alice~bob" || f.Seq != 3 {
				t.Fatalf("server read %v, want recv d:alice~bob#3", f)
			}
			sc.Reply(sc.Read(), &pb.Frame{Type: "sync"})
		})
	}
}

func TestDeliveredEventsArrive(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	sc.Write(&pb.Frame{Type: "delivered", Conv: "d:alice~bob", Seq: 9, User: "bob"})
	select {
	case f := <-c.Events:
		if f.Conv != "d:alice~bob" || f.Seq != 9 || f.User != "bob" {
			t.Errorf("event %v, want bob's delivered d:alice~bob#9", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delivered event within 5s")
	}
}

func TestSyncFollowsPages(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	type result struct {
		msgs []*pb.Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := c.Sync(ctxT(t), "g:team", 4)
		done <- result{msgs, err}
	}()
	page := func(from, to uint64) []*pb.Message {
		var out []*pb.Message
		for s := from; s <= to; s++ {
			out = append(out, &pb.Message{Id: "m" + string(rune('0'+s)), Conv: "g:team", Seq: s})
		}
		return out
	}
	req := sc.Read()
	if req.Type != "sync" || req.Conv != "g:team" || req.Seq != 4 {
		t.Fatalf("first page request %v, want sync g:team after 4", req)
	}
	sc.Reply(req, &pb.Frame{Type: "sync", Messages: page(5, 6), More: true})
	req = sc.Read()
	if req.Seq != 6 {
		t.Fatalf("second page asks after %d, want after 6, the last seq it got", req.Seq)
	}
	sc.Reply(req, &pb.Frame{Type: "sync", Messages: page(7, 7)})
	r := <-done
	if r.err != nil || len(r.msgs) != 3 || r.msgs[0].Seq != 5 || r.msgs[2].Seq != 7 {
		t.Fatalf("Sync = %v, %v; want seqs 5, 6, 7", r.msgs, r.err)
	}
}

// TestLostConnectionEndsEverything: when the server goes away, a waiting
// request fails with ErrClosed, Done closes, Err says why, Messages
// closes, and a new request fails at once.
func TestLostConnectionEndsEverything(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(ctxT(t), "bob", "", "c", "x")
		done <- err
	}()
	_ = sc.Read()
	_ = sc.ws.Close() // no close frame: a lost network
	if err := <-done; !errors.Is(err, client.ErrClosed) {
		t.Fatalf("a waiting Send = %v, want ErrClosed", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the server went away")
	}
	if c.Err() == nil {
		t.Error("Err is nil after the connection ended")
	}
	if _, ok := <-c.Messages; ok {
		t.Error("Messages still open after the connection ended")
	}
	if _, err := c.Send(ctxT(t), "bob", "", "c2", "x"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Send after the end = %v, want ErrClosed", err)
	}
}

func TestCloseSendsANormalClose(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, err := client.Dial(ctxT(t), s.URL, "tok-alice", client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sc := s.Accept(t)
	closed := make(chan error, 1)
	go func() {
		_ = sc.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := sc.ws.ReadMessage()
		closed <- err
	}()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-closed; !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Errorf("server read %v, want a 1000 normal close", err)
	}
}

// TestWriteRawFrameSizes: frames of each WebSocket length encoding reach a
// standard server intact (masked as clients must).
func TestWriteRawFrameSizes(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	for _, n := range []int{0, 125, 126, 65535, 65536, 1 << 20} {
		payload := []byte(strings.Repeat("x", n))
		if err := c.WriteRaw(websocket.BinaryMessage, payload); err != nil {
			t.Fatalf("WriteRaw(%d bytes): %v", n, err)
		}
		_ = sc.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		mt, got, err := sc.ws.ReadMessage()
		if err != nil || mt != websocket.BinaryMessage || len(got) != n || string(got) != string(payload) {
			t.Fatalf("%d bytes: server read type %d, %d bytes, %v", n, mt, len(got), err)
		}
	}
}

// TestReconnectSyncDropsDuplicates is a device's life across a lost
// connection: it holds what came live, reconnects, syncs from the highest
// contiguous seq, and ends with each message once, in order.
func TestReconnectSyncDropsDuplicates(t *testing.T) {
	t.Parallel()
	const conv = "d:alice~bob"
	s := newFakeServer(t)
	in := client.NewInbox()
	c, sc := dial(t, s, client.Options{NoAck: true})
	for _, seq := range []uint64{1, 2, 4} { // 3 was lost in flight
		sc.Write(&pb.Frame{Type: "msg", Msg: &pb.Message{Id: msgID(seq), Conv: conv, Seq: seq}})
		if !in.Add(next(t, c)) {
			t.Fatalf("seq %d counted as a duplicate", seq)
		}
	}
	c.Drop()
	if from := in.Contiguous(conv); from != 2 {
		t.Fatalf("Contiguous = %d, want 2: seq 3 is missing", from)
	}

	c2, sc2 := dial(t, s, client.Options{NoAck: true})
	// The server pushed seq 4 again before the sync answer: at least once.
	sc2.Write(&pb.Frame{Type: "msg", Msg: &pb.Message{Id: msgID(4), Conv: conv, Seq: 4}})
	if in.Add(next(t, c2)) {
		t.Error("a second delivery of seq 4 was kept")
	}
	done := make(chan []*pb.Message, 1)
	go func() {
		msgs, err := c2.Sync(ctxT(t), conv, in.Contiguous(conv))
		if err != nil {
			t.Errorf("Sync: %v", err)
		}
		done <- msgs
	}()
	req := sc2.Read()
	if req.Seq != 2 {
		t.Fatalf("sync after %d, want after 2", req.Seq)
	}
	sc2.Reply(req, &pb.Frame{Type: "sync", Messages: []*pb.Message{
		{Id: msgID(3), Conv: conv, Seq: 3}, {Id: msgID(4), Conv: conv, Seq: 4}, {Id: msgID(5), Conv: conv, Seq: 5},
	}})
	for _, m := range <-done {
		in.Add(m)
	}
	var seqs []uint64
	for _, m := range in.Messages(conv) {
		seqs = append(seqs, m.Seq)
	}
	if len(seqs) != 5 || seqs[0] != 1 || seqs[4] != 5 {
		t.Errorf("inbox holds seqs %v, want 1..5", seqs)
	}
	if in.Contiguous(conv) != 5 || in.Duplicates() != 2 {
		t.Errorf("Contiguous %d, Duplicates %d; want 5 and 2", in.Contiguous(conv), in.Duplicates())
	}
}

func msgID(seq uint64) string { return "m-" + string(rune('a'+seq)) }
