package domain

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// ContentType says how a message body is to be read.
type ContentType string

const (
	// Text is UTF-8 text, the default.
	Text ContentType = "text"
	// JSON is a JSON document, for custom message types (cards, images by
	// reference, typing events) that clients render themselves.
	JSON ContentType = "json"
)

// ParseContentType accepts "", "text" and "json"; "" means text. It refuses
// ContentSystem, which only the server writes.
func ParseContentType(s string) (ContentType, error) {
	switch ContentType(s) {
	case "", Text:
		return Text, nil
	case JSON:
		return JSON, nil
	}
	return "", invalid(ErrUnknownContentType, s, `use "text" or "json"`)
}

// MaxClientMsgIDLen bounds a client message id.
const MaxClientMsgIDLen = 64

// DefaultMaxBodyBytes is the body limit when configuration sets none.
const DefaultMaxBodyBytes = 16 << 10

// Message is one stored message. Seq orders it within its conversation.
type Message struct {
	ID          string         `json:"id"`
	Conv        ConversationID `json:"conv"`
	Seq         uint64         `json:"seq"`
	Sender      UserID         `json:"from"`
	ClientMsgID string         `json:"cmid"`
	ContentType ContentType    `json:"ctype"`
	Body        string         `json:"body"`
	// ServerMs is when the server accepted it, in Unix milliseconds.
	ServerMs int64 `json:"ts"`
	// ReplyTo is the seq of the message this one replies to or quotes; 0
	// for none.
	ReplyTo uint64 `json:"reply_to,omitempty"`
	// Mentions are the users this message mentions; MentionAll mentions
	// every member of a group.
	Mentions   []UserID `json:"mentions,omitempty"`
	MentionAll bool     `json:"mention_all,omitempty"`
	// Edited is set once an EventEdited replaced the body.
	Edited bool `json:"edited,omitempty"`
	// Recalled is set once an EventRecalled took the message back: the
	// body and mentions are gone, and the message is a tombstone.
	Recalled bool `json:"recalled,omitempty"`
}

// Draft is a message before the server gave it a seq and a time.
type Draft struct {
	Conv        ConversationID
	Sender      UserID
	ClientMsgID string
	ContentType ContentType
	Body        string
	// ReplyTo is the seq replied to, 0 for none; see ValidateReply.
	ReplyTo uint64
	// Mentions are at most MaxMentions distinct users (see ParseMentions).
	Mentions []UserID
	// MentionAll mentions everyone; in a group only the owner and admins
	// may (GroupInfo.AuthorizeSend).
	MentionAll bool
}

// Validate applies the body and id rules with maxBody as the body limit.
func (d Draft) Validate(maxBody int) error {
	if d.ClientMsgID == "" || len(d.ClientMsgID) > MaxClientMsgIDLen {
		return invalid(ErrInvalidClientMsgID, d.ClientMsgID, "must be 1 to 64 characters")
	}
	for i := 0; i < len(d.ClientMsgID); i++ {
		if c := d.ClientMsgID[i]; c < 0x21 || c > 0x7e {
			return invalid(ErrInvalidClientMsgID, d.ClientMsgID, "only printable ASCII without spaces")
		}
	}
	if err := validateBody(d.ContentType, d.Body, maxBody); err != nil {
		return err
	}
	if len(d.Mentions) > MaxMentions {
		return invalid(ErrInvalidMention, string(d.Mentions[0]), fmt.Sprintf("%d mentions, the limit is %d", len(d.Mentions), MaxMentions))
	}
	for i, u := range d.Mentions {
		if _, err := ParseUserID(string(u)); err != nil {
			return invalid(ErrInvalidMention, string(u), "not a user id")
		}
		if slices.Contains(d.Mentions[:i], u) {
			return invalid(ErrInvalidMention, string(u), "mentioned twice")
		}
	}
	return nil
}

// validateBody applies the body rules of a draft or an edit. A client never
// sends ContentSystem.
func validateBody(ctype ContentType, body string, maxBody int) error {
	if len(body) == 0 {
		return ErrEmptyBody
	}
	if len(body) > maxBody {
		return &BodyTooLargeError{Size: len(body), Limit: maxBody}
	}
	if !utf8.ValidString(body) {
		return ErrInvalidUTF8
	}
	switch ctype {
	case Text:
	case JSON:
		if !json.Valid([]byte(body)) {
			return ErrInvalidJSONBody
		}
	default:
		return invalid(ErrUnknownContentType, string(ctype), `use "text" or "json"`)
	}
	return nil
}

// ValidateReply checks ReplyTo against the conversation's newest seq before
// the draft gets its own: a reply names a message that exists, so it is
// below the new seq. Check it before allocating the seq, which must not be
// wasted. In a group, GroupInfo.AuthorizeSend also checks that the sender can
// read the message replied to.
func (d Draft) ValidateReply(lastSeq uint64) error {
	if d.ReplyTo > lastSeq {
		return invalid(ErrInvalidReply, strconv.FormatUint(d.ReplyTo, 10), "no message has this seq yet")
	}
	return nil
}

// MessageID derives a message's id from its sender and client message id.
// Deriving it, rather than drawing it at random, means that even a retry
// racing a crash can only ever produce the same id, which clients drop.
func MessageID(sender UserID, clientMsgID string) string {
	// On the stack for the usual sizes: an id is made for every send.
	var in [160]byte
	sum := sha256.Sum256(append(append(append(in[:0], sender...), 0), clientMsgID...))
	var out [1 + 56]byte
	out[0] = 'm'
	idEncoding.Encode(out[1:], sum[:])
	return string(out[:26])
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Accept turns a validated draft into the message stored at seq.
func (d Draft) Accept(seq uint64, nowMs int64) Message {
	return Message{
		ID:          MessageID(d.Sender, d.ClientMsgID),
		Conv:        d.Conv,
		Seq:         seq,
		Sender:      d.Sender,
		ClientMsgID: d.ClientMsgID,
		ContentType: d.ContentType,
		Body:        d.Body,
		ServerMs:    nowMs,
		ReplyTo:     d.ReplyTo,
		Mentions:    d.Mentions,
		MentionAll:  d.MentionAll,
	}
}
