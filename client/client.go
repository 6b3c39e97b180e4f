package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	jsoniter "github.com/json-iterator/go"
	"google.golang.org/protobuf/proto"

	pb "github.com/parley-im/parley/proto/parley/v1"
)

var json = jsoniter.ConfigFastest

// Error is an error frame or HTTP error body from the server.
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	// Until is when a mute (code muted) or a suspension (code banned)
	// ends, in Unix milliseconds; zero when the error has no end.
	Until  int64 `json:"until"`
	Status int   `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// DevToken asks a local-profile server for a token for user.
func DevToken(ctx context.Context, base, user string) (string, error) {
	body, _ := json.Marshal(map[string]string{"user": user})
	var out struct {
		Token string `json:"token"`
	}
	if err := DoJSON(ctx, http.MethodPost, base+"/v1/dev/token", "", body, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}

// DoJSON performs an HTTP request and decodes the JSON reply into out, or
// returns the server's *Error.
func DoJSON(ctx context.Context, method, u, token string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error Error `json:"error"`
		}
		if json.Unmarshal(data, &eb) != nil || eb.Error.Code == "" {
			return fmt.Errorf("%s %s: HTTP %d: %s", method, u, resp.StatusCode, data)
		}
		eb.Error.Status = resp.StatusCode
		return &eb.Error
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// Options configure Dial. Zero values have defaults.
type Options struct {
	// Device names the device, e.g. "web" or "phone".
	Device string
	// Proto selects binary protobuf frames instead of JSON.
	Proto bool
	// NoAck disables automatic delivery ACKs, to test retransmission.
	NoAck bool
	// Buffer is the capacity of the Messages channel. Zero means 4096. When
	// it is full the reader blocks, like a slow device.
	Buffer int
	// NetDialContext opens the TCP connection, for example from a chosen
	// local address (net.Dialer.LocalAddr) so that a load generator can
	// open more connections than one source address has ports. Nil means
	// the default dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client is one WebSocket connection. Safe for concurrent use.
type Client struct {
	ws     *websocket.Conn
	opts   Options
	binary bool
	nextID atomic.Uint64

	// Frames are laid end to end in out and written by one writer
	// goroutine, started when there is something to write: a client with
	// many requests in flight sends them in one write(2), not one each.
	writeMu  sync.Mutex
	out      []byte
	spare    []byte
	writing  bool
	writeErr error

	mu      sync.Mutex
	waiting map[string]chan *pb.Frame

	// Messages delivers each msg frame; duplicates are not filtered here,
	// Inbox does that. It is closed when the connection ends.
	Messages chan *pb.Message
	// Events delivers the notices the server pushes (frame types
	// delivered, seen, read_by, typing, join_requested, join_rejected,
	// unassigned; see the Notice constants) and error frames that answer
	// no request (a refused Typing, a frame the server could not read).
	// Notices are lossy by nature: when nobody drains Events and its
	// buffer of 1024 is full, new ones are dropped. It is closed when the
	// connection ends.
	Events chan *pb.Frame
	// Hello is the server's hello frame.
	Hello *pb.Frame

	done     chan struct{}
	closeErr atomic.Value // error
}

// Dial connects to base (http://host:port) with token.
func Dial(ctx context.Context, base, token string, o Options) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	u.Path = "/v1/ws"
	q := url.Values{"token": {token}}
	if o.Device != "" {
		q.Set("device", o.Device)
	}
	u.RawQuery = q.Encode()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096, NetDialContext: o.NetDialContext}
	if o.Proto {
		d.Subprotocols = []string{"parley.v1.proto"}
	}
	ws, resp, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			var eb struct {
				Error Error `json:"error"`
			}
			if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
				eb.Error.Status = resp.StatusCode
				return nil, &eb.Error
			}
		}
		return nil, fmt.Errorf("dial %s: %w", base, err)
	}
	if o.Buffer == 0 {
		o.Buffer = 4096
	}
	c := &Client{
		ws: ws, opts: o, binary: o.Proto, waiting: map[string]chan *pb.Frame{},
		Messages: make(chan *pb.Message, o.Buffer), Events: make(chan *pb.Frame, 1024), done: make(chan struct{}),
	}
	hello, err := c.read()
	if err != nil || hello.Type != "hello" {
		ws.Close()
		return nil, fmt.Errorf("no hello frame: %v", err)
	}
	c.Hello = hello
	go c.readLoop()
	return c, nil
}

// Done is closed when the connection ends; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is the reason the connection ended (a *websocket.CloseError when the
// server closed it with a code).
func (c *Client) Err() error {
	if v := c.closeErr.Load(); v != nil {
		return v.(error)
	}
	return nil
}

// Close closes the connection with a normal close frame.
func (c *Client) Close() error {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	err := c.ws.Close()
	<-c.done
	return err
}

// Drop closes the TCP connection without a close frame, as a lost network would.
func (c *Client) Drop() {
	_ = c.ws.NetConn().Close()
	<-c.done
}

func (c *Client) read() (*pb.Frame, error) {
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	var f pb.Frame
	if c.binary {
		err = proto.Unmarshal(data, &f)
	} else {
		err = json.Unmarshal(data, &f)
	}
	return &f, err
}

func (c *Client) readLoop() {
	defer close(c.done)
	defer close(c.Events)
	defer close(c.Messages)
	for {
		f, err := c.read()
		if err != nil {
			c.closeErr.Store(err)
			c.mu.Lock()
			for id, ch := range c.waiting {
				close(ch)
				delete(c.waiting, id)
			}
			c.mu.Unlock()
			return
		}
		switch f.Type {
		case "msg":
			// A push marked no_ack (a large group's) is not acknowledged:
			// the server does not wait for it.
			if !c.opts.NoAck && !f.NoAck && f.Msg != nil {
				_ = c.write(&pb.Frame{Type: "recv", Conv: f.Msg.Conv, Seq: f.Msg.Seq})
			}
			if f.Msg != nil {
				c.Messages <- f.Msg
			}
		case NoticeDelivered, NoticeSeen, NoticeReadBy, NoticeTyping, NoticeJoinRequested, NoticeJoinRejected, NoticeUnassigned:
			c.event(f)
		default:
			if f.Type == "error" && f.Id == "" {
				c.event(f)
				continue
			}
			if f.Id != "" {
				c.mu.Lock()
				ch := c.waiting[f.Id]
				delete(c.waiting, f.Id)
				c.mu.Unlock()
				if ch != nil {
					ch <- f
				}
			}
		}
	}
}

// event passes f on Events unless its buffer is full: a notice is not
// worth stalling the messages behind it.
func (c *Client) event(f *pb.Frame) {
	select {
	case c.Events <- f:
	default:
	}
}

// WriteRaw sends a raw WebSocket message, for tests of bad input. Like
// every frame it is queued; an error means an earlier write failed.
func (c *Client) WriteRaw(messageType int, data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return c.writeErr
	}
	c.out = appendMaskedFrame(c.out, byte(messageType), data)
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
	return nil
}

// writeLoop writes what is queued until nothing is. It writes to the
// socket directly: each Write is one net.Conn call, which never
// interleaves with the library's own control frames (close, pong).
func (c *Client) writeLoop() {
	netConn := c.ws.NetConn()
	for {
		runtime.Gosched() // let more frames queue: fewer, larger writes
		c.writeMu.Lock()
		buf := c.out
		if len(buf) == 0 || c.writeErr != nil {
			c.writing = false
			c.writeMu.Unlock()
			return
		}
		c.out = c.spare[:0]
		c.writeMu.Unlock()
		_ = netConn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := netConn.Write(buf)
		c.writeMu.Lock()
		if err != nil {
			c.writeErr = err
			c.writing = false
			c.writeMu.Unlock()
			_ = c.ws.Close()
			return
		}
		if cap(buf) <= 64<<10 {
			c.spare = buf
		}
		c.writeMu.Unlock()
	}
}

// appendMaskedFrame appends one final client-to-server WebSocket frame,
// masked as RFC 6455 section 5.3 requires of clients.
func appendMaskedFrame(buf []byte, opcode byte, payload []byte) []byte {
	buf = append(buf, 0x80|opcode)
	switch n := len(payload); {
	case n < 126:
		buf = append(buf, 0x80|byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 0x80|126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 0x80|127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	buf = append(buf, key[:]...)
	start := len(buf)
	buf = append(buf, payload...)
	for i := range payload {
		buf[start+i] ^= key[i&3]
	}
	return buf
}

func (c *Client) write(f *pb.Frame) error {
	var data []byte
	var err error
	mt := websocket.TextMessage
	if c.binary {
		data, err = proto.Marshal(f)
		mt = websocket.BinaryMessage
	} else if b, ok := f.AppendJSON(make([]byte, 0, 128+len(f.Body))); ok {
		data = b
	} else {
		data, err = json.Marshal(f)
	}
	if err != nil {
		return err
	}
	return c.WriteRaw(mt, data)
}

// ErrClosed means the connection ended before the reply came.
var ErrClosed = errors.New("connection closed")

// Request sends f with a fresh id and waits for the frame that answers it.
// An error frame is returned as *Error.
func (c *Client) Request(ctx context.Context, f *pb.Frame) (*pb.Frame, error) {
	f.Id = strconv.FormatUint(c.nextID.Add(1), 10)
	ch := make(chan *pb.Frame, 1)
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return nil, ErrClosed
	default:
	}
	c.waiting[f.Id] = ch
	c.mu.Unlock()
	if err := c.write(f); err != nil {
		c.mu.Lock()
		delete(c.waiting, f.Id)
		c.mu.Unlock()
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		if r.Type == "error" {
			return nil, &Error{Code: r.Code, Message: r.Message, Retryable: r.Retryable, Until: r.Until}
		}
		return r, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiting, f.Id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// SendOption changes one Send: a reply, mentions, a JSON body.
type SendOption func(f *pb.Frame)

// ReplyTo makes the message a reply to the message at seq of the same
// conversation, which the sender must be able to read (else invalid_reply).
func ReplyTo(seq uint64) SendOption { return func(f *pb.Frame) { f.ReplyTo = seq } }

// Mention names users the message mentions (up to 50). MentionAll ("@all")
// mentions a whole group; only its owner and admins may.
func Mention(users ...string) SendOption {
	return func(f *pb.Frame) { f.Mentions = append(f.Mentions, users...) }
}

// MentionAll is the mention of every member of a group.
const MentionAll = "@all"

// JSONBody marks the body as a JSON document (ctype json) instead of text.
func JSONBody() SendOption { return func(f *pb.Frame) { f.Ctype = "json" } }

// Send sends a message to a user (to) or a conversation (conv) and returns
// the server's ACK: the message id, conv, seq and time. The body is text
// unless an option says otherwise.
func (c *Client) Send(ctx context.Context, to, conv, cmid, body string, opts ...SendOption) (*pb.Message, error) {
	f := &pb.Frame{Type: "send", To: to, Conv: conv, Cmid: cmid, Body: body}
	for _, o := range opts {
		o(f)
	}
	r, err := c.Request(ctx, f)
	if err != nil {
		return nil, err
	}
	return r.Msg, nil
}

// Sync reads every message of conv after seq, following pages.
func (c *Client) Sync(ctx context.Context, conv string, after uint64) ([]*pb.Message, error) {
	var out []*pb.Message
	for {
		r, err := c.Request(ctx, &pb.Frame{Type: "sync", Conv: conv, Seq: after, Limit: 200})
		if err != nil {
			return out, err
		}
		out = append(out, r.Messages...)
		if len(r.Messages) > 0 {
			after = r.Messages[len(r.Messages)-1].Seq
		}
		if !r.More || len(r.Messages) == 0 {
			return out, nil
		}
	}
}

// MarkRead moves the read cursor of conv to seq and returns the cursor in
// force: it never moves back, nor past the newest message. In a direct
// conversation the peer is told (NoticeSeen); in a small group the senders
// of recent messages learn how many have read them (NoticeReadBy).
func (c *Client) MarkRead(ctx context.Context, conv string, seq uint64) (uint64, error) {
	r, err := c.Request(ctx, &pb.Frame{Type: "read", Conv: conv, Seq: seq})
	if err != nil {
		return 0, err
	}
	return r.Seq, nil
}
