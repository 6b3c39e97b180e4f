package infrastructure

import (
	"context"
	"time"
)

// Item is one key's value as read from a StateStore. A missing key reads as
// an Item with Found false, nil Value and empty ETag.
type Item struct {
	Key   string
	Value []byte
	ETag  string
	Found bool
}

// StateStore is a key/value store with optimistic concurrency, per-item TTL
// and multi-key transactions. Implementations are safe for concurrent use.
type StateStore interface {
	// Get reads one key. A missing key is not an error: it returns Found false.
	Get(ctx context.Context, key string) (Item, error)
	// BulkGet reads many keys at once, returning one Item per key in order.
	BulkGet(ctx context.Context, keys []string) ([]Item, error)
	// Set writes a key. With IfMatch it is a compare-and-set, with IfAbsent an
	// insert-if-absent; either returns ErrConflict when the check fails.
	Set(ctx context.Context, key string, value []byte, opts ...WriteOption) error
	// Delete removes a key. Deleting a missing key is not an error unless
	// IfMatch is given.
	Delete(ctx context.Context, key string, opts ...WriteOption) error
	// Transact applies all operations atomically, or none. Any failed
	// concurrency check fails the whole transaction with ErrConflict.
	Transact(ctx context.Context, ops []StateOp) error
}

// StateOp is one write in a transaction: a Set, or a Delete when Delete is true.
type StateOp struct {
	Key     string
	Value   []byte
	Delete  bool
	Options []WriteOption
}

// WriteOptions is the resolved form of a list of WriteOption. Adapters call
// ResolveWriteOptions; the core uses the With* constructors.
type WriteOptions struct {
	// ETag, when set, makes the write a compare-and-set against it.
	ETag string
	// IfAbsent makes a Set fail with ErrConflict if the key already exists.
	IfAbsent bool
	// TTL, when positive, makes the item expire after it. Zero keeps it forever.
	TTL time.Duration
	// Unique says that the value names its write, and that the key is
	// only ever written by such inserts: no other write stores these
	// bytes, unless it is the same write made again, and no plain write
	// ever made the key. An adapter may then take the value found stored as
	// proof that the write happened, and rely on the store's own insert
	// check.
	Unique bool
}

// WriteOption changes one Set, Delete or StateOp. It is a value, not a
// function: resolving options is on every write's path, and calling a
// function value with a pointer made each resolution an allocation.
type WriteOption struct {
	kind optionKind
	etag string
	ttl  time.Duration
}

type optionKind uint8

const (
	optIfMatch optionKind = iota + 1
	optIfAbsent
	optUnique
	optTTL
)

// IfMatch makes the write succeed only if the stored ETag equals etag.
func IfMatch(etag string) WriteOption { return WriteOption{kind: optIfMatch, etag: etag} }

// IfAbsent makes the Set succeed only if the key does not exist yet.
func IfAbsent() WriteOption { return WriteOption{kind: optIfAbsent} }

// Unique declares that the value is unique to this write (it carries its
// own id, say), so that finding it stored proves the write took place, and
// that the key is only ever written by IfAbsent inserts. With IfAbsent it
// lets an adapter insert, in bulk too, without reading the keys first.
func Unique() WriteOption { return WriteOption{kind: optUnique} }

// WithTTL makes the item expire after d. Dapr stores TTLs in whole seconds, so
// d is rounded up to at least one second.
func WithTTL(d time.Duration) WriteOption { return WriteOption{kind: optTTL, ttl: d} }

// ResolveWriteOptions applies opts in order.
func ResolveWriteOptions(opts []WriteOption) WriteOptions {
	var o WriteOptions
	for _, opt := range opts {
		switch opt.kind {
		case optIfMatch:
			o.ETag = opt.etag
		case optIfAbsent:
			o.IfAbsent = true
		case optUnique:
			o.Unique = true
		case optTTL:
			o.TTL = opt.ttl
		}
	}
	return o
}

// TTLSeconds is the TTL rounded up to whole seconds, 0 for none.
func (o WriteOptions) TTLSeconds() int64 {
	if o.TTL <= 0 {
		return 0
	}
	s := int64((o.TTL + time.Second - 1) / time.Second)
	return max(s, 1)
}

// Insert is one insert-if-absent of InsertAll: Key is written with Value
// only if it does not exist.
type Insert struct {
	Key   string
	Value []byte
}

// BatchInserter is a StateStore that can insert several keys in one write
// that the store applies as a unit. StateStores that implement it are safe
// for concurrent use, like every StateStore.
type BatchInserter interface {
	// InsertAll inserts every item whose key is absent, as Set with
	// IfAbsent and Unique would (the value names its write, and the key is
	// only ever written by such inserts), in one write that is applied
	// whole: every item whose key is free when it runs is stored, or none
	// is. errs[i] is nil when item i is stored, ErrConflict when its key
	// holds another value, and ErrUnavailable when the write failed and
	// item i is not known to be stored: then either none of those items is
	// stored or all of them are. A store cannot leave one item unwritten
	// while it writes a later one.
	//
	// ok is false when the store cannot make such a write, and nothing
	// was done: the caller inserts one key at a time.
	InsertAll(ctx context.Context, items []Insert) (errs []error, ok bool)
}
