package dapr

import (
	"context"
	"net"

	"google.golang.org/grpc"
)

// NewWithDialer is New over a custom dialer, so that tests can reach an
// in-process fake sidecar over bufconn.
func NewWithDialer(ctx context.Context, cfg Config, dial func(context.Context, string) (net.Conn, error)) (*Client, error) {
	return newClient(ctx, cfg, grpc.WithContextDialer(dial))
}

// CoalescedCalls reports how many Gets, Sets and Transacts went out in a
// batch of two or more.
func CoalescedCalls(c *Client) (gets, sets, transacts int64) {
	return c.state.gets.coalesced.Load(), c.state.sets.coalesced.Load(), c.state.txs.coalesced.Load()
}

// MaxBatchesInFlight is how many batches the coalescing fake (an in-memory
// store) lets be in flight.
var MaxBatchesInFlight = int(batchSlots("state.in-memory"))
