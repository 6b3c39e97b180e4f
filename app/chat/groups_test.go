package chat_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/domain"
)

// groupNotices records the notices that are not messages of a stream.
type groupNotices struct {
	mu  sync.Mutex
	got map[domain.UserID][]chat.Notice
}

func (n *groupNotices) Notify(_ context.Context, users []domain.UserID, notice chat.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.got == nil {
		n.got = make(map[domain.UserID][]chat.Notice)
	}
	for _, u := range users {
		n.got[u] = append(n.got[u], notice)
	}
}

func (n *groupNotices) of(u domain.UserID) []chat.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]chat.Notice(nil), n.got[u]...)
}

type groupFixture struct {
	fixture
	groups  *chat.GroupsHandler
	notices *groupNotices
	n       int
}

func newGroupFixture(t *testing.T) *groupFixture {
	f := newFixture(t, map[string]string{"parley.send_rate_per_sec": "100000"})
	g := &groupFixture{fixture: f, notices: &groupNotices{}}
	g.groups = chat.NewGroupsHandler(f.st, f.live, f.pushed, g.notices, time.Now)
	return g
}

func (g *groupFixture) send(t *testing.T, from domain.UserID, conv domain.ConversationID, body string) (uint64, error) {
	t.Helper()
	g.n++
	res, err := g.send_.Handle(context.Background(), chat.SendMessage{Sender: from, Conv: string(conv), ClientMsgID: fmt.Sprintf("m%d", g.n), Body: body})
	return res.Message.Seq, err
}

func (g *groupFixture) change(t *testing.T, cmd chat.GroupChange) (chat.GroupResult, error) {
	t.Helper()
	return g.groups.Change(context.Background(), cmd)
}

func (g *groupFixture) history(t *testing.T, u domain.UserID, conv domain.ConversationID) ([]uint64, error) {
	t.Helper()
	page, err := g.fixture.history.Handle(context.Background(), chat.History{Reader: u, Conv: string(conv)})
	var seqs []uint64
	for _, m := range page.Messages {
		seqs = append(seqs, m.Seq)
	}
	return seqs, err
}

// outcome holds a call's result and error for ok.
type outcome[T any] struct {
	v   T
	err error
}

func try[T any](v T, err error) outcome[T] { return outcome[T]{v, err} }

// ok fails the test on an error, else returns the result.
func (o outcome[T]) ok(t *testing.T) T {
	t.Helper()
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.v
}

// TestGroupLifecycle walks a group through what its members do and checks
// what each of them may read, send and change at every step.
func TestGroupLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := newGroupFixture(t)
	created := try(g.groups.Create(ctx, chat.CreateGroup{Actor: "alice", Spec: domain.GroupSpec{Name: "Launch", Members: []domain.UserID{"bob", "carol"}}})).ok(t)
	conv := created.Group.ID
	if conv.Kind() != domain.Group || created.Event == nil || created.Event.Seq != 1 || created.Event.ContentType != domain.ContentSystem {
		t.Fatalf("created %+v", created)
	}
	// The creation event is in every first member's stream.
	for _, u := range []domain.UserID{"alice", "bob", "carol"} {
		if seqs := try(g.history(t, u, conv)).ok(t); len(seqs) != 1 || seqs[0] != 1 {
			t.Fatalf("%s sees %v, want [1]", u, seqs)
		}
	}
	s2 := try(g.send(t, "bob", conv, "hello all")).ok(t)
	if s2 != 2 {
		t.Fatalf("first message got seq %d, want 2", s2)
	}
	// dave is no member: he can neither send nor read.
	if _, err := g.send(t, "dave", conv, "hi?"); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("dave's send: %v", err)
	}
	if _, err := g.history(t, "dave", conv); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("dave's history: %v", err)
	}
	// A member may not kick; the error names the role needed.
	_, err := g.change(t, chat.GroupChange{Actor: "bob", Conv: string(conv), Op: chat.OpKick, Users: []domain.UserID{"carol"}})
	var fe *domain.ForbiddenError
	if !errors.As(err, &fe) || !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("bob kicks carol: %v, want forbidden", err)
	}
	// alice invites dave: he reads from his join on, not before.
	inv := try(g.change(t, chat.GroupChange{Actor: "alice", Conv: string(conv), Op: chat.OpInvite, Users: []domain.UserID{"dave"}})).ok(t)
	if inv.Event.Seq != 3 || inv.Group.MemberCount != 4 {
		t.Fatalf("invite: event seq %d, %d members", inv.Event.Seq, inv.Group.MemberCount)
	}
	if seqs := try(g.history(t, "dave", conv)).ok(t); len(seqs) != 1 || seqs[0] != 3 {
		t.Fatalf("dave sees %v, want only his join [3]", seqs)
	}
	try(g.send(t, "dave", conv, "thanks")).ok(t)
	// carol is muted: she gets the time it ends.
	until := time.Now().Add(time.Hour).UnixMilli()
	try(g.change(t, chat.GroupChange{Actor: "alice", Conv: string(conv), Op: chat.OpMute, Users: []domain.UserID{"carol"}, UntilMs: until})).ok(t)
	_, err = g.send(t, "carol", conv, "but")
	var me *domain.MutedError
	if !errors.As(err, &me) || me.UntilMs != until {
		t.Fatalf("muted carol's send: %v, want muted until %d", err, until)
	}
	// bob leaves at seq 6: he keeps seqs 1..6, sees nothing after, and
	// can no longer send.
	left := try(g.change(t, chat.GroupChange{Actor: "bob", Conv: string(conv), Op: chat.OpLeave})).ok(t)
	try(g.send(t, "alice", conv, "bye bob")).ok(t)
	if seqs := try(g.history(t, "bob", conv)).ok(t); len(seqs) == 0 || seqs[len(seqs)-1] != left.Event.Seq {
		t.Fatalf("bob sees %v, want up to his leave at %d", seqs, left.Event.Seq)
	}
	if _, err := g.send(t, "bob", conv, "wait"); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("bob's send after leaving: %v", err)
	}
	// dave's unread: what came after his join and his own send.
	views := try(g.list.Handle(ctx, "dave")).ok(t)
	if len(views) != 1 || views[0].Group == nil || views[0].Group.Name != "Launch" || views[0].Unread != 3 {
		t.Fatalf("dave's list: %+v; want Launch with 3 unread (mute, leave, alice's message)", views)
	}
	if got := views[0].Conversation.Members; len(got) != 0 || views[0].Group.MemberCount != 3 {
		t.Fatalf("the listing names members %v and counts %d; want none named, 3 counted", got, views[0].Group.MemberCount)
	}
	// A mention shows in the mentioned member's listing until they read it.
	g.n++
	mres := try(g.send_.Handle(ctx, chat.SendMessage{Sender: "alice", Conv: string(conv), ClientMsgID: fmt.Sprintf("m%d", g.n), Body: "@dave look", Mentions: []string{"dave"}})).ok(t)
	mentioned := func(u domain.UserID) bool {
		views := try(g.list.Handle(ctx, u)).ok(t)
		return len(views) == 1 && views[0].Mentioned
	}
	if !mentioned("dave") || mentioned("carol") {
		t.Fatalf("after alice mentions dave: dave %v, carol %v; want only dave", mentioned("dave"), mentioned("carol"))
	}
	try(g.fixture.read.Handle(ctx, chat.MarkRead{Reader: "dave", Conv: string(conv), Seq: mres.Message.Seq})).ok(t)
	if mentioned("dave") {
		t.Fatal("dave is still shown mentioned after reading the message")
	}
	// Join by request: erin asks, admins are told, alice approves.
	try(g.change(t, chat.GroupChange{Actor: "alice", Conv: string(conv), Op: chat.OpPolicy, Policy: "approval"})).ok(t)
	if res := try(g.change(t, chat.GroupChange{Actor: "erin", Conv: string(conv), Op: chat.OpJoin, Note: "hi, I'm on the team"})).ok(t); res.Event != nil {
		t.Fatal("a join request was stored in the stream")
	}
	if got := g.notices.of("alice"); len(got) != 1 || got[0].Type != "join_requested" || got[0].User != "erin" {
		t.Fatalf("alice was told %v, want a join request", got)
	}
	reqs := try(g.change(t, chat.GroupChange{Actor: "alice", Conv: string(conv), Op: chat.OpRequests})).ok(t)
	if len(reqs.Requests) != 1 || reqs.Requests[0].User != "erin" {
		t.Fatalf("pending requests %+v", reqs.Requests)
	}
	try(g.change(t, chat.GroupChange{Actor: "alice", Conv: string(conv), Op: chat.OpApprove, Users: []domain.UserID{"erin"}})).ok(t)
	try(g.send(t, "erin", conv, "hello")).ok(t)
	// Dissolved: nothing more is taken, history stays readable.
	try(g.change(t, chat.GroupChange{Actor: "alice", Conv: string(conv), Op: chat.OpDissolve})).ok(t)
	if _, err := g.send(t, "alice", conv, "anyone?"); !errors.Is(err, domain.ErrGroupDissolved) {
		t.Fatalf("send to a dissolved group: %v", err)
	}
	if seqs := try(g.history(t, "erin", conv)).ok(t); len(seqs) == 0 {
		t.Fatal("history of a dissolved group is gone")
	}
}
