package chat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

// inbox records what each user's devices were pushed: messages and notices.
type inbox struct {
	mu      sync.Mutex
	msgs    map[domain.UserID][]domain.Message
	notices map[domain.UserID][]chat.Notice
}

func (b *inbox) Deliver(_ context.Context, conv *domain.Conversation, m *domain.Message, _ string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.msgs == nil {
		b.msgs = make(map[domain.UserID][]domain.Message)
	}
	for _, u := range conv.Members {
		b.msgs[u] = append(b.msgs[u], *m)
	}
}

func (b *inbox) Notify(_ context.Context, users []domain.UserID, n chat.Notice) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.notices == nil {
		b.notices = make(map[domain.UserID][]chat.Notice)
	}
	for _, u := range users {
		b.notices[u] = append(b.notices[u], n)
	}
}

// bodies lists what u was pushed: message bodies, and events as "event:"
// and their type and user.
func (b *inbox) bodies(u domain.UserID) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.msgs[u] {
		out = append(out, describe(m))
	}
	return out
}

func (b *inbox) noticesOf(u domain.UserID) []chat.Notice {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.notices[u])
}

func describe(m domain.Message) string {
	if m.ContentType != domain.ContentSystem {
		return m.Body
	}
	e, err := domain.ParseSystemEvent(m.Body)
	if err != nil {
		return "bad event " + m.Body
	}
	return fmt.Sprintf("event:%s:%v", e.Type, e.Users)
}

// assignApp is an in-process assignment app: it answers with the next of
// its agents, or fails while down.
type assignApp struct {
	down   atomic.Bool
	nobody atomic.Bool
	calls  atomic.Int32
	mu     sync.Mutex
	agents []domain.UserID
	next   int
	got    []chat.AssignRequest
}

func (a *assignApp) serve(_ context.Context, data []byte) ([]byte, error) {
	a.calls.Add(1)
	if a.down.Load() {
		return nil, errors.New("assignment app is down")
	}
	var req chat.AssignRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, req)
	if a.nobody.Load() {
		return []byte(`{}`), nil
	}
	agent := a.agents[a.next%len(a.agents)]
	a.next++
	return json.Marshal(chat.AssignReply{Agent: agent})
}

type serviceFixture struct {
	st    *store.Store
	live  *settings.Live
	svc   *chat.ServiceHandler
	box   *inbox
	app   *assignApp
	cmids atomic.Int32
}

func newServiceFixture(t *testing.T, agents ...domain.UserID) *serviceFixture {
	t.Helper()
	live := settings.NewLive(settings.Defaults())
	net := &memory.Network{}
	app := &assignApp{agents: agents}
	if err := memory.NewInvoker(net, "assigner").Serve(chat.AssignMethod, app.serve); err != nil {
		t.Fatal(err)
	}
	st := store.New(memory.NewStateStore())
	box := &inbox{}
	svc := chat.NewServiceHandler(st, live, box, box, memory.NewInvoker(net, "parley"), chat.ServiceConfig{
		AssignAppID: "assigner",
		IsShop:      func(u domain.UserID) bool { return u == "shop" },
		RetryMin:    5 * time.Millisecond,
		RetryMax:    20 * time.Millisecond,
	}, zap.NewNop(), time.Now)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return &serviceFixture{st: st, live: live, svc: svc, box: box, app: app}
}

// send goes the way SendMessageHandler.Handle goes for a service
// conversation: resolve, store, deliver, then tell the handler.
func (f *serviceFixture) send(t *testing.T, from domain.UserID, conv, to, body string) (domain.Message, error) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	c, ok, err := f.svc.ForSend(ctx, from, conv, to, now.UnixMilli())
	if !ok {
		t.Fatalf("send from %s to conv %q / user %q is not a service send", from, conv, to)
	}
	if err != nil {
		return domain.Message{}, err
	}
	d := domain.Draft{Conv: c.ID, Sender: from, ClientMsgID: fmt.Sprintf("c%d", f.cmids.Add(1)), ContentType: domain.Text, Body: body}
	if err := d.Validate(f.live.Load().MaxBodyBytes); err != nil {
		t.Fatal(err)
	}
	res, err := f.st.Append(ctx, c, d, store.AppendOptions{NowMs: now.UnixMilli(), Stored: func(m *domain.Message) {
		f.box.Deliver(ctx, &c, m, "")
	}})
	if err != nil {
		return domain.Message{}, err
	}
	f.svc.Sent(ctx, c, &res.Message)
	return res.Message, nil
}

// history is what u reads of conv, once authorised as the history query
// authorises a service conversation.
func (f *serviceFixture) history(t *testing.T, u domain.UserID, conv domain.ConversationID) ([]string, error) {
	t.Helper()
	if _, err := f.svc.Conversation(context.Background(), u, string(conv)); err != nil {
		return nil, err
	}
	msgs, _, err := f.st.Messages(context.Background(), conv, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, describe(m))
	}
	return out, nil
}

func (f *serviceFixture) agent(t *testing.T, conv domain.ConversationID) domain.UserID {
	t.Helper()
	sc, _, err := f.st.ServiceConversation(context.Background(), conv)
	if err != nil {
		t.Fatal(err)
	}
	return sc.Agent
}

// waitFor polls cond until it holds or 5s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("after 5s: %s", what)
		}
	}
}

const svcConv = domain.ConversationID("s:shop~carol")

// TestServiceFirstMessageAssignsAnAgent: a customer's first message to a
// shop reaches the shop, the assignment app is asked once with the
// conversation's parties, the agent it names is told by an event in the
// stream, and from then on the customer's messages reach that agent and
// the agent's replies reach the customer. Outsiders are refused.
func TestServiceFirstMessageAssignsAnAgent(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t, "ann")
	first, err := f.send(t, "carol", "", "shop", "is the tour on Sunday?")
	if err != nil {
		t.Fatal(err)
	}
	if first.Conv != svcConv || first.Seq != 1 {
		t.Fatalf("first message stored as %s#%d, want %s#1", first.Conv, first.Seq, svcConv)
	}
	if got := f.box.bodies("shop"); !slices.Contains(got, "is the tour on Sunday?") {
		t.Fatalf("shop was pushed %v, want the first message", got)
	}
	assigned := "event:service.agent:[ann]"
	waitFor(t, "ann told of her assignment", func() bool { return slices.Contains(f.box.bodies("ann"), assigned) })
	if got := f.box.bodies("carol"); !slices.Contains(got, assigned) {
		t.Errorf("carol was pushed %v, want the assignment event", got)
	}
	if f.app.got[0] != (chat.AssignRequest{Conv: svcConv, Shop: "shop", Customer: "carol"}) {
		t.Errorf("assignment app was asked %+v", f.app.got[0])
	}

	if _, err := f.send(t, "carol", string(svcConv), "", "and on Monday?"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.send(t, "ann", string(svcConv), "", "both days, yes"); err != nil {
		t.Fatalf("the assigned agent cannot reply: %v", err)
	}
	if got := f.box.bodies("ann"); !slices.Contains(got, "and on Monday?") {
		t.Errorf("ann was pushed %v, want the customer's later message", got)
	}
	if got := f.box.bodies("carol"); !slices.Contains(got, "both days, yes") {
		t.Errorf("carol was pushed %v, want the agent's reply", got)
	}
	if n := f.app.calls.Load(); n != 1 {
		t.Errorf("assignment app called %d times, want 1", n)
	}
	for _, tc := range []struct {
		name     string
		from     domain.UserID
		conv, to string
		want     error
	}{
		{name: "outsider_in_the_conversation", from: "zed", conv: string(svcConv), want: domain.ErrNotMember},
		{name: "outsider_opens_anothers_conversation", from: "zed", conv: "s:shop~dave", want: domain.ErrNotMember},
		{name: "not_a_shop", from: "carol", conv: "s:bob~carol", want: domain.ErrInvalidConversationID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.send(t, tc.from, tc.conv, tc.to, "hi"); !errors.Is(err, tc.want) {
				t.Errorf("send = %v, want %v", err, tc.want)
			}
		})
	}
	if _, ok, _ := f.svc.ForSend(context.Background(), "carol", "", "bob", 1); ok {
		t.Error("a send to a user who is not a shop was taken as a service send")
	}
}

// TestServiceTransfer: the shop's systems hand the customer to another
// agent; the transfer is an event in the stream that the old agent, the
// new one and the customer see; the new agent reads the whole history and
// gets later messages, the old one neither.
func TestServiceTransfer(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t, "ann")
	if _, err := f.send(t, "carol", "", "shop", "hello"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ann assigned", func() bool { return f.agent(t, svcConv) == "ann" })
	if _, err := f.send(t, "ann", string(svcConv), "", "how can I help?"); err != nil {
		t.Fatal(err)
	}

	if _, err := f.svc.Assign(context.Background(), chat.AssignAgent{Actor: "carol", Conv: string(svcConv), Agent: "ben"}); !errors.As(err, new(*domain.ForbiddenError)) {
		t.Fatalf("customer transferring = %v, want forbidden", err)
	}
	res, err := f.svc.Assign(context.Background(), chat.AssignAgent{Conv: string(svcConv), Agent: "ben", ClientMsgID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Conversation.Agent != "ben" || res.Event == nil || res.Event.Seq != 4 {
		t.Fatalf("transfer gave %+v, event %+v; want agent ben, event at seq 4", res.Conversation, res.Event)
	}
	transfer := "event:service.agent:[ben]"
	for _, u := range []domain.UserID{"ann", "ben", "carol", "shop"} {
		if got := f.box.bodies(u); !slices.Contains(got, transfer) {
			t.Errorf("%s was pushed %v, want the transfer event", u, got)
		}
	}
	// A retry finds the transfer done: nothing more is stored.
	again, err := f.svc.Assign(context.Background(), chat.AssignAgent{Conv: string(svcConv), Agent: "ben", ClientMsgID: "t1"})
	if !errors.Is(err, domain.ErrNoChange) || again.Conversation.Agent != "ben" || again.Event != nil {
		t.Errorf("retried transfer = %+v, %v; want no change, agent ben", again, err)
	}

	want := []string{"hello", "event:service.agent:[ann]", "how can I help?", transfer}
	if got, err := f.history(t, "ben", svcConv); err != nil || !slices.Equal(got, want) {
		t.Errorf("ben reads %v, %v; want %v", got, err, want)
	}
	if _, err := f.history(t, "ann", svcConv); !errors.Is(err, domain.ErrNotMember) {
		t.Errorf("ann reads after the transfer: %v, want not a member", err)
	}
	if _, err := f.send(t, "ann", string(svcConv), "", "still here"); !errors.Is(err, domain.ErrNotMember) {
		t.Errorf("ann sends after the transfer: %v, want not a member", err)
	}
	if _, err := f.send(t, "carol", string(svcConv), "", "thanks"); err != nil {
		t.Fatal(err)
	}
	if got := f.box.bodies("ben"); !slices.Contains(got, "thanks") {
		t.Errorf("ben was pushed %v, want the customer's message after the transfer", got)
	}
	if got := f.box.bodies("ann"); slices.Contains(got, "thanks") {
		t.Errorf("ann still gets the customer's messages: %v", got)
	}
	if ids, _ := f.st.UserConversations(context.Background(), "ben"); !slices.Contains(ids, svcConv) {
		t.Errorf("ben's conversation list %v lacks %s", ids, svcConv)
	}
}

// TestServiceUnassigned: while the assignment app is down or has nobody to
// give, the customer's messages are stored and the customer is told, with
// a notice, that nobody is assigned yet; parley keeps asking, and once the
// app answers the agent is assigned and sees the messages that waited.
func TestServiceUnassigned(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		break_ func(*assignApp, bool)
	}{
		{name: "app_down", break_: func(a *assignApp, on bool) { a.down.Store(on) }},
		{name: "app_has_nobody", break_: func(a *assignApp, on bool) { a.nobody.Store(on) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newServiceFixture(t, "ann")
			tc.break_(f.app, true)
			m1, err := f.send(t, "carol", "", "shop", "anyone there?")
			if err != nil {
				t.Fatalf("send while the assignment app fails: %v", err)
			}
			if stored, ok, err := f.st.Message(context.Background(), svcConv, m1.Seq); err != nil || !ok || stored.Body != "anyone there?" {
				t.Fatalf("message not stored: %+v, %v, %v", stored, ok, err)
			}
			waitFor(t, "carol told nobody is assigned", func() bool { return len(f.box.noticesOf("carol")) > 0 })
			n := f.box.noticesOf("carol")[0]
			if n.Type != chat.NoticeUnassigned || n.Conv != svcConv || n.Seq != m1.Seq || n.User != "shop" {
				t.Errorf("notice %+v, want unassigned for %s#%d from shop", n, svcConv, m1.Seq)
			}
			waitFor(t, "assignment asked again", func() bool { return f.app.calls.Load() >= 3 })
			m2, err := f.send(t, "carol", string(svcConv), "", "hello?")
			if err != nil {
				t.Fatal(err)
			}
			if got := f.box.noticesOf("carol"); len(got) < 2 || got[len(got)-1].Seq != m2.Seq {
				t.Errorf("second message while unassigned: notices %+v, want one for seq %d", got, m2.Seq)
			}
			if a := f.agent(t, svcConv); a != "" {
				t.Fatalf("agent %q assigned while the app fails", a)
			}

			tc.break_(f.app, false)
			waitFor(t, "ann assigned once the app answers", func() bool { return f.agent(t, svcConv) == "ann" })
			got, err := f.history(t, "ann", svcConv)
			want := []string{"anyone there?", "hello?", "event:service.agent:[ann]"}
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("ann reads %v, %v; want %v", got, err, want)
			}
			calls := f.app.calls.Load()
			if _, err := f.send(t, "carol", string(svcConv), "", "great"); err != nil {
				t.Fatal(err)
			}
			if f.app.calls.Load() != calls {
				t.Error("the assignment app was asked again once an agent was assigned")
			}
		})
	}
}

// TestServiceStopEndsRetries: Stop ends a retry loop that would otherwise
// run forever, and later sends start none.
func TestServiceStopEndsRetries(t *testing.T) {
	t.Parallel()
	f := newServiceFixture(t, "ann")
	f.app.down.Store(true)
	if _, err := f.send(t, "carol", "", "shop", "hi"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first attempt", func() bool { return f.app.calls.Load() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.svc.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	calls := f.app.calls.Load()
	if _, err := f.send(t, "carol", string(svcConv), "", "hi again"); err != nil {
		t.Fatalf("a send after Stop: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // several retry periods: none may come
	if n := f.app.calls.Load(); n != calls {
		t.Errorf("assignment asked %d more times after Stop", n-calls)
	}
}
