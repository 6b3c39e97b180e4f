package gateway

import (
	"context"
	"time"

	"github.com/parley-im/parley/app/gateway/wsconn"
	"github.com/parley-im/parley/app/store"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// DefaultMaxSendsInFlight is Config.MaxSendsInFlight when unset.
const DefaultMaxSendsInFlight = 8

// sendPipe handles a connection's sends, up to Config.MaxSendsInFlight at
// once, so that a device that sends without waiting for each ACK (as
// clients do with several messages queued) has them stored together:
// their lookups and writes share sidecar calls instead of following one
// another. What a device sees is what it saw when sends were handled one
// at a time:
//   - the sends of one conversation get their seqs in the order they came
//     (store.Turn);
//   - the answers, ack or error, go out in that order too.
//
// Other frames are not held behind sends: a ping sent after a send may be
// answered first.
type sendPipe struct {
	slots chan struct{} // one per send in flight
	// The previous send's turn and answer: touched only by the one
	// readReady running at a time.
	turn     *store.Turn
	answered chan struct{}
}

// startSend hands f, a send frame, to a goroutine of its own, and owns f
// from here on. It waits while the connection has as many sends in flight
// as allowed: the reader, and with it the device's next frames, is slowed.
func (c *conn) startSend(ctx context.Context, f *pb.Frame) {
	p := c.sends.Load()
	if p == nil {
		p = &sendPipe{slots: make(chan struct{}, c.srv.cfg.MaxSendsInFlight)}
		c.sends.Store(p)
	}
	p.slots <- struct{}{}
	turn := store.NewTurn(p.turn)
	prev, answered := p.answered, make(chan struct{})
	p.turn, p.answered = turn, answered
	wsconn.Go(func() {
		defer func() {
			turn.Placed()
			close(answered)
			putFrame(f)
			<-p.slots // last: see waitSends
		}()
		c.handleSend(ctx, f, turn, prev)
	})
}

// waitSends waits for the connection's sends in flight to end, at most d
// when d > 0. It takes every slot, which no send holds once it ended, and
// gives them back: a reader that starts a send meanwhile only waits.
func (c *conn) waitSends(d time.Duration) {
	p := c.sends.Load()
	if p == nil {
		return
	}
	var deadline <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
	}
	held := 0
	defer func() {
		for ; held > 0; held-- {
			<-p.slots
		}
	}()
	for held < cap(p.slots) {
		select {
		case p.slots <- struct{}{}:
			held++
		case <-deadline:
			return
		}
	}
}
