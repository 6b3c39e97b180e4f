package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// TestRequestsSpeakTheProtocol: each method writes the frame the README
// documents, and returns what the server's answer says.
func TestRequestsSpeakTheProtocol(t *testing.T) {
	t.Parallel()
	until := time.UnixMilli(1_900_000_000_000)
	event := &pb.Message{Id: "e1", Conv: "g:x", Seq: 4, Ctype: client.ContentSystem, Body: `{"type":"member.joined"}`}
	for _, tc := range []struct {
		name  string
		call  func(ctx context.Context, c *client.Client) (any, error)
		want  *pb.Frame
		reply *pb.Frame
		check func(t *testing.T, got any)
	}{
		{
			name: "send_reply_and_mentions",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.Send(ctx, "", "g:x", "c1", `{"a":1}`, client.ReplyTo(3), client.Mention("bob", client.MentionAll), client.JSONBody())
			},
			want:  &pb.Frame{Type: "send", Conv: "g:x", Cmid: "c1", Body: `{"a":1}`, Ctype: "json", ReplyTo: 3, Mentions: []string{"bob", "@all"}},
			reply: &pb.Frame{Type: "ack", Msg: &pb.Message{Id: "m5", Conv: "g:x", Seq: 5}},
			check: func(t *testing.T, got any) {
				if m := got.(*pb.Message); m.Id != "m5" || m.Seq != 5 {
					t.Errorf("Send = %v, want the ACK m5", m)
				}
			},
		},
		{
			name: "create_group",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.CreateGroup(ctx, client.NewGroup{Name: "Launch", Users: []string{"bob", "carol"}, Notice: "n", Ext: `{"k":1}`,
					Policy: client.PolicyApproval, History: true, Cmid: "g1"})
			},
			want: &pb.Frame{Type: "group_create", Name: "Launch", Users: []string{"bob", "carol"}, Notice: "n", Ext: `{"k":1}`,
				Policy: "approval", On: true, Cmid: "g1"},
			reply: &pb.Frame{Type: "group_result", Conv: "g:x", Group: &pb.Group{Id: "g:x", Name: "Launch", Count: 3}, Msg: event},
			check: func(t *testing.T, got any) {
				r := got.(*client.GroupResult)
				if r.Conv != "g:x" || r.Group.GetName() != "Launch" || r.Group.GetCount() != 3 || r.Event.GetId() != "e1" {
					t.Errorf("CreateGroup = %+v, want g:x Launch of 3 with the event e1", r)
				}
			},
		},
		{
			name: "invite",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.Invite(ctx, "g:x", "dave", "erin")
			},
			want:  &pb.Frame{Type: "group", Conv: "g:x", Op: "invite", Users: []string{"dave", "erin"}},
			reply: &pb.Frame{Type: "group_result", Conv: "g:x", Group: &pb.Group{Id: "g:x"}, Msg: event},
			check: func(t *testing.T, got any) {
				if r := got.(*client.GroupResult); r.Event.GetSeq() != 4 {
					t.Errorf("Invite event %v, want seq 4", r.Event)
				}
			},
		},
		{
			name: "mute_until",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.ChangeGroup(ctx, "g:x", client.GroupChange{Op: client.OpMute, Users: []string{"bob"}, Until: until, Cmid: "m1"})
			},
			want:  &pb.Frame{Type: "group", Conv: "g:x", Op: "mute", Users: []string{"bob"}, Until: until.UnixMilli(), Cmid: "m1"},
			reply: &pb.Frame{Type: "group_result", Conv: "g:x", Msg: event},
			check: func(*testing.T, any) {},
		},
		{
			name: "requests",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.ChangeGroup(ctx, "g:x", client.GroupChange{Op: client.OpRequests})
			},
			want:  &pb.Frame{Type: "group", Conv: "g:x", Op: "requests"},
			reply: &pb.Frame{Type: "group_result", Conv: "g:x", Requests: []*pb.JoinRequest{{User: "zed", Note: "hi", At: 7}}},
			check: func(t *testing.T, got any) {
				r := got.(*client.GroupResult)
				if len(r.Requests) != 1 || r.Requests[0].User != "zed" || r.Event != nil {
					t.Errorf("requests = %+v, want zed's request and no event", r)
				}
			},
		},
		{
			name: "leave",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.Leave(ctx, "g:x")
			},
			want:  &pb.Frame{Type: "group", Conv: "g:x", Op: "leave"},
			reply: &pb.Frame{Type: "group_result", Conv: "g:x", Msg: event},
			check: func(*testing.T, any) {},
		},
		{
			name: "recall",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.Recall(ctx, "g:x", 2, "r1")
			},
			want:  &pb.Frame{Type: "recall", Conv: "g:x", Seq: 2, Cmid: "r1"},
			reply: &pb.Frame{Type: "ack", Msg: &pb.Message{Id: "e9", Conv: "g:x", Seq: 9, Ctype: "system", Body: `{"type":"message.recalled","target":2}`}},
			check: func(t *testing.T, got any) {
				if m := got.(*pb.Message); m.Seq != 9 || m.Ctype != "system" {
					t.Errorf("Recall = %v, want the event at seq 9", m)
				}
			},
		},
		{
			name: "edit",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.Edit(ctx, "g:x", 2, "text", "fixed", "")
			},
			want:  &pb.Frame{Type: "edit", Conv: "g:x", Seq: 2, Ctype: "text", Body: "fixed"},
			reply: &pb.Frame{Type: "ack", Msg: &pb.Message{Id: "e10", Conv: "g:x", Seq: 10, Ctype: "system"}},
			check: func(t *testing.T, got any) {
				if m := got.(*pb.Message); m.Seq != 10 {
					t.Errorf("Edit = %v, want the event at seq 10", m)
				}
			},
		},
		{
			name: "mark_read",
			call: func(ctx context.Context, c *client.Client) (any, error) {
				return c.MarkRead(ctx, "g:x", 99)
			},
			want:  &pb.Frame{Type: "read", Conv: "g:x", Seq: 99},
			reply: &pb.Frame{Type: "read", Conv: "g:x", Seq: 10},
			check: func(t *testing.T, got any) {
				if got.(uint64) != 10 {
					t.Errorf("MarkRead = %d, want the cursor in force, 10", got)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, wire := range []struct {
				name  string
				proto bool
			}{{"json", false}, {"protobuf", true}} {
				t.Run(wire.name, func(t *testing.T) {
					t.Parallel()
					s := newFakeServer(t)
					c, sc := dial(t, s, client.Options{Proto: wire.proto})
					type result struct {
						v   any
						err error
					}
					done := make(chan result, 1)
					go func() {
						v, err := tc.call(ctxT(t), c)
						done <- result{v, err}
					}()
					req := sc.Read()
					if req.Id == "" {
						t.Fatalf("server read %v without an id", req)
					}
					tc.want.Id = req.Id
					if !sameFrame(req, tc.want) {
						t.Fatalf("server read\n%v\nwant\n%v", req, tc.want)
					}
					sc.Reply(req, tc.reply)
					r := <-done
					if r.err != nil {
						t.Fatalf("call failed: %v", r.err)
					}
					tc.check(t, r.v)
				})
			}
		})
	}
}

// sameFrame compares the fields the SDK writes.
func sameFrame(a, b *pb.Frame) bool {
	return a.Type == b.Type && a.Id == b.Id && a.Conv == b.Conv && a.To == b.To && a.Cmid == b.Cmid && a.Ctype == b.Ctype &&
		a.Body == b.Body && a.Seq == b.Seq && a.ReplyTo == b.ReplyTo && slices.Equal(a.Mentions, b.Mentions) && a.Op == b.Op &&
		slices.Equal(a.Users, b.Users) && a.Role == b.Role && a.Name == b.Name && a.Notice == b.Notice && a.Ext == b.Ext &&
		a.Policy == b.Policy && a.On == b.On && a.Until == b.Until && a.Note == b.Note
}

// TestRefusalCarriesCodeAndUntil: a muted sender learns until when.
func TestRefusalCarriesCodeAndUntil(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(ctxT(t), "", "g:x", "c", "hi")
		done <- err
	}()
	sc.Reply(sc.Read(), &pb.Frame{Type: "error", Code: "muted", Message: "muted until later", Until: 1234})
	var e *client.Error
	if err := <-done; !errors.As(err, &e) || e.Code != "muted" || e.Until != 1234 {
		t.Fatalf("Send = %v, want *Error muted with Until 1234", err)
	}
}

// TestTypingIsAFrameWithNoAnswer: Typing returns at once; the server reads
// the notice; a refusal, which answers no request, comes on Events.
func TestTypingIsAFrameWithNoAnswer(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{})
	if err := c.Typing("g:x", true); err != nil {
		t.Fatalf("Typing: %v", err)
	}
	if f := sc.Read(); f.Type != "typing" || f.Conv != "g:x" || !f.On || f.Id != "" {
		t.Fatalf("server read %v, want typing on g:x, on, without an id", f)
	}
	sc.Write(&pb.Frame{Type: "error", Code: "not_member", Message: "no"})
	f := nextEvent(t, c.Events)
	if f.Type != "error" || f.Code != "not_member" {
		t.Fatalf("event %v, want the not_member error", f)
	}
}

// TestNoticesArriveOnEvents: every notice type reaches Events with its
// fields, in order.
func TestNoticesArriveOnEvents(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t)
	c, sc := dial(t, s, client.Options{Proto: true})
	sent := []*pb.Frame{
		{Type: client.NoticeDelivered, Conv: "d:a~b", Seq: 1, User: "b"},
		{Type: client.NoticeSeen, Conv: "d:a~b", Seq: 2, User: "b"},
		{Type: client.NoticeReadBy, Conv: "g:x", Seq: 3, Count: 2},
		{Type: client.NoticeTyping, Conv: "g:x", User: "carol", On: true},
		{Type: client.NoticeJoinRequested, Conv: "g:x", User: "zed", Note: "let me in"},
		{Type: client.NoticeJoinRejected, Conv: "g:x", User: "alice"},
		{Type: client.NoticeUnassigned, Conv: "s:shop~a", Seq: 1, User: "shop"},
	}
	for _, f := range sent {
		sc.Write(f)
	}
	for _, want := range sent {
		got := nextEvent(t, c.Events)
		if got.Type != want.Type || got.Conv != want.Conv || got.Seq != want.Seq || got.User != want.User ||
			got.Count != want.Count || got.On != want.On || got.Note != want.Note {
			t.Errorf("event %v, want %v", got, want)
		}
	}
	_ = c.Close()
	if _, ok := <-c.Events; ok {
		t.Error("Events still open after Close")
	}
}

func nextEvent(t *testing.T, ch <-chan *pb.Frame) *pb.Frame {
	t.Helper()
	select {
	case f, ok := <-ch:
		if !ok {
			t.Fatal("Events closed")
		}
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return nil
	}
}

func TestParseSystemEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		msg     *pb.Message
		want    client.SystemEvent
		wantErr bool
	}{
		{"member_joined", &pb.Message{Ctype: "system", Body: `{"type":"member.joined","actor":"alice","users":["dave"]}`},
			client.SystemEvent{Type: client.EventMemberJoined, Actor: "alice", Users: []string{"dave"}}, false},
		{"edited", &pb.Message{Ctype: "system", Body: `{"type":"message.edited","actor":"bob","target":3,"ctype":"text","body":"new"}`},
			client.SystemEvent{Type: client.EventEdited, Actor: "bob", Target: 3, Ctype: "text", Body: "new"}, false},
		{"ext_kept_as_json", &pb.Message{Ctype: "system", Body: `{"type":"group.ext","ext":{"k":[1,2]}}`},
			client.SystemEvent{Type: client.EventExtChanged, Ext: []byte(`{"k":[1,2]}`)}, false},
		{"not_system", &pb.Message{Ctype: "text", Body: `{"type":"member.joined"}`}, client.SystemEvent{}, true},
		{"no_type", &pb.Message{Ctype: "system", Body: `{"actor":"a"}`}, client.SystemEvent{}, true},
		{"not_json", &pb.Message{Ctype: "system", Body: `nope`}, client.SystemEvent{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := client.ParseSystemEvent(tc.msg)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseSystemEvent = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tc.want.Type || got.Actor != tc.want.Actor || !slices.Equal(got.Users, tc.want.Users) ||
				got.Target != tc.want.Target || got.Ctype != tc.want.Ctype || got.Body != tc.want.Body || string(got.Ext) != string(tc.want.Ext) {
				t.Errorf("ParseSystemEvent = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBannedUntil(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		err        error
		wantBanned bool
		want       time.Time
	}{
		{"dial_refused", &client.Error{Code: "banned", Until: at.UnixMilli()}, true, at},
		{"closed_4012", &websocket.CloseError{Code: 4012, Text: "suspended until " + at.Format(time.RFC3339)}, true, at},
		{"closed_4012_unreadable", &websocket.CloseError{Code: 4012, Text: "later"}, true, time.Time{}},
		{"other_close", &websocket.CloseError{Code: 4009, Text: "suspended until " + at.Format(time.RFC3339)}, false, time.Time{}},
		{"other_error", &client.Error{Code: "rate_limited", Until: 5}, false, time.Time{}},
		{"nil", nil, false, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, banned := client.BannedUntil(tc.err)
			if banned != tc.wantBanned || !got.Equal(tc.want) {
				t.Errorf("BannedUntil = %v, %v; want %v, %v", got, banned, tc.want, tc.wantBanned)
			}
		})
	}
}
