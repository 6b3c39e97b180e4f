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

type entry struct {
	value   []byte
	etag    uint64
	expires time.Time // zero: never
}

// StateStore is an in-memory key/value store with ETags and TTLs. The zero
// value is not usable; call NewStateStore. Safe for concurrent use.
type StateStore struct {
	mu    sync.RWMutex
	items map[string]*entry
	seq   uint64
	now   func() time.Time
	// expiring holds the keys that have a TTL. A few of them are sampled
	// after each write and removed if expired, as Redis's active expiry
	// does: without it, keys written with a TTL and never read would pile
	// up, and a full sweep under the lock would stall writers.
	expiring map[string]struct{}
	writes   uint64
}

// NewStateStore returns an empty store.
func NewStateStore() *StateStore {
	return &StateStore{items: make(map[string]*entry), expiring: make(map[string]struct{}), now: time.Now}
}

// live returns the entry for key unless it is missing or expired. Expired
// entries are removed lazily by writers; readers just ignore them.
func (s *StateStore) live(key string, now time.Time) *entry {
	e := s.items[key]
	if e == nil || (!e.expires.IsZero() && !now.Before(e.expires)) {
		return nil
	}
	return e
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
	return s.itemLocked(key, s.now()), nil
}

func (s *StateStore) itemLocked(key string, now time.Time) infrastructure.Item {
	e := s.live(key, now)
	if e == nil {
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
	now := s.now()
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
	now := s.now()
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
		e := s.live(op.Key, now)
		switch {
		case o.ETag != "":
			if e == nil || strconv.FormatUint(e.etag, 10) != o.ETag {
				return &infrastructure.OpError{Op: opName(op), Key: op.Key, Kind: infrastructure.ErrConflict, Err: errETagMismatch}
			}
		case e != nil:
			return &infrastructure.OpError{Op: opName(op), Key: op.Key, Kind: infrastructure.ErrConflict, Err: errExists}
		}
	}
	for _, op := range ops {
		if op.Delete {
			if e := s.items[op.Key]; e != nil {
				delete(s.items, op.Key)
				if !e.expires.IsZero() {
					delete(s.expiring, op.Key)
				}
			}
			continue
		}
		var expires time.Time
		if ttl := infrastructure.ResolveWriteOptions(op.Options).TTLSeconds(); ttl > 0 {
			expires = now.Add(time.Duration(ttl) * time.Second)
		}
		s.seq++
		value := append([]byte(nil), op.Value...)
		// Update in place when the key exists: one map lookup, not two.
		e := s.items[op.Key]
		if e == nil {
			s.items[op.Key] = &entry{value: value, etag: s.seq, expires: expires}
		} else {
			if !e.expires.IsZero() && expires.IsZero() {
				delete(s.expiring, op.Key)
			}
			e.value, e.etag, e.expires = value, s.seq, expires
		}
		if !expires.IsZero() {
			s.expiring[op.Key] = struct{}{}
		}
	}
	// Map iteration starts at a random place, so repeated small samples
	// reach every key over time. Sampling on every write cost more than the
	// write itself; every sampleEvery-th write samples more keys instead.
	s.writes++
	if s.writes%sampleEvery != 0 {
		return nil
	}
	n := 0
	for k := range s.expiring {
		if n == sampleExpiring {
			break
		}
		n++
		if e := s.items[k]; e == nil || !now.Before(e.expires) {
			delete(s.items, k)
			delete(s.expiring, k)
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
