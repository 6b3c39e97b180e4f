// Package chat holds parley's use cases: send a message, read history, list
// conversations, mark as read, list online users. Each is a command or query
// with a handler; the gateway calls them and maps their errors to protocol
// codes.
package chat

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// ErrRateLimited means the sender went over the live send rate.
var ErrRateLimited = errors.New("rate limited: too many sends, slow down")

// Deliverer pushes a stored message to the members' live devices. It must not
// block on a slow device.
//
// origin is the id of the connection the message was sent on, or "" (HTTP,
// service invocation): that connection gets the message in its ACK and is
// not pushed a copy. The sender's other devices are.
type Deliverer interface {
	Deliver(ctx context.Context, conv *domain.Conversation, m *domain.Message, origin string)
}

// Clock returns the time; tests replace it.
type Clock func() time.Time

// resolve finds the conversation a request names: a conversation id, or the
// peer of a direct conversation. Direct membership follows from the id, so
// authorising it costs no read.
func resolve(sender domain.UserID, convID, to string, nowMs int64) (domain.Conversation, error) {
	if convID == "" {
		peer, err := domain.ParseUserID(to)
		if err != nil {
			return domain.Conversation{}, err
		}
		return domain.NewDirectConversation(sender, peer, nowMs)
	}
	id, members, err := domain.ParseConversationID(convID)
	if err != nil {
		return domain.Conversation{}, err
	}
	c := domain.Conversation{ID: id, Kind: domain.Direct, Members: members}
	if err := c.Authorize(sender); err != nil {
		return domain.Conversation{}, err
	}
	return c, nil
}

// stripes serialises work per conversation on this node with a fixed set of
// mutexes, so memory does not grow with the number of conversations. Two
// conversations may share a stripe; that only costs a little concurrency.
type stripes struct {
	seed  maphash.Seed
	locks [256]stripe
}

// stripe is the lock of some conversations and what it guards.
type stripe struct {
	sync.Mutex
	// heads caches the newest seq this node gave each conversation.
	heads map[domain.ConversationID]uint64
	// commits holds, per conversation, the sends waiting for their commit:
	// one commit of a conversation runs at a time, in seq order, and takes
	// every send that queued meanwhile.
	commits map[domain.ConversationID]*commitQueue
	// repairs counts idempotency records rewritten by writers probing
	// past another sender's message (see insert): a send that looked for
	// its record before one of them must look again.
	repairs uint64
}

func newStripes() *stripes {
	s := &stripes{seed: maphash.MakeSeed()}
	for i := range s.locks {
		s.locks[i].heads = make(map[domain.ConversationID]uint64)
		s.locks[i].commits = make(map[domain.ConversationID]*commitQueue)
	}
	return s
}

// commitQueue is a conversation's sends waiting for their commit, and
// whether a commit is running. Guarded by the stripe's lock.
type commitQueue struct {
	pending []*commitReq
	running bool
}

type commitReq struct {
	msg  *domain.Message
	done chan struct{}
}

func (s *stripes) of(c domain.ConversationID) *stripe {
	return &s.locks[maphash.String(s.seed, string(c))%uint64(len(s.locks))]
}

// inflight lets one attempt per (sender, client message id) run at a time
// on this node: a retry that races its first attempt waits for it, then
// finds its record. Safe for concurrent use.
type inflight struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// acquire waits until no other attempt of the same send runs here, then
// claims it; release frees it.
func (f *inflight) acquire(ctx context.Context, sender domain.UserID, cmid string) (release func(), err error) {
	key := string(sender) + "\x00" + cmid
	for {
		f.mu.Lock()
		if f.m == nil {
			f.m = make(map[string]chan struct{})
		}
		busy, ok := f.m[key]
		if !ok {
			done := make(chan struct{})
			f.m[key] = done
			f.mu.Unlock()
			return func() {
				f.mu.Lock()
				delete(f.m, key)
				f.mu.Unlock()
				close(done)
			}, nil
		}
		f.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, fmt.Errorf("an earlier attempt of this send is still running: %w", infrastructure.ErrUnavailable)
		}
	}
}
