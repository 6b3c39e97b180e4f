package chat_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/domain"
)

// TestRecallAndEdit: an edit and a recall are events at their own seqs;
// history shows the latest body, flagged edited, then a tombstone; only the
// sender may, and only within the windows.
func TestRecallAndEdit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGroupFixture(t)
	changes := chat.NewChangeMessageHandler(g.st, g.live, g.pushed, time.Now)
	seq := try(g.send(t, "alice", "d:alice~bob", "helo")).ok(t)

	if _, err := changes.Handle(ctx, chat.ChangeMessage{Actor: "bob", Conv: "d:alice~bob", Seq: seq, ContentType: "text", Body: "hacked"}); !errors.Is(err, domain.ErrNotEditable) {
		t.Fatalf("bob edits alice's message: %v", err)
	}
	ev := try(changes.Handle(ctx, chat.ChangeMessage{Actor: "alice", Conv: "d:alice~bob", Seq: seq, ContentType: "text", Body: "hello"})).ok(t)
	if ev.Seq != seq+1 || ev.ContentType != domain.ContentSystem {
		t.Fatalf("edit event %+v, want a system message at seq %d", ev, seq+1)
	}
	page := try(g.fixture.history.Handle(ctx, chat.History{Reader: "bob", Conv: "d:alice~bob"})).ok(t)
	if m := page.Messages[0]; m.Body != "hello" || !m.Edited {
		t.Fatalf("after the edit history shows %+v", m)
	}
	try(changes.Handle(ctx, chat.ChangeMessage{Actor: "alice", Conv: "d:alice~bob", Seq: seq, Recall: true})).ok(t)
	page = try(g.fixture.history.Handle(ctx, chat.History{Reader: "bob", Conv: "d:alice~bob"})).ok(t)
	if m := page.Messages[0]; m.Body != "" || !m.Recalled || len(page.Messages) != 3 {
		t.Fatalf("after the recall history shows %+v (%d messages)", m, len(page.Messages))
	}
	if _, err := changes.Handle(ctx, chat.ChangeMessage{Actor: "alice", Conv: "d:alice~bob", Seq: seq, Recall: true}); !errors.Is(err, domain.ErrRecalled) {
		t.Fatalf("second recall: %v", err)
	}
	// Outside the window.
	late := chat.NewChangeMessageHandler(g.st, g.live, g.pushed, func() time.Time { return time.Now().Add(time.Hour) })
	seq2 := try(g.send(t, "alice", "d:alice~bob", "second")).ok(t)
	var we *domain.WindowError
	if _, err := late.Handle(ctx, chat.ChangeMessage{Actor: "alice", Conv: "d:alice~bob", Seq: seq2, Recall: true}); !errors.As(err, &we) || !errors.Is(err, domain.ErrRecallWindow) {
		t.Fatalf("recall an hour later: %v", err)
	}
}

// TestTypingReachesOtherMembersOnly: a typing notice goes to the other
// members, not to the typist nor to outsiders, and a flood is thinned.
func TestTypingReachesOtherMembersOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGroupFixture(t)
	typing := chat.NewTypingHandler(g.st, g.notices, time.Now)
	if _, err := typing.Handle(ctx, chat.Typing{User: "carol", Conv: "d:alice~bob", Active: true}); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("an outsider's typing: %v", err)
	}
	passed := 0
	for range 20 {
		if try(typing.Handle(ctx, chat.Typing{User: "alice", Conv: "d:alice~bob", Active: true})).ok(t) {
			passed++
		}
	}
	if passed != 1 || len(g.notices.of("bob")) != 1 || len(g.notices.of("alice")) != 0 {
		t.Fatalf("%d of 20 notices passed; bob got %d, alice %d", passed, len(g.notices.of("bob")), len(g.notices.of("alice")))
	}
}

// TestReadReceipts: in a direct conversation the peer learns the reader's
// cursor; in a group the sender learns how many read each message, once
// per batch and not once per reader.
func TestReadReceipts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGroupFixture(t)
	receipts := chat.NewReadReceipts(g.st, g.live, g.notices, zap.NewNop(), time.Hour)
	read := chat.NewMarkReadHandler(g.st).WithReceipts(g.notices, receipts)

	seq := try(g.send(t, "alice", "d:alice~bob", "hi")).ok(t)
	try(read.Handle(ctx, chat.MarkRead{Reader: "bob", Conv: "d:alice~bob", Seq: seq})).ok(t)
	if got := g.notices.of("alice"); len(got) != 1 || got[0].Type != "seen" || got[0].Seq != seq || got[0].User != "bob" {
		t.Fatalf("alice was told %+v", got)
	}
	// After a reload, the listing says how far bob has read.
	if views := try(g.list.Handle(ctx, "alice")).ok(t); len(views) != 1 || views[0].PeerReadSeq != seq {
		t.Fatalf("alice's listing %+v, want bob's cursor %d", views, seq)
	}

	grp := try(g.groups.Create(ctx, chat.CreateGroup{Actor: "alice", Spec: domain.GroupSpec{Name: "g", Members: []domain.UserID{"bob", "carol", "dave"}}})).ok(t)
	m := try(g.send(t, "alice", grp.Group.ID, "read me")).ok(t)
	for _, u := range []domain.UserID{"bob", "carol"} {
		try(read.Handle(ctx, chat.MarkRead{Reader: u, Conv: string(grp.Group.ID), Seq: m})).ok(t)
	}
	receipts.Start()
	receipts.Stop() // one batch
	var readBy []chat.Notice
	for _, n := range g.notices.of("alice") {
		if n.Type == "read_by" {
			readBy = append(readBy, n)
		}
	}
	if len(readBy) != 1 || readBy[0].Seq != m || readBy[0].Count != 2 {
		t.Fatalf("alice got read_by %+v, want one notice: seq %d read by 2", readBy, m)
	}
}

// TestSeenAfterTheReadersOwnReply: a reader who replied before marking
// the message read (their send moved their cursor first) still tells the
// sender it was seen.
func TestSeenAfterTheReadersOwnReply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGroupFixture(t)
	read := chat.NewMarkReadHandler(g.st).WithReceipts(g.notices, nil)
	first := try(g.send(t, "alice", "d:alice~bob", "hi")).ok(t)
	reply := try(g.send(t, "bob", "d:alice~bob", "hi back")).ok(t)
	try(read.Handle(ctx, chat.MarkRead{Reader: "bob", Conv: "d:alice~bob", Seq: first})).ok(t)
	got := g.notices.of("alice")
	if len(got) != 1 || got[0].Type != "seen" || got[0].Seq != reply {
		t.Fatalf("alice was told %+v, want seen up to %d", got, reply)
	}
}
