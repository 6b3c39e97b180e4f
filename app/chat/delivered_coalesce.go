package chat

import (
	"context"
	"sync"
	"time"

	"github.com/parley-im/parley/domain"
)

// CoalescingNotifier is a DeliveryNotifier that sends at most one event
// per (conversation, sender, reader) per window: the first at once, the
// ones that come within the window merged into one at its end, the newest
// seq winning. A reader that acknowledges a burst (or a client that floods
// acknowledgements) then costs the sender's devices one frame per window.
// The zero value is not usable; use NewCoalescingNotifier. Safe for
// concurrent use.
type CoalescingNotifier struct {
	next   DeliveryNotifier
	window time.Duration

	mu   sync.Mutex
	keys map[coalesceKey]*coalesced
}

type coalesceKey struct {
	conv           domain.ConversationID
	sender, reader domain.UserID
}

// coalesced is a key's window: the seq sent last, and a newer one waiting.
type coalesced struct {
	sent, waiting uint64
	ctx           context.Context
}

// NewCoalescingNotifier wraps next.
func NewCoalescingNotifier(next DeliveryNotifier, window time.Duration) *CoalescingNotifier {
	return &CoalescingNotifier{next: next, window: window, keys: make(map[coalesceKey]*coalesced)}
}

// NotifyDelivered sends now, or merges into the event sent when the key's
// window ends.
func (n *CoalescingNotifier) NotifyDelivered(ctx context.Context, sender domain.UserID, conv domain.ConversationID, seq uint64, reader domain.UserID) {
	k := coalesceKey{conv, sender, reader}
	n.mu.Lock()
	if e := n.keys[k]; e != nil {
		if seq > max(e.sent, e.waiting) {
			// The window's end runs after the request is answered. A
			// context that is never cancelled (a connection's) is kept as
			// it is: no allocation on this path, the one a burst takes.
			if ctx.Done() != nil {
				ctx = context.WithoutCancel(ctx)
			}
			e.waiting, e.ctx = seq, ctx
		}
		n.mu.Unlock()
		return
	}
	n.keys[k] = &coalesced{sent: seq}
	n.mu.Unlock()
	time.AfterFunc(n.window, func() { n.windowEnd(k) })
	n.next.NotifyDelivered(ctx, sender, conv, seq, reader)
}

// windowEnd sends what waited, and opens a new window if it sent.
func (n *CoalescingNotifier) windowEnd(k coalesceKey) {
	n.mu.Lock()
	e := n.keys[k]
	if e == nil || e.waiting == 0 {
		delete(n.keys, k)
		n.mu.Unlock()
		return
	}
	seq, ctx := e.waiting, e.ctx
	e.sent, e.waiting, e.ctx = seq, 0, nil
	n.mu.Unlock()
	time.AfterFunc(n.window, func() { n.windowEnd(k) })
	n.next.NotifyDelivered(ctx, k.sender, k.conv, seq, k.reader)
}
