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
