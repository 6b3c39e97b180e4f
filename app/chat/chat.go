// Package chat holds parley's use cases: send a message, read history, list
// conversations, mark as read, list online users. Each is a command or query
// with a handler; the gateway calls them and maps their errors to protocol
// codes.
package chat

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/parley-im/parley/domain"
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
	locks [256]struct {
		sync.Mutex
		heads map[domain.ConversationID]uint64
	}
}

func newStripes() *stripes {
	s := &stripes{seed: maphash.MakeSeed()}
	for i := range s.locks {
		s.locks[i].heads = make(map[domain.ConversationID]uint64)
	}
	return s
}

func (s *stripes) lock(c domain.ConversationID) (heads map[domain.ConversationID]uint64, unlock func()) {
	l := &s.locks[maphash.String(s.seed, string(c))%uint64(len(s.locks))]
	l.Lock()
	return l.heads, l.Unlock
}
