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

// atomicInserts reports whether the store applies a transaction of
// inserts whole: Redis runs it as one MULTI/EXEC, which runs every command
// or none, and an insert there fails only when its own key exists. The
// SQL stores roll a whole transaction back when one insert fails, which
// InsertAll does not promise, and daprd's in-memory store is not checked:
// they insert one key at a time.
func (s *stateStore) atomicInserts(ctx context.Context) bool {
	return s.c.stateStoreType(ctx, s.store) == "state.redis"
}

// insCall is one InsertAll, ready for daprd.
type insCall struct {
	key   string // its first key, which names it in errors
	items []infrastructure.Insert
}

// InsertAll implements infrastructure.BatchInserter on Redis with one
// transaction; concurrent calls are merged into one (see batch.go).
func (s *stateStore) InsertAll(ctx context.Context, items []infrastructure.Insert) ([]error, bool) {
	if len(items) == 0 {
		return nil, true
	}
	if !s.atomicInserts(ctx) {
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
			oe := opError(ctx, "insert", it.Key, err, false)
			oe.Kind = infrastructure.ErrUnavailable
			errs[i] = oe
		}
		return errs, true
	}
	return res, true
}

// insertOp is the transaction operation of one insert.
func insertOp(it infrastructure.Insert) *dapr.StateOperation {
	return &dapr.StateOperation{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{
		Key:   it.Key,
		Value: it.Value,
		Etag:  &dapr.ETag{Value: absentETag},
		Options: &dapr.StateOptions{
			Concurrency: dapr.StateConcurrencyFirstWrite,
			Consistency: dapr.StateConsistencyStrong,
		},
	}}
}

// insertOne runs one InsertAll by itself.
func (s *stateStore) insertOne(ctx context.Context, c insCall) ([]error, error) {
	return s.insertBatch(ctx, []insCall{c})[0].res, nil
}

// insertBatch runs calls as one transaction. When it fails (an insert whose
// key exists fails it, after every other insert ran), each key is read
// back: its own bytes mean stored (the value names the write: Unique),
// other bytes mean taken, and a missing key means the transaction did not
// run. When the keys cannot be read, no item is known to be stored.
func (s *stateStore) insertBatch(ctx context.Context, calls []insCall) []result[[]error] {
	out := make([]result[[]error], len(calls))
	var ops []*dapr.StateOperation
	var keys []string
	for i, c := range calls {
		out[i].res = make([]error, len(c.items))
		for _, it := range c.items {
			ops = append(ops, insertOp(it))
			keys = append(keys, it.Key)
		}
	}
	txErr := s.c.sdk.ExecuteStateTransaction(ctx, s.store, nil, ops)
	if txErr == nil {
		return out
	}
	held, readErr := s.BulkGet(ctx, keys)
	k := 0
	for i, c := range calls {
		for j, it := range c.items {
			var err error
			switch {
			case readErr != nil || !held[k].Found:
				oe := opError(ctx, "insert", it.Key, txErr, false)
				oe.Kind = infrastructure.ErrUnavailable
				err = oe
			case bytes.Equal(held[k].Value, it.Value):
			default:
				err = keyExists(it.Key)
			}
			out[i].res[j] = err
			k++
		}
	}
	return out
}
