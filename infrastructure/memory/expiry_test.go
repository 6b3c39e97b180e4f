package memory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
)

// TestExpiredKeysAreRemoved: keys written with a TTL and never read again
// leave the store once expired, while a key written again with a longer TTL
// outlives its first expiry, and a key without TTL stays.
func TestExpiredKeysAreRemoved(t *testing.T) {
	ctx := context.Background()
	clock := time.Unix(1_000_000, 0)
	s := NewStateStore()
	s.now = func() time.Time { return clock }

	for i := range 500 {
		if err := s.Set(ctx, fmt.Sprintf("idem:%d", i), []byte("x"), infrastructure.WithTTL(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set(ctx, "renewed", []byte("1"), infrastructure.WithTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "renewed", []byte("2"), infrastructure.WithTTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "kept", []byte("k")); err != nil {
		t.Fatal(err)
	}

	clock = clock.Add(2 * time.Second)
	for range 64 * 20 {
		if err := s.Set(ctx, "busy", []byte("b")); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.RLock()
	left := len(s.index) + len(s.spill)
	s.mu.RUnlock()
	if left != 3 {
		t.Fatalf("%d keys left after expiry, want 3 (renewed, kept, busy)", left)
	}
	for _, k := range []string{"renewed", "kept", "busy"} {
		if it, err := s.Get(ctx, k); err != nil || !it.Found {
			t.Fatalf("%s: found %v, err %v; want it kept", k, it.Found, err)
		}
	}
}

// TestExpiriesHeapOrder: pops come out soonest first, whatever the order of
// pushes.
func TestExpiriesHeapOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h expiries
	var want []int64
	for i := range 2000 {
		at := r.Int64N(500)
		h.push(expiry{h: uint64(i), at: at})
		want = append(want, at)
	}
	slices.Sort(want)
	for i, w := range want {
		if got := h.pop().at; got != w {
			t.Fatalf("pop %d: at %d, want %d", i, got, w)
		}
	}
	if len(h) != 0 {
		t.Fatalf("%d left", len(h))
	}
}
