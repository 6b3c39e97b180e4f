package gateway

import (
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/delivery"
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
)

type ackKey struct {
	conv domain.ConversationID
	seq  uint64
}

type pending struct {
	env      *delivery.Envelope
	deadline time.Time
	tries    int
}

// conn is one device's WebSocket. A reader goroutine exists only while the
// socket has bytes to read (the server's poller starts it, see readReady),
// a writer goroutine only while there is something to write: an idle
// connection has none. One timer per connection serves heartbeats and
// delivery-ACK deadlines.
type conn struct {
	srv    *Server
	id     string
	user   domain.UserID
	device string
	ws     *websocket.Conn
	codec  codec
	// encoding is the wire format of the frames this device reads.
	encoding delivery.Encoding

	lastRead atomic.Int64 // unix nanos of the last frame or pong

	// ctx carries the upgrade request's values to the use cases.
	ctx context.Context
	// raw and fd reach the socket for reads without a goroutine waiting.
	raw syscall.RawConn
	fd  int
	// Read state, touched only by the one readReady running at a time.
	partial      []byte // the start of a frame that is not whole yet
	need         int    // that frame's whole size, 0 while its header is cut
	fragOp       byte   // opcode of a fragmented message being put together
	frag         []byte
	teardownOnce sync.Once

	mu          sync.Mutex
	closed      bool
	reading     bool // a readReady is running
	writing     bool
	out         *[]byte // frames queued for the writer, laid end to end; nil when none
	outFrames   int
	queuedBytes int // payload bytes in out
	pending     map[ackKey]*pending
	order       []ackKey // push order; acked entries are skipped lazily
	timer       *time.Timer
	eventTimer  *time.Timer // see Notify
	eventArmed  bool
	nextFire    time.Time
	pingedAt    int64 // unix nanos of the last ping, 0 when none is outstanding
	writerIdle  chan struct{}
}

// logger is built on demand: a logger with fields per connection costs
// about a kilobyte, and most connections never log after "connected".
func (c *conn) logger() *zap.Logger {
	return c.srv.log.With(zap.String("conn", c.id), zap.String("user", string(c.user)))
}

func (c *conn) ID() string          { return c.id }
func (c *conn) User() domain.UserID { return c.user }

// Push queues a message for the device and tracks it until the device
// acknowledges it.
func (c *conn) Push(env *delivery.Envelope) {
	data, err := env.Encoded(c.encoding, c.encodeMsg)
	if err != nil {
		c.logger().Error("encode message", zap.String("msg_id", env.Msg.ID), zap.Error(err))
		return
	}
	cfg := c.srv.settings.Load()
	key := ackKey{env.Msg.Conv, env.Msg.Seq}
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.pending == nil {
		c.pending = make(map[ackKey]*pending)
	}
	if _, dup := c.pending[key]; !dup {
		if len(c.pending) >= c.srv.cfg.MaxPendingAcks {
			c.mu.Unlock()
			c.closeWith(CloseSlowConsumer, "too many unacknowledged messages; reconnect and sync")
			return
		}
		p := &pending{env: env, deadline: now.Add(cfg.AckTimeout), tries: 1}
		c.pending[key] = p
		c.order = append(c.order, key)
		c.armLocked(p.deadline)
	}
	ok := c.enqueueLocked(data)
	c.mu.Unlock()
	if !ok {
		c.closeWith(CloseSlowConsumer, "write queue full; reconnect and sync")
	}
}

func (c *conn) encodeMsg(m *domain.Message) ([]byte, error) {
	f := getMsgFrame()
	setPB(f.Msg, m)
	f.Type = "msg"
	data, err := c.codec.encode(f)
	putMsgFrame(f)
	return data, err
}

// framePool holds the frames of the hot paths: a frame is decoded, or
// built and encoded, and dropped at once, and allocating each cost the
// garbage collector more than the encoding.
var framePool = sync.Pool{New: func() any { return new(pb.Frame) }}

func putFrame(f *pb.Frame) {
	f.Reset()
	framePool.Put(f)
}

// msgFramePool holds frames that carry a message, with their message.
var msgFramePool = sync.Pool{New: func() any { return &pb.Frame{Msg: new(pb.Message)} }}

func getMsgFrame() *pb.Frame { return msgFramePool.Get().(*pb.Frame) }

func putMsgFrame(f *pb.Frame) {
	m := f.Msg
	f.Reset()
	m.Reset()
	f.Msg = m
	msgFramePool.Put(f)
}

// Notify sends a small event frame; events are not retransmitted. An event
// does not start a write of its own: it rides with the next frame to the
// device (a sender's next ACK, typically), or leaves within eventDelay.
// That saves a write(2) per message on a busy connection.
func (c *conn) Notify(ev delivery.Event) {
	f := framePool.Get().(*pb.Frame)
	f.Type, f.Conv, f.Seq, f.User = ev.Type, string(ev.Conv), ev.Seq, string(ev.User)
	c.queueFrame(f, false)
	putFrame(f)
}

// eventDelay bounds how long an event waits for a frame to ride with.
const eventDelay = 10 * time.Millisecond

// sendEvents starts the writer for events that found nothing to ride with.
func (c *conn) sendEvents() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eventArmed = false
	if !c.closed && c.outFrames > 0 {
		c.startWriterLocked()
	}
}

// send encodes and queues a frame. It reports false if the connection is
// closed or was just closed for being slow.
func (c *conn) send(f *pb.Frame) bool { return c.queueFrame(f, true) }

// queueFrame encodes and queues a frame, starting the writer now, or, for
// a frame that can wait (an event), within eventDelay.
func (c *conn) queueFrame(f *pb.Frame, now bool) bool {
	bp := encodeBuffers.Get().(*[]byte)
	defer encodeBuffers.Put(bp)
	data, err := c.codec.appendEncode((*bp)[:0], f)
	if cap(data) <= maxPooledFrameBuffer {
		*bp = data[:0]
	}
	if err != nil {
		c.logger().Error("encode frame", zap.String("type", f.Type), zap.Error(err))
		return false
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	ok := c.queueLocked(data)
	switch {
	case !ok:
	case now:
		c.startWriterLocked()
	case !c.writing && !c.eventArmed:
		c.eventArmed = true
		if c.eventTimer == nil {
			c.eventTimer = time.AfterFunc(eventDelay, c.sendEvents)
		} else {
			c.eventTimer.Reset(eventDelay)
		}
	}
	c.mu.Unlock()
	if !ok {
		c.closeWith(CloseSlowConsumer, "write queue full; reconnect and sync")
	}
	return ok
}

// enqueueLocked appends data to the write queue and starts the writer if it
// is not running. It reports false when the queue is over its bound: the
// client is not reading, and nothing else may wait on it.
func (c *conn) enqueueLocked(data []byte) bool {
	if !c.queueLocked(data) {
		return false
	}
	c.startWriterLocked()
	return true
}

// queueLocked appends data, as a WebSocket frame, to the write queue unless
// that would pass its bound. The queue is one pooled buffer: queuing a frame
// is a copy, not an allocation.
func (c *conn) queueLocked(data []byte) bool {
	if c.queuedBytes+len(data) > c.srv.cfg.MaxQueueBytes || c.outFrames >= c.srv.cfg.MaxQueueFrames {
		return false
	}
	if c.out == nil {
		c.out = frameBuffers.Get().(*[]byte)
		*c.out = (*c.out)[:0]
	}
	opcode := byte(websocket.TextMessage)
	if c.codec.binary() {
		opcode = byte(websocket.BinaryMessage)
	}
	*c.out = appendFrame(*c.out, opcode, data)
	c.outFrames++
	c.queuedBytes += len(data)
	return true
}

// dropQueueLocked empties the write queue.
func (c *conn) dropQueueLocked() {
	if c.out != nil {
		putFrameBuffer(c.out)
	}
	c.out, c.outFrames, c.queuedBytes = nil, 0, 0
}

// startWriterLocked starts the writer unless it runs.
func (c *conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// writeLoop drains the queue and exits when it is empty. Everything queued
// goes out in one write(2): frames are laid end to end in one buffer, which
// is what the socket would carry anyway, instead of one system call per
// frame. It stops at the first write error: the reader then sees the broken
// connection too.
//
// It writes to the socket directly rather than through the WebSocket
// library, which flushes per message. That is safe beside the library's
// own control frames (pong, close): each is a single Write on the same
// net.Conn, and net.Conn never interleaves two Writes.
func (c *conn) writeLoop() {
	netConn := c.ws.NetConn()
	for {
		// Let the goroutines that are about to queue more (replies to the
		// rest of a read batch, other senders' pushes) run first: under load
		// that turns several write(2) calls into one; when idle it costs a
		// scheduler pass.
		runtime.Gosched()
		c.mu.Lock()
		bp := c.out
		c.out, c.outFrames, c.queuedBytes = nil, 0, 0
		if bp == nil || c.closed {
			if bp != nil {
				putFrameBuffer(bp)
			}
			c.stopWritingLocked()
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		_ = netConn.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		_, err := netConn.Write(*bp)
		putFrameBuffer(bp)
		if err != nil {
			c.closeWith(CloseSlowConsumer, "write failed")
			c.mu.Lock()
			c.stopWritingLocked()
			c.mu.Unlock()
			return
		}
	}
}

// frameBuffers holds the write queues of all connections: an idle
// connection keeps none. A new queue starts small: a message to 10,000
// devices queues it on 10,000 connections at once, and 4 KiB each made that
// fan-out half again as slow.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// encodeBuffers holds the buffers frames are encoded into before they are
// queued.
var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledFrameBuffer keeps a burst's large buffer from living on in the
// pool, and from being handed to a connection that needs a few hundred bytes.
const maxPooledFrameBuffer = 16 << 10

func putFrameBuffer(bp *[]byte) {
	if cap(*bp) <= maxPooledFrameBuffer {
		frameBuffers.Put(bp)
	}
}

// appendFrame appends one final, unmasked server-to-client WebSocket frame
// (RFC 6455 section 5.2).
func appendFrame(buf []byte, opcode byte, payload []byte) []byte {
	buf = append(buf, 0x80|opcode)
	switch n := len(payload); {
	case n < 126:
		buf = append(buf, byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(buf, payload...)
}

// stopWritingLocked marks the writer gone and wakes a flush waiting on it.
func (c *conn) stopWritingLocked() {
	c.writing = false
	if c.writerIdle != nil {
		close(c.writerIdle)
		c.writerIdle = nil
	}
}

// flush waits until the writer has sent everything queued, or d passes.
func (c *conn) flush(d time.Duration) {
	c.mu.Lock()
	if c.outFrames > 0 && !c.closed {
		// Events waiting for a ride go now.
		c.startWriterLocked()
	}
	if !c.writing {
		c.mu.Unlock()
		return
	}
	if c.writerIdle == nil {
		c.writerIdle = make(chan struct{})
	}
	ch := c.writerIdle
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// armLocked makes the timer fire no later than at.
func (c *conn) armLocked(at time.Time) {
	if c.closed || (!c.nextFire.IsZero() && !at.Before(c.nextFire)) {
		return
	}
	c.nextFire = at
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
	c.nextFire = time.Time{}
	lastRead := c.lastRead.Load()
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
		if !c.enqueueLocked(data) {
			c.mu.Unlock()
			c.closeWith(CloseSlowConsumer, "write queue full; reconnect and sync")
			return
		}
	}
	c.armLocked(next)
	c.mu.Unlock()
	if ping {
		_ = c.ws.WriteControl(websocket.PingMessage, nil, now.Add(c.srv.cfg.WriteTimeout))
	}
}

// acked removes a pushed message from the retransmit set and tells the
// sender's devices it was delivered.
func (c *conn) acked(ctx context.Context, conv domain.ConversationID, seq uint64) {
	key := ackKey{conv, seq}
	c.mu.Lock()
	p := c.pending[key]
	delete(c.pending, key)
	c.mu.Unlock()
	sender := c.user
	if p != nil {
		sender = p.env.Msg.Sender
	} else if seq > 0 {
		// A message the device got by sync: find its sender, checking
		// membership on the way.
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		page, err := c.srv.history.Handle(lctx, chat.History{Reader: c.user, Conv: string(conv), After: seq - 1, Limit: 1})
		cancel()
		if err == nil && len(page.Messages) == 1 {
			sender = page.Messages[0].Sender
		}
	}
	if sender != c.user {
		c.srv.notify(ctx, sender, delivery.Event{Type: "delivered", Conv: conv, Seq: seq, User: c.user})
	}
}

// closeWith sends a close frame with code and closes the socket, once. The
// reader then fails and cleans up.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.dropQueueLocked()
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.eventTimer != nil {
		c.eventTimer.Stop()
	}
	reading := c.reading
	c.mu.Unlock()
	// Before the socket closes: its number may then go to a new connection.
	c.srv.poller.forget(c)
	if code != 0 {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	}
	_ = c.ws.Close()
	if !reading {
		// No reader will come back to it: unregister now, without making
		// the caller (maybe a delivery to another device) wait.
		go c.teardown()
	}
}

// start begins serving: the hello frame, the heartbeat timer, and the
// poller's watch. From here on the connection has no goroutine of its own
// until a frame arrives.
func (c *conn) start() {
	c.lastRead.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.armLocked(time.Now().Add(c.srv.settings.Load().HeartbeatIdle))
	c.mu.Unlock()
	c.send(&pb.Frame{Type: "hello", User: string(c.user), Conn: c.id, Node: c.srv.cfg.NodeID})
	if !c.polled() {
		go func() {
			for c.readReady() {
			}
		}()
		if c.srv.draining.Load() {
			// Admitted just before a shutdown looked for connections:
			// interrupt the read, which then drains.
			_ = c.ws.NetConn().SetReadDeadline(time.Now())
		}
		return
	}
	if err := c.srv.poller.watch(c); err != nil {
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

// polled reports whether the poller watches c. Otherwise (no epoll, or a
// connection that is not a socket) a goroutine waits in a blocking read.
func (c *conn) polled() bool { return pollerWorks && c.raw != nil }

// readSome reads what arrived. wouldBlock means nothing is there now.
func (c *conn) readSome(buf []byte) (n int, wouldBlock bool, err error) {
	if c.polled() {
		return c.readRaw(buf)
	}
	n, err = c.ws.NetConn().Read(buf)
	if n == 0 && err == nil {
		err = io.ErrNoProgress
	}
	return n, false, err
}

// readBuffers are shared by all connections while they read: an idle
// connection holds none.
var readBuffers = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

const readBufferSize = 16 << 10

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
	ok := c.readAvailable()
	c.mu.Lock()
	c.reading = false
	closed := c.closed
	c.mu.Unlock()
	if !ok && !closed {
		if c.srv.draining.Load() {
			// A blocking read interrupted by the shutdown (see
			// Server.Shutdown): flush, then say goodbye.
			c.drain()
			return false
		}
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
	if !c.polled() {
		return true
	}
	if err := c.srv.poller.rearm(c); err != nil {
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
	c.flush(2 * time.Second)
	// closeWith tears down when no read is running; a running read does
	// when it ends, so a shutdown waits for the frame in hand.
	c.closeWith(CloseGoingAway, "server shutting down; reconnect and sync")
}

// readAvailable reads until the socket is empty, handling each whole frame.
// A frame cut by the end of a read is kept in c.partial for the next one.
// It reports false when the connection must end: closed by the peer, a
// read error, or a frame that breaks the protocol (already answered).
func (c *conn) readAvailable() bool {
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	for {
		var into []byte
		if c.partial != nil {
			if len(c.partial) == cap(c.partial) {
				// Grow as bytes arrive, not to the size the header
				// announces: a client must not pin 64 KiB with 14 bytes.
				more := maxFrameHeader
				if c.need > len(c.partial) {
					more = min(c.need-len(c.partial), readBufferSize)
				}
				c.partial = slices.Grow(c.partial, more)
			}
			into = c.partial[len(c.partial):cap(c.partial)]
		} else {
			into = *bp
		}
		n, wouldBlock, err := c.readSome(into)
		if wouldBlock {
			return true
		}
		if err != nil || n == 0 {
			if err != nil && !c.srv.draining.Load() {
				c.logger().Debug("read ended", zap.Error(err))
			}
			return false
		}
		c.lastRead.Store(time.Now().UnixNano())
		data := into[:n]
		if c.partial != nil {
			data = c.partial[:len(c.partial)+n]
		}
		rest, need, ok := c.consume(data)
		if !ok {
			return false
		}
		c.need = need
		switch {
		case len(rest) == 0:
			c.partial = nil
		case c.partial == nil || &rest[0] != &c.partial[0]:
			// Copy what is left out of the shared buffer, with room for
			// the frame when its size is known, up to a read's worth.
			p := make([]byte, len(rest), max(min(need, len(rest)+readBufferSize), len(rest)+maxFrameHeader))
			copy(p, rest)
			c.partial = p
		default:
			c.partial = rest
		}
		if n < len(into) {
			// The socket is most likely empty: wait for readiness rather
			// than pay a read that finds nothing.
			return true
		}
	}
}

// maxFrameHeader is the longest client frame header: 2 bytes, an 8-byte
// length and a 4-byte mask.
const maxFrameHeader = 14

// consume handles every whole frame in data and returns what is left of a
// frame that is not whole yet, with that frame's size when known.
func (c *conn) consume(data []byte) (rest []byte, need int, ok bool) {
	for len(data) > 0 {
		f, n, need, err := parseFrame(data, int(c.srv.cfg.MaxFrameBytes))
		if errors.Is(err, errNeedMore) {
			return data, need, true
		}
		if err != nil {
			var fe *frameError
			errors.As(err, &fe)
			c.closeWith(fe.code, fe.reason)
			return nil, 0, false
		}
		data = data[n:]
		if !c.frame(f) {
			return nil, 0, false
		}
	}
	return nil, 0, true
}

// frame handles one frame: control frames at once, data frames once their
// message is whole. It reports false when the connection ended.
func (c *conn) frame(f wsFrame) bool {
	switch f.opcode {
	case opPing:
		_ = c.ws.WriteControl(websocket.PongMessage, f.payload, time.Now().Add(c.srv.cfg.WriteTimeout))
	case opPong:
		// lastRead is already up to date: any frame proves the peer alive.
	case opClose:
		// Echo the peer's code (RFC 6455 section 5.5.1); a close frame
		// with a code no endpoint may send, or a reason that is not UTF-8,
		// is a protocol error.
		code := websocket.CloseNormalClosure
		switch {
		case len(f.payload) == 1:
			code = websocket.CloseProtocolError
		case len(f.payload) >= 2:
			code = int(f.payload[0])<<8 | int(f.payload[1])
			if !validReceivedCloseCode(code) || !utf8.Valid(f.payload[2:]) {
				code = websocket.CloseProtocolError
			}
		}
		c.closeWith(code, "")
		return false
	case opText, opBinary:
		if c.fragOp != 0 {
			c.closeWith(websocket.CloseProtocolError, "new message before the last fragment of the previous one")
			return false
		}
		if !f.fin {
			c.fragOp = f.opcode
			c.frag = append([]byte(nil), f.payload...)
			return true
		}
		c.handle(c.ctx, int(f.opcode), f.payload)
	case opContinuation:
		if c.fragOp == 0 {
			c.closeWith(websocket.CloseProtocolError, "continuation frame without a message")
			return false
		}
		if int64(len(c.frag)+len(f.payload)) > c.srv.cfg.MaxFrameBytes {
			c.closeWith(websocket.CloseMessageTooBig, "message over the size limit")
			return false
		}
		c.frag = append(c.frag, f.payload...)
		if f.fin {
			op, data := c.fragOp, c.frag
			c.fragOp, c.frag = 0, nil
			c.handle(c.ctx, int(op), data)
		}
	}
	return true
}

// validReceivedCloseCode reports whether a peer may send code in a close
// frame (RFC 6455 section 7.4).
func validReceivedCloseCode(code int) bool {
	switch code {
	case 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014:
		return true
	}
	return code >= 3000 && code <= 4999
}

// teardown unregisters a closed connection, once: hub, presence, and the
// server's count of live connections.
func (c *conn) teardown() {
	c.teardownOnce.Do(func() {
		s := c.srv
		n := s.hub.Remove(c)
		// While the node shuts down its entries need no cleaning: its lease
		// goes with it, and with the lease every entry of the node stops
		// counting. Writing them one by one made a node with many
		// connections miss its shutdown deadline.
		if s.cluster != nil && !s.draining.Load() {
			// The client has left; presence must still be cleaned, within a bound.
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
			if err := s.cluster.Disconnect(dctx, c.user, c.id); err != nil {
				c.logger().Warn("presence not removed yet; retried at the next lease renewal", zap.Error(err))
			}
			dcancel()
		}
		c.logger().Info("disconnected", zap.Int("user_conns", n))
		s.conns.Done()
	})
}

func (c *conn) sendErr(id string, err error) {
	ae := toAPIError(err)
	if ae.Code == CodeInternal || ae.Code == CodeUnavailable {
		c.logger().Warn("request failed", zap.String("req", id), zap.Error(err))
	}
	c.send(&pb.Frame{Type: "error", Id: id, Code: ae.Code, Message: ae.Message, Retryable: ae.Retryable})
}

func (c *conn) sendCode(id, code, msg string) {
	c.send(&pb.Frame{Type: "error", Id: id, Code: code, Message: msg})
}

func (c *conn) handle(ctx context.Context, mt int, data []byte) {
	if (mt == websocket.BinaryMessage) != c.codec.binary() {
		c.sendCode("", CodeBadFrame, "wrong frame kind: text frames carry JSON, binary frames need subprotocol "+SubprotocolProto)
		return
	}
	f := framePool.Get().(*pb.Frame)
	defer putFrame(f)
	if err := c.codec.decode(data, f); err != nil {
		code := CodeBadFrame
		if errors.Is(err, errFrameNotUTF8) {
			code = CodeInvalidUTF8
		}
		c.sendCode("", code, err.Error())
		return
	}
	if len(f.Id) > 64 {
		c.sendCode("", CodeBadFrame, "id longer than 64 characters")
		return
	}
	switch f.Type {
	case "send":
		c.handleSend(ctx, f)
	case "recv":
		c.acked(ctx, domain.ConversationID(f.Conv), f.Seq)
	case "sync":
		page, err := c.srv.history.Handle(ctx, chat.History{Reader: c.user, Conv: f.Conv, After: f.Seq, Limit: int(f.Limit)})
		if err != nil {
			c.sendErr(f.Id, err)
			return
		}
		c.send(&pb.Frame{Type: "sync_result", Id: f.Id, Conv: string(page.Conv), Messages: toPBList(page.Messages), More: page.More})
	case "read":
		seq, err := c.srv.markRead.Handle(ctx, chat.MarkRead{Reader: c.user, Conv: f.Conv, Seq: f.Seq})
		if err != nil {
			c.sendErr(f.Id, err)
			return
		}
		c.send(&pb.Frame{Type: "read", Id: f.Id, Conv: f.Conv, Seq: seq})
	case "convs":
		views, err := c.srv.list.Handle(ctx, c.user)
		if err != nil {
			c.sendErr(f.Id, err)
			return
		}
		c.send(&pb.Frame{Type: "conversations", Id: f.Id, Conversations: toPBConvs(views)})
	case "ping":
		c.send(&pb.Frame{Type: "pong", Id: f.Id})
	case "":
		c.sendCode(f.Id, CodeBadFrame, `frame has no "type"`)
	default:
		c.sendCode(f.Id, CodeUnknownType, "unknown frame type; see the protocol section of the README")
	}
}

func (c *conn) handleSend(ctx context.Context, f *pb.Frame) {
	start := time.Now()
	res, err := c.srv.send.Handle(ctx, chat.SendMessage{
		Sender: c.user, Conv: f.Conv, To: f.To, ClientMsgID: f.Cmid, ContentType: f.Ctype, Body: f.Body, Origin: c.id,
	})
	if err != nil {
		c.logger().Info("send refused", zap.String("req", f.Id), zap.String("cmid", f.Cmid), zap.Error(err))
		c.sendErr(f.Id, err)
		return
	}
	m := &res.Message
	c.srv.logSend(m, c.id, res.Duplicate, time.Since(start))
	ack := getMsgFrame()
	pm := ack.Msg
	pm.Id, pm.Conv, pm.Seq, pm.Cmid, pm.Ts = m.ID, string(m.Conv), m.Seq, m.ClientMsgID, m.ServerMs
	ack.Type, ack.Id = "ack", f.Id
	c.send(ack)
	putMsgFrame(ack)
}

func toPBConvs(views []chat.ConversationView) []*pb.Conversation {
	out := make([]*pb.Conversation, len(views))
	for i, v := range views {
		members := make([]string, len(v.Conversation.Members))
		for j, m := range v.Conversation.Members {
			members[j] = string(m)
		}
		pc := &pb.Conversation{Id: string(v.Conversation.ID), Kind: string(v.Conversation.Kind), Members: members,
			LastSeq: v.LastSeq, ReadSeq: v.ReadSeq, Unread: v.Unread}
		if v.Last != nil {
			pc.Last = toPB(v.Last)
		}
		out[i] = pc
	}
	return out
}
