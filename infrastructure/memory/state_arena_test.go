package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
)

// newTinyStore returns a store whose arena has chunks of chunk bytes and
// compacts past floor unused bytes, so that a test of a few thousand writes
// fills many chunks and compacts many times. hash, when not nil, replaces
// the seeded hash of keys.
func newTinyStore(chunk, floor int, hash func(string) uint64, clock *time.Time) *StateStore {
	s := NewStateStore()
	s.arena.chunkSize = chunk
	s.compactFloor = floor
	s.hash = hash
	s.now = func() time.Time { return *clock }
	return s
}

// modelEntry is what a plain map model of the store holds for a key.
type modelEntry struct {
	value   string
	etag    uint64
	expires int64
}

// model replays the store's documented behaviour on an ordinary map.
type model struct {
	items map[string]modelEntry
	seq   uint64
}

func (m *model) live(key string, now int64) (modelEntry, bool) {
	e, ok := m.items[key]
	if !ok || (e.expires != 0 && now >= e.expires) {
		return modelEntry{}, false
	}
	return e, true
}

// transact returns whether the ops apply; if they do, it applies them.
func (m *model) transact(ops []infrastructure.StateOp, now int64) bool {
	for _, op := range ops {
		o := infrastructure.ResolveWriteOptions(op.Options)
		e, found := m.live(op.Key, now)
		if o.ETag != "" && (!found || strconv.FormatUint(e.etag, 10) != o.ETag) {
			return false
		}
		if o.ETag == "" && o.IfAbsent && !op.Delete && found {
			return false
		}
	}
	for _, op := range ops {
		if op.Delete {
			delete(m.items, op.Key)
			continue
		}
		var expires int64
		if ttl := infrastructure.ResolveWriteOptions(op.Options).TTLSeconds(); ttl > 0 {
			expires = now + ttl*int64(time.Second)
		}
		m.seq++
		m.items[op.Key] = modelEntry{value: string(op.Value), etag: m.seq, expires: expires}
	}
	return true
}

// checkAgainstModel compares every key's reading, and every stored slot,
// with the model, and the arena's live byte count with the slots.
func checkAgainstModel(t *testing.T, s *StateStore, m *model, keys []string, now int64) {
	t.Helper()
	ctx := context.Background()
	items, err := s.BulkGet(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		e, found := m.live(k, now)
		it := items[i]
		if it.Found != found || string(it.Value) != e.value || (found && it.ETag != strconv.FormatUint(e.etag, 10)) {
			t.Fatalf("%s reads %+v, want found %v value %q etag %d", k, it, found, e.value, e.etag)
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	liveBytes := 0
	check := func(k string, sl slot) {
		liveBytes += int(sl.klen + sl.vlen)
		e, ok := m.items[k]
		if !ok {
			t.Fatalf("%s stored, but deleted in the model", k)
		}
		if string(s.arena.value(sl)) != e.value || sl.etag != e.etag || sl.expires != e.expires {
			t.Fatalf("%s stored as %q etag %d expires %d, want %q %d %d", k, s.arena.value(sl), sl.etag, sl.expires, e.value, e.etag, e.expires)
		}
	}
	for h, sl := range s.index {
		k := string(s.arena.key(sl))
		if s.hashOf(k) != h {
			t.Fatalf("%s indexed under hash %x, its hash is %x", k, h, s.hashOf(k))
		}
		check(k, sl)
	}
	for k, sl := range s.spill {
		if string(s.arena.key(sl)) != k {
			t.Fatalf("spilled %s points at key %q", k, s.arena.key(sl))
		}
		check(k, sl)
	}
	if liveBytes != s.arena.liveBytes {
		t.Fatalf("arena counts %d live bytes, the slots %d", s.arena.liveBytes, liveBytes)
	}
	// Every key alive in the model is stored: the store may only have
	// removed expired ones.
	for k, e := range m.items {
		if _, _, w := s.find(k); w == absent && (e.expires == 0 || now < e.expires) {
			t.Fatalf("%s lost", k)
		}
	}
}

// TestStoreMatchesMapModel drives the store and a plain map with the same
// random writes, deletes, compare-and-sets, inserts-if-absent, TTLs and
// transactions, with keys that hash apart, that collide in groups, and that
// all collide, in an arena small enough to compact hundreds of times. Every
// key, value, ETag and expiry must match the model throughout.
func TestStoreMatchesMapModel(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		hash func(string) uint64
	}{
		{name: "seeded_hash", hash: nil},
		{name: "eight_hashes", hash: func(k string) uint64 { return uint64(len(k)%8) * 0x9e3779b97f4a7c15 }},
		{name: "one_hash", hash: func(string) uint64 { return 42 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := time.Unix(1_000_000, 0)
			s := newTinyStore(512, 256, tc.hash, &clock)
			m := &model{items: make(map[string]modelEntry)}
			r := rand.New(rand.NewPCG(7, uint64(len(tc.name))))
			ctx := context.Background()
			keys := make([]string, 120)
			for i := range keys {
				keys[i] = fmt.Sprintf("k%d:%s", i, string(make([]byte, i%13)))
			}
			randomValue := func() []byte {
				n := r.IntN(40)
				if r.IntN(20) == 0 {
					n = 100 + r.IntN(900) // past a quarter chunk: a chunk of its own
				}
				v := make([]byte, n)
				for i := range v {
					v[i] = byte('a' + r.IntN(26))
				}
				return v
			}
			randomOp := func() infrastructure.StateOp {
				k := keys[r.IntN(len(keys))]
				op := infrastructure.StateOp{Key: k}
				switch r.IntN(10) {
				case 0:
					op.Delete = true
				case 1:
					op.Delete = true
					op.Options = []infrastructure.WriteOption{infrastructure.IfMatch(m.etagOf(k, r))}
				case 2:
					op.Value = randomValue()
					op.Options = []infrastructure.WriteOption{infrastructure.IfAbsent()}
				case 3:
					op.Value = randomValue()
					op.Options = []infrastructure.WriteOption{infrastructure.IfMatch(m.etagOf(k, r))}
				case 4, 5:
					op.Value = randomValue()
					op.Options = []infrastructure.WriteOption{infrastructure.WithTTL(time.Duration(1+r.IntN(5)) * time.Second)}
				default:
					op.Value = randomValue()
				}
				return op
			}
			const rounds = 6000
			for i := range rounds {
				ops := []infrastructure.StateOp{randomOp()}
				if r.IntN(5) == 0 {
					ops = append(ops, randomOp(), randomOp())
				}
				now := clock.UnixNano()
				want := m.transact(ops, now)
				err := s.Transact(ctx, ops)
				if want != (err == nil) {
					t.Fatalf("round %d: %+v: store says %v, model applies %v", i, ops, err, want)
				}
				if err != nil && !errors.Is(err, infrastructure.ErrConflict) {
					t.Fatalf("round %d: %v, want ErrConflict", i, err)
				}
				if r.IntN(50) == 0 {
					clock = clock.Add(time.Duration(r.IntN(1500)) * time.Millisecond)
				}
				if i%97 == 0 || i == rounds-1 {
					checkAgainstModel(t, s, m, keys, clock.UnixNano())
				}
			}
			if s.compactions < 10 {
				t.Fatalf("%d compactions, want the test to run many", s.compactions)
			}
		})
	}
}

// etagOf returns key's current ETag most of the time, and otherwise a stale
// or made-up one.
func (m *model) etagOf(key string, r *rand.Rand) string {
	if e, ok := m.items[key]; ok && r.IntN(4) != 0 {
		return strconv.FormatUint(e.etag, 10)
	}
	return strconv.FormatUint(r.Uint64N(m.seq+2), 10)
}

// TestCollidingKeysExpire: keys that share one hash with keys written
// without TTL leave the store once expired, whether the index or the spill
// holds them, and the others stay.
func TestCollidingKeysExpire(t *testing.T) {
	t.Parallel()
	clock := time.Unix(1_000_000, 0)
	s := newTinyStore(defaultChunkSize, defaultCompactFloor, func(string) uint64 { return 7 }, &clock)
	ctx := context.Background()
	for i := range 50 {
		var opts []infrastructure.WriteOption
		if i%2 == 0 {
			opts = append(opts, infrastructure.WithTTL(time.Second))
		}
		if err := s.Set(ctx, fmt.Sprint("k", i), []byte(fmt.Sprint("v", i)), opts...); err != nil {
			t.Fatal(err)
		}
	}
	clock = clock.Add(2 * time.Second)
	for range sampleEvery {
		if err := s.Set(ctx, "k1", []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.RLock()
	left := len(s.index) + len(s.spill)
	s.mu.RUnlock()
	if left != 25 {
		t.Fatalf("%d keys left, want the 25 without TTL", left)
	}
	for i := range 50 {
		it, err := s.Get(ctx, fmt.Sprint("k", i))
		if err != nil || it.Found != (i%2 == 1) || (it.Found && string(it.Value) != fmt.Sprint("v", i)) {
			t.Fatalf("k%d reads %+v, %v", i, it, err)
		}
	}
}

// TestOverwriteKeepsArenaBounded: rewriting the same keys with values of
// changing length, and deleting and inserting keys, never lets the arena
// grow past about twice the live bytes plus the compaction floor, however
// many bytes were written.
func TestOverwriteKeepsArenaBounded(t *testing.T) {
	t.Parallel()
	const chunk, floor = 4 << 10, 16 << 10
	clock := time.Unix(1_000_000, 0)
	s := newTinyStore(chunk, floor, nil, &clock)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	written := 0
	for i := range 100_000 {
		k := "presence:" + strconv.Itoa(r.IntN(500))
		if r.IntN(10) == 0 {
			if err := s.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
			continue
		}
		v := make([]byte, 1+r.IntN(300))
		written += len(k) + len(v)
		if err := s.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		a := &s.arena
		if limit := 2*a.liveBytes + floor + chunk; a.size > limit {
			t.Fatalf("write %d: arena holds %d bytes for %d live, over %d", i, a.size, a.liveBytes, limit)
		}
	}
	if s.compactions == 0 {
		t.Fatal("no compaction")
	}
	t.Logf("%d bytes written, arena %d bytes for %d live, %d compactions", written, s.arena.size, s.arena.liveBytes, s.compactions)
}

// TestSameLengthOverwriteWritesInPlace: a value rewritten at its length or
// shorter takes the old one's place, so counters and cursors rewritten on
// every message leave no bytes to compact.
func TestSameLengthOverwriteWritesInPlace(t *testing.T) {
	t.Parallel()
	clock := time.Unix(1_000_000, 0)
	s := newTinyStore(defaultChunkSize, defaultCompactFloor, nil, &clock)
	ctx := context.Background()
	for i := range 10_000 {
		if err := s.Set(ctx, "cursor", []byte(fmt.Sprintf("%08d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if d := s.arena.dead(); d != 0 || s.arena.liveBytes != len("cursor")+8 {
		t.Fatalf("%d dead bytes and %d live, want 0 and %d", d, s.arena.liveBytes, len("cursor")+8)
	}
	if it, _ := s.Get(ctx, "cursor"); string(it.Value) != "00009999" || it.ETag != "10000" {
		t.Fatalf("cursor reads %+v", it)
	}
}

// TestValuesAreCopies: neither the caller's slice after a Set nor a read
// value changed by its reader reaches the store, and a later write in place
// does not reach a value read before it.
func TestValuesAreCopies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStateStore()
	v := []byte("original")
	if err := s.Set(ctx, "k", v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X'
	it, _ := s.Get(ctx, "k")
	if string(it.Value) != "original" {
		t.Fatalf("store kept the caller's slice: %q", it.Value)
	}
	it.Value[0] = 'Y'
	if err := s.Set(ctx, "k", []byte("replaced")); err != nil {
		t.Fatal(err)
	}
	if string(it.Value) != "Yriginal" {
		t.Fatalf("a write reached a value already read: %q", it.Value)
	}
	if again, _ := s.Get(ctx, "k"); string(again.Value) != "replaced" {
		t.Fatalf("k reads %q, want replaced", again.Value)
	}
	if err := s.Set(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if it, _ := s.Get(ctx, "empty"); !it.Found || it.Value != nil {
		t.Fatalf("empty value reads %+v, want found with nil value", it)
	}
}
