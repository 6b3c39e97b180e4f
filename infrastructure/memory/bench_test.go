package memory_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/parley-im/parley/infrastructure/memory"
)

// The same benchmarks as infrastructure/dapr's, against the in-process
// adapter: the difference is what the sidecar costs.

func BenchmarkStateSet(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		s := memory.NewStateStore()
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

func BenchmarkStateGet(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		s := memory.NewStateStore()
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

func BenchmarkPublish(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		ps := memory.NewPubSub()
		ctx := context.Background()
		payload := make([]byte, 256)
		b.ReportAllocs()
		for b.Loop() {
			if err := ps.Publish(ctx, "bench", payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}
