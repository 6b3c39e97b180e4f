package dapr

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.StateStore = (*stateStore)(nil)

// stateStore is the StateStore over daprd's state API. Concurrent Gets,
// Sets without an ETag and unchecked Transacts are coalesced into bulk
// calls (see batch.go and state_batch.go).
type stateStore struct {
	c     *Client
	store string

	gets *batcher[string, infrastructure.Item]
	sets *batcher[setCall, struct{}]
	txs  *batcher[txCall, struct{}]
	ins  *batcher[insCall, []error]
}

func newStateStore(c *Client, store string) *stateStore {
	s := &stateStore{c: c, store: store}
	s.gets = &batcher[string, infrastructure.Item]{
		op:    "get",
		key:   func(k string) string { return k },
		limit: maxBatchKeys,
		alone: s.getOne,
		bulk:  s.getBatch,
	}
	s.sets = &batcher[setCall, struct{}]{
		op:       "set",
		key:      func(c setCall) string { return c.key },
		distinct: true,
		limit:    maxBatchKeys,
		alone:    func(ctx context.Context, c setCall) (struct{}, error) { return struct{}{}, s.setOne(ctx, c) },
		bulk:     s.setBatch,
	}
	s.txs = &batcher[txCall, struct{}]{
		op:    "transact",
		key:   func(t txCall) string { return t.key },
		limit: maxBatchTransactions,
		alone: func(ctx context.Context, t txCall) (struct{}, error) { return struct{}{}, s.transactOne(ctx, t) },
		bulk:  s.transactBatch,
	}
	s.ins = &batcher[insCall, []error]{
		op:    "insert",
		key:   func(c insCall) string { return c.key },
		limit: maxBatchTransactions,
		alone: s.insertOne,
		bulk:  s.insertBatch,
	}
	if obs := c.cfg.Observer; obs != nil {
		s.ins.sized = func(n int) { obs.SidecarBatch("insert", n) }
		s.gets.sized = func(n int) { obs.SidecarBatch("get", n) }
		s.sets.sized = func(n int) { obs.SidecarBatch("set", n) }
		s.txs.sized = func(n int) { obs.SidecarBatch("transact", n) }
	}
	return s
}

// close ends the batches; call it after closing the connection.
func (s *stateStore) close() {
	s.gets.close()
	s.sets.close()
	s.txs.close()
	s.ins.close()
}

// checkKey refuses keys daprd would reject or misread: it joins the app-id
// and the key with "||" to build the stored key.
func checkKey(op, key string) error {
	if key == "" {
		return invalid(op, key, "empty key")
	}
	if strings.Contains(key, "||") {
		return invalid(op, key, `key contains "||"`)
	}
	return nil
}

// toItem reads a GetState answer. daprd answers a missing key with no data
// and no ETag, and every store parley uses gives existing items an ETag.
func toItem(key string, value []byte, etag string) infrastructure.Item {
	if etag == "" && len(value) == 0 {
		return infrastructure.Item{Key: key}
	}
	return infrastructure.Item{Key: key, Value: value, ETag: etag, Found: true}
}

func (s *stateStore) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	if err := checkKey("get", key); err != nil {
		return infrastructure.Item{}, err
	}
	if !s.coalesces(ctx) {
		return s.getOne(ctx, key)
	}
	return s.gets.do(ctx, key)
}

// getOne reads one key with GetState.
func (s *stateStore) getOne(ctx context.Context, key string) (infrastructure.Item, error) {
	it, err := s.c.sdk.GetState(ctx, s.store, key, nil)
	if err != nil {
		return infrastructure.Item{}, opError(ctx, "get", key, err, false)
	}
	return toItem(key, it.Value, it.Etag), nil
}

func (s *stateStore) BulkGet(ctx context.Context, keys []string) ([]infrastructure.Item, error) {
	if len(keys) == 0 {
		return []infrastructure.Item{}, nil
	}
	for _, k := range keys {
		if err := checkKey("bulk get", k); err != nil {
			return nil, err
		}
	}
	got, err := s.c.sdk.GetBulkState(ctx, s.store, keys, nil, 0)
	if err != nil {
		return nil, opError(ctx, "bulk get", keys[0], err, false)
	}
	// daprd answers in no particular order, and once per distinct key.
	byKey := make(map[string]*dapr.BulkStateItem, len(got))
	for _, it := range got {
		if it.Error != "" {
			return nil, &infrastructure.OpError{Op: "bulk get", Key: it.Key, Kind: infrastructure.ErrUnavailable, Err: fmt.Errorf("%s", it.Error)}
		}
		byKey[it.Key] = it
	}
	items := make([]infrastructure.Item, len(keys))
	for i, k := range keys {
		if it, ok := byKey[k]; ok {
			items[i] = toItem(k, it.Value, it.Etag)
		} else {
			items[i] = infrastructure.Item{Key: k}
		}
	}
	return items, nil
}

// writeItem turns write options into daprd's terms:
//   - IfMatch: the ETag with first-write concurrency; under last-write
//     concurrency some stores ignore the ETag;
//   - IfAbsent: first-write concurrency and no ETag, which daprd runs as an
//     insert that fails if the key exists;
//   - TTL: the per-item metadata ttlInSeconds.
//
// It reports whether the write carries an ETag. When both IfMatch and
// IfAbsent are given, IfMatch wins: a matching ETag implies the key exists.
func writeItem(key string, value []byte, opts []infrastructure.WriteOption) (*dapr.SetStateItem, bool) {
	o := infrastructure.ResolveWriteOptions(opts)
	item := &dapr.SetStateItem{
		Key:   key,
		Value: value,
		Options: &dapr.StateOptions{
			Concurrency: dapr.StateConcurrencyLastWrite,
			Consistency: dapr.StateConsistencyStrong,
		},
	}
	if o.ETag != "" {
		item.Etag = &dapr.ETag{Value: o.ETag}
		item.Options.Concurrency = dapr.StateConcurrencyFirstWrite
	} else if o.IfAbsent {
		item.Options.Concurrency = dapr.StateConcurrencyFirstWrite
	}
	if ttl := o.TTLSeconds(); ttl > 0 {
		item.Metadata = map[string]string{"ttlInSeconds": strconv.FormatInt(ttl, 10)}
	}
	return item, o.ETag != ""
}

// setCall is one Set, ready for daprd.
type setCall struct {
	key      string
	value    []byte
	opts     []infrastructure.WriteOption
	item     *dapr.SetStateItem
	withETag bool
	ifAbsent bool // and no ETag
	unique   bool // the value names this write (infrastructure.Unique)
}

func (s *stateStore) Set(ctx context.Context, key string, value []byte, opts ...infrastructure.WriteOption) error {
	if err := checkKey("set", key); err != nil {
		return err
	}
	item, withETag := writeItem(key, value, opts)
	o := infrastructure.ResolveWriteOptions(opts)
	if o.Unique && o.IfAbsent && !withETag && s.insertMode(ctx) == insertsPerKey {
		// The same check as InsertAll's (see absentETag): a key inserted
		// in a transaction is refused here too.
		item.Etag = &dapr.ETag{Value: absentETag}
	}
	c := setCall{key: key, value: value, opts: opts, item: item, withETag: withETag,
		ifAbsent: !withETag && o.IfAbsent, unique: o.Unique}
	// Compare-and-set stays alone: nothing in a bulk answer would say
	// which ETag check failed.
	if withETag || !s.coalesces(ctx) {
		return s.setOne(ctx, c)
	}
	_, err := s.sets.do(ctx, c)
	return err
}

// setOne writes one key by itself.
func (s *stateStore) setOne(ctx context.Context, c setCall) error {
	ops := []infrastructure.StateOp{{Key: c.key, Options: c.opts}}
	// A single-key ETag check is atomic in every store; only IfAbsent may
	// need the read (see needsPreCheck), unless the key is Unique: only
	// ever written with first-write, where Redis's own check holds.
	if !c.withETag && !c.unique && s.needsPreCheck(ctx, ops) && s.checkFailed(ctx, ops) {
		return keyExists(c.key)
	}
	return s.save(ctx, c)
}

// save writes one key with no read before.
func (s *stateStore) save(ctx context.Context, c setCall) error {
	if err := s.c.sdk.SaveBulkState(ctx, s.store, c.item); err != nil {
		return s.writeError(ctx, "set", c.key, err, c.withETag, []infrastructure.StateOp{{Key: c.key, Options: c.opts}})
	}
	return nil
}

// keyExists is the answer to an IfAbsent Set whose key exists.
func keyExists(key string) error {
	return &infrastructure.OpError{Op: "set", Key: key, Kind: infrastructure.ErrConflict, Err: errKeyExists}
}

func (s *stateStore) Delete(ctx context.Context, key string, opts ...infrastructure.WriteOption) error {
	if err := checkKey("delete", key); err != nil {
		return err
	}
	item, withETag := writeItem(key, nil, opts)
	if err := s.c.sdk.DeleteStateWithETag(ctx, s.store, key, item.Etag, nil, item.Options); err != nil {
		return s.writeError(ctx, "delete", key, err, withETag, []infrastructure.StateOp{{Key: key, Delete: true, Options: opts}})
	}
	return nil
}

// txCall is one Transact, ready for daprd.
type txCall struct {
	key     string // names the transaction in errors
	ops     []infrastructure.StateOp
	daprOps []*dapr.StateOperation
	anyETag bool
}

func (s *stateStore) Transact(ctx context.Context, ops []infrastructure.StateOp) error {
	if len(ops) == 0 {
		return nil
	}
	txKey := ops[0].Key
	if len(ops) > 1 {
		txKey = fmt.Sprintf("%s (+%d more)", ops[0].Key, len(ops)-1)
	}
	t := txCall{key: txKey, ops: ops, daprOps: make([]*dapr.StateOperation, len(ops))}
	checked := false
	for i, op := range ops {
		if err := checkKey("transact", op.Key); err != nil {
			return err
		}
		item, withETag := writeItem(op.Key, op.Value, op.Options)
		t.anyETag = t.anyETag || withETag
		checked = checked || withETag || infrastructure.ResolveWriteOptions(op.Options).IfAbsent
		typ := dapr.StateOperationTypeUpsert
		if op.Delete {
			typ = dapr.StateOperationTypeDelete
			item.Value = nil
			item.Metadata = nil
		}
		t.daprOps[i] = &dapr.StateOperation{Type: typ, Item: item}
	}
	// A transaction with checks stays alone: one failed check would fail
	// every transaction merged with it.
	if checked || !s.coalesces(ctx) {
		return s.transactOne(ctx, t)
	}
	_, err := s.txs.do(ctx, t)
	return err
}

// transactOne runs one transaction by itself.
func (s *stateStore) transactOne(ctx context.Context, t txCall) error {
	if s.needsPreCheck(ctx, t.ops) && s.checkFailed(ctx, t.ops) {
		return &infrastructure.OpError{Op: "transact", Key: t.key, Kind: infrastructure.ErrConflict, Err: errCheckFailed}
	}
	if err := s.c.sdk.ExecuteStateTransaction(ctx, s.store, nil, t.daprOps); err != nil {
		return s.writeError(ctx, "transact", t.key, err, t.anyETag, t.ops)
	}
	return nil
}

var (
	errKeyExists   = errors.New("key exists")
	errCheckFailed = errors.New("a concurrency check failed before the transaction ran")
)

// writeError classifies a failed write. daprd reports a failed concurrency
// check as Aborted only for single-key ETag writes; a transaction that fails
// a check, and a Redis insert-if-absent that finds the key, come back as
// Internal, like a backend failure. For a write that carried checks, the
// keys are re-read to tell the two apart.
func (s *stateStore) writeError(ctx context.Context, op, key string, err error, withETag bool, ops []infrastructure.StateOp) error {
	oe := opError(ctx, op, key, err, withETag)
	if errors.Is(oe.Kind, infrastructure.ErrUnavailable) && ctx.Err() == nil && s.checkFailed(ctx, ops) {
		oe.Kind = infrastructure.ErrConflict
	}
	return oe
}

// hasChecks reports whether any op carries a concurrency check.
func hasChecks(ops []infrastructure.StateOp) bool {
	for _, op := range ops {
		o := infrastructure.ResolveWriteOptions(op.Options)
		if o.ETag != "" || (o.IfAbsent && !op.Delete) {
			return true
		}
	}
	return false
}

// needsPreCheck reports whether the checks must be made by reading before
// writing, because the store cannot be trusted to make them:
//   - Dapr's Redis store lets a first-write with no ETag overwrite a key
//     last written without first-write concurrency, so IfAbsent would not
//     see it;
//   - its transactions are MULTI/EXEC pipelines, which do not roll back
//     the other writes when one check fails.
//
// Reading first turns those cases into ErrConflict when the data already
// fails the check. It cannot close the window between the read and the
// write: on Redis a transaction racing another writer can still be applied
// in part. Concurrent IfAbsent writers are still decided by the store.
func (s *stateStore) needsPreCheck(ctx context.Context, ops []infrastructure.StateOp) bool {
	return hasChecks(ops) && s.c.stateStoreType(ctx, s.store) == "state.redis"
}

// checkFailed re-reads the keys that ops check and reports whether a check
// fails now. ETags are never reused, so a check that failed inside a write
// still fails here, unless an IfAbsent key was deleted in between; that
// write then reports ErrUnavailable, which is retryable as well.
func (s *stateStore) checkFailed(ctx context.Context, ops []infrastructure.StateOp) bool {
	type check struct {
		etag     string
		ifAbsent bool
	}
	checks := make(map[string]check)
	var keys []string
	for _, op := range ops {
		o := infrastructure.ResolveWriteOptions(op.Options)
		if o.ETag == "" && (!o.IfAbsent || op.Delete) {
			continue
		}
		checks[op.Key] = check{etag: o.ETag, ifAbsent: o.ETag == "" && o.IfAbsent}
		keys = append(keys, op.Key)
	}
	if len(keys) == 0 {
		return false
	}
	items, err := s.BulkGet(ctx, keys)
	if err != nil {
		return false
	}
	for _, it := range items {
		c := checks[it.Key]
		if c.ifAbsent && it.Found {
			return true
		}
		if c.etag != "" && (!it.Found || it.ETag != c.etag) {
			return true
		}
	}
	return false
}
