package dapr

import (
	"bytes"
	"context"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.BatchInserter = (*stateStore)(nil)

// absentETag is the ETag that a Unique insert carries on Redis. Dapr's
// Redis store runs a first-write Set with no ETag as "write unless the key
// was itself written with first-write", and a transaction's Sets never
// mark a key as such, so an insert made in a transaction would not stop a
// later one. An ETag check stops both, in a Set and in a transaction
// alike: the store writes a missing key whatever the ETag, and refuses an
// existing one unless its version matches, which "-1" never does (versions
// count up from 1). Checked in components-contrib v1.18.3,
// state/redis/redis.go (setDefaultQuery, parseETag, Multi).
const absentETag = "-1"

// insertMode is how a store runs a transaction of first-write inserts.
type insertMode int

const (
	// insertsAlone: not checked, or not applied whole; one key at a time.
	insertsAlone insertMode = iota
	// insertsPerKey: Redis runs the transaction as one MULTI/EXEC, which
	// runs every command; an insert fails only when its own key exists.
	// Inserts carry absentETag.
	insertsPerKey
	// insertsRolledBack: daprd's in-memory store checks every operation
	// of a transaction under its lock before it applies any, and applies
	// none when one fails; a first-write Set without an ETag fails when
	// its key exists (components-contrib v1.18.3, state/in-memory
	// in_memory.go: Multi, doValidateEtag). A transaction that a taken key
	// failed runs again without it.
	insertsRolledBack
)

// insertMode reports how the store runs InsertAll. The SQL stores roll a
// transaction back too, but whether their first-write inserts inside one
// fail only on a taken key is not checked: they insert one key at a time.
func (s *stateStore) insertMode(ctx context.Context) insertMode {
	switch s.c.stateStoreType(ctx, s.store) {
	case "state.redis":
		return insertsPerKey
	case "state.in-memory":
		return insertsRolledBack
	}
	return insertsAlone
}

// insCall is one InsertAll, ready for daprd.
type insCall struct {
	key   string // its first key, which names it in errors
	items []infrastructure.Insert
}

// InsertAll implements infrastructure.BatchInserter on Redis and daprd's
// in-memory store with one transaction; concurrent calls are merged into
// one (see batch.go).
func (s *stateStore) InsertAll(ctx context.Context, items []infrastructure.Insert) ([]error, bool) {
	if len(items) == 0 {
		return nil, true
	}
	if s.insertMode(ctx) == insertsAlone {
		return nil, false
	}
	errs := make([]error, len(items))
	for _, it := range items {
		if err := checkKey("insert", it.Key); err != nil {
			for i := range errs {
				errs[i] = err
			}
			return errs, true
		}
	}
	res, err := s.ins.do(ctx, insCall{key: items[0].Key, items: items})
	if err != nil {
		// The caller left, or the client closed: the write may still run.
		for i, it := range items {
			errs[i] = insertUnknown(ctx, it.Key, err)
		}
		return errs, true
	}
	return res, true
}

// insertUnknown is the error of an insert whose fate is not known.
func insertUnknown(ctx context.Context, key string, err error) error {
	oe := opError(ctx, "insert", key, err, false)
	oe.Kind = infrastructure.ErrUnavailable
	return oe
}

// insertOp is the transaction operation of one insert; withETag for Redis
// (see absentETag).
func insertOp(it infrastructure.Insert, withETag bool) *dapr.StateOperation {
	item := &dapr.SetStateItem{
		Key:   it.Key,
		Value: it.Value,
		Options: &dapr.StateOptions{
			Concurrency: dapr.StateConcurrencyFirstWrite,
			Consistency: dapr.StateConsistencyStrong,
		},
	}
	if withETag {
		item.Etag = &dapr.ETag{Value: absentETag}
	}
	return &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: item}
}

// insertOne runs one InsertAll by itself.
func (s *stateStore) insertOne(ctx context.Context, c insCall) ([]error, error) {
	return s.insertBatch(ctx, []insCall{c})[0].res, nil
}

// maxInsertRuns bounds the runs of a rolled-back transaction of inserts,
// each without the keys the last one found taken.
const maxInsertRuns = 4

// insertBatch runs calls as one transaction. When it fails, each key is
// read back: its own bytes mean stored (the value names the write:
// Unique), other bytes mean taken, and a missing key means not stored. On
// Redis an insert whose key exists fails the transaction after every other
// insert ran, so a missing key means the transaction did not run. On a
// store that rolls back, the transaction runs again with the missing keys
// when it found others taken. When the keys cannot be read, no item is
// known to be stored.
func (s *stateStore) insertBatch(ctx context.Context, calls []insCall) []result[[]error] {
	out := make([]result[[]error], len(calls))
	type slot struct{ call, item int }
	var left []slot
	for i, c := range calls {
		out[i].res = make([]error, len(c.items))
		for j := range c.items {
			left = append(left, slot{i, j})
		}
	}
	mode := s.insertMode(ctx)
	for run := 1; len(left) > 0; run++ {
		ops := make([]*dapr.StateOperation, len(left))
		keys := make([]string, len(left))
		for k, sl := range left {
			it := calls[sl.call].items[sl.item]
			ops[k], keys[k] = insertOp(it, mode == insertsPerKey), it.Key
		}
		txErr := s.c.sdk.ExecuteStateTransaction(ctx, s.store, nil, ops)
		if txErr == nil {
			for _, sl := range left {
				out[sl.call].res[sl.item] = nil // an earlier run's answer
			}
			return out
		}
		held, readErr := s.BulkGet(ctx, keys)
		var missing []slot
		taken := false
		for k, sl := range left {
			it := calls[sl.call].items[sl.item]
			var err error
			switch {
			case readErr != nil || !held[k].Found:
				err = insertUnknown(ctx, it.Key, txErr)
				missing = append(missing, sl)
			case bytes.Equal(held[k].Value, it.Value):
			default:
				err = keyExists(it.Key)
				taken = true
			}
			out[sl.call].res[sl.item] = err
		}
		if mode != insertsRolledBack || readErr != nil || !taken || run == maxInsertRuns {
			return out
		}
		// Rolled back for the taken keys alone: the others were free.
		left = missing
	}
	return out
}
