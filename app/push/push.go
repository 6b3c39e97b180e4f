// Package push asks for a push notification when a message's recipient has
// no device online anywhere, through an output binding that configuration
// names (infrastructure.OutputBinding): a push gateway in front of APNs or
// FCM, or a company's own notifier, plugs in as a component, not as code.
//
// Pusher decorates the chat.Deliverer of the send path: live delivery goes
// first and unchanged, then the message is queued for a bounded pool of
// workers that find the offline members and invoke the binding. The sender
// never waits for any of it; when the queue is full the push is dropped and
// logged, and the recipient still gets the message when a device syncs.
//
// At most one push goes to a user for a conversation per interval (the live
// setting parley.push_interval_s): a burst of messages makes one push, not
// one per message.
package push

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jsoniter "github.com/json-iterator/go"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

var json = jsoniter.ConfigFastest

// Payload is the body of one push, as JSON: what a gateway needs to notify
// one user of a conversation.
type Payload struct {
	// User is the recipient, who has no device online.
	User domain.UserID `json:"user"`
	// Conv is the conversation, for the notification to open.
	Conv domain.ConversationID `json:"conv"`
	// From is the sender of the message that caused the push.
	From domain.UserID `json:"from"`
	// Seq is that message's seq in Conv.
	Seq uint64 `json:"seq"`
	// Preview is the first characters of the message's text (the live
	// setting parley.push_preview), or empty when previews are off (the
	// default) or the message is not text.
	Preview string `json:"preview"`
	// Unread is how many messages of Conv follow User's read cursor.
	Unread uint64 `json:"unread"`
}

// Presence tells which users have a device connected on any live node.
// Implementations are safe for concurrent use.
type Presence interface {
	// Online returns the users of users that have a device connected.
	Online(ctx context.Context, users []domain.UserID) (map[domain.UserID]bool, error)
}

// Cursors reads users' read cursors in a conversation (*store.Store).
type Cursors interface {
	ReadCursors(ctx context.Context, conv domain.ConversationID, users []domain.UserID) ([]uint64, error)
}

// Config sets up a Pusher. Zero values have defaults where said.
type Config struct {
	// Binding is the output binding pushes go to, as configuration names
	// it (components/<profile>/push.yaml names it "push"). Required.
	Binding string
	// Operation is the binding's operation. Zero value means "post", which
	// bindings.http sends as an HTTP POST.
	Operation string
	// QueueSize bounds the messages waiting for the workers; past it a
	// message gets no push. Zero value means 4096.
	QueueSize int
	// Workers is how many pushes are under way at once. Zero value means 4.
	Workers int
	// Timeout bounds one message's presence and cursor reads and its
	// pushes. Zero value means 10 * time.Second.
	Timeout time.Duration
	// MaxMembers is the largest conversation whose every offline member
	// gets a push; in a larger one, only the members a message mentions
	// do, so that one message to a big group is not thousands of pushes.
	// Zero value means 500.
	MaxMembers int
	// Logger logs dropped and failed pushes. Zero value means none.
	Logger *zap.Logger
	// Now is the clock of the interval between pushes. Zero value means
	// time.Now.
	Now func() time.Time
}

// Pusher is a chat.Deliverer that delivers through another, then pushes to
// the members that have no device online. The zero value is not usable; use
// New. Safe for concurrent use.
type Pusher struct {
	cfg      Config
	next     chat.Deliverer
	binding  infrastructure.OutputBinding
	presence Presence
	cursors  Cursors
	live     *settings.Live
	log      *zap.Logger

	// mu guards stopped and the send on queue against Stop's close.
	mu      sync.RWMutex
	stopped bool
	queue   chan job
	workers sync.WaitGroup
	// abort ends the pushes under way when Stop's deadline passes.
	abortCtx context.Context
	abort    context.CancelFunc

	// last holds when each (user, conversation) was last pushed to.
	lastMu    sync.Mutex
	last      map[pushKey]time.Time
	pruneOver int

	dropped     atomic.Int64
	abandoned   atomic.Int64
	lastDropLog atomic.Int64 // Unix nanoseconds
}

// job is one stored message waiting for its pushes.
type job struct {
	ctx     context.Context
	conv    domain.ConversationID
	members []domain.UserID
	msg     *domain.Message
}

type pushKey struct {
	user domain.UserID
	conv domain.ConversationID
}

// New returns a Pusher that delivers through next and pushes through b. Its
// workers run until Stop.
func New(cfg Config, next chat.Deliverer, b infrastructure.OutputBinding, pres Presence, c Cursors, live *settings.Live) (*Pusher, error) {
	if cfg.Binding == "" {
		return nil, errors.New("no output binding named for pushes")
	}
	if next == nil || b == nil || pres == nil || c == nil || live == nil {
		return nil, errors.New("pushes need a deliverer, a binding, presence, cursors and live settings")
	}
	if cfg.Operation == "" {
		cfg.Operation = "post"
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, abort := context.WithCancel(context.Background())
	p := &Pusher{cfg: cfg, next: next, binding: b, presence: pres, cursors: c, live: live, log: cfg.Logger,
		queue: make(chan job, cfg.QueueSize), abortCtx: ctx, abort: abort,
		last: map[pushKey]time.Time{}, pruneOver: minPruneOver}
	for range cfg.Workers {
		p.workers.Add(1)
		go p.work()
	}
	return p, nil
}

// minPruneOver is the size of the interval map below which it is never
// swept.
const minPruneOver = 1024

// dropLogEvery bounds how often a full queue is logged: a burst that
// overflows it makes one line with a count, not one per message.
const dropLogEvery = time.Second

// Deliver delivers m through the next Deliverer, then queues it for the
// pushes. It never waits: with the queue full, m gets no push, which is
// logged. System messages (group changes) and recalled messages get none.
func (p *Pusher) Deliver(ctx context.Context, conv *domain.Conversation, m *domain.Message, origin string) {
	p.next.Deliver(ctx, conv, m, origin)
	if m.ContentType == domain.ContentSystem || m.Recalled {
		return
	}
	members := recipients(conv.Members, m, p.cfg.MaxMembers)
	if len(members) == 0 {
		return
	}
	// The request's ctx ends with the request; the push keeps its values
	// (the trace) but not its deadline.
	j := job{ctx: context.WithoutCancel(ctx), conv: conv.ID, members: members, msg: m}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.stopped {
		p.log.Warn("stopping; no push for this message", zap.String("conv", string(conv.ID)), zap.String("msg_id", m.ID))
		return
	}
	select {
	case p.queue <- j:
	default:
		p.droppedOne(conv.ID, m)
	}
}

// recipients lists who may get a push for m: every member but the sender,
// or, in a conversation over maxMembers, only the members m mentions.
func recipients(members []domain.UserID, m *domain.Message, maxMembers int) []domain.UserID {
	var out []domain.UserID
	if len(members) > maxMembers {
		if m.MentionAll {
			return nil // a mention of thousands is still thousands of pushes
		}
		for _, u := range m.Mentions {
			if u != m.Sender && slices.Contains(members, u) {
				out = append(out, u)
			}
		}
		return out
	}
	out = make([]domain.UserID, 0, len(members))
	for _, u := range members {
		if u != m.Sender {
			out = append(out, u)
		}
	}
	return out
}

func (p *Pusher) droppedOne(conv domain.ConversationID, m *domain.Message) {
	n := p.dropped.Add(1)
	now := p.cfg.Now().UnixNano()
	last := p.lastDropLog.Load()
	if now-last < int64(dropLogEvery) || !p.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn("queue full; pushes dropped, their recipients get the messages when a device syncs",
		zap.String("conv", string(conv)), zap.String("msg_id", m.ID), zap.Int64("dropped_total", n), zap.Int("queue", p.cfg.QueueSize))
}

// Queued is how many messages wait for a worker.
func (p *Pusher) Queued() int { return len(p.queue) }

// Dropped is how many messages got no push because the queue was full.
func (p *Pusher) Dropped() int64 { return p.dropped.Load() }

// Stop stops taking messages and pushes those queued, until ctx ends: then
// the pushes under way are abandoned and ctx's error returned. Calling it
// again waits as the first call did.
func (p *Pusher) Stop(ctx context.Context) error {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.queue)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
		p.abort()
		return nil
	case <-ctx.Done():
		// The workers see abortCtx end, give up their pushes and the rest
		// of the queue, and exit.
		p.abort()
		<-done
		return fmt.Errorf("stop pushes: %d queued messages not pushed: %w", p.abandoned.Load(), ctx.Err())
	}
}

func (p *Pusher) work() {
	defer p.workers.Done()
	for j := range p.queue {
		if p.abortCtx.Err() != nil {
			p.abandoned.Add(1) // Stop's deadline passed: drain without pushing
			continue
		}
		p.push(j)
	}
}

// push sends j's pushes: to each recipient not pushed to for this
// conversation within the interval, who has no device online.
func (p *Pusher) push(j job) {
	ctx, cancel := context.WithTimeout(j.ctx, p.cfg.Timeout)
	defer cancel()
	stop := context.AfterFunc(p.abortCtx, cancel)
	defer stop()

	cfg := p.live.Load()
	due := make([]domain.UserID, 0, len(j.members))
	for _, u := range j.members {
		if p.recent(u, j.conv, cfg.PushInterval) {
			continue
		}
		due = append(due, u)
	}
	if len(due) == 0 {
		return
	}
	online, err := p.presence.Online(ctx, due)
	if err != nil {
		// Pushing to everyone might wake a user on a phone in hand; not
		// pushing costs a notification the next message may bring.
		p.log.Warn("presence not read; no push for this message", zap.String("conv", string(j.conv)), zap.String("msg_id", j.msg.ID), zap.Error(err))
		return
	}
	due = slices.DeleteFunc(due, func(u domain.UserID) bool { return online[u] })
	if len(due) == 0 {
		return
	}
	cursors, err := p.cursors.ReadCursors(ctx, j.conv, due)
	if err != nil {
		// The push still says there is something to read.
		p.log.Warn("read cursors not read; unread counts say 1", zap.String("conv", string(j.conv)), zap.Error(err))
		cursors = make([]uint64, len(due))
		for i := range cursors {
			cursors[i] = j.msg.Seq - 1
		}
	}
	preview := Preview(j.msg, cfg.PushPreview)
	for i, u := range due {
		// Claimed before the invoke, so that another worker's message of
		// the same burst does not push too; a failed invoke gives it back.
		if !p.claim(u, j.conv, cfg.PushInterval) {
			continue
		}
		var unread uint64
		if j.msg.Seq > cursors[i] {
			unread = j.msg.Seq - cursors[i]
		}
		data, err := json.Marshal(Payload{User: u, Conv: j.conv, From: j.msg.Sender, Seq: j.msg.Seq, Preview: preview, Unread: unread})
		if err != nil {
			p.log.Error("encode payload", zap.String("conv", string(j.conv)), zap.Error(err))
			p.unclaim(u, j.conv)
			continue
		}
		if err := p.binding.Invoke(ctx, p.cfg.Binding, p.cfg.Operation, data, map[string]string{"Content-Type": "application/json"}); err != nil {
			p.unclaim(u, j.conv)
			p.log.Warn("binding failed; the user gets the message when a device syncs", zap.String("binding", p.cfg.Binding),
				zap.String("user", string(u)), zap.String("conv", string(j.conv)), zap.String("msg_id", j.msg.ID), zap.Error(err))
		}
	}
}

// recent reports whether u was pushed to for conv within interval.
func (p *Pusher) recent(u domain.UserID, conv domain.ConversationID, interval time.Duration) bool {
	if interval <= 0 {
		return false
	}
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	at, ok := p.last[pushKey{u, conv}]
	return ok && p.cfg.Now().Sub(at) < interval
}

// claim records a push to u for conv now, unless one was within interval.
func (p *Pusher) claim(u domain.UserID, conv domain.ConversationID, interval time.Duration) bool {
	if interval <= 0 {
		return true
	}
	now := p.cfg.Now()
	k := pushKey{u, conv}
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	if at, ok := p.last[k]; ok && now.Sub(at) < interval {
		return false
	}
	p.last[k] = now
	if len(p.last) > p.pruneOver {
		// Entries older than the interval decide nothing: sweep them when
		// the map has doubled since the last sweep, so a sweep costs O(1)
		// per push over time.
		for key, at := range p.last {
			if now.Sub(at) >= interval {
				delete(p.last, key)
			}
		}
		p.pruneOver = max(minPruneOver, 2*len(p.last))
	}
	return true
}

func (p *Pusher) unclaim(u domain.UserID, conv domain.ConversationID) {
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	delete(p.last, pushKey{u, conv})
}

// Preview returns the first n characters of m's text, or "" when n is 0 or
// m is not text (a JSON card would show as code).
func Preview(m *domain.Message, n int) string {
	if n <= 0 || m.ContentType != domain.Text {
		return ""
	}
	i := 0
	for pos := range m.Body {
		if i == n {
			return m.Body[:pos]
		}
		i++
	}
	return m.Body
}
