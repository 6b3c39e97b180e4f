package domain

import (
	"errors"
	"fmt"
	"time"
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

// Sentinel errors of groups and message features. Each is a distinct
// protocol code at the edge; the typed errors below carry details and match
// their sentinel with errors.Is.
var (
	// ErrForbidden: the actor's role does not allow the action (ForbiddenError).
	ErrForbidden = errors.New("forbidden")
	// ErrMuted: the sender is muted, alone or with the whole group (MutedError).
	ErrMuted = errors.New("muted")
	// ErrGroupDissolved: the group no longer takes messages or changes.
	ErrGroupDissolved = errors.New("group dissolved")
	// ErrRecallWindow: the sender's recall window has passed (WindowError).
	ErrRecallWindow = errors.New("recall window passed")
	// ErrEditWindow: the sender's edit window has passed (WindowError).
	ErrEditWindow = errors.New("edit window passed")
	// ErrRecalled: the message was recalled and can no longer be edited or recalled.
	ErrRecalled = errors.New("message recalled")
	// ErrNotEditable: only the sender's own text or JSON messages can be edited.
	ErrNotEditable = errors.New("message cannot be edited")
	// ErrNotRecallable: system events cannot be recalled.
	ErrNotRecallable = errors.New("message cannot be recalled")
	// ErrInvalidName: a group name outside 1 to MaxGroupNameRunes characters.
	ErrInvalidName = errors.New("invalid group name")
	// ErrInvalidNotice: a group notice over MaxNoticeBytes or not UTF-8.
	ErrInvalidNotice = errors.New("invalid group notice")
	// ErrInvalidExt: group ext that is not a JSON object of at most MaxExtBytes.
	ErrInvalidExt = errors.New("invalid group ext")
	// ErrTooManyMembers: a member list over a limit (TooManyMembersError).
	ErrTooManyMembers = errors.New("too many members")
	// ErrUnknownRole: a role that is not owner, admin or member, or a role
	// that cannot be given this way.
	ErrUnknownRole = errors.New("unknown role")
	// ErrUnknownJoinPolicy: a join policy other than open, approval or invite_only.
	ErrUnknownJoinPolicy = errors.New("unknown join policy")
	// ErrInviteOnly: the group takes no join requests, only invitations.
	ErrInviteOnly = errors.New("group is invite only")
	// ErrAlreadyMember: the user is a current member already.
	ErrAlreadyMember = errors.New("already a member")
	// ErrOwnerCannotLeave: the owner transfers ownership or dissolves the group instead.
	ErrOwnerCannotLeave = errors.New("the owner cannot leave the group")
	// ErrInvalidMuteTime: a mute that ends in the past.
	ErrInvalidMuteTime = errors.New("mute must end in the future")
	// ErrInvalidReply: a reply to a seq that is 0, not yet written or not visible.
	ErrInvalidReply = errors.New("invalid reply target")
	// ErrInvalidMention: a mention list that is too long or names an invalid user.
	ErrInvalidMention = errors.New("invalid mention")
	// ErrInvalidEvent: a system event body that does not decode.
	ErrInvalidEvent = errors.New("invalid system event")
	// ErrInvalidTyping: a typing notice with a bad conversation or user.
	ErrInvalidTyping = errors.New("invalid typing notice")
)

// ForbiddenError says which action was refused and which role it needs.
// Need is empty when no role may do it, as when the target is the owner.
type ForbiddenError struct {
	Action Action
	Need   Role
	// Target is the role of the member acted on, empty for actions without one.
	Target Role
}

func (e *ForbiddenError) Error() string {
	switch {
	case e.Need == "" && e.Target != "":
		return fmt.Sprintf("forbidden: no role may %s a member with role %s", e.Action, e.Target)
	case e.Need == "":
		return fmt.Sprintf("forbidden: no role may %s", e.Action)
	case e.Target != "":
		return fmt.Sprintf("forbidden: %s on a member with role %s needs role %s", e.Action, e.Target, e.Need)
	}
	return fmt.Sprintf("forbidden: %s needs role %s", e.Action, e.Need)
}

// Is makes errors.Is(err, ErrForbidden) true.
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

// MutedError tells a muted sender when they may speak again. UntilMs is the
// end of their own mute in Unix milliseconds; it is 0 when only the whole
// group is muted (All), which lasts until an admin lifts it.
type MutedError struct {
	UntilMs int64
	All     bool
}

func (e *MutedError) Error() string {
	if e.UntilMs == 0 {
		return "muted: the group is muted for members"
	}
	return fmt.Sprintf("muted until %d (Unix ms)", e.UntilMs)
}

// Is makes errors.Is(err, ErrMuted) true.
func (e *MutedError) Is(target error) bool { return target == ErrMuted }

// WindowError says that a time-limited action came too late. Kind is
// ErrRecallWindow or ErrEditWindow.
type WindowError struct {
	Kind   error
	Window time.Duration
}

func (e *WindowError) Error() string { return fmt.Sprintf("%v: the window is %s", e.Kind, e.Window) }

func (e *WindowError) Unwrap() error { return e.Kind }

// TooManyMembersError carries the count that was refused and the limit in
// force: the per-call limit or the group's member cap.
type TooManyMembersError struct {
	Count, Limit int
}

func (e *TooManyMembersError) Error() string {
	return fmt.Sprintf("too many members: %d, the limit is %d", e.Count, e.Limit)
}

// Is makes errors.Is(err, ErrTooManyMembers) true.
func (e *TooManyMembersError) Is(target error) bool { return target == ErrTooManyMembers }
