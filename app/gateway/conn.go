package gateway

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/gateway/wsconn"
	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/domain"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// WebSocket close codes parley sends. The README documents each and what a
// client should do.
const (
	// CloseGoingAway (1001): the server is shutting down; reconnect, then sync.
	CloseGoingAway = websocket.CloseGoingAway
	// CloseSlowConsumer: the client did not read fast enough and its queue
	// filled; reconnect and sync.
	CloseSlowConsumer = 4008
	// CloseAckTimeout: a pushed message was not acknowledged after the last
	// try; reconnect and sync.
	CloseAckTimeout = 4009
	// CloseDeadPeer: the connection stayed silent after a ping; reconnect.
	CloseDeadPeer = 4010
	// CloseFlooding: the client sent frames faster than MaxFrameRate for
	// longer than the burst allows, even once slowed down; fix the client.
	CloseFlooding = 4011
	// CloseBanned: the user or the address was suspended while connected
	// (by an operator, or for abuse); the close reason says until when.
	// Do not reconnect before then: connecting is refused with banned.
	CloseBanned = 4012
)

// conn is one device's WebSocket: the protocol on top of a wsconn.Conn. It
// has no goroutine of its own while idle: the poller starts a reader when
// bytes arrive (see readReady), the transport a writer while something is
// queued, and one timer serves heartbeats and delivery-ACK deadlines (see
// retransmit.go).
type conn struct {
	// wc is held by value: one allocation per connection, not two.
	wc     wsconn.Conn
	srv    *Server
	id     string
	user   domain.UserID
	device string
	codec  codec
	// encoding is the wire format of the frames this device reads.
	encoding delivery.Encoding
	// ip is the device's source address as the abuse guard counts it.
	ip abuse.Subject
	// sinceMs is when the device connected, in Unix milliseconds.
	sinceMs int64

	// ctx carries the upgrade request's values to the use cases.
	ctx          context.Context
	teardownOnce sync.Once

	mu       sync.Mutex
	closed   bool
	reading  bool // a readReady is running
	pending  map[ackKey]*pending
	order    []ackKey // push order; acked entries are skipped lazily
	timer    *time.Timer
	nextFire int64  // unix nanos the timer is set for, 0 when unset; not a time.Time, to keep conn in a 512-byte size class
	pingedAt int64  // unix nanos of the last ping, 0 when none is outstanding
	pushes   uint32 // pushes queued, for sampling the write-queue fill
	// synced is, per conversation, the newest seq a sync answer gave this
	// device: a push of that seq or an older one repeats what it has. Nil
	// until the device syncs.
	synced map[domain.ConversationID]uint64

	// Touched only by the one readReady running at a time.
	frames  frameBudget
	ackedTo map[domain.ConversationID]uint64 // highest seq this device acknowledged, per conversation
	// sends is nil until the device sends; set by the reader, read by a
	// drain that may run beside it.
	sends atomic.Pointer[sendPipe]
}

// queueFillEvery is how many pushes of a connection make one sample of
// its write-queue fill (parley_write_queue_fill_ratio); the first is one.
const queueFillEvery = 8

// logger is built on demand: a logger with fields per connection costs
// about a kilobyte, and most connections never log after "connected".
func (c *conn) logger() *zap.Logger {
	return c.srv.log.With(zap.String("conn", c.id), zap.String("user", string(c.user)))
}

func (c *conn) ID() string          { return c.id }
func (c *conn) User() domain.UserID { return c.user }

// ConnectedMs is when the device connected: a message stored well before
// it reaches the device by sync, not by a push from another node's backlog.
func (c *conn) ConnectedMs() int64 { return c.sinceMs }

var _ delivery.Connected = (*conn)(nil)

// Push queues a message for the device and tracks it until the device
// acknowledges it. It never waits on the device: one that cannot keep up
// is cut, and the cut costs the caller nothing (see wsconn.Conn.Close).
func (c *conn) Push(env *delivery.Envelope) {
	m := c.srv.metrics
	data, err := env.Encoded(c.encoding, c.encodeMsg)
	if err != nil {
		c.logger().Error("encode message", zap.String("msg_id", env.Msg.ID), zap.Error(err))
		m.MessageDropped(metrics.DropEncode)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		m.MessageDropped(metrics.DropConnClosed)
		return
	}
	if env.Msg.Seq <= c.synced[env.Msg.Conv] {
		// Its sync gave the device this one already: a node's backlog, or a
		// hand-off that came late.
		c.mu.Unlock()
		return
	}
	// One clock read serves the ACK deadline and the delivery latency.
	now := time.Now()
	if !env.NoAck && !c.trackLocked(env, now) {
		c.mu.Unlock()
		m.MessageDropped(metrics.DropPendingFull)
		m.SlowConsumerCut(metrics.SlowPendingFull)
		c.closeWith(CloseSlowConsumer, "too many unacknowledged messages; reconnect and sync")
		return
	}
	queued, capacity, err := c.wc.QueueMeasured(data, true)
	// The fill is sampled, one push in queueFillEvery: its distribution
	// is what matters, and a histogram per push cost as much as the rest
	// of the push's metrics.
	c.pushes++
	sampleFill := c.pushes%queueFillEvery == 1
	c.mu.Unlock()
	switch {
	case err == nil:
		if m != nil {
			m.MessagePushed(now.Sub(time.UnixMilli(env.Msg.ServerMs)))
			m.FrameOut("msg")
			if sampleFill {
				m.WriteQueueFill(queued, capacity)
			}
		}
	case errors.Is(err, wsconn.ErrQueueFull):
		m.MessageDropped(metrics.DropQueueFull)
		m.SlowConsumerCut(metrics.SlowQueueFull)
		c.closeWith(CloseSlowConsumer, "write queue full; reconnect and sync")
	default:
		m.MessageDropped(metrics.DropConnClosed)
	}
}

// Notify sends a small event frame; events are not retransmitted. An event
// does not start a write of its own: it rides with the next frame to the
// device (a sender's next ACK, typically), or leaves within
// wsconn.EventDelay. That saves a write(2) per message on a busy connection.
func (c *conn) Notify(ev delivery.Event) {
	if ev.Type == eventBanned {
		c.closeBanned(int64(ev.Count))
		return
	}
	f := getFrame()
	f.Type, f.Conv, f.Seq, f.User, f.Note = ev.Type, string(ev.Conv), ev.Seq, string(ev.User), ev.Note
	if ev.Type == "typing" {
		f.On = ev.Count != 0
	} else {
		f.Count = ev.Count
	}
	c.queueFrame(f, false)
	putFrame(f)
}

// send encodes and queues a frame. It reports false if the connection is
// closed or was just closed for being slow.
func (c *conn) send(f *pb.Frame) bool { return c.queueFrame(f, true) }

// queueFrame encodes and queues a frame, starting the writer now, or, for
// a frame that can wait (an event), within wsconn.EventDelay.
func (c *conn) queueFrame(f *pb.Frame, now bool) bool {
	bp := encodeBuffers.Get().(*[]byte)
	defer encodeBuffers.Put(bp)
	data, err := c.codec.appendEncode((*bp)[:0], f)
	if cap(data) <= maxPooledEncodeBuffer {
		*bp = data[:0]
	}
	if err != nil {
		c.logger().Error("encode frame", zap.String("type", f.Type), zap.Error(err))
		return false
	}
	err = c.wc.Queue(data, now)
	if err == nil {
		c.srv.metrics.FrameOut(f.Type)
		return true
	}
	if errors.Is(err, wsconn.ErrQueueFull) {
		c.srv.metrics.SlowConsumerCut(metrics.SlowQueueFull)
		c.closeWith(CloseSlowConsumer, "write queue full; reconnect and sync")
	}
	return false
}

// closeWith ends the connection with a close frame (none when code is 0),
// once. It returns at once: the transport writes the close frame and closes
// the socket on a goroutine of its own, and the reader, if one runs, then
// fails and cleans up.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	reading := c.reading
	c.mu.Unlock()
	c.srv.metrics.ConnClosed(code)
	c.wc.Close(code, reason)
	if !reading {
		// No reader will come back to it: unregister now, without making
		// the caller (maybe a delivery to another device) wait.
		go c.teardown()
	}
}

// WriteFailed is the transport telling that the client stopped reading or
// left.
func (c *conn) WriteFailed(error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if !closed {
		// A write that fails after the close (the socket shut under it)
		// is no slow consumer.
		c.srv.metrics.SlowConsumerCut(metrics.SlowWriteFailed)
	}
	c.closeWith(CloseSlowConsumer, "write failed")
}

// start begins serving: the hello frame, the heartbeat timer, and the
// poller's watch. From here on the connection has no goroutine of its own
// until a frame arrives.
// maxSynced bounds the conversations a connection remembers syncing; past
// it the record starts over, which costs at most a repeated push.
const maxSynced = 1024

// noteSynced records that a sync answer gave the device conv up to seq.
func (c *conn) noteSynced(conv domain.ConversationID, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.synced == nil || len(c.synced) >= maxSynced {
		c.synced = make(map[domain.ConversationID]uint64)
	}
	c.synced[conv] = max(c.synced[conv], seq)
}

// hello queues the hello frame. It is the first frame a device gets: it
// is queued before the connection is registered, so no push can come first.
func (c *conn) hello() {
	c.send(&pb.Frame{Type: "hello", User: string(c.user), Conn: c.id, Node: c.srv.cfg.NodeID})
}

func (c *conn) start() {
	c.mu.Lock()
	c.armLocked(time.Now().Add(c.srv.settings.Load().HeartbeatIdle))
	c.mu.Unlock()
	if !c.wc.Polled() {
		go func() {
			for c.readReady() {
			}
		}()
		if c.srv.draining.Load() {
			// Admitted just before a shutdown looked for connections:
			// interrupt the read, which then drains.
			c.wc.InterruptRead()
		}
		return
	}
	if err := c.srv.poller.Watch(&c.wc); err != nil {
		c.logger().Warn("cannot watch the connection", zap.Error(err))
		c.closeWith(websocket.CloseTryAgainLater, "server cannot take the connection; retry")
		return
	}
	if c.srv.draining.Load() {
		// Admitted just before a shutdown began, and registered after it
		// looked for connections to drain.
		c.drain()
	}
}

// Readable is the poller telling that bytes arrived.
func (c *conn) Readable() { c.readReady() }

// Message is one whole data message from the device. A device that sends
// faster than MaxFrameRate is slowed (its own reader waits), then cut.
func (c *conn) Message(binary bool, payload []byte) bool {
	wait, ok := c.frames.take(time.Now().UnixNano(), float64(c.srv.cfg.MaxFrameRate), float64(c.srv.cfg.MaxFrameBurst))
	if !ok {
		c.logger().Info("frame flood, closing")
		c.closeWith(CloseFlooding, "too many frames; slow down")
		c.srv.rateLimited(c.ctx, c.user)
		return false
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		<-t.C
	}
	c.handle(c.ctx, binary, payload)
	return true
}

// frameBudget is a token bucket of frames. The zero value is full. Times
// are Unix nanoseconds, not time.Time, to keep conn in its size class.
type frameBudget struct {
	last        int64
	tokens      float64 // may go negative: the debt the reader waits off
	slowedSince int64   // zero while the client keeps to the rate
}

// maxSlowed is how long a client may be held to the rate, without a
// pause, before it is cut.
const maxSlowed = time.Second

// take spends one frame at now (Unix nanoseconds). It returns how long the
// reader must wait before handling it, or false when the client has been
// slowed for maxSlowed.
func (b *frameBudget) take(now int64, rate, burst float64) (time.Duration, bool) {
	if b.last == 0 {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+time.Duration(now-b.last).Seconds()*rate)
	}
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		b.slowedSince = 0
		return 0, true
	}
	if b.slowedSince == 0 {
		b.slowedSince = now
	}
	if time.Duration(now-b.slowedSince) > maxSlowed {
		return 0, false
	}
	return time.Duration(-b.tokens / rate * float64(time.Second)), true
}

// readReady reads and handles everything the socket holds, in order, then
// asks the poller for the next readiness. It reports whether the
// connection goes on. At most one readReady runs per connection.
func (c *conn) readReady() bool {
	c.mu.Lock()
	if c.closed || c.reading {
		c.mu.Unlock()
		return false
	}
	c.reading = true
	c.mu.Unlock()
	err := c.wc.ReadAvailable()
	if err != nil {
		// Closed while the read is still in hand, so that the teardown is
		// this goroutine's. (Only on error: the target of errors.As
		// escapes, and this path runs once per readiness.)
		if ce := (*wsconn.CloseError)(nil); errors.As(err, &ce) {
			c.closeWith(ce.Code, ce.Reason)
		}
	}
	c.mu.Lock()
	c.reading = false
	closed := c.closed
	c.mu.Unlock()
	if err != nil && !closed {
		if c.srv.draining.Load() {
			// A blocking read interrupted by the shutdown (see
			// Server.Shutdown): flush, then say goodbye.
			c.drain()
			return false
		}
		c.logger().Debug("read ended", zap.Error(err))
		c.closeWith(0, "")
		closed = true
	}
	if closed {
		c.teardown()
		return false
	}
	if c.srv.draining.Load() {
		c.drain()
		return false
	}
	if !c.wc.Polled() {
		return true
	}
	if err := c.srv.poller.Rearm(&c.wc); err != nil {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			c.teardown()
			return false
		}
		c.logger().Warn("cannot watch the connection", zap.Error(err))
		c.closeWith(websocket.CloseTryAgainLater, "server cannot watch the connection; reconnect")
		c.teardown()
		return false
	}
	return true
}

// drain ends the connection for a shutdown: the replies to every frame
// handled so far are queued; they are sent first, then the close frame.
func (c *conn) drain() {
	c.waitSends(2 * time.Second)
	c.wc.Flush(2 * time.Second)
	// closeWith tears down when no read is running; a running read does
	// when it ends, so a shutdown waits for the frame in hand.
	c.closeWith(CloseGoingAway, "server shutting down; reconnect and sync")
}

// teardown unregisters a closed connection, once: hub, presence, and the
// server's count of live connections, which it leaves only once the socket
// is closed.
func (c *conn) teardown() {
	c.teardownOnce.Do(func() {
		s := c.srv
		n := s.hub.Remove(c)
		s.releaseSlot(c.user)
		// While the node shuts down its entries need no cleaning: its lease
		// goes with it, and with the lease every entry of the node stops
		// counting. Writing them one by one made a node with many
		// connections miss its shutdown deadline.
		if s.presence != nil && !s.draining.Load() {
			// The client has left; presence must still be cleaned, within a bound.
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
			if err := s.presence.Disconnect(dctx, c.user, c.id); err != nil {
				c.logger().Warn("presence not removed yet; retried at the next lease renewal", zap.Error(err))
			}
			dcancel()
		}
		<-c.wc.Done()
		// A send under way when the device left still ends, stored or
		// not; a shutdown waits for it before it stops the store.
		c.waitSends(0)
		c.logger().Info("disconnected", zap.Int("user_conns", n))
		s.conns.Done()
	})
}

// isReading reports whether a read is in hand, for tests.
func (c *conn) isReading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reading
}
