package infrastructure

import "context"

// OutputBinding sends data to a system outside parley through a named
// binding: a push gateway, a company's notifier. Which system, and how it is
// reached, is configuration (a Dapr component), not code. Safe for
// concurrent use.
type OutputBinding interface {
	// Invoke runs operation (for an HTTP binding, the method: "post") on
	// the binding name with data as the body. metadata is passed to the
	// binding as is; for an HTTP binding, keys starting with a capital
	// letter become request headers. An unknown binding gives
	// ErrNotFound or ErrInvalidArgument; a binding whose far end failed
	// gives ErrUnavailable.
	Invoke(ctx context.Context, name, operation string, data []byte, metadata map[string]string) error
}
