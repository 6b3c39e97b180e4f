package abuse_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time source shared by the nodes of a test.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

var (
	alice = abuse.User("alice")
	bob   = abuse.User("bob")
	ip1   = abuse.IP(netip.MustParseAddr("192.0.2.1"))
)

// rules are small, so that tests cross thresholds in a few events.
func rules() abuse.Rules {
	return abuse.Rules{Window: time.Minute, MaxConnectsPerUser: 3, MaxConnectsPerIP: 5, MaxAuthFailures: 2,
		MaxRateLimited: 4, MaxBannedAttempts: 2, FirstBan: time.Minute, MaxBan: 10 * time.Minute, Forget: time.Hour}
}

func newGuard(t *testing.T, store infrastructure.StateStore, clk *clock) *abuse.Guard {
	t.Helper()
	g, err := abuse.New(store, abuse.Config{Rules: rules(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// record sends n events and fails unless exactly the last one suspends.
func recordUntilBanned(t *testing.T, g *abuse.Guard, ev abuse.Event, s abuse.Subject, n int) *abuse.BannedError {
	t.Helper()
	for i := 1; i < n; i++ {
		if err := g.Record(t.Context(), ev, s); err != nil {
			t.Fatalf("event %d of %d: %v", i, n, err)
		}
	}
	err := g.Record(t.Context(), ev, s)
	var be *abuse.BannedError
	if !errors.As(err, &be) || !errors.Is(err, abuse.ErrBanned) {
		t.Fatalf("event %d = %v; want a *BannedError", n, err)
	}
	return be
}

func wantBanned(t *testing.T, g *abuse.Guard, s abuse.Subject, until time.Time) {
	t.Helper()
	err := g.Check(t.Context(), s)
	var be *abuse.BannedError
	if !errors.As(err, &be) {
		t.Fatalf("Check(%s) = %v; want banned until %v", s, err, until)
	}
	if !be.Until.Equal(until) || be.Subject != s {
		t.Fatalf("Check(%s) = %v; want banned until %v", s, be, until)
	}
}

func wantFree(t *testing.T, g *abuse.Guard, s abuse.Subject) {
	t.Helper()
	if err := g.Check(t.Context(), s); err != nil {
		t.Fatalf("Check(%s) = %v; want nil", s, err)
	}
}

func TestThresholds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		ev      abuse.Event
		subject abuse.Subject
		events  int // the event that suspends: threshold + 1
		reason  string
	}{
		{"connects_per_user", abuse.Connect, alice, 4, "too many connections"},
		{"connects_per_ip", abuse.Connect, ip1, 6, "too many connections"},
		{"auth_failures", abuse.AuthFailure, ip1, 3, "too many failed logins"},
		{"rate_limited", abuse.RateLimited, alice, 5, "too many requests over the rate limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			g := newGuard(t, memory.NewStateStore(), clk)
			wantFree(t, g, tc.subject)
			be := recordUntilBanned(t, g, tc.ev, tc.subject, tc.events)
			if be.Reason != tc.reason || !be.Until.Equal(clk.Now().Add(time.Minute)) {
				t.Fatalf("BannedError = %+v", be)
			}
			wantBanned(t, g, tc.subject, clk.Now().Add(time.Minute))
			wantFree(t, g, bob) // nobody else
		})
	}
}

func TestEventsOutsideTheWindowDoNotCount(t *testing.T) {
	t.Parallel()
	clk := newClock()
	g := newGuard(t, memory.NewStateStore(), clk)
	for range 5 {
		for range 3 {
			if err := g.Record(t.Context(), abuse.Connect, alice); err != nil {
				t.Fatal(err)
			}
		}
		clk.advance(2 * time.Minute)
	}
	// Half a window after a window of 3 connects, the sliding estimate
	// still counts half of them, rounded down: 1.
	for range 3 {
		if err := g.Record(t.Context(), abuse.Connect, alice); err != nil {
			t.Fatal(err)
		}
	}
	clk.advance(90 * time.Second) // the previous window is half over
	if err := g.Record(t.Context(), abuse.Connect, alice); err != nil {
		t.Fatalf("1 + 1: %v", err)
	}
	if err := g.Record(t.Context(), abuse.Connect, alice); err != nil {
		t.Fatalf("2 + 1: %v", err)
	}
	if err := g.Record(t.Context(), abuse.Connect, alice); err == nil {
		t.Fatal("3 + 1 is over 3: want a suspension")
	}
}

func TestEscalationDoublesUpToMaxAndForgets(t *testing.T) {
	t.Parallel()
	clk := newClock()
	g := newGuard(t, memory.NewStateStore(), clk)
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute} {
		be := recordUntilBanned(t, g, abuse.AuthFailure, ip1, 3)
		if got := be.Until.Sub(clk.Now()); got != want {
			t.Fatalf("offence %d: suspended for %v; want %v", i+1, got, want)
		}
		clk.advance(be.Until.Sub(clk.Now()) + time.Second) // serve the suspension
		wantFree(t, g, ip1)
	}
	clk.advance(time.Hour) // Forget
	be := recordUntilBanned(t, g, abuse.AuthFailure, ip1, 3)
	if got := be.Until.Sub(clk.Now()); got != time.Minute {
		t.Fatalf("after Forget: suspended for %v; want a first suspension of 1m", got)
	}
}

func TestAttemptsDuringASuspensionExtendIt(t *testing.T) {
	t.Parallel()
	clk := newClock()
	g := newGuard(t, memory.NewStateStore(), clk)
	recordUntilBanned(t, g, abuse.Connect, alice, 4)
	clk.advance(10 * time.Second)
	wantBanned(t, g, alice, clk.Now().Add(50*time.Second)) // attempts 1 and 2 of MaxBannedAttempts 2: no change
	wantBanned(t, g, alice, clk.Now().Add(50*time.Second))
	// Attempt 3 passes MaxBannedAttempts: a second offence, 2 minutes from now.
	err := g.Check(t.Context(), alice)
	var be *abuse.BannedError
	if !errors.As(err, &be) || !be.Until.Equal(clk.Now().Add(2*time.Minute)) || be.Reason != "kept trying while suspended" {
		t.Fatalf("Check = %v; want suspended 2m from now for trying", err)
	}
	clk.advance(10 * time.Second)
	wantBanned(t, g, alice, clk.Now().Add(110*time.Second))
	wantBanned(t, g, alice, clk.Now().Add(110*time.Second))
	err = g.Check(t.Context(), alice)
	if !errors.As(err, &be) || !be.Until.Equal(clk.Now().Add(4*time.Minute)) {
		t.Fatalf("Check = %v; want a third offence, suspended 4m from now", err)
	}
}

func TestSuspensionExpires(t *testing.T) {
	t.Parallel()
	clk := newClock()
	g := newGuard(t, memory.NewStateStore(), clk)
	be := recordUntilBanned(t, g, abuse.RateLimited, bob, 5)
	clk.advance(be.Until.Sub(clk.Now()))
	wantFree(t, g, bob)
}

func TestOperatorBanUnbanList(t *testing.T) {
	t.Parallel()
	clk := newClock()
	store := memory.NewStateStore()
	g := newGuard(t, store, clk)
	until := clk.Now().Add(48 * time.Hour)
	if err := g.Ban(t.Context(), alice, until, "spam"); err != nil {
		t.Fatal(err)
	}
	if err := g.Ban(t.Context(), ip1, clk.Now().Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	recordUntilBanned(t, g, abuse.Connect, bob, 4)
	wantBanned(t, g, alice, until)
	// A manual ban is not escalated by attempts.
	for range 5 {
		wantBanned(t, g, alice, until)
	}
	bans, err := g.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 3 || bans[0].Subject != alice || bans[0].Reason != "spam" || !bans[0].Manual ||
		bans[1].Subject != ip1 || bans[1].Reason != "suspended by an operator" ||
		bans[2].Subject != bob || bans[2].Manual || bans[2].Offences != 1 {
		t.Fatalf("List = %+v", bans)
	}
	if err := g.Unban(t.Context(), alice); err != nil {
		t.Fatal(err)
	}
	wantFree(t, g, alice)
	clk.advance(2 * time.Minute) // bob's suspension ends
	bans, err = g.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 1 || bans[0].Subject != ip1 {
		t.Fatalf("List after unban and expiry = %+v", bans)
	}
	if err := g.Ban(t.Context(), bob, clk.Now().Add(-time.Second), ""); err == nil {
		t.Fatal("a ban in the past was accepted")
	}
}

func TestSuspensionSharedBetweenNodes(t *testing.T) {
	t.Parallel()
	clk := newClock()
	store := memory.NewStateStore()
	n1, n2 := newGuard(t, store, clk), newGuard(t, store, clk)
	wantFree(t, n2, alice) // n2 now caches "not suspended" for a second

	if err := n1.Ban(t.Context(), alice, clk.Now().Add(time.Hour), "spam"); err != nil {
		t.Fatal(err)
	}
	wantBanned(t, n1, alice, clk.Now().Add(time.Hour))
	clk.advance(time.Second) // CacheTTL: n2 reads again
	wantBanned(t, n2, alice, clk.Now().Add(time.Hour-time.Second))

	be := recordUntilBanned(t, n1, abuse.AuthFailure, ip1, 3)
	wantBanned(t, n2, ip1, be.Until)

	if err := n2.Unban(t.Context(), alice); err != nil {
		t.Fatal(err)
	}
	wantFree(t, n2, alice)
	clk.advance(time.Second)
	wantFree(t, n1, alice)
}

func TestConcurrentNodesCountOneOffence(t *testing.T) {
	t.Parallel()
	clk := newClock()
	store := memory.NewStateStore()
	nodes := []*abuse.Guard{newGuard(t, store, clk), newGuard(t, store, clk)}
	var wg sync.WaitGroup
	var banned atomic.Int64
	for i := range 64 {
		wg.Go(func() {
			g := nodes[i%2]
			for range 10 {
				if err := g.Record(t.Context(), abuse.Connect, bob, ip1); errors.Is(err, abuse.ErrBanned) {
					banned.Add(1)
				}
				_ = g.Check(t.Context(), bob, ip1)
			}
		})
	}
	wg.Wait()
	if banned.Load() == 0 {
		t.Fatal("640 connects suspended no one")
	}
	bans, err := nodes[0].List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 2 {
		t.Fatalf("List = %+v; want bob and the address", bans)
	}
	for _, b := range bans {
		// Both nodes crossed the threshold at the same instant: one offence.
		if b.Offences != 1 || !b.Until.Equal(clk.Now().Add(time.Minute)) {
			t.Fatalf("%+v: want one offence of 1m", b)
		}
	}
}

// failingStore is a store whose reads fail once broken is set.
type failingStore struct {
	infrastructure.StateStore
	broken atomic.Bool
}

func (f *failingStore) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	if f.broken.Load() {
		return infrastructure.Item{}, &infrastructure.OpError{Op: "get", Key: key, Kind: infrastructure.ErrUnavailable}
	}
	return f.StateStore.Get(ctx, key)
}

func TestStoreOutageKeepsKnownBansAndLetsOthersIn(t *testing.T) {
	t.Parallel()
	clk := newClock()
	store := &failingStore{StateStore: memory.NewStateStore()}
	g := newGuard(t, store, clk)
	if err := g.Ban(t.Context(), alice, clk.Now().Add(time.Hour), "spam"); err != nil {
		t.Fatal(err)
	}
	store.broken.Store(true)
	clk.advance(5 * time.Second)
	wantBanned(t, g, alice, clk.Now().Add(time.Hour-5*time.Second))
	wantFree(t, g, bob)
}

func TestRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    abuse.Rules
		ok   bool
	}{
		{"zero_is_defaults", abuse.Rules{}, true},
		{"small", rules(), true},
		{"window_too_short", abuse.Rules{Window: time.Millisecond}, false},
		{"negative_threshold", abuse.Rules{MaxAuthFailures: -1}, false},
		{"max_below_first", abuse.Rules{FirstBan: time.Hour, MaxBan: time.Minute}, false},
		{"max_ban_too_long", abuse.Rules{MaxBan: 365 * 24 * time.Hour}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.r.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v; want ok %v", err, tc.ok)
			}
		})
	}
	g := newGuard(t, memory.NewStateStore(), newClock())
	if err := g.SetRules(abuse.Rules{Window: time.Millisecond}); err == nil {
		t.Fatal("SetRules took a bad window")
	}
	if got := g.Rules().MaxConnectsPerUser; got != 3 {
		t.Fatalf("rules after a refused change: MaxConnectsPerUser %d; want 3", got)
	}
	if err := g.SetRules(abuse.Rules{Disabled: true}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := g.Record(t.Context(), abuse.AuthFailure, ip1); err != nil {
			t.Fatalf("Record while disabled: %v", err)
		}
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
	}{
		{"user:alice", "user:alice"},
		{"ip:192.0.2.1", "ip:192.0.2.1"},
		{"ip:::ffff:192.0.2.1", "ip:192.0.2.1"},
		{"ip:2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"},
		{"ip:2001:db8:1:2::/64", "ip:2001:db8:1:2::/64"},
		{"user:bad id", ""},
		{"ip:300.1.1.1", ""},
		{"ip:2001:db8::/48", ""},
		{"alice", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			s, err := abuse.ParseSubject(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("ParseSubject = %v; want an error", s)
				}
				return
			}
			if err != nil || s.String() != tc.want {
				t.Fatalf("ParseSubject = %v, %v; want %s", s, err, tc.want)
			}
		})
	}
}

// TestLoopbackIsNeverSuspendedByRule: a proxy on the same host, or a local
// tool, connects from loopback for everyone: no count of it suspends the
// address, though an operator still may.
func TestLoopbackIsNeverSuspendedByRule(t *testing.T) {
	t.Parallel()
	clk := newClock()
	g := newGuard(t, memory.NewStateStore(), clk)
	for _, addr := range []string{"127.0.0.1", "::1", "127.0.0.2"} {
		lo := abuse.IP(netip.MustParseAddr(addr))
		for range 50 {
			if err := g.Record(t.Context(), abuse.AuthFailure, lo); err != nil {
				t.Fatalf("%s: %v", addr, err)
			}
			if err := g.Record(t.Context(), abuse.Connect, lo); err != nil {
				t.Fatalf("%s: %v", addr, err)
			}
		}
		wantFree(t, g, lo)
	}
	lo := abuse.IP(netip.MustParseAddr("127.0.0.1"))
	if err := g.Ban(t.Context(), lo, clk.Now().Add(time.Hour), "by hand"); err != nil {
		t.Fatal(err)
	}
	wantBanned(t, g, lo, clk.Now().Add(time.Hour))
}
