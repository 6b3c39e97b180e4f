package memory

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
)

// mapStateLayout is how StateStore held its data before the arena: a map of
// key strings to entries holding a value slice, and an expiry heap of key
// strings. Only the layout is kept, to compare what each costs the garbage
// collector.
type mapStateLayout struct {
	items    map[string]mapEntry
	expiring []mapExpiry
	seq      uint64
}

type mapEntry struct {
	value   []byte
	etag    uint64
	expires int64
}

type mapExpiry struct {
	key string
	at  int64
}

func (m *mapStateLayout) set(key string, value []byte, expires int64) {
	m.seq++
	m.items[key] = mapEntry{value: append([]byte(nil), value...), etag: m.seq, expires: expires}
	if expires != 0 {
		m.expiring = append(m.expiring, mapExpiry{key: key, at: expires})
	}
}

// gcBenchKeys is the number of keys each store holds while the garbage
// collector is timed: what a server reaches after a few minutes of load.
const gcBenchKeys = 1_000_000

// gcBenchEntry returns the i-th key and whether it has a TTL: message keys
// of some 30 bytes with 160-byte values, one in three with a TTL, like
// idempotency records.
func gcBenchEntry(i int) (string, bool) {
	return fmt.Sprintf("msg:conv-%06d:%010d", i%50_000, i), i%3 == 0
}

// BenchmarkGCWithFullStore times a full garbage collection while a store
// holds gcBenchKeys entries, with the previous map layout and with the
// arena. ns/op is the wall time of runtime.GC; gc-cpu-ms/op the CPU the
// collector spent, from runtime/metrics.
func BenchmarkGCWithFullStore(b *testing.B) {
	value := make([]byte, 160)
	b.Run("map", func(b *testing.B) {
		m := &mapStateLayout{items: make(map[string]mapEntry)}
		exp := time.Now().Add(time.Hour).UnixNano()
		for i := range gcBenchKeys {
			k, ttl := gcBenchEntry(i)
			var at int64
			if ttl {
				at = exp
			}
			m.set(k, value, at)
		}
		timeGC(b)
		runtime.KeepAlive(m)
	})
	b.Run("arena", func(b *testing.B) {
		s := NewStateStore()
		ctx := context.Background()
		ttl := []infrastructure.WriteOption{infrastructure.WithTTL(time.Hour)}
		for i := range gcBenchKeys {
			k, withTTL := gcBenchEntry(i)
			var opts []infrastructure.WriteOption
			if withTTL {
				opts = ttl
			}
			if err := s.Set(ctx, k, value, opts...); err != nil {
				b.Fatal(err)
			}
		}
		timeGC(b)
		runtime.KeepAlive(s)
	})
}

func timeGC(b *testing.B) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(sample)
	before := sample[0].Value.Float64()
	n := 0
	for b.Loop() {
		runtime.GC()
		n++
	}
	metrics.Read(sample)
	b.ReportMetric((sample[0].Value.Float64()-before)*1e3/float64(n), "gc-cpu-ms/op")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
}

// BenchmarkCompact times one compaction of a store holding gcBenchKeys
// entries: the pause that readers and writers wait through. MB/s is live
// bytes copied per second.
func BenchmarkCompact(b *testing.B) {
	s := NewStateStore()
	ctx := context.Background()
	value := make([]byte, 160)
	for i := range gcBenchKeys {
		k, _ := gcBenchEntry(i)
		if err := s.Set(ctx, k, value); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(s.arena.liveBytes))
	for b.Loop() {
		s.mu.Lock()
		s.compact()
		s.mu.Unlock()
	}
}
