package client_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
	"github.com/parley-im/parley/tools/testkit"
)

// launchParley starts a real parley with the in-memory backend and
// development tokens, and stops it when the test ends.
func launchParley(t *testing.T) string {
	t.Helper()
	testkit.SkipShort(t)
	bin := testkit.Binary(t, "./app/cmd/parley")
	p, err := testkit.Launch(t.Context(), testkit.LaunchOptions{
		Binary:  bin,
		Args:    []string{"-backend", "memory", "-addr", "127.0.0.1:0", "-dev-tokens", "-log-level", "warn", "-shutdown-timeout", "3s"},
		LogPath: filepath.Join(t.TempDir(), "parley.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.Stop(5 * time.Second) {
			t.Errorf("parley did not stop on SIGTERM; its log ends:\n%s", testkit.Tail(p.LogPath, 20))
		}
	})
	return p.Base
}

// newE2ESession opens a session for user and waits for its connection.
func newE2ESession(t *testing.T, base, user string) *client.Session {
	t.Helper()
	s, err := client.NewSession(base, client.SessionOptions{
		Options: client.Options{Device: "e2e"},
		Token:   func(ctx context.Context) (string, error) { return client.DevToken(ctx, base, user) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.WaitConnected(ctxT(t)); err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	return s
}

// waitFor reads ch until a value satisfies ok, failing after 10 s; what it
// skips is not lost to the test, since sessions keep it in their inbox.
func waitFor[T any](t *testing.T, ch <-chan T, what string, ok func(T) bool) T {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case v, open := <-ch:
			if !open {
				t.Fatalf("channel closed while waiting for %s", what)
			}
			if ok(v) {
				return v
			}
		case <-timeout.C:
			t.Fatalf("no %s within 10s", what)
		}
	}
}

func systemEvent(m *pb.Message, typ string) bool {
	e, err := client.ParseSystemEvent(m)
	return err == nil && e.Type == typ
}

// TestGroupLifeAgainstParley: three users on a real parley (in-memory
// backend) create a group, invite, write, reply, mention, type, read,
// recall, edit and leave through the SDK, and each sees what the protocol
// promises: system events, reply and mention fields, notices, recalls and
// edits applied to what the device holds, and the refusals' codes.
func TestGroupLifeAgainstParley(t *testing.T) {
	base := launchParley(t)
	alice := newE2ESession(t, base, "alice")
	bob := newE2ESession(t, base, "bob")
	carolTok, err := client.DevToken(ctxT(t), base, "carol")
	if err != nil {
		t.Fatal(err)
	}
	carol, err := client.Dial(ctxT(t), base, carolTok, client.Options{Device: "e2e", Proto: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = carol.Close() })
	ctx := ctxT(t)

	// alice creates the group with bob; bob learns of it as an event.
	created, err := alice.CreateGroup(ctx, client.NewGroup{Name: "Launch", Users: []string{"bob"}, Cmid: "create-1"})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	conv := created.Conv
	if len(conv) != 28 || conv[:2] != "g:" || created.Group.GetName() != "Launch" || created.Group.GetOwner() != "alice" {
		t.Fatalf("CreateGroup = %v %v, want a g: id, named Launch, owned by alice", conv, created.Group)
	}
	ev, err := client.ParseSystemEvent(created.Event)
	if err != nil || ev.Type != client.EventGroupCreated || ev.Name != "Launch" || !slices.Equal(ev.Users, []string{"bob"}) {
		t.Fatalf("created event %+v (%v), want group.created of Launch with bob", ev, err)
	}
	waitFor(t, bob.Messages, "bob's group.created", func(m *pb.Message) bool { return m.Conv == conv && systemEvent(m, client.EventGroupCreated) })
	again, err := alice.CreateGroup(ctx, client.NewGroup{Name: "Launch", Users: []string{"bob"}, Cmid: "create-1"})
	if err != nil || again.Conv != conv {
		t.Fatalf("a retried CreateGroup = %v, %v; want the same group %s", again, err, conv)
	}

	// alice invites carol: everyone sees member.joined.
	inv, err := alice.ChangeGroup(ctx, conv, client.GroupChange{Op: client.OpInvite, Users: []string{"carol"}})
	if err != nil || inv.Group.GetCount() != 3 {
		t.Fatalf("invite carol = %v, %v; want a group of 3", inv, err)
	}
	joined := func(m *pb.Message) bool { return m.Conv == conv && systemEvent(m, client.EventMemberJoined) }
	waitFor(t, bob.Messages, "bob's member.joined", joined)
	waitFor(t, carol.Messages, "carol's member.joined", joined)

	// alice writes; bob replies to her, mentioning her; alice mentions @all.
	hello, err := alice.Send(ctx, "", conv, "hello-1", "hello team")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, carol.Messages, "carol's hello", func(m *pb.Message) bool { return m.Id == hello.Id && m.Body == "hello team" })
	reply, err := bob.Send(ctx, "", conv, "reply-1", "hi alice", client.ReplyTo(hello.Seq), client.Mention("alice"))
	if err != nil {
		t.Fatal(err)
	}
	got := waitFor(t, alice.Messages, "alice's reply", func(m *pb.Message) bool { return m.Id == reply.Id })
	if got.ReplyTo != hello.Seq || !slices.Equal(got.Mentions, []string{"alice"}) || got.From != "bob" {
		t.Errorf("alice got %v, want bob's reply to seq %d mentioning her", got, hello.Seq)
	}
	all, err := alice.Send(ctx, "", conv, "all-1", "standup now", client.Mention(client.MentionAll))
	if err != nil {
		t.Fatal(err)
	}
	if m := waitFor(t, carol.Messages, "carol's @all", func(m *pb.Message) bool { return m.Id == all.Id }); !m.MentionAll {
		t.Errorf("carol got %v, want mention_all", m)
	}
	_, err = bob.Send(ctx, "", conv, "all-2", "me too", client.Mention(client.MentionAll))
	if e := (*client.Error)(nil); !errors.As(err, &e) || e.Code != "forbidden" {
		t.Errorf("bob's @all = %v, want forbidden: only the owner and admins mention everyone", err)
	}

	// carol types: the others' devices hear of it.
	if err := carol.Typing(conv, true); err != nil {
		t.Fatal(err)
	}
	typing := func(f *pb.Frame) bool {
		return f.Type == client.NoticeTyping && f.Conv == conv && f.User == "carol" && f.On
	}
	waitFor(t, alice.Events, "alice's typing notice", typing)
	waitFor(t, bob.Events, "bob's typing notice", typing)

	// bob and carol read: alice learns that two members read her message.
	if _, err := bob.MarkRead(ctx, conv, all.Seq); err != nil {
		t.Fatal(err)
	}
	if cur, err := carol.MarkRead(ctx, conv, all.Seq); err != nil || cur != all.Seq {
		t.Fatalf("carol's MarkRead = %d, %v; want %d", cur, err, all.Seq)
	}
	waitFor(t, alice.Events, "read_by 2 of alice's @all", func(f *pb.Frame) bool {
		return f.Type == client.NoticeReadBy && f.Conv == conv && f.Seq == all.Seq && f.Count == 2
	})

	// bob recalls his reply, alice edits her greeting: each device's inbox
	// shows the change, and history agrees.
	recalled, err := bob.Recall(ctx, conv, reply.Seq, "")
	if ev, perr := client.ParseSystemEvent(recalled); err != nil || perr != nil || ev.Type != client.EventRecalled || ev.Target != reply.Seq {
		t.Fatalf("Recall = %v, %v; want a message.recalled of seq %d", recalled, err, reply.Seq)
	}
	edited, err := alice.Edit(ctx, conv, hello.Seq, "", "hello, team!", "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, alice.Messages, "alice's recall event", func(m *pb.Message) bool { return m.Id == recalled.Id })
	waitFor(t, bob.Messages, "bob's edit event", func(m *pb.Message) bool { return m.Id == edited.Id })
	if m := alice.Inbox().Message(conv, reply.Seq); m == nil || !m.Recalled || m.Body != "" {
		t.Errorf("alice holds the recalled reply as %v, want recalled with no body", m)
	}
	if m := bob.Inbox().Message(conv, reply.Seq); m == nil || !m.Recalled {
		t.Errorf("bob holds his recalled reply as %v, want recalled", m)
	}
	if m := bob.Inbox().Message(conv, hello.Seq); m == nil || !m.Edited || m.Body != "hello, team!" {
		t.Errorf("bob holds the greeting as %v, want the edited body", m)
	}
	if m := alice.Inbox().Message(conv, hello.Seq); m == nil || !m.Edited || m.Body != "hello, team!" {
		t.Errorf("alice holds her greeting as %v, want the edited body", m)
	}
	hist, err := carol.Sync(ctx, conv, 0)
	if err != nil {
		t.Fatal(err)
	}
	in := client.NewInbox()
	for _, m := range hist {
		in.Add(m)
	}
	if m := in.Message(conv, hello.Seq); !m.GetEdited() || m.GetBody() != "hello, team!" {
		t.Errorf("history shows the greeting as %v, want edited", m)
	}
	if m := in.Message(conv, reply.Seq); !m.GetRecalled() {
		t.Errorf("history shows the reply as %v, want recalled", m)
	}
	if _, err := alice.Edit(ctx, conv, reply.Seq, "", "x", ""); !isCode(err, "not_editable", "recalled") {
		t.Errorf("editing bob's recalled reply = %v, want not_editable or recalled", err)
	}

	// bob may not kick the owner; carol leaves, and then may not write.
	if _, err := bob.ChangeGroup(ctx, conv, client.GroupChange{Op: client.OpKick, Users: []string{"alice"}}); !isCode(err, "forbidden") {
		t.Errorf("bob kicking alice = %v, want forbidden", err)
	}
	if _, err := carol.Leave(ctx, conv); err != nil {
		t.Fatal(err)
	}
	left := waitFor(t, alice.Messages, "alice's member.left", func(m *pb.Message) bool { return systemEvent(m, client.EventMemberLeft) })
	if ev, _ := client.ParseSystemEvent(left); ev.Actor != "carol" {
		t.Errorf("member.left by %q, want carol", ev.Actor)
	}
	if _, err := carol.Send(ctx, "", conv, "late-1", "still here?"); !isCode(err, "not_member") {
		t.Errorf("carol's send after leaving = %v, want not_member", err)
	}

	// In a direct conversation the reader's cursor comes back as seen.
	d, err := alice.Send(ctx, "bob", "", "direct-1", "psst")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.MarkRead(ctx, d.Conv, d.Seq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, alice.Events, "alice's seen", func(f *pb.Frame) bool {
		return f.Type == client.NoticeSeen && f.Conv == d.Conv && f.Seq == d.Seq && f.User == "bob"
	})
}

func isCode(err error, codes ...string) bool {
	var e *client.Error
	return errors.As(err, &e) && slices.Contains(codes, e.Code)
}
