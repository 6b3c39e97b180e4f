package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/parley-im/parley/proto/parley/v1"
)

// DirectConversation is the id of the direct conversation of users a and b,
// as the server makes it: "d:" and the two ids in ascending order, joined by
// "~". Use it to read the history of a 1:1 chat before any message of it
// has arrived.
func DirectConversation(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "d:" + a + "~" + b
}

// OnlineUsers lists the users connected to any live node, as the user of
// token sees them.
func OnlineUsers(ctx context.Context, base, token string) ([]string, error) {
	var out struct {
		Users []string `json:"users"`
	}
	if err := DoJSON(ctx, http.MethodGet, base+"/v1/users/online", token, nil, &out); err != nil {
		return nil, err
	}
	return out.Users, nil
}

// Conversations lists the conversations the signed-in user belongs to, with
// their last seq and unread count.
func (c *Client) Conversations(ctx context.Context) ([]*pb.Conversation, error) {
	r, err := c.Request(ctx, &pb.Frame{Type: "convs"})
	if err != nil {
		return nil, err
	}
	return r.Conversations, nil
}

// SessionOptions configure NewSession. Zero values have defaults.
type SessionOptions struct {
	// Options are passed to every Dial.
	Options
	// Token returns the token to dial with. It is called before every
	// dial, so that an expiring token can be renewed. Required.
	Token func(ctx context.Context) (string, error)
	// History makes the first connection deliver every stored message of
	// the user's conversations. False means only messages newer than the
	// first connection are delivered; later reconnections always catch up
	// on what was missed.
	History bool
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, which doubles after each failure, with jitter. Zero values
	// mean 200 * time.Millisecond and 5 * time.Second.
	MinBackoff, MaxBackoff time.Duration
	// OnState, when set, is called from the session's goroutine each time
	// the connection comes up (err nil) or goes down or fails to come up
	// (err says why). It must not block. When the user is suspended
	// (BannedUntil(err) holds), the session does not dial again before the
	// suspension ends.
	OnState func(connected bool, err error)
}

// ErrNotConnected means the session has no connection at the moment; it
// is reconnecting. Retrying with the same cmid after a while is safe.
var ErrNotConnected = errors.New("not connected; reconnecting")

// Session keeps one WebSocket to the server for as long as it runs: when
// the connection drops it dials again, catches up on every conversation
// from the last seq held with no gap below it, and delivers each message
// once on Messages, dropping duplicates by id. Safe for concurrent use.
type Session struct {
	// Messages delivers every message once, live or caught up after a
	// reconnection, system events included (see ParseSystemEvent; the
	// Inbox applies recalls and edits to what it holds). It is closed when
	// the session ends. The caller must drain it.
	Messages <-chan *pb.Message
	// Events delivers the notices of every connection (see Client.Events).
	// They are dropped when its buffer of 256 is full; draining it is
	// optional. It is closed when the session ends.
	Events <-chan *pb.Frame

	base   string
	opts   SessionOptions
	inbox  *Inbox
	out    chan *pb.Message
	events chan *pb.Frame

	mu    sync.Mutex
	cur   *Client
	ready chan struct{} // closed while cur is set; replaced when it goes
	floor map[string]uint64

	cancel context.CancelFunc
	done   chan struct{}
}

// NewSession starts a session against base (http://host:port). It returns
// at once; the first connection is made in the background (see OnState and
// WaitConnected). Close ends it.
func NewSession(base string, o SessionOptions) (*Session, error) {
	if o.Token == nil {
		return nil, errors.New("client: SessionOptions.Token is required")
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan *pb.Message, 256)
	events := make(chan *pb.Frame, 256)
	s := &Session{
		Messages: out, Events: events, base: base, opts: o, inbox: NewInbox(), out: out, events: events,
		ready: make(chan struct{}), cancel: cancel, done: make(chan struct{}),
	}
	go s.run(ctx)
	return s, nil
}

// Close ends the session and its connection, and waits for its goroutine.
func (s *Session) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// Inbox holds every message the session delivered.
func (s *Session) Inbox() *Inbox { return s.inbox }

// WaitConnected waits until the session has a connection and returns it.
func (s *Session) WaitConnected(ctx context.Context) (*Client, error) {
	for {
		s.mu.Lock()
		c, ready := s.cur, s.ready
		s.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-ready:
		case <-s.done:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// current is the live connection, or nil while reconnecting.
func (s *Session) current() *Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Send sends like Client.Send on the current connection, and keeps the
// message in the inbox so that a catch-up does not deliver it back. It
// returns ErrNotConnected while the session reconnects.
func (s *Session) Send(ctx context.Context, to, conv, cmid, body string, opts ...SendOption) (*pb.Message, error) {
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	f := &pb.Frame{Ctype: "text"}
	for _, o := range opts {
		o(f)
	}
	m, err := c.Send(ctx, to, conv, cmid, body, opts...)
	if err != nil {
		return nil, err
	}
	if m != nil {
		// The ACK carries the id, conv, seq and time; the inbox holds the
		// whole message, as the other members see it.
		held := proto.Clone(m).(*pb.Message)
		held.From, held.Cmid, held.Ctype, held.Body = c.Hello.GetUser(), cmid, f.Ctype, body
		held.ReplyTo = f.ReplyTo
		for _, u := range f.Mentions {
			if u == MentionAll {
				held.MentionAll = true
			} else {
				held.Mentions = append(held.Mentions, u)
			}
		}
		s.inbox.Add(held)
	}
	return m, nil
}

// Recall recalls like Client.Recall on the current connection; the event
// is delivered on Messages (once) and applied to the inbox.
func (s *Session) Recall(ctx context.Context, conv string, seq uint64, cmid string) (*pb.Message, error) {
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	m, err := c.Recall(ctx, conv, seq, cmid)
	return s.keep(ctx, m, err)
}

// Edit edits like Client.Edit on the current connection; the event is
// delivered on Messages (once) and applied to the inbox.
func (s *Session) Edit(ctx context.Context, conv string, seq uint64, ctype, body, cmid string) (*pb.Message, error) {
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	m, err := c.Edit(ctx, conv, seq, ctype, body, cmid)
	return s.keep(ctx, m, err)
}

// CreateGroup creates a group like Client.CreateGroup on the current
// connection; its group.created event is delivered on Messages (once).
func (s *Session) CreateGroup(ctx context.Context, g NewGroup) (*GroupResult, error) {
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	r, err := c.CreateGroup(ctx, g)
	return s.keepGroup(ctx, r, err)
}

// ChangeGroup changes a group like Client.ChangeGroup on the current
// connection; its event, if one was stored, is delivered on Messages (once).
func (s *Session) ChangeGroup(ctx context.Context, conv string, ch GroupChange) (*GroupResult, error) {
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	r, err := c.ChangeGroup(ctx, conv, ch)
	return s.keepGroup(ctx, r, err)
}

// Typing sends a typing notice like Client.Typing on the current connection.
func (s *Session) Typing(conv string, on bool) error {
	c := s.current()
	if c == nil {
		return ErrNotConnected
	}
	return c.Typing(conv, on)
}

// MarkRead moves the read cursor of conv to seq on the current connection
// and returns the cursor in force (it never moves back).
func (s *Session) MarkRead(ctx context.Context, conv string, seq uint64) (uint64, error) {
	c := s.current()
	if c == nil {
		return 0, ErrNotConnected
	}
	return c.MarkRead(ctx, conv, seq)
}

// keep passes on an event this device caused, once: whether or not the
// server also pushes it to this connection, Messages delivers it one time,
// and the inbox applies it. Like every delivery it waits while Messages is
// full, until ctx ends.
func (s *Session) keep(ctx context.Context, m *pb.Message, err error) (*pb.Message, error) {
	if err != nil {
		return nil, err
	}
	if m != nil {
		s.deliver(ctx, m)
	}
	return m, nil
}

func (s *Session) keepGroup(ctx context.Context, r *GroupResult, err error) (*GroupResult, error) {
	if err != nil {
		return nil, err
	}
	if r.Event != nil {
		s.deliver(ctx, r.Event)
	}
	return r, nil
}

// History reads every stored message of conv after seq on the current
// connection.
func (s *Session) History(ctx context.Context, conv string, after uint64) ([]*pb.Message, error) {
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	return c.Sync(ctx, conv, after)
}

// Conversations lists the user's conversations on the current connection.
func (s *Session) Conversations(ctx context.Context) ([]*pb.Conversation, error) {
	c := s.current()
	if c == nil {
		return nil, ErrNotConnected
	}
	return c.Conversations(ctx)
}

// Token returns a token from SessionOptions.Token, for the HTTP calls
// that go with the session (OnlineUsers).
func (s *Session) Token(ctx context.Context) (string, error) { return s.opts.Token(ctx) }

// Base is the server's URL.
func (s *Session) Base() string { return s.base }

func (s *Session) state(connected bool, err error) {
	if s.opts.OnState != nil {
		s.opts.OnState(connected, err)
	}
}

// run dials, serves one connection until it ends, and dials again, until
// the session is closed.
func (s *Session) run(ctx context.Context) {
	defer close(s.done)
	defer close(s.events)
	defer close(s.out)
	backoff := s.opts.MinBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for first := true; ; {
		up, err := s.connect(ctx, first)
		if ctx.Err() != nil {
			return
		}
		if up {
			first = false
			backoff = s.opts.MinBackoff
		}
		// Jitter spreads the reconnections of many clients after a node
		// goes away.
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, s.opts.MaxBackoff)
		switch until, banned := BannedUntil(err); {
		case banned:
			// Dialing while suspended is refused, and attempts lengthen
			// an automatic suspension: wait it out. An end that cannot be
			// read is waited for as long as a failing server.
			wait = max(s.opts.MaxBackoff, time.Until(until)+wait)
		case CloseCode(err) == CloseFlooding:
			wait = s.opts.MaxBackoff
			backoff = s.opts.MaxBackoff
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// connect makes one connection, catches up, and forwards its messages
// until it ends. It reports whether the connection came up, and why it
// ended or failed.
func (s *Session) connect(ctx context.Context, first bool) (bool, error) {
	tok, err := s.opts.Token(ctx)
	if err != nil {
		s.state(false, err)
		return false, err
	}
	dialCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := Dial(dialCtx, s.base, tok, s.opts.Options)
	cancel()
	if err != nil {
		s.state(false, err)
		return false, err
	}
	// Notices are passed on as they come; the goroutine ends when the
	// connection closes Events.
	noticed := make(chan struct{})
	go func() {
		defer close(noticed)
		for f := range c.Events {
			select {
			case s.events <- f:
			default:
			}
		}
	}()
	// Live pushes are forwarded while the catch-up runs, so that a slow
	// catch-up never fills the connection's buffer; the inbox drops what
	// both bring.
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		for m := range c.Messages {
			s.deliver(ctx, m)
		}
	}()
	if err := s.catchUp(ctx, c, first); err != nil {
		_ = c.Close()
		<-forwarded
		<-noticed
		if ctx.Err() == nil {
			s.state(false, err)
		}
		return false, err
	}
	s.mu.Lock()
	s.cur = c
	close(s.ready)
	s.mu.Unlock()
	s.state(true, nil)

	select {
	case <-ctx.Done():
		_ = c.Close()
	case <-c.Done():
	}
	<-forwarded
	<-noticed
	s.mu.Lock()
	s.cur = nil
	s.ready = make(chan struct{})
	s.mu.Unlock()
	err = c.Err()
	if err == nil {
		err = ErrClosed
	}
	if ctx.Err() == nil {
		s.state(false, err)
	}
	return true, err
}

// catchUp syncs every conversation of the user from the last seq held
// with no gap below it. On the first connection without History, it only
// records where each conversation stands.
func (s *Session) catchUp(ctx context.Context, c *Client, first bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	convs, err := c.Conversations(ctx)
	if err != nil {
		return err
	}
	if first && !s.opts.History {
		s.mu.Lock()
		s.floor = make(map[string]uint64, len(convs))
		for _, cv := range convs {
			s.floor[cv.Id] = cv.LastSeq
		}
		s.mu.Unlock()
		return nil
	}
	for _, cv := range convs {
		s.mu.Lock()
		floor := s.floor[cv.Id]
		s.mu.Unlock()
		from := s.inbox.ContiguousFrom(cv.Id, floor)
		if cv.LastSeq <= from {
			continue
		}
		msgs, err := c.Sync(ctx, cv.Id, from)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			s.deliver(ctx, m)
		}
	}
	return nil
}

// deliver passes m on once.
func (s *Session) deliver(ctx context.Context, m *pb.Message) {
	if !s.inbox.Add(m) {
		return
	}
	select {
	case s.out <- m:
	case <-ctx.Done():
	}
}
