package dapr_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// together runs fn(0) to fn(n-1) in as many goroutines, released at once.
func together(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// retried calls fn until it fails with something other than ErrUnavailable,
// which is retryable: MariaDB answers some concurrent inserts with error
// 1467 (no auto-increment value), with or without batching. It returns
// fn's last error and whether an earlier attempt failed.
func retried(fn func() error) (err error, wasUnavailable bool) {
	for range 10 {
		if err = fn(); !errors.Is(err, infrastructure.ErrUnavailable) {
			return err, wasUnavailable
		}
		wasUnavailable = true
		time.Sleep(10 * time.Millisecond) // a caller's backoff before its retry, not a wait for a state
	}
	return err, wasUnavailable
}

// TestCoalescedStateCalls checks, through a real daprd on every profile,
// that concurrent state calls coalesced into bulk calls answer each caller
// as the calls alone would have.
func TestCoalescedStateCalls(t *testing.T) {
	for _, p := range daprdtest.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			n := startNode(t, p.Name)
			s := n.client.Backend().State
			// coalesced fails the test unless some calls of the kind went
			// out in a batch while fn ran.
			coalesced := func(t *testing.T, kind string, fn func()) {
				t.Helper()
				count := func() int64 {
					gets, sets, txs := dapr.CoalescedCalls(n.client)
					return map[string]int64{"get": gets, "set": sets, "transact": txs}[kind]
				}
				before := count()
				fn()
				got := count() - before
				t.Logf("%d calls of kind %s coalesced", got, kind)
				if got == 0 {
					t.Fatalf("no %s went out in a batch", kind)
				}
			}

			// Unique inserts skip the read before the bulk save; both kinds
			// must give one winner per key.
			for _, v := range []struct {
				name string
				opts []infrastructure.WriteOption
			}{
				{"insert_if_absent_has_one_winner_per_key", []infrastructure.WriteOption{infrastructure.IfAbsent()}},
				{"unique_insert_if_absent_has_one_winner_per_key", []infrastructure.WriteOption{infrastructure.IfAbsent(), infrastructure.Unique()}},
			} {
				t.Run(v.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					const keys, writers = 50, 4
					prefix := daprdtest.UniqueName("absent")
					errs := make([][writers]error, keys)
					retriedAfterUnavailable := make([][writers]bool, keys)
					coalesced(t, "set", func() {
						together(keys*writers, func(i int) {
							k, w := i%keys, i/keys
							errs[k][w], retriedAfterUnavailable[k][w] = retried(func() error {
								return s.Set(ctx, prefix+"-"+strconv.Itoa(k), []byte("writer-"+strconv.Itoa(w)), v.opts...)
							})
						})
					})
					for k := range keys {
						key := prefix + "-" + strconv.Itoa(k)
						it, err := s.Get(ctx, key)
						if err != nil || !it.Found {
							t.Fatalf("key %s = %+v, %v; want a writer's value", key, it, err)
						}
						for w, err := range errs[k] {
							mine := string(it.Value) == "writer-"+strconv.Itoa(w)
							var oe *infrastructure.OpError
							switch {
							case mine && err == nil:
							case mine && retriedAfterUnavailable[k][w] && errors.Is(err, infrastructure.ErrConflict):
								// An attempt that failed as unavailable did insert.
							case mine:
								t.Fatalf("key %s holds writer %d's value, but its insert answered %v", key, w, err)
							case err == nil:
								t.Fatalf("key %s: writer %d's insert succeeded, but the key holds %q", key, w, it.Value)
							case !errors.Is(err, infrastructure.ErrConflict) || !errors.As(err, &oe) || oe.Op != "set" || oe.Key != key:
								t.Fatalf("key %s writer %d: %v, want an ErrConflict OpError for set %s", key, w, err, key)
							}
						}
					}
				})
			}

			t.Run("gets_read_what_was_stored", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				const stored, missing, readers = 100, 100, 500
				prefix := daprdtest.UniqueName("get")
				key := func(i int) string { return prefix + "-" + strconv.Itoa(i%(stored+missing)) }
				for i := range stored {
					if err := s.Set(ctx, key(i), []byte("value-"+strconv.Itoa(i))); err != nil {
						t.Fatal(err)
					}
				}
				got := make([]infrastructure.Item, readers)
				errs := make([]error, readers)
				coalesced(t, "get", func() {
					together(readers, func(i int) { got[i], errs[i] = s.Get(ctx, key(i)) })
				})
				for i := range readers {
					k, j := key(i), i%(stored+missing)
					want := infrastructure.Item{Key: k}
					if j < stored {
						want = infrastructure.Item{Key: k, Value: []byte("value-" + strconv.Itoa(j)), Found: true}
					}
					it := got[i]
					if errs[i] != nil || it.Key != want.Key || it.Found != want.Found || string(it.Value) != string(want.Value) || (it.Found && it.ETag == "") || (!it.Found && it.ETag != "") {
						t.Fatalf("get %s = %+v, %v; want %+v with an ETag when found", k, it, errs[i], want)
					}
				}
			})

			t.Run("unchecked_transactions_all_apply", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				const txs = 100
				prefix := daprdtest.UniqueName("tx")
				shared := prefix + "-head"
				key := func(i int, what string) string { return fmt.Sprintf("%s-%d-%s", prefix, i, what) }
				// Each deletes a key it wrote before, as a sidecar repair would.
				for i := range txs {
					if err := s.Set(ctx, key(i, "gone"), []byte("x")); err != nil {
						t.Fatal(err)
					}
				}
				errs := make([]error, txs)
				coalesced(t, "transact", func() {
					together(txs, func(i int) {
						v := []byte(strconv.Itoa(i))
						errs[i], _ = retried(func() error {
							return s.Transact(ctx, []infrastructure.StateOp{
								{Key: key(i, "idem"), Value: v, Options: []infrastructure.WriteOption{infrastructure.WithTTL(time.Hour)}},
								{Key: shared, Value: v},
								{Key: key(i, "read"), Value: v},
								{Key: key(i, "gone"), Delete: true},
							})
						})
					})
				})
				for i, err := range errs {
					if err != nil {
						t.Fatalf("transaction %d: %v", i, err)
					}
					items, err := s.BulkGet(ctx, []string{key(i, "idem"), key(i, "read"), key(i, "gone")})
					v := strconv.Itoa(i)
					if err != nil || string(items[0].Value) != v || string(items[1].Value) != v || items[2].Found {
						t.Fatalf("after transaction %d: %+v, %v", i, items, err)
					}
				}
				it, err := s.Get(ctx, shared)
				if n, convErr := strconv.Atoi(string(it.Value)); err != nil || convErr != nil || n < 0 || n >= txs {
					t.Fatalf("shared key = %q, %v; want one transaction's value", it.Value, err)
				}
			})

			t.Run("invalid_key_fails_only_its_caller", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				const calls = 100
				prefix := daprdtest.UniqueName("invalid")
				bad := func(i int) bool { return i%25 == 7 }
				key := func(i int) string {
					if bad(i) {
						return prefix + "||" + strconv.Itoa(i)
					}
					return prefix + "-" + strconv.Itoa(i)
				}
				setErrs := make([]error, calls)
				getErrs := make([]error, calls)
				together(2*calls, func(i int) {
					if i < calls {
						setErrs[i], _ = retried(func() error { return s.Set(ctx, key(i), []byte("v")) })
					} else {
						_, getErrs[i-calls] = s.Get(ctx, key(i-calls))
					}
				})
				for i := range calls {
					for _, err := range []error{setErrs[i], getErrs[i]} {
						if bad(i) != errors.Is(err, infrastructure.ErrInvalidArgument) || (!bad(i) && err != nil) {
							t.Fatalf("call on %q = %v", key(i), err)
						}
					}
				}
			})
		})
	}
}
