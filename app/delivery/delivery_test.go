package delivery

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
	"github.com/parley-im/parley/tools/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// device is a Session that records what it is pushed.
type device struct {
	id   string
	user domain.UserID
	mu   sync.Mutex
	got  []uint64
	evs  []Event
}

func (d *device) ID() string          { return d.id }
func (d *device) User() domain.UserID { return d.user }
func (d *device) Push(env *Envelope) {
	d.mu.Lock()
	d.got = append(d.got, env.Msg.Seq)
	d.mu.Unlock()
}
func (d *device) Notify(ev Event) {
	d.mu.Lock()
	d.evs = append(d.evs, ev)
	d.mu.Unlock()
}
func (d *device) seqs() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]uint64(nil), d.got...)
}

var pair = &domain.Conversation{ID: "d:alice~bob", Kind: domain.Direct, Members: []domain.UserID{"alice", "bob"}}

// TestHubDeliverEveryDeviceButTheOrigin: every device of every member gets
// the message, the sender's other devices included, except the connection
// it was sent on; a removed device gets nothing more.
func TestHubDeliverEveryDeviceButTheOrigin(t *testing.T) {
	t.Parallel()
	h := NewHub()
	alicePhone, aliceLaptop := &device{id: "a1", user: "alice"}, &device{id: "a2", user: "alice"}
	bobPhone, carol := &device{id: "b1", user: "bob"}, &device{id: "c1", user: "carol"}
	for _, d := range []*device{alicePhone, aliceLaptop, bobPhone, carol} {
		h.Add(d)
	}
	h.Deliver(context.Background(), pair, &domain.Message{Conv: pair.ID, Seq: 1, Sender: "alice"}, "a1")
	if n := h.Remove(bobPhone); n != 0 {
		t.Fatalf("bob has %d sessions left, want 0", n)
	}
	h.Deliver(context.Background(), pair, &domain.Message{Conv: pair.ID, Seq: 2, Sender: "alice"}, "")
	for _, tc := range []struct {
		d    *device
		want []uint64
	}{{alicePhone, []uint64{2}}, {aliceLaptop, []uint64{1, 2}}, {bobPhone, []uint64{1}}, {carol, nil}} {
		if got := tc.d.seqs(); !equal(got, tc.want) {
			t.Errorf("%s got %v, want %v", tc.d.id, got, tc.want)
		}
	}
	if got := h.OnlineUsers(); len(got) != 2 || got[0] != "alice" || got[1] != "carol" {
		t.Errorf("online users %v, want [alice carol]", got)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// cluster is a Presence that says bob's devices are on node "n2".
type cluster struct{}

func (cluster) RemoteNodes(context.Context, []domain.UserID) ([]string, error) {
	return []string{"n2"}, nil
}
func (cluster) Alone() bool                   { return false }
func (cluster) Others() []string              { return []string{"n2"} }
func (cluster) Refresh(context.Context) error { return nil }

// TestRouterHandsOffToOtherNodesInOrder: a message for a member on
// another node reaches that node's device through its node topic, in the
// order Deliver was called, and Stop hands on what is still queued.
func TestRouterHandsOffToOtherNodesInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ps := memory.NewPubSub()
	log := zap.NewNop()
	hub1, hub2 := NewHub(), NewHub()
	n1 := NewRouter(hub1, cluster{}, ps, "n1", log)
	n2 := NewRouter(hub2, cluster{}, ps, "n2", log)
	if err := n2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	bob := &device{id: "b1", user: "bob"}
	hub2.Add(bob)
	const n = 200
	for seq := uint64(1); seq <= n; seq++ {
		n1.Deliver(ctx, pair, &domain.Message{ID: "m", Conv: pair.ID, Seq: seq, Sender: "alice"}, "")
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n1.Stop(stopCtx) // hands on everything queued before it returns
	testkit.Eventually(t, 10*time.Second, func() bool { return len(bob.seqs()) >= n }, "the hand-off did not arrive")
	n2.Stop(stopCtx)
	got := bob.seqs()
	if len(got) != n {
		t.Fatalf("bob's device got %d messages, want %d", len(got), n)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("message %d had seq %d: out of order", i, seq)
		}
	}
}

// noLookups is a Presence whose per-user lookup fails: only a broadcast
// to every node gets through.
type noLookups struct{ cluster }

func (noLookups) RemoteNodes(context.Context, []domain.UserID) ([]string, error) {
	return nil, context.DeadlineExceeded
}

// TestRouterBroadcastsLargeGroups: a message to a group above
// broadcastAbove members goes to every other node without asking presence
// where each member is; the receiving node pushes to its own members only.
func TestRouterBroadcastsLargeGroups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ps := memory.NewPubSub()
	hub2 := NewHub()
	n1 := NewRouter(NewHub(), noLookups{}, ps, "n1", zap.NewNop())
	n2 := NewRouter(hub2, noLookups{}, ps, "n2", zap.NewNop())
	if err := n2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	members := make([]domain.UserID, broadcastAbove+1)
	for i := range members {
		members[i] = domain.UserID(fmt.Sprintf("u%d", i))
	}
	big := &domain.Conversation{ID: "g:big", Kind: domain.Group, Members: members}
	in, out := &device{id: "d1", user: "u7"}, &device{id: "d2", user: "stranger"}
	hub2.Add(in)
	hub2.Add(out)
	n1.Deliver(ctx, big, &domain.Message{ID: "m", Conv: big.ID, Seq: 1}, "")
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n1.Stop(stopCtx)
	testkit.Eventually(t, 10*time.Second, func() bool { return len(in.seqs()) > 0 }, "the hand-off did not arrive")
	n2.Stop(stopCtx)
	if len(in.seqs()) != 1 || len(out.seqs()) != 0 {
		t.Fatalf("member got %v, stranger got %v", in.seqs(), out.seqs())
	}
}

// lateDevice connected at a given time.
type lateDevice struct {
	*device
	since int64
}

func (d lateDevice) ConnectedMs() int64 { return d.since }

// TestRouterSkipsBacklogOlderThanTheConnection: a message another node
// handed over long before a device connected (a restarted node's topic
// backlog) is not pushed to it: its sync returns it. A fresh one is.
func TestRouterSkipsBacklogOlderThanTheConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ps := memory.NewPubSub()
	hub2 := NewHub()
	n1 := NewRouter(NewHub(), cluster{}, ps, "n1", zap.NewNop())
	n2 := NewRouter(hub2, cluster{}, ps, "n2", zap.NewNop())
	if err := n2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	bob := lateDevice{&device{id: "b1", user: "bob"}, now}
	hub2.Add(bob)
	n1.Deliver(ctx, pair, &domain.Message{ID: "old", Conv: pair.ID, Seq: 1, ServerMs: now - 60_000}, "")
	n1.Deliver(ctx, pair, &domain.Message{ID: "new", Conv: pair.ID, Seq: 2, ServerMs: now}, "")
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n1.Stop(stopCtx)
	testkit.Eventually(t, 10*time.Second, func() bool { return len(bob.seqs()) > 0 }, "the hand-off did not arrive")
	n2.Stop(stopCtx)
	if got := bob.seqs(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("bob's device was pushed %v, want only the fresh message [2]", got)
	}
}

// blockingDevice is a device whose pushes wait until release is closed.
type blockingDevice struct {
	device
	release chan struct{}
}

func (d *blockingDevice) Push(env *Envelope) {
	<-d.release
	d.device.Push(env)
}

// TestLargeGroupFanOutDoesNotHoldTheSender: Deliver to a group above the
// inline size returns while a device's push still waits, and every device
// gets the group's messages in order; Close pushes what is queued, and a
// delivery after it is pushed by the caller.
func TestLargeGroupFanOutDoesNotHoldTheSender(t *testing.T) {
	t.Parallel()
	h := NewHub()
	const n = inlineFanout * 3
	group := &domain.Conversation{ID: "g:big", Kind: domain.Group}
	var devs []*device
	slow := &blockingDevice{device: device{id: "slow", user: "u0"}, release: make(chan struct{})}
	h.Add(slow)
	group.Members = append(group.Members, "u0")
	for i := 1; i < n; i++ {
		d := &device{id: fmt.Sprint("d", i), user: domain.UserID(fmt.Sprint("u", i))}
		devs = append(devs, d)
		h.Add(d)
		group.Members = append(group.Members, d.user)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := uint64(1); seq <= 50; seq++ {
			h.Deliver(context.Background(), group, &domain.Message{Conv: group.ID, Seq: seq, Sender: "u1"}, "")
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Deliver waited for a device's push")
	}
	close(slow.release)
	h.Close()
	h.Deliver(context.Background(), group, &domain.Message{Conv: group.ID, Seq: 51, Sender: "u1"}, "")
	want := make([]uint64, 51)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	for _, d := range append(devs, &slow.device) {
		if got := d.seqs(); !slices.Equal(got, want) {
			t.Fatalf("%s got %v, want 1..51 in order", d.id, got)
		}
	}
}
