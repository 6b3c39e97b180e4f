// Package chat holds parley's use cases: send a message, read history, list
// conversations, mark as read, list online users. Each is a command or query
// with a handler; the gateway calls them and maps their errors to protocol
// codes.
package chat

import (
	"context"
	"errors"
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

// resolveForSend finds the conversation a send names: a conversation id,
// or, when that is empty, the peer of a direct conversation. Direct
// membership follows from the id, so authorising it costs no read.
func resolveForSend(sender domain.UserID, convID, to string, nowMs int64) (domain.Conversation, error) {
	if convID == "" {
		peer, err := domain.ParseUserID(to)
		if err != nil {
			return domain.Conversation{}, err
		}
		return domain.NewDirectConversation(sender, peer, nowMs)
	}
	return resolveMember(sender, convID)
}

// resolveMember finds the conversation convID names and checks that u is a
// member. An empty id is an invalid conversation, not an invalid user.
func resolveMember(u domain.UserID, convID string) (domain.Conversation, error) {
	id, members, err := domain.ParseConversationID(convID)
	if err != nil {
		return domain.Conversation{}, err
	}
	c := domain.Conversation{ID: id, Kind: domain.Direct, Members: members}
	if err := c.Authorize(u); err != nil {
		return domain.Conversation{}, err
	}
	return c, nil
}
