package units_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/app/units"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
	"github.com/parley-im/parley/tools/testkit"
)

// TestMain fails the package's tests when one of them leaves a goroutine
// running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var twoUnits = []units.Unit{{Name: "onprem", AppID: "parley-onprem"}, {Name: "cloud", AppID: "parley-cloud"}}

// pushes is a Deliverer that records what a unit's devices are pushed.
type pushes struct {
	mu   sync.Mutex
	msgs []domain.Message
	orig []string
}

func (p *pushes) Deliver(_ context.Context, _ *domain.Conversation, m *domain.Message, origin string) {
	p.mu.Lock()
	p.msgs = append(p.msgs, *m)
	p.orig = append(p.orig, origin)
	p.mu.Unlock()
}

func (p *pushes) seqs(conv domain.ConversationID) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for _, m := range p.msgs {
		if m.Conv == conv {
			out = append(out, m.Seq)
		}
	}
	return out
}

// downable is an Invoker whose calls to some apps fail, as calls to a unit
// whose sidecar is down do.
type downable struct {
	infrastructure.Invoker
	down sync.Map // app-id → bool
}

func (d *downable) Invoke(ctx context.Context, appID, method string, data []byte) ([]byte, error) {
	if _, ok := d.down.Load(appID); ok {
		return nil, &infrastructure.OpError{Op: "invoke", Key: appID + "/" + method, Kind: infrastructure.ErrUnavailable, Err: errors.New("connection refused")}
	}
	return d.Invoker.Invoke(ctx, appID, method, data)
}

// unit is one in-process unit: its own store and delivery, the shared
// route store and network.
type unit struct {
	name    string
	units   *units.Units
	send    *chat.SendMessageHandler
	history *chat.HistoryHandler
	read    *chat.MarkReadHandler
	list    *chat.ListConversationsHandler
	groups  *chat.GroupsHandler
	change  *chat.ChangeMessageHandler
	pushed  *pushes
	inv     *downable
}

// newUnits starts onprem and cloud over one route store and network.
func newUnits(t *testing.T, routes infrastructure.StateStore) (onprem, cloud *unit) {
	t.Helper()
	net := &memory.Network{}
	mk := func(u units.Unit) *unit {
		live := settings.NewLive(settings.Defaults())
		if errs := live.Update(map[string]string{"parley.send_rate_per_sec": "100000"}); len(errs) > 0 {
			t.Fatal(errs)
		}
		state := memory.NewStateStore()
		st := store.New(state)
		t.Cleanup(st.Close)
		inv := &downable{Invoker: memory.NewInvoker(net, u.AppID)}
		us, err := units.New(units.Config{Self: u.Name, Units: twoUnits, Routes: routes, Invoker: inv, Lease: 50 * time.Millisecond, Pending: state})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { us.Stop(context.Background()) })
		p := &pushes{}
		svc := chat.NewServiceHandler(st, live, p, nil, inv, chat.ServiceConfig{IsShop: func(u domain.UserID) bool { return u == "shop" }}, zap.NewNop(), time.Now)
		t.Cleanup(func() { _ = svc.Stop(context.Background()) })
		x := &unit{
			name: u.Name, units: us, pushed: p, inv: inv,
			send:    chat.NewSendMessageHandler(st, live, p, time.Now).WithService(svc).WithHomes(us),
			history: chat.NewHistoryHandler(st).WithHomes(us),
			read:    chat.NewMarkReadHandler(st).WithHomes(us),
			list:    chat.NewListConversationsHandler(st).WithHomes(us),
			groups:  chat.NewGroupsHandler(st, live, p, nil, time.Now).WithHomes(us),
			change:  chat.NewChangeMessageHandler(st, live, p, time.Now).WithHomes(us),
		}
		if err := us.Serve(inv, units.Local{Send: x.send, History: x.history, MarkRead: x.read, List: x.list, Deliver: p,
			Groups: x.groups, Change: x.change,
			Store: st, IdempotencyTTL: func() time.Duration { return live.Load().IdempotencyTTL }}); err != nil {
			t.Fatal(err)
		}
		return x
	}
	return mk(twoUnits[0]), mk(twoUnits[1])
}

func waitSeqs(t *testing.T, p *pushes, conv domain.ConversationID, want []uint64) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, func() bool { return fmt.Sprint(p.seqs(conv)) == fmt.Sprint(want) },
		"pushed seqs of %s: want %v", conv, want)
}

// TestChatAcrossUnits: a direct conversation is homed in the unit its
// first message went through; the peer's messages, sent through the other
// unit, are stored there too, in one gap-free seq order, and each unit's
// devices are pushed every message. History, read cursors and the listing
// read the same from both units.
func TestChatAcrossUnits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	const conv = domain.ConversationID("d:alice~bob")

	a1, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a1", Body: "hi bob", Origin: "alice-conn"})
	if err != nil {
		t.Fatal(err)
	}
	b1, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b1", Body: "hi alice", Origin: "bob-conn"})
	if err != nil {
		t.Fatal(err)
	}
	if a1.Message.Seq != 1 || b1.Message.Seq != 2 {
		t.Fatalf("seqs %d, %d: want 1, 2 from the one home", a1.Message.Seq, b1.Message.Seq)
	}
	if r, ok, _ := onprem.units.Table().Lookup(ctx, conv); !ok || r.Unit != "onprem" {
		t.Fatalf("route %+v, %v: want onprem, where the first message went", r, ok)
	}
	// A retry of bob's send through either unit finds his message.
	again, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", Conv: string(conv), ClientMsgID: "b1", Body: "hi alice"})
	if err != nil || !again.Duplicate || again.Message.ID != b1.Message.ID {
		t.Fatalf("retry through cloud: %+v, %v: want the same message, duplicate", again, err)
	}
	waitSeqs(t, onprem.pushed, conv, []uint64{1, 2})
	waitSeqs(t, cloud.pushed, conv, []uint64{1, 2})
	cloud.pushed.mu.Lock()
	if cloud.pushed.orig[1] != "bob-conn" {
		t.Errorf("cloud was handed bob's message with origin %q: the sending connection would be pushed its own message", cloud.pushed.orig[1])
	}
	cloud.pushed.mu.Unlock()

	for _, u := range []*unit{onprem, cloud} {
		page, err := u.history.Handle(ctx, chat.History{Reader: "bob", Conv: string(conv)})
		if err != nil || len(page.Messages) != 2 || page.Messages[1].ID != b1.Message.ID {
			t.Fatalf("history through %s: %+v, %v", u.name, page, err)
		}
	}
	if seq, err := cloud.read.Handle(ctx, chat.MarkRead{Reader: "bob", Conv: string(conv), Seq: 9}); err != nil || seq != 2 {
		t.Fatalf("read through cloud: %d, %v: want the cursor at the head, 2", seq, err)
	}
	for _, u := range []*unit{onprem, cloud} {
		views, err := u.list.Handle(ctx, "bob")
		if err != nil || len(views) != 1 || views[0].ReadSeq != 2 || views[0].LastSeq != 2 {
			t.Fatalf("bob's listing through %s: %+v, %v: want the conversation, read to 2", u.name, views, err)
		}
	}
	// Someone else's conversation is refused the same way everywhere.
	if _, err := cloud.history.Handle(ctx, chat.History{Reader: "carol", Conv: string(conv)}); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("carol reads through cloud: %v, want not a member", err)
	}
}

// TestForwardingErrors: the home unit's refusals reach the caller as the
// errors the edge sorts into codes, and a home that cannot be reached is
// ErrUnitUnavailable, retryable, with nothing stored.
func TestForwardingErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a1", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cmd   chat.SendMessage
		check func(error) bool
	}{
		{"body_too_large", chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b1", Body: strings.Repeat("x", 20000)},
			func(err error) bool {
				var tl *domain.BodyTooLargeError
				return errors.As(err, &tl) && tl.Limit == settings.Defaults().MaxBodyBytes
			}},
		{"empty_body", chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b2"},
			func(err error) bool { return errors.Is(err, domain.ErrEmptyBody) }},
		{"reused_cmid", chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a1", Body: "other"},
			func(err error) bool { return errors.Is(err, store.ErrClientMsgIDReused) }},
		{"bad_reply", chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b3", Body: "re", ReplyTo: 99},
			func(err error) bool { return errors.Is(err, domain.ErrInvalidReply) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cloud.send.Handle(ctx, tc.cmd)
			if !tc.check(err) {
				t.Fatalf("got %v (%T)", err, err)
			}
			if errors.Is(err, units.ErrUnitUnavailable) {
				t.Fatalf("a refusal reads as unavailable: %v", err)
			}
		})
	}

	onprem.inv.down.Store("parley-onprem", true)
	cloud.inv.down.Store("parley-onprem", true)
	_, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b9", Body: "while down"})
	if !errors.Is(err, units.ErrUnitUnavailable) || !errors.Is(err, infrastructure.ErrUnavailable) {
		t.Fatalf("send while the home is down: %v, want ErrUnitUnavailable", err)
	}
	if _, err := cloud.history.Handle(ctx, chat.History{Reader: "bob", Conv: "d:alice~bob"}); !errors.Is(err, units.ErrUnitUnavailable) {
		t.Fatalf("history while the home is down: %v, want ErrUnitUnavailable", err)
	}
	// A conversation homed in cloud is not held up by onprem.
	if _, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "carol", ClientMsgID: "b10", Body: "hi"}); err != nil {
		t.Fatalf("a conversation homed in the live unit: %v", err)
	}
	cloud.inv.down.Delete("parley-onprem")
	res, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b9", Body: "while down"})
	if err != nil || res.Duplicate || res.Message.Seq != 2 {
		t.Fatalf("retry once the home is back: %+v, %v: want it stored once, seq 2", res, err)
	}
}

// TestBindRaceOneHome: two units binding the same new conversation at the
// same moment agree on one home, every time.
func TestBindRaceOneHome(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	routes := memory.NewStateStore()
	a, b := units.NewTable(routes, 0, "onprem", 0), units.NewTable(routes, 0, "cloud", 0)
	for i := range 200 {
		conv := domain.ConversationID(fmt.Sprintf("d:u%d~v%d", i, i))
		var ra, rb units.Route
		var ea, eb error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); ra, ea = a.Bind(ctx, conv, "onprem") }()
		go func() { defer wg.Done(); rb, eb = b.Bind(ctx, conv, "cloud") }()
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatal(ea, eb)
		}
		if ra != rb || ra.Epoch != 1 {
			t.Fatalf("%s: onprem says %+v, cloud says %+v", conv, ra, rb)
		}
	}
}

// failing is a StateStore whose reads fail once broken.
type failing struct {
	infrastructure.StateStore
	broken atomic.Bool
	gets   atomic.Int64
}

func (f *failing) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	f.gets.Add(1)
	if f.broken.Load() {
		return infrastructure.Item{}, &infrastructure.OpError{Op: "get", Key: key, Kind: infrastructure.ErrUnavailable, Err: errors.New("down")}
	}
	return f.StateStore.Get(ctx, key)
}

// TestRouteCache: a bound route is read once; the cache answers while the
// route store is down, and a conversation it does not hold is refused as
// unavailable rather than given a second home.
func TestRouteCache(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	routes := &failing{StateStore: memory.NewStateStore()}
	onprem, cloud := newUnits(t, routes)
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a1", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b1", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	before := routes.gets.Load()
	for i := range 20 {
		if _, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: fmt.Sprint("c", i), Body: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := routes.gets.Load() - before; n != 0 {
		t.Fatalf("20 sends read the route store %d times: want the cache to answer", n)
	}
	routes.broken.Store(true)
	if _, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "d1", Body: "store down"}); err != nil {
		t.Fatalf("cached route while the route store is down: %v", err)
	}
	_, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "dave", ClientMsgID: "d2", Body: "new"})
	if !errors.Is(err, units.ErrUnitUnavailable) {
		t.Fatalf("new conversation while the route store is down: %v, want ErrUnitUnavailable", err)
	}
}

// TestBurstBindsNewConversationsOnly: with bind_to naming cloud, new
// conversations started through onprem are homed in cloud; conversations
// bound before keep their home.
func TestBurstBindsNewConversationsOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a1", Body: "before"}); err != nil {
		t.Fatal(err)
	}
	onprem.units.SetBindTo("cloud")
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "carol", ClientMsgID: "a2", Body: "after"}); err != nil {
		t.Fatal(err)
	}
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a3", Body: "old one"}); err != nil {
		t.Fatal(err)
	}
	for conv, want := range map[domain.ConversationID]string{"d:alice~bob": "onprem", "d:alice~carol": "cloud"} {
		if r, ok, _ := cloud.units.Table().Lookup(ctx, conv); !ok || r.Unit != want {
			t.Errorf("%s is homed in %+v, want %s", conv, r, want)
		}
	}
	// The message went where the conversation lives.
	page, err := cloud.history.Handle(ctx, chat.History{Reader: "carol", Conv: "d:alice~carol"})
	if err != nil || len(page.Messages) != 1 {
		t.Fatalf("carol's history: %+v, %v", page, err)
	}
	onprem.units.SetBindTo("mars")
	if got := onprem.units.BindTo(); got != "onprem" {
		t.Fatalf("bind_to naming no unit: binds to %q, want onprem", got)
	}
}

// TestMoveBusyConversation: a conversation moves from onprem to cloud
// while both members send through both units. Every ACKed message is in
// the new home's history once, at the seq its ACK gave, the seqs go on
// without a gap, a retry of a send ACKed before the move finds its message
// in the new home, and the old home sends what it gets on.
func TestMoveBusyConversation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	const conv = domain.ConversationID("d:alice~bob")
	first, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a-first", Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onprem.read.Handle(ctx, chat.MarkRead{Reader: "bob", Conv: string(conv), Seq: 1}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[uint64]string{first.Message.Seq: first.Message.ID}
	refused := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range []struct {
		u            *unit
		sender, peer domain.UserID
	}{{onprem, "alice", "bob"}, {cloud, "bob", "alice"}, {cloud, "alice", "bob"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cmid := fmt.Sprintf("%s-%s-%d", s.u.name, s.sender, i)
				for {
					res, err := s.u.send.Handle(ctx, chat.SendMessage{Sender: s.sender, To: string(s.peer), ClientMsgID: cmid, Body: "busy"})
					if errors.Is(err, units.ErrUnitUnavailable) {
						// Retryable: the same cmid again.
						mu.Lock()
						refused++
						mu.Unlock()
						time.Sleep(5 * time.Millisecond)
						continue
					}
					if err != nil {
						t.Errorf("%s sends through %s: %v", s.sender, s.u.name, err)
						return
					}
					mu.Lock()
					if prev, ok := acked[res.Message.Seq]; ok && prev != res.Message.ID {
						t.Errorf("seq %d ACKed as %s and as %s", res.Message.Seq, prev, res.Message.ID)
					}
					acked[res.Message.Seq] = res.Message.ID
					mu.Unlock()
					break
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	r, err := cloud.units.Move(ctx, conv, "cloud") // asked of the unit it moves to: sent on to the home
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	if r.Unit != "cloud" || r.Epoch != 2 || r.Moving != "" {
		t.Fatalf("route after the move: %+v, want cloud at epoch 2", r)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	// The new home holds every ACKed message once, with no gap.
	var got []domain.Message
	for after := uint64(0); ; {
		page, err := cloud.history.Handle(ctx, chat.History{Reader: "alice", Conv: string(conv), After: after})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page.Messages...)
		if !page.More {
			break
		}
		after = got[len(got)-1].Seq
	}
	if len(got) != len(acked) {
		t.Fatalf("the new home holds %d messages, %d were ACKed (%d refusals during the move)", len(got), len(acked), refused)
	}
	for i, m := range got {
		if m.Seq != uint64(i+1) || acked[m.Seq] != m.ID {
			t.Fatalf("position %d: seq %d id %s, ACKed %s", i, m.Seq, m.ID, acked[m.Seq])
		}
	}
	t.Logf("%d messages, %d refused while the conversation moved", len(got), refused)
	// A retry of the first send, through either unit, finds it.
	for _, u := range []*unit{onprem, cloud} {
		res, err := u.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a-first", Body: "hi"})
		if err != nil || !res.Duplicate || res.Message.Seq != 1 {
			t.Fatalf("retry of the first send through %s: %+v, %v", u.name, res, err)
		}
	}
	// The read cursor moved with it, and a send through the old home goes
	// to the new one, at the next seq.
	res, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "after", Body: "after"})
	if err != nil || res.Message.Seq != uint64(len(got)+1) {
		t.Fatalf("send through the old home after the move: %+v, %v", res, err)
	}
	views, err := cloud.list.Handle(ctx, "bob")
	if err != nil || len(views) != 1 || views[0].ReadSeq < 1 || views[0].LastSeq != res.Message.Seq {
		t.Fatalf("bob's listing after the move: %+v, %v", views, err)
	}
	// Moving it where it is does nothing; a group does not move.
	if r, err := onprem.units.Move(ctx, conv, "cloud"); err != nil || r.Epoch != 2 {
		t.Fatalf("move to its home: %+v, %v", r, err)
	}
	if _, err := onprem.units.Move(ctx, "g:abcdefghijklmnopqrstuvwxyz", "cloud"); !errors.Is(err, units.ErrNotMovable) {
		t.Fatalf("move of a group: %v", err)
	}
}

// TestStaleRouteAfterMove: a unit whose cached route is stale is told so
// by the old home, drops the route and reaches the new home.
func TestStaleRouteAfterMove(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	const conv = domain.ConversationID("d:alice~bob")
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a1", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b1", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	// cloud caches onprem; onprem moves it back and forth, cloud last.
	for _, to := range []string{"cloud", "onprem", "cloud"} {
		if _, err := onprem.units.Move(ctx, conv, to); err != nil {
			t.Fatalf("move to %s: %v", to, err)
		}
	}
	onprem.units.Table().Forget(conv)
	res, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b2", Body: "after the moves"})
	if err != nil || res.Message.Seq != 3 {
		t.Fatalf("send after three moves: %+v, %v", res, err)
	}
	if r, _, _ := cloud.units.Table().Lookup(ctx, conv); r.Unit != "cloud" || r.Epoch != 4 {
		t.Fatalf("cloud's route: %+v, want cloud at epoch 4", r)
	}
}

func TestParseUnits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     int
		ok       bool
	}{
		{"two", "onprem=parley-onprem, cloud=parley-cloud", 2, true},
		{"empty", "", 0, false},
		{"no_app_id", "onprem", 0, false},
		{"twice", "a=x,a=y", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := units.ParseUnits(tc.in)
			if (err == nil) != tc.ok || len(got) != tc.want {
				t.Fatalf("ParseUnits(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

// TestRouteHintCorrected: a send that carries a wrong or stale route, or
// none, is stored once and its result carries the current route; one that
// carries the current route gets none back.
func TestRouteHintCorrected(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	const conv = domain.ConversationID("d:alice~bob")
	send := func(u *unit, cmid string, hint chat.Route) chat.SendResult {
		t.Helper()
		res, err := u.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: cmid, Body: "hi", Route: hint})
		if err != nil {
			t.Fatalf("send %s: %v", cmid, err)
		}
		return res
	}
	if res := send(onprem, "b1", chat.Route{}); res.Route != (chat.Route{Unit: "onprem", Epoch: 1}) {
		t.Fatalf("first send, no route: the reply carries %+v, want onprem@1", res.Route)
	}
	for _, tc := range []struct {
		name string
		via  *unit
		hint chat.Route
		want chat.Route
	}{
		{"wrong_unit", cloud, chat.Route{Unit: "cloud", Epoch: 1}, chat.Route{Unit: "onprem", Epoch: 1}},
		{"current", cloud, chat.Route{Unit: "onprem", Epoch: 1}, chat.Route{}},
		{"current_at_home", onprem, chat.Route{Unit: "onprem", Epoch: 1}, chat.Route{}},
	} {
		if res := send(tc.via, tc.name, tc.hint); res.Route != tc.want || res.Duplicate {
			t.Fatalf("%s: the reply carries %+v (duplicate %v), want %+v", tc.name, res.Route, res.Duplicate, tc.want)
		}
	}
	if _, err := onprem.units.Move(ctx, conv, "cloud"); err != nil {
		t.Fatal(err)
	}
	res := send(onprem, "stale", chat.Route{Unit: "onprem", Epoch: 1})
	if res.Route != (chat.Route{Unit: "cloud", Epoch: 2}) || res.Message.Seq != 5 {
		t.Fatalf("stale route after the move: %+v at seq %d, want cloud@2 at seq 5", res.Route, res.Message.Seq)
	}
	page, err := cloud.history.Handle(ctx, chat.History{Reader: "bob", Conv: string(conv)})
	if err != nil || len(page.Messages) != 5 {
		t.Fatalf("history: %d messages, %v; want each send once", len(page.Messages), err)
	}
}

// TestLocalPending: with local mode on, sends to a conversation whose home
// unit is down are kept and acknowledged as pending, a retry is not kept
// twice, and once the unit is back they are stored there once each, in the
// order they were sent, with the seqs that follow, and pushed to the
// devices of both units. Without local mode, or over a caller that cannot
// say pending, the send is refused as before.
func TestLocalPending(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	const conv = domain.ConversationID("d:alice~bob")
	if _, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "b1", Body: "homed on cloud"}); err != nil {
		t.Fatal(err)
	}
	onprem.inv.down.Store("parley-cloud", true)
	send := func(cmid string, pending bool) (chat.SendResult, error) {
		return onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: cmid, Body: "while down " + cmid, AcceptPending: pending})
	}
	if _, err := send("off", true); !errors.Is(err, units.ErrUnitUnavailable) {
		t.Fatalf("local mode off: %v, want unit_unavailable", err)
	}
	onprem.units.SetLocalPending(true)
	if _, err := send("http", false); !errors.Is(err, units.ErrUnitUnavailable) {
		t.Fatalf("a caller that cannot say pending: %v, want unit_unavailable", err)
	}
	var cmids []string
	for i := range 5 {
		cmid := fmt.Sprint("a", i)
		res, err := send(cmid, true)
		if err != nil || !res.Pending || res.Message.Seq != 0 || res.Message.ID != domain.MessageID("alice", cmid) {
			t.Fatalf("send %s while cloud is down: %+v, %v; want pending with no seq", cmid, res, err)
		}
		cmids = append(cmids, cmid)
	}
	if res, err := send("a1", true); err != nil || !res.Pending {
		t.Fatalf("retry of a kept send: %+v, %v", res, err)
	}
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a1", Body: "another body", AcceptPending: true}); !errors.Is(err, store.ErrClientMsgIDReused) {
		t.Fatalf("a kept cmid reused for another body: %v", err)
	}
	onprem.inv.down.Delete("parley-cloud")
	want := []uint64{1, 2, 3, 4, 5, 6}
	waitSeqs(t, cloud.pushed, conv, want)
	waitSeqs(t, onprem.pushed, conv, want)
	page, err := cloud.history.Handle(ctx, chat.History{Reader: "bob", Conv: string(conv)})
	if err != nil || len(page.Messages) != 6 {
		t.Fatalf("cloud's history: %d messages, %v; want 6", len(page.Messages), err)
	}
	for i, cmid := range cmids {
		if m := page.Messages[i+1]; m.ClientMsgID != cmid || m.Seq != uint64(i+2) {
			t.Fatalf("seq %d holds %s, want %s: out of order", m.Seq, m.ClientMsgID, cmid)
		}
	}
	// Back to normal: the next send goes straight to the home.
	res, err := send("after", true)
	if err != nil || res.Pending || res.Message.Seq != 7 {
		t.Fatalf("send once cloud is back: %+v, %v", res, err)
	}
}

// TestGroupHomedWhereCreated: a group created on onprem is homed there in
// the route table. Members on cloud send, read history, move their read
// cursor, change the group and recall through cloud: each is done by the
// home, once, and every message and event reaches the devices of both
// units. An edit in a direct conversation homed in the other unit goes to
// its home too.
func TestGroupHomedWhereCreated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	created, err := onprem.groups.Create(ctx, chat.CreateGroup{Actor: "alice", Spec: domain.GroupSpec{Name: "team", Members: []domain.UserID{"bob", "carol"}}})
	if err != nil {
		t.Fatal(err)
	}
	g := created.Group.ID
	if r, ok, _ := cloud.units.Table().Lookup(ctx, g); !ok || r.Unit != "onprem" {
		t.Fatalf("the group's route: %+v, %v; want onprem", r, ok)
	}
	for i, u := range []*unit{onprem, cloud, cloud} {
		sender := []domain.UserID{"alice", "bob", "carol"}[i]
		res, err := u.send.Handle(ctx, chat.SendMessage{Sender: sender, Conv: string(g), ClientMsgID: "m", Body: "hi from " + string(sender)})
		if err != nil || res.Message.Seq != uint64(i+2) {
			t.Fatalf("%s sends to the group through %s: %+v, %v; want seq %d", sender, u.name, res.Message, err, i+2)
		}
	}
	// A retry through the other unit finds the message.
	if res, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "bob", Conv: string(g), ClientMsgID: "m", Body: "hi from bob"}); err != nil || !res.Duplicate || res.Message.Seq != 3 {
		t.Fatalf("bob's retry through onprem: %+v, %v", res, err)
	}
	if _, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "mallory", Conv: string(g), ClientMsgID: "x", Body: "let me in"}); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("a stranger sends through cloud: %v, want not_member", err)
	}
	page, err := cloud.history.Handle(ctx, chat.History{Reader: "carol", Conv: string(g)})
	if err != nil || len(page.Messages) != 4 {
		t.Fatalf("carol's history through cloud: %d messages, %v", len(page.Messages), err)
	}
	if seq, err := cloud.read.Handle(ctx, chat.MarkRead{Reader: "carol", Conv: string(g), Seq: 4}); err != nil || seq != 4 {
		t.Fatalf("carol marks read through cloud: %d, %v", seq, err)
	}
	renamed, err := cloud.groups.Change(ctx, chat.GroupChange{Actor: "alice", Conv: string(g), Op: chat.OpRename, Name: "the team"})
	if err != nil || renamed.Group.Name != "the team" || renamed.Event == nil || renamed.Event.Seq != 5 {
		t.Fatalf("alice renames through cloud: %+v, %v", renamed, err)
	}
	if _, err := cloud.groups.Change(ctx, chat.GroupChange{Actor: "bob", Conv: string(g), Op: chat.OpRename, Name: "mine"}); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("a member renames through cloud: %v, want forbidden", err)
	}
	recall, err := cloud.change.Handle(ctx, chat.ChangeMessage{Actor: "bob", Conv: string(g), Seq: 3, Recall: true})
	if err != nil || recall.Seq != 6 {
		t.Fatalf("bob recalls through cloud: %+v, %v", recall, err)
	}
	page, err = onprem.history.Handle(ctx, chat.History{Reader: "alice", Conv: string(g)})
	if err != nil || len(page.Messages) != 6 || !page.Messages[2].Recalled || page.Messages[2].Body != "" {
		t.Fatalf("alice's history on the home: %+v, %v", page.Messages, err)
	}
	want := []uint64{1, 2, 3, 4, 5, 6}
	waitSeqs(t, onprem.pushed, g, want)
	waitSeqs(t, cloud.pushed, g, want)

	// A direct conversation homed on cloud, edited through onprem.
	sent, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "bob", To: "alice", ClientMsgID: "d1", Body: "typo"})
	if err != nil {
		t.Fatal(err)
	}
	edit, err := onprem.change.Handle(ctx, chat.ChangeMessage{Actor: "bob", Conv: string(sent.Message.Conv), Seq: 1, ContentType: "text", Body: "fixed"})
	if err != nil || edit.Seq != 2 {
		t.Fatalf("bob edits through onprem: %+v, %v", edit, err)
	}
	page, err = cloud.history.Handle(ctx, chat.History{Reader: "alice", Conv: string(sent.Message.Conv)})
	if err != nil || len(page.Messages) != 2 || page.Messages[0].Body != "fixed" || !page.Messages[0].Edited {
		t.Fatalf("history after the edit: %+v, %v", page.Messages, err)
	}
}

// TestServiceConversationHomed: a customer-service conversation is bound
// to a unit by its first message, like a direct one; the shop replying
// through the other unit, and the customer reading through it, reach that
// home.
func TestServiceConversationHomed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	first, err := cloud.send.Handle(ctx, chat.SendMessage{Sender: "cora", To: "shop", ClientMsgID: "c1", Body: "is it in stock?"})
	if err != nil {
		t.Fatal(err)
	}
	conv := first.Message.Conv
	if conv.Kind() != domain.Service {
		t.Fatalf("a send to the shop went to %s, want a service conversation", conv)
	}
	if r, ok, _ := onprem.units.Table().Lookup(ctx, conv); !ok || r.Unit != "cloud" {
		t.Fatalf("%s's route: %+v, %v; want cloud", conv, r, ok)
	}
	reply, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "shop", Conv: string(conv), ClientMsgID: "s1", Body: "yes"})
	if err != nil || reply.Message.Seq != 2 {
		t.Fatalf("the shop replies through onprem: %+v, %v; want seq 2", reply.Message, err)
	}
	again, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "cora", To: "shop", ClientMsgID: "c2", Body: "great"})
	if err != nil || again.Message.Conv != conv || again.Message.Seq != 3 {
		t.Fatalf("cora writes to the shop through onprem: %+v, %v; want %s seq 3", again.Message, err, conv)
	}
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "mallory", Conv: string(conv), ClientMsgID: "m1", Body: "hi"}); err == nil {
		t.Fatal("a stranger sent in the service conversation through onprem")
	}
	page, err := onprem.history.Handle(ctx, chat.History{Reader: "cora", Conv: string(conv)})
	if err != nil || len(page.Messages) != 3 {
		t.Fatalf("cora's history through onprem: %d messages, %v", len(page.Messages), err)
	}
	local, err := cloud.history.Handle(ctx, chat.History{Reader: "shop", Conv: string(conv)})
	if err != nil || len(local.Messages) != 3 {
		t.Fatalf("the home's history: %d messages, %v", len(local.Messages), err)
	}
}

// TestHandOffRetried: a hand-off to a unit that fails for a moment is
// tried again, so that unit's devices get the message without a sync.
func TestHandOffRetried(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	onprem, cloud := newUnits(t, memory.NewStateStore())
	const conv = domain.ConversationID("d:alice~bob")
	onprem.inv.down.Store("parley-cloud", true)
	if _, err := onprem.send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "a1", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := cloud.pushed.seqs(conv); len(got) != 0 {
		t.Fatalf("cloud's devices got %v while the hand-off failed", got)
	}
	onprem.inv.down.Delete("parley-cloud")
	waitSeqs(t, cloud.pushed, conv, []uint64{1})
}
