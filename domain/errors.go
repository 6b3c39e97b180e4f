// Package domain holds parley's entities and rules: users, conversations,
// members and messages. It is pure Go with no I/O and imports nothing of this
// project; the app layer persists and delivers what the domain validates.
package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors. The gateway maps each to a protocol error code in one place.
var (
	ErrInvalidUserID         = errors.New("invalid user id")
	ErrInvalidConversationID = errors.New("invalid conversation id")
	ErrInvalidClientMsgID    = errors.New("invalid client message id")
	ErrEmptyBody             = errors.New("empty body")
	ErrBodyTooLarge          = errors.New("body too large")
	ErrUnknownContentType    = errors.New("unknown content type")
	ErrInvalidJSONBody       = errors.New("body is not valid JSON")
	ErrSendToSelf            = errors.New("cannot send to oneself")
	ErrNotMember             = errors.New("not a member of the conversation")
	ErrInvalidLimit          = errors.New("invalid limit")
	ErrInvalidUTF8           = errors.New("body is not valid UTF-8")
)

// BodyTooLargeError carries the size that was refused and the limit in force.
type BodyTooLargeError struct {
	Size, Limit int
}

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("body is %d bytes, the limit is %d", e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrBodyTooLarge) true.
func (e *BodyTooLargeError) Is(target error) bool { return target == ErrBodyTooLarge }

// InvalidError names the field and the value's problem.
type InvalidError struct {
	Kind   error  // one of the sentinels
	Value  string // the offending value, truncated
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("%v %q: %s", e.Kind, e.Value, e.Reason)
}

func (e *InvalidError) Unwrap() error { return e.Kind }

func invalid(kind error, value, reason string) error {
	if len(value) > 64 {
		value = value[:64] + "…"
	}
	return &InvalidError{Kind: kind, Value: value, Reason: reason}
}

// ErrRejected means a before-send hook refused the message.
var ErrRejected = errors.New("rejected by policy")

// RejectedError carries the hook's reason, which is shown to the sender.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "rejected: " + e.Reason }

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }
