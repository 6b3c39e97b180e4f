package chat_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// pushes is a Deliverer that records what it is handed.
type pushes struct {
	mu   sync.Mutex
	msgs []domain.Message
}

func (p *pushes) Deliver(_ context.Context, _ *domain.Conversation, m *domain.Message, _ string) {
	p.mu.Lock()
	p.msgs = append(p.msgs, *m)
	p.mu.Unlock()
}

func (p *pushes) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

type fixture struct {
	st      *store.Store
	live    *settings.Live
	send_   *chat.SendMessageHandler
	history *chat.HistoryHandler
	read    *chat.MarkReadHandler
	list    *chat.ListConversationsHandler
	pushed  *pushes
}

func newFixture(t *testing.T, live map[string]string) fixture {
	t.Helper()
	s := settings.NewLive(settings.Defaults())
	if errs := s.Update(live); len(errs) > 0 {
		t.Fatal(errs)
	}
	st := store.New(memory.NewStateStore())
	p := &pushes{}
	return fixture{
		st:      st,
		live:    s,
		send_:   chat.NewSendMessageHandler(st, s, p, time.Now),
		history: chat.NewHistoryHandler(st),
		read:    chat.NewMarkReadHandler(st),
		list:    chat.NewListConversationsHandler(st),
		pushed:  p,
	}
}

// TestSendMessageRefusals: each bad send gets the error the gateway maps to
// its protocol code, and nothing is stored or delivered.
func TestSendMessageRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cmd  chat.SendMessage
		want error
	}{
		{"no_peer", chat.SendMessage{Sender: "alice", ClientMsgID: "c1", Body: "hi"}, domain.ErrInvalidUserID},
		{"to_self", chat.SendMessage{Sender: "alice", To: "alice", ClientMsgID: "c1", Body: "hi"}, domain.ErrSendToSelf},
		{"not_a_member", chat.SendMessage{Sender: "carol", Conv: "d:alice~bob", ClientMsgID: "c1", Body: "hi"}, domain.ErrNotMember},
		{"bad_conversation", chat.SendMessage{Sender: "alice", Conv: "x:1", ClientMsgID: "c1", Body: "hi"}, domain.ErrInvalidConversationID},
		{"empty_body", chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "c1"}, domain.ErrEmptyBody},
		{"no_cmid", chat.SendMessage{Sender: "alice", To: "bob", Body: "hi"}, domain.ErrInvalidClientMsgID},
		{"unknown_ctype", chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "c1", ContentType: "gif", Body: "hi"}, domain.ErrUnknownContentType},
		{"body_too_large", chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "c1", Body: strings.Repeat("x", 70_000)}, domain.ErrBodyTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			if _, err := f.send_.Handle(context.Background(), tc.cmd); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if f.pushed.count() != 0 {
				t.Fatal("a refused send was delivered")
			}
		})
	}
}

// TestSendMessageStoresDeliversOnce: a send is stored at the next seq and
// delivered once; its retry returns the same message and is not delivered
// again; the sender's own read cursor follows its send.
func TestSendMessageStoresDeliversOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	first, err := f.send_.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "c1", Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	retry, err := f.send_.Handle(ctx, chat.SendMessage{Sender: "alice", Conv: "d:alice~bob", ClientMsgID: "c1", Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Message.Seq != 1 || first.Duplicate || !retry.Duplicate || retry.Message.ID != first.Message.ID {
		t.Fatalf("first %+v, retry %+v", first, retry)
	}
	if n := f.pushed.count(); n != 1 {
		t.Fatalf("delivered %d times, want once", n)
	}
	if _, err := f.send_.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "c1", Body: "other"}); !errors.Is(err, store.ErrClientMsgIDReused) {
		t.Fatalf("a cmid reused for another body: got %v, want ErrClientMsgIDReused", err)
	}
	views, err := f.list.Handle(ctx, "bob")
	if err != nil || len(views) != 1 || views[0].Unread != 1 || views[0].Last == nil || views[0].Last.Body != "hi" {
		t.Fatalf("bob's list: %+v, %v; want one conversation with 1 unread", views, err)
	}
	views, _ = f.list.Handle(ctx, "alice")
	if len(views) != 1 || views[0].Unread != 0 {
		t.Fatalf("alice's list: %+v; her own message is not unread", views)
	}
}

// TestSendMessageRateLimited: past the live send rate (bursts of twice
// it), a sender is refused until the bucket refills; others are not.
func TestSendMessageRateLimited(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, map[string]string{"parley.send_rate_per_sec": "5"})
	var limited int
	for i := range 20 {
		_, err := f.send_.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: fmt.Sprintf("c%d", i), Body: "x"})
		if errors.Is(err, chat.ErrRateLimited) {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited < 9 {
		t.Fatalf("%d of 20 sends were limited at 5/s with bursts of 10; want at least 9", limited)
	}
	if _, err := f.send_.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b1", Body: "x"}); err != nil {
		t.Fatalf("another sender was limited: %v", err)
	}
}

// TestQueriesNeedAConversation: sync (history) and read with no
// conversation are an invalid conversation, not an invalid user; a
// non-member is refused.
func TestQueriesNeedAConversation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	if _, err := f.history.Handle(ctx, chat.History{Reader: "alice"}); !errors.Is(err, domain.ErrInvalidConversationID) {
		t.Errorf("history with no conv: %v", err)
	}
	if _, err := f.read.Handle(ctx, chat.MarkRead{Reader: "alice", Seq: 1}); !errors.Is(err, domain.ErrInvalidConversationID) {
		t.Errorf("read with no conv: %v", err)
	}
	if _, err := f.history.Handle(ctx, chat.History{Reader: "carol", Conv: "d:alice~bob"}); !errors.Is(err, domain.ErrNotMember) {
		t.Errorf("history by a non-member: %v", err)
	}
}

// TestMarkReadNeverPastTheNewestNorBack: a read cursor moves forward only,
// and never past the newest message.
func TestMarkReadNeverPastTheNewestNorBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	for _, cmid := range []string{"c1", "c2", "c3"} {
		if _, err := f.send_.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: cmid, Body: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ mark, want uint64 }{{2, 2}, {1, 2}, {99, 3}} {
		got, err := f.read.Handle(ctx, chat.MarkRead{Reader: "bob", Conv: "d:alice~bob", Seq: tc.mark})
		if err != nil || got != tc.want {
			t.Fatalf("mark %d: cursor %d, %v; want %d", tc.mark, got, err, tc.want)
		}
	}
}

// TestHistoryPagesByBytes: a page of large messages is cut before it
// passes store.MaxPageBytes and says there is more; paging on returns
// every message once.
func TestHistoryPagesByBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, map[string]string{"parley.send_rate_per_sec": "100000"})
	body := strings.Repeat("x", 16<<10)
	const n = 80 // 80 x 16 KiB is well past one page's bytes
	for i := range n {
		if _, err := f.send_.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: fmt.Sprintf("c%d", i), Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	var after uint64
	var pages, total int
	for {
		page, err := f.history.Handle(ctx, chat.History{Reader: "bob", Conv: "d:alice~bob", After: after})
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, m := range page.Messages {
			size += len(m.Body)
		}
		if size > store.MaxPageBytes {
			t.Fatalf("a page holds %d bytes of bodies, over %d", size, store.MaxPageBytes)
		}
		pages++
		total += len(page.Messages)
		if !page.More {
			break
		}
		after = page.Messages[len(page.Messages)-1].Seq
	}
	if total != n || pages < 2 {
		t.Fatalf("%d messages in %d pages; want %d in several", total, pages, n)
	}
}

// commitsCutOff fails every commit (a transaction that writes idempotency
// records): the head hint stays behind the messages stored.
type commitsCutOff struct{ infrastructure.StateStore }

func (c commitsCutOff) Transact(ctx context.Context, ops []infrastructure.StateOp) error {
	for _, op := range ops {
		if strings.HasPrefix(op.Key, "idem:") {
			return fmt.Errorf("commit cut off: %w", infrastructure.ErrUnavailable)
		}
	}
	return c.StateStore.Transact(ctx, ops)
}

// TestMarkReadAboveALaggingHead: a device marks a message read that is
// stored while the head hint, which its commit writes after the ACK, is
// still behind; the cursor moves to it, and not past the newest message.
func TestMarkReadAboveALaggingHead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := store.New(commitsCutOff{memory.NewStateStore()})
	defer st.Close()
	s := settings.NewLive(settings.Defaults())
	send := chat.NewSendMessageHandler(st, s, &pushes{}, time.Now)
	read := chat.NewMarkReadHandler(st)
	for _, cmid := range []string{"c1", "c2"} {
		if _, err := send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: cmid, Body: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if head, err := st.Head(ctx, "d:alice~bob"); err != nil || head != 0 {
		t.Fatalf("test setup: head hint %d, %v; want 0, the commits cut off", head, err)
	}
	for _, tc := range []struct{ mark, want uint64 }{{1, 1}, {2, 2}, {3, 2}} {
		got, err := read.Handle(ctx, chat.MarkRead{Reader: "bob", Conv: "d:alice~bob", Seq: tc.mark})
		if err != nil || got != tc.want {
			t.Fatalf("mark %d: cursor %d, %v; want %d", tc.mark, got, err, tc.want)
		}
	}
}
