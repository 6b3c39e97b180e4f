package presence

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// flaky is a state store that fails every call while down is set, as a
// sidecar that went away would.
type flaky struct {
	infrastructure.StateStore
	down atomic.Bool
}

func (f *flaky) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	if f.down.Load() {
		return infrastructure.Item{}, &infrastructure.OpError{Op: "get", Key: key, Kind: infrastructure.ErrUnavailable}
	}
	return f.StateStore.Get(ctx, key)
}

func newNode(t *testing.T, state infrastructure.StateStore, name string) *Registry {
	t.Helper()
	r := New(Config{Node: name, URL: "http://" + name, LeaseTTL: 2 * time.Second}, state, zap.NewNop(),
		func() (int, []domain.UserID) { return 0, nil })
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	return r
}

func TestRemoteNodesFollowPresenceAndLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := memory.NewStateStore()
	a := newNode(t, state, "a")
	b := newNode(t, state, "b")
	if err := a.Refresh(ctx); err != nil || a.Alone() || !slices.Equal(a.Others(), []string{"b"}) {
		t.Fatalf("a sees others %v (alone %v, %v); want [b]", a.Others(), a.Alone(), err)
	}
	if err := b.Connect(ctx, "bob", Entry{Conn: "c1", Device: "web"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, "bob", Entry{Conn: "c2", Device: "phone"}); err != nil {
		t.Fatal(err)
	}
	nodes, err := a.RemoteNodes(ctx, []domain.UserID{"bob", "nobody"})
	if err != nil || !slices.Equal(nodes, []string{"b"}) {
		t.Fatalf("remote nodes of bob seen from a = %v, %v; want [b] (a's own connection is local)", nodes, err)
	}
	// b leaves the cluster: its lease goes, and once a refreshes (at its
	// next renewal, or at once when told) b's entries stop counting.
	b.Stop(ctx)
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, err = a.RemoteNodes(ctx, []domain.UserID{"bob"})
	if err != nil || len(nodes) != 0 {
		t.Fatalf("remote nodes after b stopped = %v, %v; want none", nodes, err)
	}
	if !a.Alone() {
		t.Fatalf("a is not alone after b stopped: others %v", a.Others())
	}
}

func TestFailedDisconnectIsRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := &flaky{StateStore: memory.NewStateStore()}
	a := newNode(t, state, "a")
	if err := a.Connect(ctx, "carol", Entry{Conn: "c1"}); err != nil {
		t.Fatal(err)
	}
	state.down.Store(true)
	if err := a.Disconnect(ctx, "carol", "c1"); err == nil {
		t.Fatal("disconnect succeeded with the store down")
	}
	state.down.Store(false)
	a.retryDisconnects(ctx)
	it, err := state.Get(ctx, presenceKey("carol"))
	if err != nil || it.Found {
		t.Fatalf("presence of carol after the retry = %s, %v; want removed", it.Value, err)
	}
}
