package dapr_test

import (
	"context"
	"strconv"
	"testing"

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
