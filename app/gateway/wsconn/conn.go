// Package wsconn is the WebSocket transport of the gateway: it reads client
// frames (RFC 6455 section 5) straight from the socket when the poller says
// it is readable, and writes queued frames laid end to end, one write(2) for
// everything queued. It knows nothing of parley's protocol: whole messages
// go to a Handler.
//
// The gateway reads client frames itself instead of through the WebSocket
// library: a library reader owns a buffer and a blocked goroutine per
// connection for as long as the connection lives, which is most of what an
// idle connection costs. Reading only when the socket is readable, into a
// shared buffer, an idle connection holds neither. The library still does
// the opening handshake and writes control frames.
package wsconn

import (
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
)

// Config bounds connections. One Config is shared by all the connections
// of a server and must not change once a connection uses it.
type Config struct {
	// MaxMessageBytes bounds one frame, and one message put together from
	// fragments. Over it the connection ends with 1009.
	MaxMessageBytes int64
	// MaxQueueBytes and MaxQueueFrames bound the write queue: Queue fails
	// with ErrQueueFull past either.
	MaxQueueBytes  int
	MaxQueueFrames int
	// WriteTimeout bounds one write to the client: a write that cannot
	// finish is cut after between half of it and all of it.
	WriteTimeout time.Duration
}

// Handler is what a connection calls back.
type Handler interface {
	// Readable runs on a goroutine of its own when the poller sees the
	// socket readable; it calls ReadAvailable, then Poller.Rearm.
	Readable()
	// Message handles one whole data message; payload is valid only during
	// the call. It reports false when the connection must stop reading
	// (the handler closed it).
	Message(binary bool, payload []byte) bool
	// WriteFailed tells that a write to the socket failed: the client is
	// gone or stopped reading. The writer has stopped.
	WriteFailed(err error)
}

// Errors of Queue.
var (
	// ErrClosed: the connection was closed; nothing was queued.
	ErrClosed = errors.New("connection closed")
	// ErrQueueFull: the client does not read fast enough; nothing was
	// queued, and nothing may wait on it: close it as a slow consumer.
	ErrQueueFull = errors.New("write queue full")
	// ErrStopped: the Handler asked to stop reading.
	ErrStopped = errors.New("handler stopped reading")
)

// EventDelay bounds how long a frame queued with Queue(data, false) waits
// for another frame to ride with.
const EventDelay = 10 * time.Millisecond

// Conn is the transport of one WebSocket. A reader goroutine exists only
// while the socket has bytes to read, a writer goroutine only while there is
// something to write: an idle connection has none. The zero value is
// prepared with Init. Safe for concurrent use, except ReadAvailable, which
// one goroutine at a time may call.
type Conn struct {
	ws     *websocket.Conn
	cfg    *Config
	h      Handler
	poller *Poller
	binary bool
	// raw and fd reach the socket for reads without a goroutine waiting.
	raw syscall.RawConn
	fd  int

	lastRead atomic.Int64 // unix nanos of the last frame read
	// writeDeadline is the socket's write deadline as the writer last set
	// it, in unix nanos; touched only by the one writer running at a time.
	writeDeadline int64

	// Read state, touched only by the one ReadAvailable running at a time.
	partial []byte // the start of a frame that is not whole yet
	need    int    // that frame's whole size, 0 while its header is cut
	fragOp  byte   // opcode of a fragmented message being put together
	frag    []byte

	mu          sync.Mutex
	closed      bool
	writing     bool
	out         *[]byte // frames queued for the writer, laid end to end; nil when none
	outFrames   int
	queuedBytes int // payload bytes in out
	eventTimer  *time.Timer
	eventArmed  bool
	writerIdle  chan struct{}
	closeDone   chan struct{} // closed once the socket is closed
}

// Init prepares c for ws, after the handshake. binary says whether data
// frames are binary (else text). poller may be nil when c will not be
// watched.
func (c *Conn) Init(ws *websocket.Conn, cfg *Config, h Handler, poller *Poller, binary bool) {
	c.ws, c.cfg, c.h, c.poller, c.binary = ws, cfg, h, poller, binary
	if sc, ok := ws.NetConn().(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			_ = raw.Control(func(fd uintptr) { c.fd = int(fd) })
		}
	}
	c.lastRead.Store(time.Now().UnixNano())
}

// Polled reports whether the poller can watch c. Otherwise (no epoll, or a
// connection that is not a socket, such as TLS) a goroutine must wait in a
// blocking ReadAvailable.
func (c *Conn) Polled() bool { return pollerWorks && c.raw != nil && c.poller != nil }

// FD is the socket's descriptor number, for logs and tests.
func (c *Conn) FD() int { return c.fd }

// Closed reports whether Close was called.
func (c *Conn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// LastRead is when the last bytes arrived, in unix nanoseconds.
func (c *Conn) LastRead() int64 { return c.lastRead.Load() }

// InterruptRead makes a blocking ReadAvailable return at once.
func (c *Conn) InterruptRead() { _ = c.ws.NetConn().SetReadDeadline(time.Now()) }

// Ping sends a ping control frame.
func (c *Conn) Ping() error {
	return c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout))
}

// Queue appends data, as one WebSocket data frame, to the write queue.
// With now, the writer starts at once; otherwise the frame rides with the
// next one, or leaves within EventDelay: an event frame then costs no
// write(2) of its own on a busy connection. It fails with ErrClosed or
// ErrQueueFull, and never waits on the client.
func (c *Conn) Queue(data []byte, now bool) error {
	_, _, err := c.QueueMeasured(data, now)
	return err
}

// QueueMeasured is Queue, also reporting how full the write queue is once
// data is in, by whichever of its two bounds (MaxQueueBytes,
// MaxQueueFrames) is nearer: queued of capacity, frames or bytes. A queue
// at capacity refuses the next frame. Read under the lock Queue takes
// anyway, the measure costs no second one.
func (c *Conn) QueueMeasured(data []byte, now bool) (queued, capacity int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, 0, ErrClosed
	}
	if !c.queueLocked(data) {
		return 0, 0, ErrQueueFull
	}
	queued, capacity = c.outFrames, c.cfg.MaxQueueFrames
	if c.queuedBytes*c.cfg.MaxQueueFrames > c.outFrames*c.cfg.MaxQueueBytes {
		queued, capacity = c.queuedBytes, c.cfg.MaxQueueBytes
	}
	switch {
	case now:
		c.startWriterLocked()
	case !c.writing && !c.eventArmed:
		c.eventArmed = true
		if c.eventTimer == nil {
			c.eventTimer = time.AfterFunc(EventDelay, c.sendEvents)
		} else {
			c.eventTimer.Reset(EventDelay)
		}
	}
	return queued, capacity, nil
}

// sendEvents starts the writer for frames that found nothing to ride with.
func (c *Conn) sendEvents() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eventArmed = false
	if !c.closed && c.outFrames > 0 {
		c.startWriterLocked()
	}
}

// queueLocked appends data, as a WebSocket frame, to the write queue unless
// that would pass its bound. The queue is one pooled buffer: queuing a frame
// is a copy, not an allocation.
func (c *Conn) queueLocked(data []byte) bool {
	if c.queuedBytes+len(data) > c.cfg.MaxQueueBytes || c.outFrames >= c.cfg.MaxQueueFrames {
		return false
	}
	if c.out == nil {
		c.out = frameBuffers.Get().(*[]byte)
		*c.out = (*c.out)[:0]
	}
	opcode := byte(websocket.TextMessage)
	if c.binary {
		opcode = byte(websocket.BinaryMessage)
	}
	*c.out = AppendFrame(*c.out, opcode, data)
	c.outFrames++
	c.queuedBytes += len(data)
	return true
}

// dropQueueLocked empties the write queue.
func (c *Conn) dropQueueLocked() {
	if c.out != nil {
		putFrameBuffer(c.out)
	}
	c.out, c.outFrames, c.queuedBytes = nil, 0, 0
}

// startWriterLocked starts the writer unless it runs.
func (c *Conn) startWriterLocked() {
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
func (c *Conn) writeLoop() {
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
		// The deadline is moved only once half of it has passed: setting
		// it is a runtime timer update per write(2), which was a twentieth
		// of a large group's fan-out. A write is still cut after at least
		// half of WriteTimeout.
		if now := time.Now().UnixNano(); c.writeDeadline-now < int64(c.cfg.WriteTimeout)/2 {
			c.writeDeadline = now + int64(c.cfg.WriteTimeout)
			_ = netConn.SetWriteDeadline(time.Unix(0, c.writeDeadline))
		}
		_, err := netConn.Write(*bp)
		putFrameBuffer(bp)
		if err != nil {
			c.mu.Lock()
			c.stopWritingLocked()
			c.mu.Unlock()
			c.h.WriteFailed(err)
			return
		}
	}
}

// stopWritingLocked marks the writer gone and wakes a Flush waiting on it.
func (c *Conn) stopWritingLocked() {
	c.writing = false
	if c.writerIdle != nil {
		close(c.writerIdle)
		c.writerIdle = nil
	}
}

// Flush waits until the writer has sent everything queued, or d passes.
func (c *Conn) Flush(d time.Duration) {
	c.mu.Lock()
	if c.outFrames > 0 && !c.closed {
		// Frames waiting for a ride go now.
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

// closeFrameTimeout bounds the write of a close frame.
const closeFrameTimeout = time.Second

// Close ends the connection, once: it drops the write queue, then sends a
// close frame with code (none when code is 0) and closes the socket. It
// never waits on the client: the close frame is written by a goroutine of
// the connection, so that cutting a stalled client costs its caller (a
// delivery to many devices, say) nothing. Done tells when the socket is
// closed. It reports whether this call closed c.
func (c *Conn) Close(code int, reason string) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.dropQueueLocked()
	if c.eventTimer != nil {
		c.eventTimer.Stop()
	}
	if c.closeDone == nil {
		c.closeDone = make(chan struct{})
	}
	done := c.closeDone
	c.mu.Unlock()
	// Before the socket closes: its number may then go to a new connection.
	if c.poller != nil {
		c.poller.forget(c)
	}
	go func() {
		defer close(done)
		if code != 0 {
			// A writer blocked on a full socket fails too: the deadline
			// applies to every write on the connection.
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeFrameTimeout))
		}
		_ = c.ws.Close()
	}()
	return true
}

// Done is closed once Close has closed the socket.
func (c *Conn) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeDone == nil {
		c.closeDone = make(chan struct{})
	}
	return c.closeDone
}

// readSome reads what arrived. wouldBlock means nothing is there now.
func (c *Conn) readSome(buf []byte) (n int, wouldBlock bool, err error) {
	if c.Polled() {
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
var readBuffers = sync.Pool{New: func() any { b := make([]byte, ReadBufferSize); return &b }}

// ReadBufferSize is the most one read takes from the socket.
const ReadBufferSize = 16 << 10

// ReadAvailable reads until the socket is empty, handling each whole frame:
// control frames here, data messages through Handler.Message. A frame cut
// by the end of a read is kept for the next call. Without a poller it
// blocks until something arrives.
//
// It returns nil when the socket is empty and the connection goes on. When
// the connection must end it returns a *CloseError (a frame the protocol
// forbids, or the peer's close frame, to be echoed: close with its code),
// ErrStopped (the Handler stopped it), or the read error (the peer is gone:
// close without a frame).
func (c *Conn) ReadAvailable() error {
	bp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bp)
	for {
		var into []byte
		if c.partial != nil {
			if len(c.partial) == cap(c.partial) {
				// Grow as bytes arrive, not to the size the header
				// announces: a client must not pin 64 KiB with 14 bytes.
				more := MaxFrameHeader
				if c.need > len(c.partial) {
					more = min(c.need-len(c.partial), ReadBufferSize)
				}
				c.partial = slices.Grow(c.partial, more)
			}
			into = c.partial[len(c.partial):cap(c.partial)]
		} else {
			into = *bp
		}
		n, wouldBlock, err := c.readSome(into)
		if wouldBlock {
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.EOF
		}
		c.lastRead.Store(time.Now().UnixNano())
		data := into[:n]
		if c.partial != nil {
			data = c.partial[:len(c.partial)+n]
		}
		rest, need, err := c.consume(data)
		if err != nil {
			c.partial = nil
			return err
		}
		c.need = need
		switch {
		case len(rest) == 0:
			c.partial = nil
		case c.partial == nil || &rest[0] != &c.partial[0]:
			// Copy what is left out of the shared buffer, with room for
			// the frame when its size is known, up to a read's worth.
			p := make([]byte, len(rest), max(min(need, len(rest)+ReadBufferSize), len(rest)+MaxFrameHeader))
			copy(p, rest)
			c.partial = p
		default:
			c.partial = rest
		}
		if n < len(into) {
			// The socket is most likely empty: wait for readiness rather
			// than pay a read that finds nothing.
			return nil
		}
	}
}

// consume handles every whole frame in data and returns what is left of a
// frame that is not whole yet, with that frame's size when known.
func (c *Conn) consume(data []byte) (rest []byte, need int, err error) {
	for len(data) > 0 {
		f, n, need, err := ParseFrame(data, int(c.cfg.MaxMessageBytes))
		if errors.Is(err, ErrNeedMore) {
			return data, need, nil
		}
		if err != nil {
			return nil, 0, err
		}
		data = data[n:]
		if err := c.frame(f); err != nil {
			return nil, 0, err
		}
	}
	return nil, 0, nil
}

// frame handles one frame: control frames at once, data frames once their
// message is whole. A non-nil error ends the connection.
func (c *Conn) frame(f Frame) error {
	switch f.Opcode {
	case OpPing:
		_ = c.ws.WriteControl(websocket.PongMessage, f.Payload, time.Now().Add(c.cfg.WriteTimeout))
	case OpPong:
		// lastRead is already up to date: any frame proves the peer alive.
	case OpClose:
		// Echo the peer's code (RFC 6455 section 5.5.1); a close frame
		// with a code no endpoint may send, or a reason that is not UTF-8,
		// is a protocol error.
		code := websocket.CloseNormalClosure
		switch {
		case len(f.Payload) == 1:
			code = websocket.CloseProtocolError
		case len(f.Payload) >= 2:
			code = int(f.Payload[0])<<8 | int(f.Payload[1])
			if !validReceivedCloseCode(code) || !utf8.Valid(f.Payload[2:]) {
				code = websocket.CloseProtocolError
			}
		}
		return &CloseError{Code: code}
	case OpText, OpBinary:
		if c.fragOp != 0 {
			return &CloseError{websocket.CloseProtocolError, "new message before the last fragment of the previous one"}
		}
		if !f.Fin {
			c.fragOp = f.Opcode
			c.frag = append([]byte(nil), f.Payload...)
			return nil
		}
		if !c.h.Message(f.Opcode == OpBinary, f.Payload) {
			return ErrStopped
		}
	case OpContinuation:
		if c.fragOp == 0 {
			return &CloseError{websocket.CloseProtocolError, "continuation frame without a message"}
		}
		if int64(len(c.frag)+len(f.Payload)) > c.cfg.MaxMessageBytes {
			return &CloseError{websocket.CloseMessageTooBig, "message over the size limit"}
		}
		c.frag = append(c.frag, f.Payload...)
		if f.Fin {
			op, data := c.fragOp, c.frag
			c.fragOp, c.frag = 0, nil
			if !c.h.Message(op == OpBinary, data) {
				return ErrStopped
			}
		}
	}
	return nil
}

// frameBuffers holds the write queues of all connections: an idle
// connection keeps none. A new queue starts small: a message to 10,000
// devices queues it on 10,000 connections at once, and 4 KiB each made that
// fan-out half again as slow.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooledFrameBuffer keeps a burst's large buffer from living on in the
// pool, and from being handed to a connection that needs a few hundred bytes.
const maxPooledFrameBuffer = 16 << 10

func putFrameBuffer(bp *[]byte) {
	if cap(*bp) <= maxPooledFrameBuffer {
		frameBuffers.Put(bp)
	}
}

// partialCap is how much the connection holds of a frame that is not whole
// yet, for tests.
func (c *Conn) partialCap() int { return cap(c.partial) }
