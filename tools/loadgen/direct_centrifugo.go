package main

// The direct scenario against Centrifugo, the reference column of the
// suite: the same pairs, the same pacing (runSenders), the same histograms,
// over Centrifugo's bidirectional JSON protocol instead of parley's.
//
// Centrifugo's JSON protocol: a WebSocket text frame holds one or more JSON
// objects separated by '\n'. A command carries an id and one request
// (connect, subscribe, publish); its reply carries the same id and a result
// or an error. A push (a publication in a subscribed channel) carries no
// id. An empty object from the server is a ping, which the client answers
// with an empty object.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	jsoniter "github.com/json-iterator/go"
)

// cfCommand is one command of the client protocol.
type cfCommand struct {
	ID        uint32       `json:"id"`
	Connect   *cfConnect   `json:"connect,omitempty"`
	Subscribe *cfSubscribe `json:"subscribe,omitempty"`
	Publish   *cfPublish   `json:"publish,omitempty"`
}

type cfConnect struct {
	Token string `json:"token"`
	Name  string `json:"name,omitempty"`
}

type cfSubscribe struct {
	Channel string `json:"channel"`
}

type cfPublish struct {
	Channel string              `json:"channel"`
	Data    jsoniter.RawMessage `json:"data"`
}

// cfReply is a reply to a command (ID > 0), a push (Push set), or, when
// every field is empty, a ping.
type cfReply struct {
	ID        uint32             `json:"id,omitempty"`
	Error     *cfError           `json:"error,omitempty"`
	Push      *cfPush            `json:"push,omitempty"`
	Connect   *cfConnectResult   `json:"connect,omitempty"`
	Subscribe *cfSubscribeResult `json:"subscribe,omitempty"`
	Publish   *struct{}          `json:"publish,omitempty"`
}

func (r *cfReply) isPing() bool {
	return r.ID == 0 && r.Error == nil && r.Push == nil && r.Connect == nil && r.Subscribe == nil && r.Publish == nil
}

type cfConnectResult struct {
	Client string `json:"client"`
	Ping   uint32 `json:"ping"`
	Pong   bool   `json:"pong"`
}

type cfSubscribeResult struct {
	Recoverable bool   `json:"recoverable"`
	Positioned  bool   `json:"positioned"`
	Epoch       string `json:"epoch"`
	Offset      uint64 `json:"offset"`
}

// cfError is an error reply.
type cfError struct {
	Code      uint32 `json:"code"`
	Message   string `json:"message"`
	Temporary bool   `json:"temporary"`
}

func (e *cfError) Error() string { return fmt.Sprintf("centrifugo error %d: %s", e.Code, e.Message) }

type cfPush struct {
	Channel    string        `json:"channel"`
	Pub        *cfPub        `json:"pub,omitempty"`
	Disconnect *cfDisconnect `json:"disconnect,omitempty"`
}

type cfPub struct {
	Data   jsoniter.RawMessage `json:"data"`
	Offset uint64              `json:"offset"`
}

type cfDisconnect struct {
	Code   uint32 `json:"code"`
	Reason string `json:"reason"`
}

// cfBody is a publication's data: who sent it, the sender's count and the
// send time, padded to the scenario's body size.
type cfBody struct {
	T int64  `json:"t"` // send time, Unix nanoseconds
	U string `json:"u"` // sender
	N uint64 `json:"n"` // the sender's publication count, from 1
	P string `json:"p,omitempty"`
}

// makeCfBody encodes a body of size bytes when the fields fit in it.
func makeCfBody(t time.Time, user string, n uint64, size int) []byte {
	b := make([]byte, 0, size+8)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	b = append(b, `,"u":`...)
	b = strconv.AppendQuote(b, user)
	b = append(b, `,"n":`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `,"p":"`...)
	for len(b)+2 < size {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// errCfClosed is the error of a call on a connection that ended.
var errCfClosed = errors.New("centrifugo connection closed")

// cfConn is one client connection. One reader goroutine dispatches replies
// and pushes; one writer goroutine lays every queued command end to end in
// one frame, as parley's Go client does with its frames. Its methods are
// safe for concurrent use.
type cfConn struct {
	ws    *websocket.Conn
	onPub func(now time.Time, channel string, pub *cfPub)

	out        chan []byte
	nextID     atomic.Uint32
	mu         sync.Mutex
	pending    map[uint32]chan cfReply
	done       chan struct{} // closed when the reader exits
	writerDone chan struct{}
	errMu      sync.Mutex
	err        error
	closeOnce  sync.Once
	wg         sync.WaitGroup
}

// dialCentrifugo opens a connection, sends connect with token and returns
// once Centrifugo accepted it. onPub is called on the reader goroutine for
// every publication pushed to the connection.
func dialCentrifugo(ctx context.Context, wsURL, token string, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	onPub func(now time.Time, channel string, pub *cfPub)) (*cfConn, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096, NetDialContext: dial}
	ws, _, err := d.DialContext(ctx, wsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("dial centrifugo: %w", err)
	}
	c := &cfConn{
		ws: ws, onPub: onPub, out: make(chan []byte, 256), pending: map[uint32]chan cfReply{},
		done: make(chan struct{}), writerDone: make(chan struct{}),
	}
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	if _, err := c.call(ctx, cfCommand{Connect: &cfConnect{Token: token, Name: "parley-loadgen"}}); err != nil {
		c.Close()
		return nil, fmt.Errorf("centrifugo connect: %w", err)
	}
	return c, nil
}

// Done is closed once the connection ended.
func (c *cfConn) Done() <-chan struct{} { return c.done }

// subscribe subscribes the connection to channel.
func (c *cfConn) subscribe(ctx context.Context, channel string) error {
	if _, err := c.call(ctx, cfCommand{Subscribe: &cfSubscribe{Channel: channel}}); err != nil {
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	return nil
}

// publish publishes data into channel and returns once Centrifugo replied.
func (c *cfConn) publish(ctx context.Context, channel string, data []byte) error {
	_, err := c.call(ctx, cfCommand{Publish: &cfPublish{Channel: channel, Data: data}})
	return err
}

func (c *cfConn) call(ctx context.Context, cmd cfCommand) (cfReply, error) {
	cmd.ID = c.nextID.Add(1)
	data, err := json.Marshal(cmd)
	if err != nil {
		return cfReply{}, fmt.Errorf("encode command: %w", err)
	}
	ch := make(chan cfReply, 1)
	c.mu.Lock()
	c.pending[cmd.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, cmd.ID)
		c.mu.Unlock()
	}()
	select {
	case c.out <- data:
	case <-c.done:
		return cfReply{}, c.closedErr()
	case <-ctx.Done():
		return cfReply{}, ctx.Err()
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			return r, r.Error
		}
		return r, nil
	case <-c.done:
		return cfReply{}, c.closedErr()
	case <-ctx.Done():
		return cfReply{}, ctx.Err()
	}
}

func (c *cfConn) closedErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err != nil {
		return fmt.Errorf("%w: %w", errCfClosed, c.err)
	}
	return errCfClosed
}

func (c *cfConn) fail(err error) {
	c.errMu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.errMu.Unlock()
}

// pong answers a server ping.
var pong = []byte("{}")

func (c *cfConn) readLoop() {
	defer c.wg.Done()
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.fail(err)
			return
		}
		now := time.Now()
		err = eachReply(data, func(r *cfReply) {
			switch {
			case r.ID > 0:
				c.mu.Lock()
				ch := c.pending[r.ID]
				c.mu.Unlock()
				if ch != nil {
					ch <- *r
				}
			case r.Push != nil:
				if r.Push.Pub != nil && c.onPub != nil {
					c.onPub(now, r.Push.Channel, r.Push.Pub)
				}
				if d := r.Push.Disconnect; d != nil {
					c.fail(fmt.Errorf("disconnected by the server: %d %s", d.Code, d.Reason))
				}
			case r.isPing():
				select {
				case c.out <- pong:
				case <-c.writerDone:
				}
			}
		})
		if err != nil {
			c.fail(err)
			_ = c.ws.Close()
			return
		}
	}
}

// eachReply decodes every reply of a frame, in order.
func eachReply(frame []byte, f func(r *cfReply)) error {
	for len(frame) > 0 {
		var line []byte
		line, frame, _ = bytes.Cut(frame, []byte{'\n'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r cfReply
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("decode centrifugo reply: %w", err)
		}
		f(&r)
	}
	return nil
}

// maxFrame bounds how many queued commands the writer joins in one frame.
const maxFrame = 64 << 10

func (c *cfConn) writeLoop() {
	defer c.wg.Done()
	defer close(c.writerDone)
	var buf []byte
	for {
		select {
		case <-c.done:
			return
		case m := <-c.out:
			buf = append(buf[:0], m...)
		more:
			for len(buf) < maxFrame {
				select {
				case m := <-c.out:
					buf = append(append(buf, '\n'), m...)
				default:
					break more
				}
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(websocket.TextMessage, buf); err != nil {
				c.fail(fmt.Errorf("write: %w", err))
				_ = c.ws.Close() // ends the reader, which ends every call
				return
			}
		}
	}
}

// Close ends the connection and waits for its goroutines.
func (c *cfConn) Close() {
	c.closeOnce.Do(func() {
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = c.ws.Close()
	})
	c.wg.Wait()
}

// cfPeer is one user of a pair on Centrifugo.
type cfPeer struct {
	user    string
	channel string
	c       *cfConn
	other   *cfPeer
	next    atomic.Uint64

	ackMu sync.Mutex
	acked []uint64 // counts of this user's publications that got a reply

	recvMu sync.Mutex
	recv   map[uint64]bool // counts of the other user's publications received
}

// missing counts the other user's replied publications this one has not
// received.
func (p *cfPeer) missing() int {
	o := p.other
	o.ackMu.Lock()
	acked := append([]uint64(nil), o.acked...)
	o.ackMu.Unlock()
	p.recvMu.Lock()
	defer p.recvMu.Unlock()
	n := 0
	for _, s := range acked {
		if !p.recv[s] {
			n++
		}
	}
	return n
}

// runDirectCentrifugo runs the direct scenario against a Centrifugo: each
// pair shares one channel that both users subscribe to and publish into;
// a publish's reply is the ACK. Centrifugo pushes a publication to every
// subscriber, its publisher too: those echoes are counted, not delivered.
// Lost counts replied publications the other user had not received when
// the drain ended; there is no final sync.
func runDirectCentrifugo(ctx context.Context, e *env, cfg directConfig, srv *centrifugoProc) (*DirectResult, error) {
	if cfg.pairs <= 0 || cfg.inflight <= 0 || cfg.duration <= 0 {
		return nil, errors.New("-pairs, -inflight and -duration must be positive")
	}
	cfg.body = max(cfg.body, 24)
	res := &DirectResult{
		Scenario: "direct-centrifugo-" + srv.cfg.Engine, Target: srv.Base, Pairs: cfg.pairs, Inflight: cfg.inflight,
		BodyBytes: cfg.body, TargetRate: cfg.rate, ackHist: &Histogram{}, deliverHist: &Histogram{},
	}
	var sent, acked, delivered, echoes, dups, behind atomic.Int64
	var lastAck, lastDeliver atomic.Int64
	var errs errCounts
	peers := make([]*cfPeer, 2*cfg.pairs)
	for i := range cfg.pairs {
		ch := fmt.Sprintf("%s:%s-%d", centrifugoNamespace, e.prefix, i)
		a := &cfPeer{user: userName(e.prefix, "a", i), channel: ch, recv: map[uint64]bool{}}
		b := &cfPeer{user: userName(e.prefix, "b", i), channel: ch, recv: map[uint64]bool{}}
		a.other, b.other = b, a
		peers[2*i], peers[2*i+1] = a, b
	}
	onPub := func(p *cfPeer) func(now time.Time, _ string, pub *cfPub) {
		return func(now time.Time, _ string, pub *cfPub) {
			var m cfBody
			if err := json.Unmarshal(pub.Data, &m); err != nil {
				errs.add(fmt.Errorf("bad publication: %w", err))
				return
			}
			if m.U == p.user {
				echoes.Add(1)
				return
			}
			p.recvMu.Lock()
			dup := p.recv[m.N]
			p.recv[m.N] = true
			p.recvMu.Unlock()
			if dup {
				dups.Add(1)
				return
			}
			res.deliverHist.Record(now.Sub(time.Unix(0, m.T)))
			delivered.Add(1)
			lastDeliver.Store(now.UnixNano())
		}
	}

	// Connect and subscribe, e.concurrency at a time.
	bar := e.ui.count("connecting", len(peers), nil)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(e.concurrency, len(peers)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(peers) || ctx.Err() != nil {
					return
				}
				p := peers[i]
				err := func() error {
					tok, err := centrifugoToken(srv.cfg.Secret, p.user)
					if err != nil {
						return err
					}
					dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
					defer cancel()
					if p.c, err = dialCentrifugo(dctx, srv.wsURL(), tok, e.pool.dialFunc(i), onPub(p)); err != nil {
						return err
					}
					return p.c.subscribe(dctx, p.channel)
				}()
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
				bar.Add(1)
			}
		}()
	}
	wg.Wait()
	bar.Done()
	defer func() {
		for _, p := range peers {
			if p.c != nil {
				p.c.Close()
			}
		}
	}()
	if failed.Load() > 0 {
		return nil, fmt.Errorf("%d of %d centrifugo connections failed: %w", failed.Load(), len(peers), firstErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	var senders []*cfPeer
	for i, p := range peers {
		if !cfg.oneWay || i%2 == 0 {
			senders = append(senders, p)
		}
	}
	res.Senders = len(senders)
	before := e.probe.sample(ctx)
	lgBefore := selfCPU()
	start := time.Now()
	stop := make(chan struct{})
	wait := runSenders(len(senders), cfg.inflight, cfg.rate, start, stop, &behind, func(i int) bool {
		p := senders[i]
		n := p.next.Add(1)
		t0 := time.Now()
		sent.Add(1)
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := p.c.publish(sctx, p.channel, makeCfBody(t0, p.user, n, cfg.body))
		cancel()
		if err != nil {
			errs.add(err)
			return !errors.Is(err, errCfClosed)
		}
		now := time.Now()
		res.ackHist.Record(now.Sub(t0))
		acked.Add(1)
		lastAck.Store(now.UnixNano())
		p.ackMu.Lock()
		p.acked = append(p.acked, n)
		p.ackMu.Unlock()
		return true
	})
	b := e.ui.timed("sending", cfg.duration, func() string {
		el := time.Since(start).Seconds()
		return fmt.Sprintf("ACKed %.0f/s delivered %.0f/s", float64(acked.Load())/el, float64(delivered.Load())/el)
	})
	sleepCtx(ctx, cfg.duration)
	close(stop)
	window := time.Since(start)
	b.Done()
	wait()
	after := e.probe.sample(ctx)
	lgAfter := selfCPU()
	res.WindowSeconds = round2(window.Seconds())

	totalMissing := func() int {
		n := 0
		for _, p := range peers {
			n += p.missing()
		}
		return n
	}
	drainEnd := time.Now().Add(cfg.drain)
	b = e.ui.timed("draining", cfg.drain, func() string { return fmt.Sprintf("missing %d", totalMissing()) })
	for totalMissing() > 0 && time.Now().Before(drainEnd) && ctx.Err() == nil {
		sleepCtx(ctx, 50*time.Millisecond)
	}
	b.Done()
	for _, p := range peers {
		select {
		case <-p.c.Done():
			res.DroppedConnections++
		default:
		}
		res.Lost += int64(p.missing())
	}

	res.Sent, res.Acked, res.Delivered = sent.Load(), acked.Load(), delivered.Load()
	res.Echoes, res.Duplicates, res.BehindSchedule = echoes.Load(), dups.Load(), behind.Load()
	res.Errors = errs.snapshot()
	res.SentPerSec = round2(float64(res.Sent) / window.Seconds())
	if t := lastAck.Load(); t > 0 {
		res.AckedPerSec = round2(float64(res.Acked) / time.Unix(0, t).Sub(start).Seconds())
	}
	if t := lastDeliver.Load(); t > 0 {
		res.DeliveredPerSec = round2(float64(res.Delivered) / time.Unix(0, t).Sub(start).Seconds())
	}
	res.AckLatency, res.DeliverLatency = res.ackHist.Summary(), res.deliverHist.Summary()
	res.AckHist, res.DeliverHist = res.ackHist.Snapshot(), res.deliverHist.Snapshot()
	res.Server = usageBetween(before, after, lgBefore, lgAfter, time.Since(start))
	return res, nil
}
