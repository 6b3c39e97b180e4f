package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/app/auth"
	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/hook"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/app/units"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// Protocol error codes. The README lists each with its meaning.
const (
	CodeBadFrame           = "bad_frame"
	CodeUnknownType        = "unknown_type"
	CodeUnauthorized       = "unauthorized"
	CodeInvalidUser        = "invalid_user"
	CodeInvalidConv        = "invalid_conversation"
	CodeInvalidCmid        = "invalid_cmid"
	CodeEmptyBody          = "empty_body"
	CodeBodyTooLarge       = "body_too_large"
	CodeUnknownContentType = "unknown_content_type"
	CodeInvalidJSONBody    = "invalid_json_body"
	CodeInvalidUTF8        = "invalid_utf8"
	CodeSendToSelf         = "send_to_self"
	CodeNotMember          = "not_member"
	CodeInvalidLimit       = "invalid_limit"
	CodeRateLimited        = "rate_limited"
	CodeUnavailable        = "unavailable"
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeRequestTooLarge    = "request_too_large"
	CodeInternal           = "internal"
	CodeRejected           = "rejected"
	CodeOriginNotAllowed   = "origin_not_allowed"
	CodeForbidden          = "forbidden"
	CodeMuted              = "muted"
	CodeGroupDissolved     = "group_dissolved"
	CodeCmidReused         = "cmid_reused"
	CodeRecallWindow       = "recall_window"
	CodeEditWindow         = "edit_window"
	CodeRecalled           = "recalled"
	CodeNotEditable        = "not_editable"
	CodeNotRecallable      = "not_recallable"
	CodeInvalidName        = "invalid_name"
	CodeInvalidNotice      = "invalid_notice"
	CodeInvalidExt         = "invalid_ext"
	CodeTooManyMembers     = "too_many_members"
	CodeUnknownRole        = "unknown_role"
	CodeUnknownJoinPolicy  = "unknown_join_policy"
	CodeInviteOnly         = "invite_only"
	CodeAlreadyMember      = "already_member"
	CodeOwnerCannotLeave   = "owner_cannot_leave"
	CodeInvalidMuteTime    = "invalid_mute_time"
	CodeInvalidReply       = "invalid_reply"
	CodeInvalidMention     = "invalid_mention"
	CodeInvalidTyping      = "invalid_typing"
	CodeNoChange           = "no_change"
	CodeUnknownGroupOp     = "unknown_group_op"
	CodeBanned             = "banned"
	CodeUnitUnavailable    = "unit_unavailable"
)

// apiError is an error as the client sees it.
type apiError struct {
	Status    int
	Code      string
	Message   string
	Retryable bool
	// Until is when a mute or a suspension ends, in Unix milliseconds; 0
	// when the error has no end time.
	Until int64
}

// toAPIError sorts an error into a code, an HTTP status and a message that
// is safe to show: domain errors explain themselves; anything unexpected
// becomes "internal" without its text, which may name keys or hosts.
func toAPIError(err error) apiError {
	var tooLarge *domain.BodyTooLargeError
	var rejected *domain.RejectedError
	var forbidden *domain.ForbiddenError
	var muted *domain.MutedError
	var window *domain.WindowError
	var tooMany *domain.TooManyMembersError
	var banned *abuse.BannedError
	switch {
	case errors.As(err, &banned):
		return apiError{http.StatusForbidden, CodeBanned, banned.Error(), false, banned.Until.UnixMilli()}
	case errors.Is(err, auth.ErrUnauthorized):
		return apiError{http.StatusUnauthorized, CodeUnauthorized, err.Error(), false, 0}
	case errors.As(err, &forbidden):
		return apiError{http.StatusForbidden, CodeForbidden, forbidden.Error(), false, 0}
	case errors.Is(err, domain.ErrForbidden):
		return apiError{http.StatusForbidden, CodeForbidden, "your role does not allow this", false, 0}
	case errors.As(err, &muted):
		return apiError{http.StatusForbidden, CodeMuted, muted.Error(), false, muted.UntilMs}
	case errors.Is(err, domain.ErrMuted):
		return apiError{http.StatusForbidden, CodeMuted, "you are muted in this group", false, 0}
	case errors.Is(err, domain.ErrGroupDissolved):
		return apiError{http.StatusGone, CodeGroupDissolved, "the group was dissolved; its history stays readable", false, 0}
	case errors.Is(err, store.ErrClientMsgIDReused):
		return apiError{http.StatusConflict, CodeCmidReused, "this cmid was used for another message; use a new cmid", false, 0}
	case errors.As(err, &window) && errors.Is(err, domain.ErrRecallWindow):
		return apiError{http.StatusForbidden, CodeRecallWindow, window.Error(), false, 0}
	case errors.As(err, &window) && errors.Is(err, domain.ErrEditWindow):
		return apiError{http.StatusForbidden, CodeEditWindow, window.Error(), false, 0}
	case errors.Is(err, domain.ErrRecallWindow):
		return apiError{http.StatusForbidden, CodeRecallWindow, "the recall window has passed", false, 0}
	case errors.Is(err, domain.ErrEditWindow):
		return apiError{http.StatusForbidden, CodeEditWindow, "the edit window has passed", false, 0}
	case errors.Is(err, domain.ErrRecalled):
		return apiError{http.StatusConflict, CodeRecalled, "the message was recalled", false, 0}
	case errors.Is(err, domain.ErrNotEditable):
		return apiError{http.StatusBadRequest, CodeNotEditable, "only your own text or json messages can be edited", false, 0}
	case errors.Is(err, domain.ErrNotRecallable):
		return apiError{http.StatusBadRequest, CodeNotRecallable, "system events cannot be recalled", false, 0}
	case errors.Is(err, domain.ErrInvalidName):
		return apiError{http.StatusBadRequest, CodeInvalidName, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidNotice):
		return apiError{http.StatusBadRequest, CodeInvalidNotice, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidExt):
		return apiError{http.StatusBadRequest, CodeInvalidExt, err.Error(), false, 0}
	case errors.As(err, &tooMany):
		return apiError{http.StatusBadRequest, CodeTooManyMembers, tooMany.Error(), false, 0}
	case errors.Is(err, domain.ErrTooManyMembers):
		return apiError{http.StatusBadRequest, CodeTooManyMembers, err.Error(), false, 0}
	case errors.Is(err, domain.ErrUnknownRole):
		return apiError{http.StatusBadRequest, CodeUnknownRole, err.Error(), false, 0}
	case errors.Is(err, domain.ErrUnknownJoinPolicy):
		return apiError{http.StatusBadRequest, CodeUnknownJoinPolicy, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInviteOnly):
		return apiError{http.StatusForbidden, CodeInviteOnly, "this group takes members by invitation only", false, 0}
	case errors.Is(err, domain.ErrAlreadyMember):
		return apiError{http.StatusConflict, CodeAlreadyMember, "already a member of this group", false, 0}
	case errors.Is(err, domain.ErrOwnerCannotLeave):
		return apiError{http.StatusBadRequest, CodeOwnerCannotLeave, "the owner cannot leave: transfer the group or dissolve it", false, 0}
	case errors.Is(err, domain.ErrInvalidMuteTime):
		return apiError{http.StatusBadRequest, CodeInvalidMuteTime, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidReply):
		return apiError{http.StatusBadRequest, CodeInvalidReply, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidMention):
		return apiError{http.StatusBadRequest, CodeInvalidMention, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidTyping):
		return apiError{http.StatusBadRequest, CodeInvalidTyping, err.Error(), false, 0}
	case errors.Is(err, domain.ErrNoChange):
		return apiError{http.StatusBadRequest, CodeNoChange, "nothing would change", false, 0}
	case errors.Is(err, chat.ErrUnknownGroupOp):
		return apiError{http.StatusBadRequest, CodeUnknownGroupOp, err.Error(), false, 0}
	case errors.As(err, &rejected):
		return apiError{http.StatusForbidden, CodeRejected, rejected.Reason, false, 0}
	case errors.Is(err, hook.ErrHookFailed):
		return apiError{http.StatusServiceUnavailable, CodeUnavailable, "the before-send policy could not be checked; nothing was stored, retry with the same cmid", true, 0}
	case errors.As(err, &tooLarge):
		return apiError{http.StatusRequestEntityTooLarge, CodeBodyTooLarge, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidUserID):
		return apiError{http.StatusBadRequest, CodeInvalidUser, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidConversationID):
		return apiError{http.StatusBadRequest, CodeInvalidConv, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidClientMsgID):
		return apiError{http.StatusBadRequest, CodeInvalidCmid, err.Error(), false, 0}
	case errors.Is(err, domain.ErrEmptyBody):
		return apiError{http.StatusBadRequest, CodeEmptyBody, "the message body is empty", false, 0}
	case errors.Is(err, domain.ErrUnknownContentType):
		return apiError{http.StatusBadRequest, CodeUnknownContentType, err.Error(), false, 0}
	case errors.Is(err, domain.ErrInvalidJSONBody):
		return apiError{http.StatusBadRequest, CodeInvalidJSONBody, "ctype is json but the body is not a valid JSON document", false, 0}
	case errors.Is(err, domain.ErrInvalidUTF8):
		return apiError{http.StatusBadRequest, CodeInvalidUTF8, "the body is not valid UTF-8", false, 0}
	case errors.Is(err, domain.ErrSendToSelf):
		return apiError{http.StatusBadRequest, CodeSendToSelf, "a direct conversation needs another user", false, 0}
	case errors.Is(err, domain.ErrNotMember):
		return apiError{http.StatusForbidden, CodeNotMember, "you are not a member of this conversation", false, 0}
	case errors.Is(err, domain.ErrInvalidLimit):
		return apiError{http.StatusBadRequest, CodeInvalidLimit, "limit must be between 0 and 200", false, 0}
	case errors.Is(err, chat.ErrRateLimited):
		return apiError{http.StatusTooManyRequests, CodeRateLimited, err.Error(), true, 0}
	case errors.Is(err, units.ErrUnitUnavailable):
		return apiError{http.StatusServiceUnavailable, CodeUnitUnavailable, "the conversation's home unit is unavailable; nothing was stored, retry with the same cmid", true, 0}
	case errors.Is(err, infrastructure.ErrUnavailable), errors.Is(err, infrastructure.ErrConflict),
		errors.Is(err, context.DeadlineExceeded):
		return apiError{http.StatusServiceUnavailable, CodeUnavailable, "storage is unavailable; nothing was stored, retry with the same cmid", true, 0}
	}
	return apiError{http.StatusInternalServerError, CodeInternal, "internal error; retry later", true, 0}
}
