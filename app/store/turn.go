package store

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/parley-im/parley/infrastructure"
)

// Turn orders the sends of one source, a device's connection, that are
// handled at once: a send takes its place in its conversation's claim
// queue only once the source's previous send took its place or ended. The
// sends of a source to one conversation thus get their seqs in the order
// the source made them, while their lookups, hooks and writes overlap.
//
// A Turn is made per send with NewTurn, given to Append in AppendOptions,
// and ended with Placed when the send is over, whatever became of it
// (Append places it as soon as it is queued). Safe for concurrent use.
//
// The sends of one source also claim their seqs in separate rounds (see
// claimable): a round whose batched write finds a seq taken by another
// node stores the sends after it and claims that one again, later, which
// would put a source's send after its next one.
type Turn struct {
	after  <-chan struct{} // the previous send's placed; nil for none
	placed chan struct{}
	done   atomic.Bool
	source *turnSource // shared by the turns of one source
}

// turnSource names a source; not zero-sized, so that each is distinct.
type turnSource struct{ _ byte }

// NewTurn makes the turn of a send that comes after prev's (nil for the
// first send of a source).
func NewTurn(prev *Turn) *Turn {
	t := &Turn{placed: make(chan struct{})}
	if prev == nil {
		t.source = new(turnSource)
		return t
	}
	t.source = prev.source
	if !prev.done.Load() {
		t.after = prev.placed
	}
	return t
}

// sourceOf is the source of t; nil for a send without a turn.
func (t *Turn) sourceOf() *turnSource {
	if t == nil {
		return nil
	}
	return t.source
}

// Placed says that the send took its place, or will not: the next send of
// the source may go on. Only the first call counts. A nil Turn does
// nothing.
func (t *Turn) Placed() {
	if t != nil && t.done.CompareAndSwap(false, true) {
		close(t.placed)
	}
}

// wait returns once the previous send of the source is placed, or fails
// when ctx ends first.
func (t *Turn) wait(ctx context.Context) error {
	if t == nil || t.after == nil {
		return nil
	}
	select {
	case <-t.after:
		return nil
	default:
	}
	select {
	case <-t.after:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the connection's previous send did not take its place in time: %w", infrastructure.ErrUnavailable)
	}
}
