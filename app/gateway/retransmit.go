package gateway

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/gateway/wsconn"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/domain"
)

// A pushed message stays pending until the device acknowledges it with a
// recv frame; without one it is sent again every AckTimeout, AckTries times
// in all, then the connection is closed so that the client syncs. Heartbeats
// share the same timer: one timer per connection, re-armed for the earliest
// thing due.

type ackKey struct {
	conv domain.ConversationID
	seq  uint64
}

type pending struct {
	env      *delivery.Envelope
	deadline time.Time
	tries    int
}

// trackLocked adds env to the pending set unless it is there already, due
// an AckTimeout after now. It reports false when the set is full: the
// device does not acknowledge.
func (c *conn) trackLocked(env *delivery.Envelope, now time.Time) bool {
	key := ackKey{env.Msg.Conv, env.Msg.Seq}
	if c.pending == nil {
		c.pending = make(map[ackKey]*pending)
	}
	if _, dup := c.pending[key]; dup {
		return true
	}
	if len(c.pending) >= c.srv.cfg.MaxPendingAcks {
		return false
	}
	p := &pending{env: env, deadline: now.Add(c.srv.settings.Load().AckTimeout), tries: 1}
	c.pending[key] = p
	c.order = append(c.order, key)
	c.armLocked(p.deadline)
	return true
}

// untrack removes a pushed message from the pending set and returns it, or
// nil when it was not pending.
func (c *conn) untrack(conv domain.ConversationID, seq uint64) *pending {
	key := ackKey{conv, seq}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[key]
	delete(c.pending, key)
	return p
}

// armLocked makes the timer fire no later than at.
func (c *conn) armLocked(at time.Time) {
	if c.closed || (c.nextFire != 0 && at.UnixNano() >= c.nextFire) {
		return
	}
	c.nextFire = at.UnixNano()
	d := time.Until(at)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.onTimer)
		return
	}
	c.timer.Reset(d)
}

// onTimer handles heartbeats and ACK deadlines, then re-arms for the
// earliest next event.
func (c *conn) onTimer() {
	cfg := c.srv.settings.Load()
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.nextFire = 0
	lastRead := c.wc.LastRead()
	if c.pingedAt != 0 && lastRead > c.pingedAt {
		c.pingedAt = 0
	}
	idleSince := time.Unix(0, lastRead)
	var ping bool
	var next time.Time
	switch {
	case c.pingedAt != 0 && now.Sub(time.Unix(0, c.pingedAt)) >= cfg.HeartbeatIdle:
		c.mu.Unlock()
		c.logger().Info("dead peer: no answer to ping", zap.Duration("idle", now.Sub(idleSince)))
		c.closeWith(CloseDeadPeer, "no answer to ping")
		return
	case c.pingedAt != 0:
		next = time.Unix(0, c.pingedAt).Add(cfg.HeartbeatIdle)
	case now.Sub(idleSince) >= cfg.HeartbeatIdle:
		ping = true
		c.pingedAt = now.UnixNano()
		next = now.Add(cfg.HeartbeatIdle)
	default:
		next = idleSince.Add(cfg.HeartbeatIdle)
	}
	// ACK deadlines, in push order.
	var resend [][]byte
	for len(c.order) > 0 {
		key := c.order[0]
		p := c.pending[key]
		if p == nil {
			c.order = c.order[1:]
			continue
		}
		if p.deadline.After(now) {
			if p.deadline.Before(next) {
				next = p.deadline
			}
			break
		}
		if p.tries >= cfg.AckTries {
			c.mu.Unlock()
			c.srv.metrics.MessageDropped(metrics.DropAckTimeout)
			c.logger().Info("delivery not acknowledged, closing for re-sync",
				zap.String("conv", string(key.conv)), zap.Uint64("seq", key.seq), zap.Int("tries", p.tries))
			c.closeWith(CloseAckTimeout, "messages not acknowledged; reconnect and sync")
			return
		}
		p.tries++
		p.deadline = now.Add(cfg.AckTimeout)
		c.order = append(c.order[1:], key)
		data, err := p.env.Encoded(c.encoding, c.encodeMsg)
		if err == nil {
			resend = append(resend, data)
		}
	}
	if len(c.order) == 0 {
		c.order = nil // let a grown backing array go
	}
	for _, data := range resend {
		if err := c.wc.Queue(data, true); err != nil {
			c.mu.Unlock()
			if errors.Is(err, wsconn.ErrQueueFull) {
				c.srv.metrics.MessageDropped(metrics.DropQueueFull)
				c.srv.metrics.SlowConsumerCut(metrics.SlowQueueFull)
				c.closeWith(CloseSlowConsumer, "write queue full; reconnect and sync")
			}
			return
		}
		c.srv.metrics.MessageRetransmitted()
		c.srv.metrics.FrameOut("msg")
	}
	c.armLocked(next)
	c.mu.Unlock()
	if ping {
		_ = c.wc.Ping()
	}
}
