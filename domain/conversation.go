package domain

import (
	"slices"
	"strings"
)

// ConversationKind says how a conversation's members are decided.
type ConversationKind string

const (
	// Direct is a conversation between exactly two users, one per pair.
	Direct ConversationKind = "direct"
	// Group is a conversation with a member list managed by its owners.
	Group ConversationKind = "group"
)

// ConversationID identifies a conversation. A direct conversation's id is
// derived from its pair of users, so both sides find it without a lookup:
// "d:" followed by the two user ids in ascending order, joined by "~".
type ConversationID string

// MaxConversationIDLen bounds a conversation id.
const MaxConversationIDLen = 2*MaxUserIDLen + 3

// Conversation is a set of members that messages are sent to. The zero value
// is not valid; use NewDirectConversation.
type Conversation struct {
	ID      ConversationID   `json:"id"`
	Kind    ConversationKind `json:"kind"`
	Members []UserID         `json:"members"`
	// CreatedMs is the creation time in Unix milliseconds.
	CreatedMs int64 `json:"created"`
}

// DirectConversationID returns the id of the direct conversation of a and b.
func DirectConversationID(a, b UserID) ConversationID {
	if b < a {
		a, b = b, a
	}
	return ConversationID("d:" + string(a) + "~" + string(b))
}

// NewDirectConversation returns the direct conversation of a and b.
func NewDirectConversation(a, b UserID, nowMs int64) (Conversation, error) {
	if a == b {
		return Conversation{}, ErrSendToSelf
	}
	if b < a {
		a, b = b, a
	}
	return Conversation{ID: DirectConversationID(a, b), Kind: Direct, Members: []UserID{a, b}, CreatedMs: nowMs}, nil
}

// ParseConversationID validates s. For a direct id it also returns its two
// members, which is all the app needs to authorise a direct conversation.
func ParseConversationID(s string) (ConversationID, []UserID, error) {
	if len(s) > MaxConversationIDLen {
		return "", nil, invalid(ErrInvalidConversationID, s, "too long")
	}
	rest, ok := strings.CutPrefix(s, "d:")
	if !ok {
		return "", nil, invalid(ErrInvalidConversationID, s, `must start with "d:"`)
	}
	a, b, ok := strings.Cut(rest, "~")
	if !ok {
		return "", nil, invalid(ErrInvalidConversationID, s, "a direct id names two users separated by ~")
	}
	ua, err := ParseUserID(a)
	if err != nil {
		return "", nil, invalid(ErrInvalidConversationID, s, err.Error())
	}
	ub, err := ParseUserID(b)
	if err != nil {
		return "", nil, invalid(ErrInvalidConversationID, s, err.Error())
	}
	if ua >= ub {
		return "", nil, invalid(ErrInvalidConversationID, s, "the two users must differ and be in ascending order")
	}
	return ConversationID(s), []UserID{ua, ub}, nil
}

// IsMember reports whether u belongs to c.
func (c Conversation) IsMember(u UserID) bool { return slices.Contains(c.Members, u) }

// Authorize returns ErrNotMember unless u belongs to c.
func (c Conversation) Authorize(u UserID) error {
	if !c.IsMember(u) {
		return ErrNotMember
	}
	return nil
}

// Unread is how many messages a reader with cursor readSeq has not read when
// the newest message has lastSeq.
func Unread(lastSeq, readSeq uint64) uint64 {
	if readSeq >= lastSeq {
		return 0
	}
	return lastSeq - readSeq
}
