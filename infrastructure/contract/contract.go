// Package contract is the one test suite that every infrastructure adapter
// must pass: the in-memory adapter and the Dapr adapter on every profile run
// the same cases, so that swapping component YAML cannot change behaviour the
// core relies on.
package contract

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/tools/testkit"
)

// Factory describes one adapter under test.
type Factory struct {
	// Name labels the subtests, e.g. "memory" or "dapr/redis".
	Name string
	// Backend is the adapter. The suite does not close it.
	Backend infrastructure.Backend
	// AppID is the backend's own app-id, used to invoke itself.
	AppID string
	// SetConfig writes a key into the configuration store behind the
	// backend. Nil means the profile has no configuration store, and the
	// configuration cases are not run.
	SetConfig func(ctx context.Context, key, value string) error
	// Durable is true when the broker keeps messages for an absent
	// subscriber. The suite itself does not restart anything; it is recorded
	// for the adapter's own restart tests.
	Durable bool
}

// Run runs every case against f.
func Run(t *testing.T, f Factory) {
	t.Run("state", func(t *testing.T) { runState(t, f) })
	t.Run("pubsub", func(t *testing.T) { runPubSub(t, f) })
	t.Run("invoke", func(t *testing.T) { runInvoke(t, f) })
	if f.SetConfig != nil {
		t.Run("config", func(t *testing.T) { runConfig(t, f) })
	}
}

// unique returns a name no other run uses, so that runs against shared
// servers never see each other's keys or topics.
func unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func runState(t *testing.T, f Factory) {
	s := f.Backend.State
	t.Run("missing_key_reads_as_not_found", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 30*time.Second)
		it, err := s.Get(ctx, unique("missing"))
		if err != nil {
			t.Fatalf("get missing key: %v", err)
		}
		if it.Found || len(it.Value) != 0 || it.ETag != "" {
			t.Fatalf("missing key read as %+v, want Found=false and no value", it)
		}
	})
	t.Run("set_get_delete_round_trip", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 30*time.Second)
		k := unique("rt")
		val := []byte(`{"hello":"wörld","n":1}`)
		if err := s.Set(ctx, k, val); err != nil {
			t.Fatalf("set: %v", err)
		}
		it, err := s.Get(ctx, k)
		if err != nil || !it.Found || string(it.Value) != string(val) || it.ETag == "" {
			t.Fatalf("get after set = %+v, %v; want %s with an etag", it, err, val)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if it, err := s.Get(ctx, k); err != nil || it.Found {
			t.Fatalf("get after delete = %+v, %v; want not found", it, err)
		}
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("deleting a missing key must not fail: %v", err)
		}
	})
	t.Run("insert_all_is_one_write", func(t *testing.T) {
		t.Parallel()
		bi, ok := s.(infrastructure.BatchInserter)
		if !ok {
			t.Logf("%s: no batch inserts; the store inserts one key at a time", f.Name)
			return
		}
		runInsertAll(t, s, bi, f.Name)
	})
	t.Run("bulk_get_keeps_order_and_marks_missing", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 30*time.Second)
		a, b, missing := unique("bulk-a"), unique("bulk-b"), unique("bulk-missing")
		if err := s.Set(ctx, a, []byte("A")); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, b, []byte("B")); err != nil {
			t.Fatal(err)
		}
		items, err := s.BulkGet(ctx, []string{b, missing, a})
		if err != nil {
			t.Fatalf("bulk get: %v", err)
		}
		if len(items) != 3 {
			t.Fatalf("bulk get returned %d items, want 3", len(items))
		}
		want := []struct {
			key   string
			val   string
			found bool
		}{{b, "B", true}, {missing, "", false}, {a, "A", true}}
		for i, w := range want {
			if items[i].Key != w.key || string(items[i].Value) != w.val || items[i].Found != w.found {
				t.Errorf("item %d = %+v, want key %s value %q found %v", i, items[i], w.key, w.val, w.found)
			}
		}
	})
	t.Run("insert_if_absent", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 30*time.Second)
		k := unique("absent")
		if err := s.Set(ctx, k, []byte("first"), infrastructure.IfAbsent()); err != nil {
			t.Fatalf("first insert: %v", err)
		}
		err := s.Set(ctx, k, []byte("second"), infrastructure.IfAbsent())
		if !errors.Is(err, infrastructure.ErrConflict) {
			t.Fatalf("second insert-if-absent = %v, want ErrConflict", err)
		}
		if it, _ := s.Get(ctx, k); string(it.Value) != "first" {
			t.Fatalf("value after refused insert = %q, want first", it.Value)
		}
	})
	t.Run("compare_and_set", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 30*time.Second)
		k := unique("cas")
		if err := s.Set(ctx, k, []byte("v1")); err != nil {
			t.Fatal(err)
		}
		it, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, k, []byte("v2"), infrastructure.IfMatch(it.ETag)); err != nil {
			t.Fatalf("set with the current etag: %v", err)
		}
		err = s.Set(ctx, k, []byte("v3"), infrastructure.IfMatch(it.ETag))
		if !errors.Is(err, infrastructure.ErrConflict) {
			t.Fatalf("set with a stale etag = %v, want ErrConflict", err)
		}
		if got, _ := s.Get(ctx, k); string(got.Value) != "v2" {
			t.Fatalf("value = %q, want v2", got.Value)
		}
		err = s.Delete(ctx, k, infrastructure.IfMatch(it.ETag))
		if !errors.Is(err, infrastructure.ErrConflict) {
			t.Fatalf("delete with a stale etag = %v, want ErrConflict", err)
		}
	})
	t.Run("ttl_expires_item", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 60*time.Second)
		k := unique("ttl")
		keep := unique("ttl-keep")
		// Two seconds, not one: MySQL keeps expiry times in whole seconds,
		// so a one-second TTL can end before the read that follows it.
		if err := s.Set(ctx, k, []byte("gone soon"), infrastructure.WithTTL(2*time.Second)); err != nil {
			t.Fatalf("set with ttl: %v", err)
		}
		if err := s.Set(ctx, keep, []byte("stays")); err != nil {
			t.Fatal(err)
		}
		if it, err := s.Get(ctx, k); err != nil || !it.Found {
			t.Fatalf("item with ttl read right away = %+v, %v; want found", it, err)
		}
		testkit.Eventually(t, 30*time.Second, func() bool {
			it, err := s.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			return !it.Found
		}, "item with a 2s ttl still there")
		if it, _ := s.Get(ctx, keep); !it.Found {
			t.Fatalf("item without ttl expired too")
		}
	})
	t.Run("transaction_is_all_or_nothing", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 30*time.Second)
		a, b, c := unique("tx-a"), unique("tx-b"), unique("tx-c")
		if err := s.Set(ctx, c, []byte("c0")); err != nil {
			t.Fatal(err)
		}
		err := s.Transact(ctx, []infrastructure.StateOp{
			{Key: a, Value: []byte("a1")},
			{Key: b, Value: []byte("b1")},
			{Key: c, Delete: true},
		})
		if err != nil {
			t.Fatalf("transaction: %v", err)
		}
		items, _ := s.BulkGet(ctx, []string{a, b, c})
		if string(items[0].Value) != "a1" || string(items[1].Value) != "b1" || items[2].Found {
			t.Fatalf("after transaction: %+v", items)
		}
		// A stale ETag on the last op must undo the first.
		err = s.Transact(ctx, []infrastructure.StateOp{
			{Key: a, Value: []byte("a2")},
			{Key: b, Value: []byte("b2"), Options: []infrastructure.WriteOption{infrastructure.IfMatch("999999")}},
		})
		if !errors.Is(err, infrastructure.ErrConflict) {
			t.Fatalf("transaction with a stale etag = %v, want ErrConflict", err)
		}
		items, _ = s.BulkGet(ctx, []string{a, b})
		if string(items[0].Value) != "a1" || string(items[1].Value) != "b1" {
			t.Fatalf("failed transaction changed data: a=%q b=%q, want a1 b1", items[0].Value, items[1].Value)
		}
	})
	t.Run("concurrent_compare_and_set_counter_is_exact", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 120*time.Second)
		k := unique("counter")
		const workers, perWorker = 8, 15
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				for range perWorker {
					if err := increment(ctx, s, k); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("increment: %v", err)
		}
		it, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(it.Value); got != strconv.Itoa(workers*perWorker) {
			t.Fatalf("counter = %s after %d increments", got, workers*perWorker)
		}
	})
}

// increment adds one to the counter at k with compare-and-set, retrying when
// another writer won the race, as the core's sequence allocator does.
func increment(ctx context.Context, s infrastructure.StateStore, k string) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		it, err := s.Get(ctx, k)
		if err != nil {
			return err
		}
		n := 0
		opt := infrastructure.IfAbsent()
		if it.Found {
			if n, err = strconv.Atoi(string(it.Value)); err != nil {
				return fmt.Errorf("counter holds %q: %w", it.Value, err)
			}
			opt = infrastructure.IfMatch(it.ETag)
		}
		err = s.Set(ctx, k, []byte(strconv.Itoa(n+1)), opt)
		if err == nil {
			return nil
		}
		if !errors.Is(err, infrastructure.ErrConflict) {
			return err
		}
	}
}

// runInsertAll checks InsertAll: each item is stored unless its key is
// taken, a key it stored is refused to every later insert (single or
// batched), and concurrent calls, which an adapter may merge, each get
// their own answers.
func runInsertAll(t *testing.T, s infrastructure.StateStore, bi infrastructure.BatchInserter, name string) {
	ctx := ctxFor(t, 30*time.Second)
	k1, k2, k3 := unique("ins-1"), unique("ins-2"), unique("ins-3")
	if err := s.Set(ctx, k2, []byte("earlier"), infrastructure.IfAbsent(), infrastructure.Unique()); err != nil {
		t.Fatal(err)
	}
	errs, ok := bi.InsertAll(ctx, []infrastructure.Insert{{Key: k1, Value: []byte("one")}, {Key: k2, Value: []byte("two")}, {Key: k3, Value: []byte("three")}})
	if !ok {
		t.Logf("%s: the store cannot insert in one write; the caller inserts one key at a time", name)
		return
	}
	if len(errs) != 3 || errs[0] != nil || !errors.Is(errs[1], infrastructure.ErrConflict) || errs[2] != nil {
		t.Fatalf("InsertAll over a taken key = %v; want [nil, ErrConflict, nil]", errs)
	}
	items, err := s.BulkGet(ctx, []string{k1, k2, k3})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"one", "earlier", "three"} {
		if !items[i].Found || string(items[i].Value) != want {
			t.Errorf("key %d holds %+v, want %q", i+1, items[i], want)
		}
	}
	// What InsertAll stored is refused to later inserts of every kind.
	if err := s.Set(ctx, k1, []byte("again"), infrastructure.IfAbsent(), infrastructure.Unique()); !errors.Is(err, infrastructure.ErrConflict) {
		t.Errorf("a Unique insert over a key InsertAll stored: %v, want ErrConflict", err)
	}
	if err := s.Set(ctx, k3, []byte("again"), infrastructure.IfAbsent()); !errors.Is(err, infrastructure.ErrConflict) {
		t.Errorf("an IfAbsent set over a key InsertAll stored: %v, want ErrConflict", err)
	}
	if errs, _ := bi.InsertAll(ctx, []infrastructure.Insert{{Key: k1, Value: []byte("again")}}); !errors.Is(errs[0], infrastructure.ErrConflict) {
		t.Errorf("InsertAll over a key InsertAll stored: %v, want ErrConflict", errs[0])
	}
	if it, err := s.Get(ctx, k1); err != nil || string(it.Value) != "one" {
		t.Errorf("after refused inserts the key holds %+v, %v; want \"one\"", it, err)
	}
	// Concurrent calls, one of them over a taken key.
	taken := unique("ins-taken")
	if err := s.Set(ctx, taken, []byte("earlier"), infrastructure.IfAbsent(), infrastructure.Unique()); err != nil {
		t.Fatal(err)
	}
	const calls = 8
	var wg sync.WaitGroup
	got := make([][]error, calls)
	keys := make([][]string, calls)
	for c := range calls {
		keys[c] = []string{unique("ins-c"), unique("ins-c")}
		if c == 3 {
			keys[c][1] = taken
		}
		wg.Go(func() {
			got[c], _ = bi.InsertAll(ctx, []infrastructure.Insert{{Key: keys[c][0], Value: []byte("v0")}, {Key: keys[c][1], Value: []byte("v1")}})
		})
	}
	wg.Wait()
	for c := range calls {
		if got[c][0] != nil {
			t.Errorf("call %d: its free key: %v", c, got[c][0])
		}
		if c == 3 {
			if !errors.Is(got[c][1], infrastructure.ErrConflict) {
				t.Errorf("call %d: its taken key: %v, want ErrConflict", c, got[c][1])
			}
		} else if got[c][1] != nil {
			t.Errorf("call %d: its free key: %v", c, got[c][1])
		}
	}
	if it, err := s.Get(ctx, taken); err != nil || string(it.Value) != "earlier" {
		t.Errorf("the taken key holds %+v, %v; want \"earlier\"", it, err)
	}
}
