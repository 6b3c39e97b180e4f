package infrastructure

import "context"

// Message is one pub/sub delivery. Delivery is at least once: handlers must
// tolerate duplicates, and order across messages is not kept.
type Message struct {
	ID       string
	Topic    string
	Data     []byte
	Metadata map[string]string
}

// Outcome tells the broker what to do with a delivered message.
type Outcome int

const (
	// Success acknowledges the message; it will not be delivered again.
	Success Outcome = iota
	// Retry asks for redelivery later, per the broker's resiliency policy.
	Retry
	// Drop discards the message (dead-lettered where the broker supports it).
	Drop
)

func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Retry:
		return "retry"
	case Drop:
		return "drop"
	}
	return "unknown"
}

// Handler processes one message. It must return within the broker's
// delivery timeout; ctx is cancelled when the subscription closes.
type Handler func(ctx context.Context, msg *Message) Outcome

// PubSub publishes to and subscribes on topics. Safe for concurrent use.
type PubSub interface {
	// Publish sends data to topic. It returns once the broker accepted it.
	Publish(ctx context.Context, topic string, data []byte) error
	// BulkPublish sends several messages to one topic in one call. On error
	// some of them may have been published; at-least-once makes re-sending safe.
	BulkPublish(ctx context.Context, topic string, data [][]byte) error
	// Subscribe delivers topic's messages to h until the Subscription is
	// closed or ctx ends. It survives sidecar restarts: the adapter
	// re-subscribes by itself.
	Subscribe(ctx context.Context, topic string, h Handler) (Subscription, error)
}

// Subscription is a live subscription. Close stops delivery and waits for
// the handler calls in flight to return.
type Subscription interface {
	Close() error
}
