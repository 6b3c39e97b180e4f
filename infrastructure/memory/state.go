// Package memory implements every infrastructure interface in-process. It is
// what unit tests run against and what `parley -backend=memory` uses when no
// sidecar is wanted. Nothing survives the process.
package memory

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.StateStore = (*StateStore)(nil)

// entry is stored by value: a pointer per key would be one more object for
// the garbage collector to visit on every cycle, for every key held.
type entry struct {
	value   []byte
	etag    uint64
	expires int64 // unix nanoseconds; zero: never
}

// StateStore is an in-memory key/value store with ETags and TTLs. The zero
// value is not usable; call NewStateStore. Safe for concurrent use.
type StateStore struct {
	mu    sync.RWMutex
	items map[string]entry
	seq   uint64
	now   func() time.Time
	// expiring holds the keys written with a TTL, soonest expiry first.
	// Every few writes, the expired ones at its head are removed: without
	// it, keys written with a TTL and never read would pile up, and a full
	// sweep under the lock would stall writers. A key written again, or
	// deleted, leaves its old record behind; the record no longer matches
	// the entry's expiry and is dropped when it comes up.
	expiring expiries
	writes   uint64
}

// expiry is one TTL write: key expires at at (unix nanoseconds).
type expiry struct {
	key string
	at  int64
}

// expiries is a min-heap of expiry by at. Most TTLs of a store are alike,
// so a push lands at the end and stays there.
type expiries []expiry

func (h *expiries) push(x expiry) {
	*h = append(*h, x)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if q[p].at <= q[i].at {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
}

func (h *expiries) pop() expiry {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = expiry{}
	q = q[:last]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < len(q) && q[l].at < q[small].at {
			small = l
		}
		if r := l + 1; r < len(q) && q[r].at < q[small].at {
			small = r
		}
		if small == i {
			break
		}
		q[i], q[small] = q[small], q[i]
		i = small
	}
	*h = q
	return top
}

// NewStateStore returns an empty store.
func NewStateStore() *StateStore {
	return &StateStore{items: make(map[string]entry), now: time.Now}
}

// live returns the entry for key unless it is missing or expired. Expired
// entries are removed lazily by writers; readers just ignore them.
func (s *StateStore) live(key string, now int64) (entry, bool) {
	e, ok := s.items[key]
	if !ok || (e.expires != 0 && now >= e.expires) {
		return entry{}, false
	}
	return e, true
}

func (s *StateStore) Get(ctx context.Context, key string) (infrastructure.Item, error) {
	if err := checkKey("get", key); err != nil {
		return infrastructure.Item{}, err
	}
	if err := ctx.Err(); err != nil {
		return infrastructure.Item{}, &infrastructure.OpError{Op: "get", Key: key, Kind: infrastructure.ErrUnavailable, Err: err}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.itemLocked(key, s.now().UnixNano()), nil
}

func (s *StateStore) itemLocked(key string, now int64) infrastructure.Item {
	e, ok := s.live(key, now)
	if !ok {
		return infrastructure.Item{Key: key}
	}
	return infrastructure.Item{Key: key, Value: append([]byte(nil), e.value...), ETag: strconv.FormatUint(e.etag, 10), Found: true}
}

func (s *StateStore) BulkGet(ctx context.Context, keys []string) ([]infrastructure.Item, error) {
	for _, k := range keys {
		if err := checkKey("bulk get", k); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, &infrastructure.OpError{Op: "bulk get", Kind: infrastructure.ErrUnavailable, Err: err}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now().UnixNano()
	out := make([]infrastructure.Item, len(keys))
	for i, k := range keys {
		out[i] = s.itemLocked(k, now)
	}
	return out, nil
}

func (s *StateStore) Set(ctx context.Context, key string, value []byte, opts ...infrastructure.WriteOption) error {
	return s.Transact(ctx, []infrastructure.StateOp{{Key: key, Value: value, Options: opts}})
}

func (s *StateStore) Delete(ctx context.Context, key string, opts ...infrastructure.WriteOption) error {
	return s.Transact(ctx, []infrastructure.StateOp{{Key: key, Delete: true, Options: opts}})
}

func (s *StateStore) Transact(ctx context.Context, ops []infrastructure.StateOp) error {
	for _, op := range ops {
		if err := checkKey(opName(op), op.Key); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return &infrastructure.OpError{Op: "transact", Kind: infrastructure.ErrUnavailable, Err: err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UnixNano()
	// Check every precondition before writing anything, so that a failed
	// check leaves the store untouched: all or nothing.
	for _, op := range ops {
		if len(op.Options) == 0 {
			continue
		}
		o := infrastructure.ResolveWriteOptions(op.Options)
		if o.ETag == "" && (!o.IfAbsent || op.Delete) {
			continue
		}
		e, found := s.live(op.Key, now)
		switch {
		case o.ETag != "":
			if !found || strconv.FormatUint(e.etag, 10) != o.ETag {
				return &infrastructure.OpError{Op: opName(op), Key: op.Key, Kind: infrastructure.ErrConflict, Err: errETagMismatch}
			}
		case found:
			return &infrastructure.OpError{Op: opName(op), Key: op.Key, Kind: infrastructure.ErrConflict, Err: errExists}
		}
	}
	for _, op := range ops {
		if op.Delete {
			delete(s.items, op.Key)
			continue
		}
		var expires int64
		if ttl := infrastructure.ResolveWriteOptions(op.Options).TTLSeconds(); ttl > 0 {
			expires = now + int64(ttl)*int64(time.Second)
			s.expiring.push(expiry{key: op.Key, at: expires})
		}
		s.seq++
		s.items[op.Key] = entry{value: append([]byte(nil), op.Value...), etag: s.seq, expires: expires}
	}
	// Removing expired keys on every write cost more than the write
	// itself; every sampleEvery-th write removes up to sampleExpiring.
	s.writes++
	if s.writes%sampleEvery != 0 {
		return nil
	}
	for n := 0; n < sampleExpiring && len(s.expiring) > 0 && s.expiring[0].at <= now; n++ {
		x := s.expiring.pop()
		if e, ok := s.items[x.key]; ok && e.expires == x.at {
			delete(s.items, x.key)
		}
	}
	return nil
}

// Every sampleEvery-th write checks sampleExpiring keys with a TTL.
const (
	sampleEvery    = 64
	sampleExpiring = 64
)

func opName(op infrastructure.StateOp) string {
	if op.Delete {
		return "delete"
	}
	return "set"
}
