package units

import (
	"errors"

	jsoniter "github.com/json-iterator/go"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/hook"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

var json = jsoniter.ConfigCompatibleWithStandardLibrary

// Methods one unit serves the others through Dapr service invocation. A
// reply always comes with status 200 and says in its body whether the use
// case failed: an error of the invocation itself then means the unit could
// not be reached.
const (
	MethodSend    = "v1/unit/send"
	MethodHistory = "v1/unit/history"
	MethodRead    = "v1/unit/read"
	MethodList    = "v1/unit/list"
	MethodDeliver = "v1/unit/deliver"
	// MethodGroup is a change of a group homed in the unit called.
	MethodGroup = "v1/unit/group"
	// MethodChange is a recall or an edit in a conversation homed in the
	// unit called.
	MethodChange = "v1/unit/change"
	// MethodMove asks a conversation's home to move it (see Units.Move).
	MethodMove = "v1/unit/move"
	// MethodImport is a batch of a moving conversation, from its old home
	// to its new one.
	MethodImport = "v1/unit/import"
)

type groupReply struct {
	Result chat.GroupResult `json:"result"`
	Err    *wireError       `json:"err,omitempty"`
}

type changeReply struct {
	Event domain.Message `json:"event"`
	Err   *wireError     `json:"err,omitempty"`
}

type moveRequest struct {
	Conv domain.ConversationID `json:"conv"`
	To   string                `json:"to"`
}

type moveReply struct {
	Route Route      `json:"route"`
	Err   *wireError `json:"err,omitempty"`
}

// importRequest is one batch of a moving conversation's log, in seq order;
// the last batch has no messages and carries the read cursors.
type importRequest struct {
	From    string                   `json:"from"`
	Conv    domain.Conversation      `json:"conv"`
	Msgs    []store.MovedMessage     `json:"msgs,omitempty"`
	Cursors map[domain.UserID]uint64 `json:"cursors,omitempty"`
}

type importReply struct {
	Err *wireError `json:"err,omitempty"`
}

// sendReply is the home unit's answer to a forwarded send.
type sendReply struct {
	Result chat.SendResult `json:"result"`
	Err    *wireError      `json:"err,omitempty"`
}

type historyReply struct {
	Page chat.HistoryPage `json:"page"`
	Err  *wireError       `json:"err,omitempty"`
}

type readReply struct {
	Seq uint64     `json:"seq"`
	Err *wireError `json:"err,omitempty"`
}

type listRequest struct {
	User domain.UserID `json:"user"`
}

type listReply struct {
	Views []chat.ConversationView `json:"views"`
	Err   *wireError              `json:"err,omitempty"`
}

// deliverEnvelope is one message the home unit hands another unit for its
// devices. Origin is the sending connection, which gets the ACK and no push.
type deliverEnvelope struct {
	Conv   domain.Conversation `json:"conv"`
	Msg    *domain.Message     `json:"msg"`
	Origin string              `json:"origin,omitempty"`
}

// deliverBatch is the body of MethodDeliver: messages in the order they
// were stored. A body that is one deliverEnvelope (the embedded fields) is
// read as a batch of one.
type deliverBatch struct {
	deliverEnvelope
	Batch []deliverEnvelope `json:"batch,omitempty"`
}

// wireError carries a use case's error from one unit to another. Code
// names the sentinel it matched, so that the receiving edge sorts it as it
// would its own; Msg is its text, which the edge shows only for errors
// that explain themselves.
type wireError struct {
	Code    string `json:"code"`
	Msg     string `json:"msg"`
	Size    int    `json:"size,omitempty"`
	Limit   int    `json:"limit,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Value   string `json:"value,omitempty"`
	Invalid bool   `json:"invalid,omitempty"`
}

// codeWrongUnit says the unit asked is not the conversation's home (it
// moved): the caller drops its cached route and asks again.
const codeWrongUnit = "wrong_unit"

// errWrongUnit is what a unit that is not a conversation's home answers a
// forwarded request with.
var errWrongUnit = errors.New("this unit is not the conversation's home")

// sentinels are the errors a use case returns that the edge sorts into
// distinct protocol codes, by a stable name.
var sentinels = []struct {
	code string
	err  error
}{
	{"invalid_user", domain.ErrInvalidUserID},
	{"invalid_conversation", domain.ErrInvalidConversationID},
	{"invalid_cmid", domain.ErrInvalidClientMsgID},
	{"empty_body", domain.ErrEmptyBody},
	{"body_too_large", domain.ErrBodyTooLarge},
	{"unknown_content_type", domain.ErrUnknownContentType},
	{"invalid_json_body", domain.ErrInvalidJSONBody},
	{"invalid_utf8", domain.ErrInvalidUTF8},
	{"send_to_self", domain.ErrSendToSelf},
	{"not_member", domain.ErrNotMember},
	{"invalid_limit", domain.ErrInvalidLimit},
	{"invalid_reply", domain.ErrInvalidReply},
	{"invalid_mention", domain.ErrInvalidMention},
	{"forbidden", domain.ErrForbidden},
	{"muted", domain.ErrMuted},
	{"group_dissolved", domain.ErrGroupDissolved},
	{"rejected", domain.ErrRejected},
	{"rate_limited", chat.ErrRateLimited},
	{"already_member", domain.ErrAlreadyMember},
	{"invalid_ext", domain.ErrInvalidExt},
	{"invalid_mute_time", domain.ErrInvalidMuteTime},
	{"invalid_name", domain.ErrInvalidName},
	{"invalid_notice", domain.ErrInvalidNotice},
	{"invite_only", domain.ErrInviteOnly},
	{"no_change", domain.ErrNoChange},
	{"not_recallable", domain.ErrNotRecallable},
	{"not_editable", domain.ErrNotEditable},
	{"recalled", domain.ErrRecalled},
	{"recall_window", domain.ErrRecallWindow},
	{"edit_window", domain.ErrEditWindow},
	{"owner_cannot_leave", domain.ErrOwnerCannotLeave},
	{"too_many_members", domain.ErrTooManyMembers},
	{"unknown_join_policy", domain.ErrUnknownJoinPolicy},
	{"unknown_role", domain.ErrUnknownRole},
	{"unknown_group_op", chat.ErrUnknownGroupOp},
	{"cmid_reused", store.ErrClientMsgIDReused},
	{"hook_failed", hook.ErrHookFailed},
	{codeWrongUnit, errWrongUnit},
	{"not_movable", ErrNotMovable},
	{"unknown_unit", ErrUnknownUnit},
	{"no_route", ErrNoRoute},
	{"move_busy", ErrMoveBusy},
	{"import_conflict", store.ErrImportConflict},
}

// toWire encodes err for another unit; nil stays nil. An error matching no
// sentinel (storage down, say) travels as unavailable: the caller may
// retry with the same cmid.
func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Code: "unavailable", Msg: err.Error()}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			w.Code = s.code
			break
		}
	}
	var tooLarge *domain.BodyTooLargeError
	var rejected *domain.RejectedError
	var invalid *domain.InvalidError
	switch {
	case errors.As(err, &tooLarge):
		w.Size, w.Limit = tooLarge.Size, tooLarge.Limit
	case errors.As(err, &rejected):
		w.Reason = rejected.Reason
	case errors.As(err, &invalid):
		w.Invalid, w.Value, w.Reason = true, invalid.Value, invalid.Reason
	}
	return w
}

// fromWire is the error w stands for: the typed error or sentinel the
// home unit returned, as far as the edge tells them apart.
func fromWire(w *wireError) error {
	if w == nil {
		return nil
	}
	for _, s := range sentinels {
		if s.code != w.Code {
			continue
		}
		switch {
		case s.err == domain.ErrBodyTooLarge && w.Limit > 0:
			return &domain.BodyTooLargeError{Size: w.Size, Limit: w.Limit}
		case s.err == domain.ErrRejected:
			return &domain.RejectedError{Reason: w.Reason}
		case w.Invalid:
			return &domain.InvalidError{Kind: s.err, Value: w.Value, Reason: w.Reason}
		}
		return &remoteError{kind: s.err, msg: w.Msg}
	}
	return &remoteError{kind: errHomeFailed, msg: w.Msg}
}

// errHomeFailed is a failure of the home unit's own backend.
var errHomeFailed = errors.New("the home unit could not serve the request")

// remoteError is a sentinel error returned by another unit, with its text.
type remoteError struct {
	kind error
	msg  string
}

func (e *remoteError) Error() string { return e.msg }

// Is matches the sentinel; a failure of the home's backend also matches
// ErrUnitUnavailable: for the user both mean "retry later".
func (e *remoteError) Is(target error) bool {
	return target == e.kind || (e.kind == errHomeFailed && (target == ErrUnitUnavailable || target == infrastructure.ErrUnavailable))
}
