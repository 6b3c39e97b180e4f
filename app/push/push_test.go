package push_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/parley-im/parley/app/presence"
	"github.com/parley-im/parley/app/push"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
	"github.com/parley-im/parley/tools/testkit"
)

const (
	alice domain.UserID = "alice"
	bob   domain.UserID = "bob"
	carol domain.UserID = "carol"
)

// fixture is one node's Pusher over the memory adapter: a real presence
// registry and store on an in-process state store, a push sink on an
// in-process output binding, and a clock the test moves.
type fixture struct {
	pusher *push.Pusher
	state  *memory.StateStore
	reg    *presence.Registry
	store  *store.Store
	live   *settings.Live
	logs   *observer.ObservedLogs

	pushes chan push.Payload
	// gate, when set, holds every push until the test closes it.
	gate     chan struct{}
	failNext atomic.Bool

	mu        sync.Mutex
	here      map[domain.UserID]bool // devices connected to this node
	delivered []string               // what the next Deliverer got

	now    atomic.Int64
	fences atomic.Int64
}

type options struct {
	workers, queue, maxMembers int
	gate                       bool
}

func newFixture(t *testing.T, o options) *fixture {
	t.Helper()
	f := &fixture{state: memory.NewStateStore(), live: settings.NewLive(settings.Defaults()),
		pushes: make(chan push.Payload, 64), here: map[domain.UserID]bool{}}
	f.now.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	if o.gate {
		f.gate = make(chan struct{})
	}
	core, logs := observer.New(zapcore.InfoLevel)
	f.logs = logs
	f.store = store.New(f.state)
	f.reg = startRegistry(t, f.state, "node-a")

	bindings := memory.NewOutputBindings()
	bindings.Handle("push", func(ctx context.Context, c memory.BindingCall) error {
		if f.gate != nil {
			select {
			case <-f.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if f.failNext.CompareAndSwap(true, false) {
			return errors.New("gateway answered 503")
		}
		if c.Operation != "post" || c.Metadata["Content-Type"] != "application/json" {
			t.Errorf("push invoked with operation %q, metadata %v", c.Operation, c.Metadata)
		}
		var p push.Payload
		if err := json.Unmarshal(c.Data, &p); err != nil {
			t.Errorf("push payload %q: %v", c.Data, err)
		}
		f.pushes <- p
		return nil
	})
	pres := &push.ClusterPresence{Registry: f.reg, Local: func(u domain.UserID) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.here[u]
	}}
	p, err := push.New(push.Config{Binding: "push", Workers: o.workers, QueueSize: o.queue, MaxMembers: o.maxMembers,
		Logger: zap.New(core), Now: func() time.Time { return time.Unix(0, f.now.Load()) }},
		deliverFunc(func(m *domain.Message) {
			f.mu.Lock()
			f.delivered = append(f.delivered, m.ID)
			f.mu.Unlock()
		}), bindings, pres, f.store, f.live)
	if err != nil {
		t.Fatal(err)
	}
	f.pusher = p
	t.Cleanup(func() {
		if f.gate != nil {
			select {
			case <-f.gate:
			default:
				close(f.gate)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return f
}

func startRegistry(t *testing.T, state *memory.StateStore, node string) *presence.Registry {
	t.Helper()
	reg := presence.New(presence.Config{Node: node}, state, zap.NewNop(), func() (int, []domain.UserID) { return 0, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Stop(context.Background()) })
	return reg
}

// deliverFunc is the Deliverer the Pusher decorates.
type deliverFunc func(m *domain.Message)

func (d deliverFunc) Deliver(_ context.Context, _ *domain.Conversation, m *domain.Message, _ string) {
	d(m)
}

func direct(a, b domain.UserID) *domain.Conversation {
	return &domain.Conversation{ID: domain.DirectConversationID(a, b), Kind: domain.Direct, Members: []domain.UserID{a, b}}
}

func msg(conv *domain.Conversation, from domain.UserID, seq uint64, body string) *domain.Message {
	return &domain.Message{ID: fmt.Sprintf("%s-%d", conv.ID, seq), Conv: conv.ID, Seq: seq, Sender: from, ContentType: domain.Text, Body: body}
}

func (f *fixture) send(conv *domain.Conversation, m *domain.Message) {
	f.pusher.Deliver(context.Background(), conv, m, "")
}

func (f *fixture) advance(d time.Duration) { f.now.Add(int64(d)) }

func (f *fixture) setOnline(u domain.UserID, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.here[u] = on
}

// next returns the next push, failing after 10 s.
func (f *fixture) next(t *testing.T) push.Payload {
	t.Helper()
	select {
	case p := <-f.pushes:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no push within 10s")
		return push.Payload{}
	}
}

// fence sends a message to an offline user in a conversation of its own
// and waits for its push: with one worker, every message queued before it
// has then been handled, so the pushes received so far are all there will
// be.
func (f *fixture) fence(t *testing.T) []push.Payload {
	t.Helper()
	to := domain.UserID(fmt.Sprintf("fence-%d", f.fences.Add(1)))
	c := direct("fence-sender", to)
	f.send(c, msg(c, "fence-sender", 1, "fence"))
	var got []push.Payload
	for {
		p := f.next(t)
		if p.User == to {
			return got
		}
		got = append(got, p)
	}
}

func TestOfflineRecipientGetsOnePush(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{workers: 1})
	c := direct(alice, bob)
	// bob read up to seq 4 on another device earlier: seqs 5 to 7 are unread.
	if _, err := f.store.AdvanceReadCursor(context.Background(), c.ID, bob, 4); err != nil {
		t.Fatal(err)
	}
	m := msg(c, alice, 7, "the report is late")
	f.send(c, m)
	got := f.next(t)
	want := push.Payload{User: bob, Conv: c.ID, From: alice, Seq: 7, Preview: "", Unread: 3}
	if got != want {
		t.Fatalf("push = %+v, want %+v", got, want)
	}
	if rest := f.fence(t); len(rest) != 0 {
		t.Fatalf("pushes besides bob's: %+v (the sender gets none)", rest)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.delivered) != 2 || f.delivered[0] != m.ID {
		t.Fatalf("delivered %v; want the message delivered live once, before its push", f.delivered)
	}
}

func TestOnlineRecipientGetsNoPush(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		connect func(t *testing.T, f *fixture)
	}{
		{name: "device_on_this_node", connect: func(t *testing.T, f *fixture) { f.setOnline(bob, true) }},
		{name: "device_on_another_node", connect: func(t *testing.T, f *fixture) {
			other := startRegistry(t, f.state, "node-b")
			if err := other.Connect(context.Background(), bob, presence.Entry{Conn: "c1", Device: "phone"}); err != nil {
				t.Fatal(err)
			}
			// As a node that joins announces itself to the others.
			if err := f.reg.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{workers: 1})
			tc.connect(t, f)
			c := direct(alice, bob)
			f.send(c, msg(c, alice, 1, "hi"))
			if got := f.fence(t); len(got) != 0 {
				t.Fatalf("online bob was pushed: %+v", got)
			}
		})
	}
}

func TestBurstMakesOnePush(t *testing.T) {
	t.Parallel()
	// Four workers take the burst's messages at once: one push all the same.
	f := newFixture(t, options{workers: 4})
	c := direct(alice, bob)
	for seq := uint64(1); seq <= 20; seq++ {
		f.send(c, msg(c, alice, seq, "spam"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.pusher.Stop(ctx); err != nil { // drains the queue
		t.Fatal(err)
	}
	if len(f.pushes) != 1 {
		t.Fatalf("%d pushes for a burst of 20, want 1", len(f.pushes))
	}
	if p := <-f.pushes; p.User != bob || p.Seq < 1 || p.Seq > 20 {
		t.Fatalf("push = %+v", p)
	}
}

func TestOnePushPerInterval(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{workers: 1})
	c, other := direct(alice, bob), direct(carol, bob)
	f.send(c, msg(c, alice, 1, "first"))
	if got := f.fence(t); len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("pushes %+v; want seq 1", got)
	}
	f.advance(29 * time.Second)
	f.send(c, msg(c, alice, 2, "within the interval"))
	f.send(other, msg(other, carol, 1, "another conversation"))
	if got := f.fence(t); len(got) != 1 || got[0].Conv != other.ID {
		t.Fatalf("pushes %+v; want only %s's (the interval is per conversation)", got, other.ID)
	}

	f.advance(2 * time.Second) // 31 s after the first push: a new interval
	f.send(c, msg(c, alice, 3, "next interval"))
	if got := f.fence(t); len(got) != 1 || got[0].Seq != 3 {
		t.Fatalf("pushes %+v; want seq 3", got)
	}

	// The interval is a live setting.
	if errs := f.live.Update(map[string]string{"parley.push_interval_s": "0"}); len(errs) != 0 {
		t.Fatal(errs)
	}
	f.send(c, msg(c, alice, 4, "a"))
	f.send(c, msg(c, alice, 5, "b"))
	if got := f.fence(t); len(got) != 2 || got[0].Seq != 4 || got[1].Seq != 5 {
		t.Fatalf("with parley.push_interval_s=0: pushes %+v; want seqs 4 and 5", got)
	}
	if errs := f.live.Update(map[string]string{"parley.push_interval_s": "3600"}); len(errs) != 0 {
		t.Fatal(errs)
	}
	f.advance(time.Hour - time.Second)
	f.send(c, msg(c, alice, 6, "c"))
	if got := f.fence(t); len(got) != 0 {
		t.Fatalf("with parley.push_interval_s=3600: pushes %+v; want none", got)
	}
}

func TestFailedPushIsNotCountedAgainstTheInterval(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{workers: 1})
	c := direct(alice, bob)
	f.failNext.Store(true)
	f.send(c, msg(c, alice, 1, "lost"))
	f.send(c, msg(c, alice, 2, "again"))
	if p := f.next(t); p.Seq != 2 {
		t.Fatalf("push = %+v, want seq 2 after seq 1's push failed", p)
	}
	if f.logs.FilterMessageSnippet("binding failed").Len() != 1 {
		t.Fatalf("the failed push was not logged once: %v", f.logs.All())
	}
}

func TestPreviewFollowsTheLiveSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setting string
		ctype   domain.ContentType
		body    string
		want    string
	}{
		{name: "off_by_default", ctype: domain.Text, body: "my password is hunter2", want: ""},
		{name: "first_characters", setting: "5", ctype: domain.Text, body: "hello world", want: "hello"},
		{name: "characters_not_bytes", setting: "3", ctype: domain.Text, body: "日本語です", want: "日本語"},
		{name: "short_text_whole", setting: "100", ctype: domain.Text, body: "ok", want: "ok"},
		{name: "json_shows_nothing", setting: "100", ctype: domain.JSON, body: `{"card":1}`, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, options{})
			if tc.setting != "" {
				if errs := f.live.Update(map[string]string{"parley.push_preview": tc.setting}); len(errs) != 0 {
					t.Fatal(errs)
				}
			}
			c := direct(alice, bob)
			m := msg(c, alice, 1, tc.body)
			m.ContentType = tc.ctype
			f.send(c, m)
			if p := f.next(t); p.Preview != tc.want {
				t.Fatalf("preview = %q, want %q", p.Preview, tc.want)
			}
		})
	}
}

func TestNoPushForSystemOrRecalledMessages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{workers: 1})
	c := direct(alice, bob)
	sys := msg(c, alice, 1, `{"type":"joined"}`)
	sys.ContentType = domain.ContentSystem
	f.send(c, sys)
	gone := msg(c, alice, 2, "")
	gone.Recalled = true
	f.send(c, gone)
	if got := f.fence(t); len(got) != 0 {
		t.Fatalf("pushes: %+v", got)
	}
}

func TestLargeGroupPushesOnlyMentions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{workers: 1, maxMembers: 3})
	g := &domain.Conversation{ID: "g_team", Kind: domain.Group, Members: []domain.UserID{alice, bob, carol, "dave"}}
	m := msg(g, alice, 1, "@carol look")
	m.Mentions = []domain.UserID{carol}
	f.send(g, m)
	got := f.fence(t)
	if len(got) != 1 || got[0].User != carol {
		t.Fatalf("pushes %+v; want carol's only", got)
	}

	small := &domain.Conversation{ID: "g_small", Kind: domain.Group, Members: []domain.UserID{alice, bob, carol}}
	f.send(small, msg(small, alice, 1, "all"))
	users := map[domain.UserID]bool{}
	for _, p := range f.fence(t) {
		users[p.User] = true
	}
	if len(users) != 2 || !users[bob] || !users[carol] {
		t.Fatalf("pushes to %v; want bob and carol", users)
	}
}

func TestFullQueueDropsAndLogs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{workers: 1, queue: 1, gate: true})
	c1, c2, c3 := direct(alice, bob), direct(alice, carol), direct(alice, "dave")
	f.send(c1, msg(c1, alice, 1, "taken by the worker"))
	// Wait until the worker holds it, blocked in the sink.
	testkit.Eventually(t, 10*time.Second, func() bool { return f.pusher.Queued() == 0 }, "the worker never took the first message")
	f.send(c2, msg(c2, alice, 1, "queued"))
	start := time.Now()
	f.send(c3, msg(c3, alice, 1, "dropped"))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Deliver waited %v on a full queue", d)
	}
	if f.pusher.Dropped() != 1 {
		t.Fatalf("Dropped = %d, want 1", f.pusher.Dropped())
	}
	if n := f.logs.FilterMessageSnippet("queue full").Len(); n != 1 {
		t.Fatalf("%d queue-full lines logged, want 1", n)
	}
	f.mu.Lock()
	delivered := len(f.delivered)
	f.mu.Unlock()
	if delivered != 3 {
		t.Fatalf("%d messages delivered live, want 3: a dropped push never costs a delivery", delivered)
	}
	close(f.gate)
	got := map[domain.UserID]bool{f.next(t).User: true, f.next(t).User: true}
	if !got[bob] || !got[carol] {
		t.Fatalf("pushes to %v, want bob and carol", got)
	}
}

func TestStopDrainsTheQueue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{workers: 1, gate: true})
	for i, u := range []domain.UserID{bob, carol, "dave"} {
		c := direct(alice, u)
		f.send(c, msg(c, alice, uint64(i+1), "x"))
	}
	stopped := make(chan error, 1)
	go func() { stopped <- f.pusher.Stop(context.Background()) }()
	// Stop waits for the queue: nothing is pushed while the sink is held.
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned %v before the queue was pushed", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(f.gate)
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if len(f.pushes) != 3 {
		t.Fatalf("%d pushes when Stop returned, want 3", len(f.pushes))
	}
	// After Stop a message is still delivered live, but not pushed.
	c := direct(alice, "erin")
	f.send(c, msg(c, alice, 1, "late"))
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.delivered) != 4 || len(f.pushes) != 3 {
		t.Fatalf("after Stop: %d delivered, %d pushed; want 4 and 3", len(f.delivered), len(f.pushes))
	}
}

func TestStopGivesUpAtItsDeadline(t *testing.T) {
	t.Parallel()
	f := newFixture(t, options{workers: 1, gate: true})
	for i, u := range []domain.UserID{bob, carol} {
		c := direct(alice, u)
		f.send(c, msg(c, alice, uint64(i+1), "x"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := f.pusher.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want the deadline's error", err)
	}
	if len(f.pushes) != 0 {
		t.Fatalf("%d pushes although the sink never answered", len(f.pushes))
	}
}
