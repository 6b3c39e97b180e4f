// Package memory implements every infrastructure interface in-process. It is
// what unit tests run against and what `parley -backend=memory` uses when no
// sidecar is wanted. Nothing survives the process.
package memory

import (
	"context"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.StateStore = (*StateStore)(nil)

// slot locates one entry in the arena, its key and then its value end to
// end, and carries the entry's ETag and expiry. It holds no pointers, so
// neither does the index, and the garbage collector skips both: with a
// map[string]entry it visited every key and every value on every cycle,
// which under load was a sixth of the server's CPU.
type slot struct {
	chunk   uint32
	off     uint32
	klen    uint32
	vlen    uint32
	etag    uint64
	expires int64 // unix nanoseconds; zero: never
}

// where tells in which map find found a key.
type where uint8

const (
	absent where = iota
	indexed
	spilled
)

// Defaults of the arena: chunks of 1 MiB, and no compaction while the
// bytes no longer used stay under 32 MiB.
const (
	defaultChunkSize    = 1 << 20
	defaultCompactFloor = 32 << 20
)

// StateStore is an in-memory key/value store with ETags and TTLs. The zero
// value is not usable; call NewStateStore. Safe for concurrent use.
type StateStore struct {
	mu sync.RWMutex
	// index finds an entry by the 64-bit hash of its key; the key itself
	// is kept in the arena and compared on every lookup. A key whose hash
	// another key already holds in index goes to spill, an ordinary map:
	// with a seeded 64-bit hash that is about one key in 10^12, so spill
	// is almost always empty, but no answer depends on hashes being
	// distinct.
	index map[uint64]slot
	spill map[string]slot
	arena arena
	seed  maphash.Seed
	// hash is nil outside tests, which set it to make keys collide.
	hash func(string) uint64
	// compactFloor is the number of unused bytes below which the arena is
	// never compacted.
	compactFloor int
	// compactions counts the compactions run, for tests.
	compactions uint64
	seq         uint64
	now         func() time.Time
	// expiring holds the hashes of the keys written with a TTL, soonest
	// expiry first. Every few writes, the expired ones at its head are
	// removed: without it, keys written with a TTL and never read would
	// pile up, and a full sweep under the lock would stall writers. A key
	// written again, or deleted, leaves its old record behind; the record
	// no longer matches the entry's expiry and is dropped when it comes up.
	expiring expiries
	writes   uint64
}

// expiry is one TTL write: the key of hash h expires at at (unix
// nanoseconds). It holds no pointers, like the index.
type expiry struct {
	h  uint64
	at int64
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
	return &StateStore{
		index:        make(map[uint64]slot),
		spill:        make(map[string]slot),
		arena:        arena{chunkSize: defaultChunkSize},
		seed:         maphash.MakeSeed(),
		compactFloor: defaultCompactFloor,
		now:          time.Now,
	}
}

func (s *StateStore) hashOf(key string) uint64 {
	if s.hash != nil {
		return s.hash(key)
	}
	return maphash.String(s.seed, key)
}

// find returns key's hash and, if the key is stored, expired or not, its
// slot and the map that holds it.
func (s *StateStore) find(key string) (uint64, slot, where) {
	h := s.hashOf(key)
	if sl, ok := s.index[h]; ok && string(s.arena.key(sl)) == key {
		return h, sl, indexed
	}
	if len(s.spill) > 0 {
		if sl, ok := s.spill[key]; ok {
			return h, sl, spilled
		}
	}
	return h, slot{}, absent
}

// live returns the slot for key unless it is missing or expired. Expired
// entries are removed lazily by writers; readers just ignore them.
func (s *StateStore) live(key string, now int64) (slot, bool) {
	_, sl, w := s.find(key)
	if w == absent || (sl.expires != 0 && now >= sl.expires) {
		return slot{}, false
	}
	return sl, true
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
	sl, ok := s.live(key, now)
	if !ok {
		return infrastructure.Item{Key: key}
	}
	// A copy: the arena's bytes are overwritten and moved by later writes.
	return infrastructure.Item{Key: key, Value: append([]byte(nil), s.arena.value(sl)...), ETag: strconv.FormatUint(sl.etag, 10), Found: true}
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
		// A slot keeps lengths in 32 bits.
		if len(op.Key) > math.MaxUint32 || len(op.Value) > math.MaxUint32 {
			return &infrastructure.OpError{Op: opName(op), Key: op.Key, Kind: infrastructure.ErrInvalidArgument, Err: errTooLarge}
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
		sl, found := s.live(op.Key, now)
		switch {
		case o.ETag != "":
			if !found || strconv.FormatUint(sl.etag, 10) != o.ETag {
				return &infrastructure.OpError{Op: opName(op), Key: op.Key, Kind: infrastructure.ErrConflict, Err: errETagMismatch}
			}
		case found:
			return &infrastructure.OpError{Op: opName(op), Key: op.Key, Kind: infrastructure.ErrConflict, Err: errExists}
		}
	}
	for _, op := range ops {
		if op.Delete {
			if h, sl, w := s.find(op.Key); w != absent {
				s.remove(op.Key, h, sl, w)
			}
			continue
		}
		var expires int64
		if ttl := infrastructure.ResolveWriteOptions(op.Options).TTLSeconds(); ttl > 0 {
			expires = now + int64(ttl)*int64(time.Second)
		}
		h := s.put(op.Key, op.Value, expires)
		if expires != 0 {
			s.expiring.push(expiry{h: h, at: expires})
		}
	}
	// Removing expired keys on every write cost more than the write
	// itself; every sampleEvery-th write removes up to sampleExpiring.
	s.writes++
	if s.writes%sampleEvery == 0 {
		s.removeExpired(now)
	}
	if d := s.arena.dead(); d > s.arena.liveBytes && d > s.compactFloor {
		s.compact()
	}
	return nil
}

// put stores value under key with a new ETag and returns key's hash.
func (s *StateStore) put(key string, value []byte, expires int64) uint64 {
	h, old, w := s.find(key)
	s.seq++
	var sl slot
	if w != absent && len(value) <= int(old.vlen) {
		// The new value fits where the old one was: no reader holds the
		// old bytes (Get copies them under the read lock), so write over
		// them. Keys rewritten on every message (head hints, read cursors,
		// presence) then leave nothing to compact.
		copy(s.arena.value(old), value)
		if d := int(old.vlen) - len(value); d > 0 {
			s.arena.release(old.chunk, d)
		}
		sl = old
		sl.vlen = uint32(len(value))
	} else {
		if w != absent {
			s.arena.release(old.chunk, int(old.klen)+int(old.vlen))
		}
		c, off, buf := s.arena.alloc(len(key) + len(value))
		copy(buf, key)
		copy(buf[len(key):], value)
		sl = slot{chunk: c, off: off, klen: uint32(len(key)), vlen: uint32(len(value))}
	}
	sl.etag, sl.expires = s.seq, expires
	switch {
	case w == spilled:
		s.spill[key] = sl
	case w == indexed:
		s.index[h] = sl
	default:
		if _, taken := s.index[h]; taken {
			s.spill[key] = sl
		} else {
			s.index[h] = sl
		}
	}
	return h
}

// remove deletes the entry found for key.
func (s *StateStore) remove(key string, h uint64, sl slot, w where) {
	s.arena.release(sl.chunk, int(sl.klen)+int(sl.vlen))
	if w == spilled {
		delete(s.spill, key)
		return
	}
	// A spilled key of the same hash stays in spill: find looks there
	// whenever the index does not hold the key.
	delete(s.index, h)
}

// removeExpired pops up to sampleExpiring expired records and removes the
// entries they still describe.
func (s *StateStore) removeExpired(now int64) {
	for n := 0; n < sampleExpiring && len(s.expiring) > 0 && s.expiring[0].at <= now; n++ {
		x := s.expiring.pop()
		if sl, ok := s.index[x.h]; ok && sl.expires == x.at {
			s.arena.release(sl.chunk, int(sl.klen)+int(sl.vlen))
			delete(s.index, x.h)
		}
		for k, sl := range s.spill {
			if sl.expires == x.at && s.hashOf(k) == x.h {
				s.remove(k, x.h, sl, spilled)
			}
		}
	}
}

// compact copies every entry, expired or not, into fresh chunks and lets
// the old ones go, so that the arena holds no more than the live bytes plus
// the unfilled end of its last chunk. Transact calls it once the unused
// bytes exceed both the live bytes and compactFloor. It runs under the write
// lock, and costs one pass over the index and spill and one copy of the
// live bytes, with readers and writers waiting: BenchmarkCompact takes
// about 100 ms for a million entries of 190 bytes, mostly in updating the
// index. Since more bytes than are live must be overwritten or deleted
// again before the next one, its cost per byte written is constant, and
// the arena stays under about twice the live bytes, or the live bytes plus
// compactFloor.
func (s *StateStore) compact() {
	fresh := arena{chunkSize: s.arena.chunkSize}
	move := func(sl slot) slot {
		n := int(sl.klen) + int(sl.vlen)
		c, off, buf := fresh.alloc(n)
		copy(buf, s.arena.chunks[sl.chunk][sl.off:int(sl.off)+n])
		sl.chunk, sl.off = c, off
		return sl
	}
	// Assigning to keys already present while ranging over a map is
	// allowed and visits each key once.
	for h, sl := range s.index {
		s.index[h] = move(sl)
	}
	for k, sl := range s.spill {
		s.spill[k] = move(sl)
	}
	s.arena = fresh
	s.compactions++
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

var _ infrastructure.BatchInserter = (*StateStore)(nil)

// InsertAll inserts the items whose keys are free, under one lock: the
// whole write or none of it is seen.
func (s *StateStore) InsertAll(ctx context.Context, items []infrastructure.Insert) ([]error, bool) {
	errs := make([]error, len(items))
	for i, it := range items {
		if err := checkKey("insert", it.Key); err != nil {
			errs[i] = err
			continue
		}
		if len(it.Key) > math.MaxUint32 || len(it.Value) > math.MaxUint32 {
			errs[i] = &infrastructure.OpError{Op: "insert", Key: it.Key, Kind: infrastructure.ErrInvalidArgument, Err: errTooLarge}
		}
	}
	if err := ctx.Err(); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = &infrastructure.OpError{Op: "insert", Key: items[i].Key, Kind: infrastructure.ErrUnavailable, Err: err}
			}
		}
		return errs, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UnixNano()
	for i, it := range items {
		if errs[i] != nil {
			continue
		}
		if _, found := s.live(it.Key, now); found {
			errs[i] = &infrastructure.OpError{Op: "insert", Key: it.Key, Kind: infrastructure.ErrConflict, Err: errExists}
			continue
		}
		s.put(it.Key, it.Value, 0)
	}
	before := s.writes
	s.writes += uint64(len(items))
	if before/sampleEvery != s.writes/sampleEvery {
		s.removeExpired(now)
	}
	if d := s.arena.dead(); d > s.arena.liveBytes && d > s.compactFloor {
		s.compact()
	}
	return errs, true
}
