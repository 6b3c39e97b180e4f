package abuse_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/infrastructure/memory"
)

// BenchmarkConnectPath is what a connect costs a node: check the address
// and the user, then count the connect, with the "not suspended" answers
// cached as they are on a busy node.
func BenchmarkConnectPath(b *testing.B) {
	// Each reading of the clock moves it 1 ms on, so that the connects
	// spread over time as real ones do and stay under the thresholds.
	clk := newClock()
	now := func() time.Time { clk.advance(time.Millisecond); return clk.Now() }
	g, err := abuse.New(memory.NewStateStore(), abuse.Config{Now: now, Rules: abuse.Rules{MaxConnectsPerUser: 100000, MaxConnectsPerIP: 1000000}})
	if err != nil {
		b.Fatal(err)
	}
	ip := abuse.IP(netip.MustParseAddr("198.51.100.7"))
	user := abuse.User("alice")
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Check(ctx, ip, user); err != nil {
			b.Fatal(err)
		}
		if err := g.Record(ctx, abuse.Connect, user, ip); err != nil {
			b.Fatal(err)
		}
	}
}
