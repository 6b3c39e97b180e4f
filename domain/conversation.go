package domain

import (
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ConversationKind says how a conversation's members are decided.
type ConversationKind string

const (
	// Direct is a conversation between exactly two users, one per pair.
	Direct ConversationKind = "direct"
	// Group is a conversation with a member list managed by its owner and
	// admins. Its id is "g:" and a server-made key (NewGroupID).
	Group ConversationKind = "group"
	// Service is a customer-service conversation between a customer and a
	// shop, answered by the agent the shop assigns. Its id is
	// "s:{shop}~{customer}" (ServiceConversationID).
	Service ConversationKind = "service"
)

// ConversationID identifies a conversation; its prefix says its kind. A
// direct conversation's id is derived from its pair of users, so both sides
// find it without a lookup: "d:" followed by the two user ids in ascending
// order, joined by "~". A group's is "g:" and a key the server made
// (NewGroupID). A service conversation's is "s:{shop}~{customer}".
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

// ParseConversationID validates s as any kind of conversation id; use
// ConversationID.Kind to tell them apart. Only a direct id names its members,
// so members is the pair for a direct id and nil for group and service ids,
// whose members live in their records. A caller that authorises by members
// alone therefore refuses group and service ids with ErrNotMember rather than
// letting anyone in.
func ParseConversationID(s string) (ConversationID, []UserID, error) {
	if len(s) > MaxConversationIDLen {
		return "", nil, invalid(ErrInvalidConversationID, s, "too long")
	}
	switch {
	case strings.HasPrefix(s, "d:"):
		a, b, err := parsePair(s)
		if err != nil {
			return "", nil, err
		}
		if a >= b {
			return "", nil, invalid(ErrInvalidConversationID, s, "the two users must differ and be in ascending order")
		}
		return ConversationID(s), []UserID{a, b}, nil
	case strings.HasPrefix(s, "g:"):
		if err := checkGroupKey(s[2:]); err != nil {
			return "", nil, invalid(ErrInvalidConversationID, s, err.Error())
		}
		return ConversationID(s), nil, nil
	case strings.HasPrefix(s, "s:"):
		shop, customer, err := parsePair(s)
		if err != nil {
			return "", nil, err
		}
		if shop == customer {
			return "", nil, invalid(ErrInvalidConversationID, s, "the shop cannot be its own customer")
		}
		return ConversationID(s), nil, nil
	}
	return "", nil, invalid(ErrInvalidConversationID, s, `must start with "d:", "g:" or "s:"`)
}

// parsePair reads the two user ids of a "d:" or "s:" id.
func parsePair(s string) (UserID, UserID, error) {
	a, b, ok := strings.Cut(s[2:], "~")
	if !ok {
		return "", "", invalid(ErrInvalidConversationID, s, "names two users separated by ~")
	}
	ua, err := ParseUserID(a)
	if err != nil {
		return "", "", invalid(ErrInvalidConversationID, s, err.Error())
	}
	ub, err := ParseUserID(b)
	if err != nil {
		return "", "", invalid(ErrInvalidConversationID, s, err.Error())
	}
	return ua, ub, nil
}

// MaxGroupKeyLen bounds the part of a group id after "g:".
const MaxGroupKeyLen = 64

func checkGroupKey(k string) error {
	if k == "" || len(k) > MaxGroupKeyLen {
		return fmt.Errorf("a group id has 1 to %d characters after g:", MaxGroupKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if !idChar(k[i]) {
			return errors.New("a group id has only letters, digits and _ - . after g:")
		}
	}
	return nil
}

// NewGroupID makes a group id from 16 random bytes, which the caller draws
// (crypto/rand) so that this package stays deterministic: "g:" followed by
// 26 lowercase base32 characters. The server makes every group id; a
// client's id is never trusted to be fresh.
func NewGroupID(random [16]byte) ConversationID {
	var out [2 + 26]byte
	out[0], out[1] = 'g', ':'
	groupIDEncoding.Encode(out[2:], random[:])
	return ConversationID(out[:])
}

var groupIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Kind returns the kind of conversation id names by its prefix, or "" when
// it has none of the known prefixes. It does not validate the rest.
func (id ConversationID) Kind() ConversationKind {
	switch {
	case strings.HasPrefix(string(id), "d:"):
		return Direct
	case strings.HasPrefix(string(id), "g:"):
		return Group
	case strings.HasPrefix(string(id), "s:"):
		return Service
	}
	return ""
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
