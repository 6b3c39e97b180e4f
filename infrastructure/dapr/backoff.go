package dapr

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff paces re-subscriptions after daprd went away: exponential from
// 100 ms to 5 s, with jitter so that many nodes restarted together do not
// knock on their sidecars in step. One timer is re-armed for every wait.
// Not safe for concurrent use: each re-subscribing goroutine owns one.
type backoff struct {
	next  time.Duration
	timer *time.Timer
}

const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

func newBackoff() *backoff {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &backoff{next: backoffMin, timer: t}
}

// reset goes back to the shortest wait after a success.
func (b *backoff) reset() { b.next = backoffMin }

// wait sleeps for the current delay and doubles it. It returns false if ctx
// ended first.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, backoffMax)
	b.timer.Reset(d)
	select {
	case <-ctx.Done():
		b.timer.Stop()
		return false
	case <-b.timer.C:
		return true
	}
}

func (b *backoff) stop() { b.timer.Stop() }
