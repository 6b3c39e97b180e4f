package dapr_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// benchProfiles are the profiles benchmarked through a real daprd: the
// in-process baseline and the default shared backend.
var benchProfiles = []string{daprdtest.Local, daprdtest.Redis}

func BenchmarkStateSet(b *testing.B) {
	for _, profile := range benchProfiles {
		b.Run(profile, func(b *testing.B) {
			s := startNode(b, profile).client.Backend().State
			ctx := context.Background()
			value := make([]byte, 256)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := s.Set(ctx, "bench-"+strconv.Itoa(i%1024), value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStateGet(b *testing.B) {
	for _, profile := range benchProfiles {
		b.Run(profile, func(b *testing.B) {
			s := startNode(b, profile).client.Backend().State
			ctx := context.Background()
			if err := s.Set(ctx, "bench-get", make([]byte, 256)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Get(ctx, "bench-get"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublish measures Publish until the broker accepted the message.
// Nothing subscribes: in-memory pub/sub would otherwise make each publish
// wait for the previous delivery.
func BenchmarkPublish(b *testing.B) {
	for _, profile := range benchProfiles {
		b.Run(profile, func(b *testing.B) {
			ps := startNode(b, profile).client.Backend().PubSub
			ctx := context.Background()
			topic := daprdtest.UniqueName("bench")
			payload := make([]byte, 256)
			b.ReportAllocs()
			for b.Loop() {
				if err := ps.Publish(ctx, topic, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchConnections is how many goroutines the parallel benchmarks run, like
// as many WebSocket connections sending at once.
const benchConnections = 64

// BenchmarkStateSetIfAbsentParallel measures insert-if-absent, the write of
// every chat send, from many goroutines at once, each on a fresh key.
func BenchmarkStateSetIfAbsentParallel(b *testing.B) {
	s := startNode(b, daprdtest.Local).client.Backend().State
	ctx := context.Background()
	prefix := daprdtest.UniqueName("bench-absent")
	value := make([]byte, 256)
	var n atomic.Int64
	b.SetParallelism(max(1, benchConnections/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := prefix + "-" + strconv.FormatInt(n.Add(1), 10)
			if err := s.Set(ctx, k, value, infrastructure.IfAbsent()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkStateGetParallel measures Get from many goroutines at once, over
// 1024 keys of which half exist.
func BenchmarkStateGetParallel(b *testing.B) {
	s := startNode(b, daprdtest.Local).client.Backend().State
	ctx := context.Background()
	prefix := daprdtest.UniqueName("bench-get")
	for i := 0; i < 1024; i += 2 {
		if err := s.Set(ctx, prefix+"-"+strconv.Itoa(i), make([]byte, 256)); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(max(1, benchConnections/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := prefix + "-" + strconv.FormatInt(n.Add(1)%1024, 10)
			if _, err := s.Get(ctx, k); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
