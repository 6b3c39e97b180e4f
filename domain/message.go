package domain

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
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

// ParseContentType accepts "", "text" and "json"; "" means text.
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
}

// Draft is a message before the server gave it a seq and a time.
type Draft struct {
	Conv        ConversationID
	Sender      UserID
	ClientMsgID string
	ContentType ContentType
	Body        string
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
	if len(d.Body) == 0 {
		return ErrEmptyBody
	}
	if len(d.Body) > maxBody {
		return &BodyTooLargeError{Size: len(d.Body), Limit: maxBody}
	}
	if !utf8.ValidString(d.Body) {
		return ErrInvalidUTF8
	}
	switch d.ContentType {
	case Text:
	case JSON:
		if !json.Valid([]byte(d.Body)) {
			return ErrInvalidJSONBody
		}
	default:
		return invalid(ErrUnknownContentType, string(d.ContentType), `use "text" or "json"`)
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
	}
}
