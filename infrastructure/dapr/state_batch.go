package dapr

import (
	"bytes"
	"context"
	"errors"
	"sync"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/parley-im/parley/infrastructure"
)

// The state calls that batch.go coalesces, and how each batch keeps the
// answers a call would have had alone.

const (
	// maxBatchKeys is the most Gets, or Sets, one bulk call carries.
	maxBatchKeys = 256
	// maxBatchTransactions is the most transactions merged into one.
	maxBatchTransactions = 64
)

// coalescingStores are the state component types whose bulk calls daprd
// runs like the single calls they replace (checked in dapr v1.18.2 and
// components-contrib v1.18.3):
//   - GetBulkState reads each key as GetState does, expired items
//     excluded. It asks for no consistency level, which these stores
//     ignore on reads; DynamoDB and Cosmos DB would read eventually
//     consistent, so their profiles keep single calls;
//   - a multi-item SaveState runs as BulkSet, which none of them
//     implements: it is state.DefaultBulkStore, one independent, atomic
//     single-key Set per item, in parallel, errors joined;
//   - a transaction applies its operations in order.
var coalescingStores = map[string]bool{
	"state.in-memory":  true,
	"state.redis":      true,
	"state.postgresql": true,
	"state.mysql":      true,
	"state.sqlite":     true,
}

// coalesces reports whether state calls may be coalesced. Until daprd's
// metadata names the store's type, they are not.
func (s *stateStore) coalesces(ctx context.Context) bool {
	t := s.c.stateStoreType(ctx, s.store)
	if !coalescingStores[t] {
		return false
	}
	if n := batchSlots(t); s.gets.slots.Load() != n {
		s.gets.slots.Store(n)
		s.sets.slots.Store(n)
		s.txs.slots.Store(n)
		s.ins.slots.Store(n)
	}
	return true
}

// getBatch reads keys with one GetBulkState. daprd answers once per
// distinct key, so each key is asked once and every caller gets its key's
// answer; an error on one key goes to its callers only.
func (s *stateStore) getBatch(ctx context.Context, keys []string) []result[infrastructure.Item] {
	out := make([]result[infrastructure.Item], len(keys))
	handed := make(map[string]bool, len(keys))
	distinct := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, ok := handed[k]; !ok {
			handed[k] = false
			distinct = append(distinct, k)
		}
	}
	got, err := s.c.sdk.GetBulkState(ctx, s.store, distinct, nil, 0)
	if err != nil {
		for i, k := range keys {
			out[i].err = opError(ctx, "get", k, err, false)
		}
		return out
	}
	byKey := make(map[string]*dapr.BulkStateItem, len(got))
	for _, it := range got {
		byKey[it.Key] = it
	}
	for i, k := range keys {
		it, ok := byKey[k]
		switch {
		case !ok:
			out[i].res = infrastructure.Item{Key: k}
		case it.Error != "":
			out[i].err = &infrastructure.OpError{Op: "get", Key: k, Kind: infrastructure.ErrUnavailable, Err: errors.New(it.Error)}
		default:
			// Callers of one key get their own copy, as with GetState.
			value := it.Value
			if handed[k] {
				value = bytes.Clone(value)
			}
			handed[k] = true
			out[i].res = toItem(k, value, it.Etag)
		}
	}
	return out
}

// setBatch writes calls, whose keys are distinct, with one SaveBulkState
// (see coalescingStores: each item is its own atomic Set, so an IfAbsent
// item keeps its first-write check). Two items for one key are never in
// one save, nor in two batches in flight, since daprd runs them in no
// particular order; the batcher keeps them apart.
//
// The answer to a failed bulk save does not say which items failed, so the
// batch reads the IfAbsent keys before writing:
//   - on Redis that is the check every IfAbsent Set makes (needsPreCheck):
//     its first-write insert lets through a key last written without
//     first-write;
//   - elsewhere it makes the fallback below exact: an IfAbsent key that
//     exists now answers ErrConflict at once, as the insert would have, so
//     a key that holds the item's bytes after a failed save was written by
//     this save, not by an earlier writer of the same bytes (a counter's
//     first "1", say).
//
// A Unique insert needs neither: no other write stores its bytes, so
// finding them proves this write, and its key is only ever written with
// first-write, whose check Redis keeps. (Message inserts are Unique: one
// sidecar call fewer per batch of sends, under the conversation's lock.)
//
// When the read fails, every call goes alone, as it would have unbatched.
func (s *stateStore) setBatch(ctx context.Context, calls []setCall) []result[struct{}] {
	out := make([]result[struct{}], len(calls))
	all := make([]int, len(calls))
	var absent []string
	for i, c := range calls {
		all[i] = i
		if c.ifAbsent && !c.unique {
			absent = append(absent, c.key)
		}
	}
	exists := make(map[string]bool, len(absent))
	if len(absent) > 0 {
		items, err := s.BulkGet(ctx, absent)
		if err != nil {
			s.setEachAlone(ctx, calls, all, out)
			return out
		}
		for _, it := range items {
			exists[it.Key] = it.Found
		}
	}
	var save []int
	for i, c := range calls {
		if c.ifAbsent && exists[c.key] {
			out[i].err = keyExists(c.key)
			continue
		}
		save = append(save, i)
	}
	switch len(save) {
	case 0:
		return out
	case 1:
		out[save[0]].err = s.save(ctx, calls[save[0]])
		return out
	}
	items := make([]*dapr.SetStateItem, len(save))
	for j, i := range save {
		items[j] = calls[i].item
	}
	if err := s.c.sdk.SaveBulkState(ctx, s.store, items...); err != nil {
		s.settleSets(ctx, calls, save, err, out)
	}
	return out
}

// settleSets finds out, after a failed bulk save, what happened to each of
// the saved calls:
//   - a plain upsert is run again alone: whatever part of the batch was
//     applied, running it again is exact, TTL included, and gives it its
//     own error;
//   - an IfAbsent item whose key holds exactly its bytes was written by
//     this save (see setBatch);
//   - one whose key holds other bytes lost to another writer: ErrConflict;
//   - one whose key is missing was not written, and is run again alone;
//   - when the keys cannot be read, an IfAbsent item may or may not have
//     been written: ErrUnavailable, as for any write cut off.
//
// One case stays out of reach: between this save and the read, another
// writer replacing or deleting a key this save inserted makes the insert
// read as lost.
func (s *stateStore) settleSets(ctx context.Context, calls []setCall, saved []int, saveErr error, out []result[struct{}]) {
	var absent []int
	var keys []string
	var again []int
	for _, i := range saved {
		if calls[i].ifAbsent {
			absent = append(absent, i)
			keys = append(keys, calls[i].key)
		} else {
			again = append(again, i)
		}
	}
	if len(keys) > 0 {
		items, err := s.BulkGet(ctx, keys)
		for j, i := range absent {
			c := calls[i]
			switch {
			case err != nil:
				oe := opError(ctx, "set", c.key, saveErr, false)
				oe.Kind = infrastructure.ErrUnavailable
				out[i].err = oe
			case !items[j].Found:
				again = append(again, i)
			case bytes.Equal(items[j].Value, c.value):
			default:
				out[i].err = keyExists(c.key)
			}
		}
	}
	s.setEachAlone(ctx, calls, again, out)
}

// setEachAlone runs the calls at idx by themselves, in parallel.
func (s *stateStore) setEachAlone(ctx context.Context, calls []setCall, idx []int, out []result[struct{}]) {
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Go(func() { out[i].err = s.setOne(ctx, calls[i]) })
	}
	wg.Wait()
}

// transactBatch merges unchecked transactions into one, their operations
// in arrival order. If it fails, each transaction runs again alone, in
// parallel, and gets its own answer. That is exact: the stores roll a
// failed transaction back, except Redis, whose MULTI/EXEC may apply part of
// it; but operations without checks are plain upserts and deletes, which
// end in the same state when applied again.
func (s *stateStore) transactBatch(ctx context.Context, txs []txCall) []result[struct{}] {
	out := make([]result[struct{}], len(txs))
	n := 0
	for _, t := range txs {
		n += len(t.daprOps)
	}
	ops := make([]*dapr.StateOperation, 0, n)
	for _, t := range txs {
		ops = append(ops, t.daprOps...)
	}
	if err := s.c.sdk.ExecuteStateTransaction(ctx, s.store, nil, ops); err == nil {
		return out
	}
	var wg sync.WaitGroup
	for i, t := range txs {
		wg.Go(func() { out[i].err = s.transactOne(ctx, t) })
	}
	wg.Wait()
	return out
}
