package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/hook"
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
)

// apiError is an error as the client sees it.
type apiError struct {
	Status    int
	Code      string
	Message   string
	Retryable bool
}

// toAPIError sorts an error into a code, an HTTP status and a message that
// is safe to show: domain errors explain themselves; anything unexpected
// becomes "internal" without its text, which may name keys or hosts.
func toAPIError(err error) apiError {
	var tooLarge *domain.BodyTooLargeError
	var rejected *domain.RejectedError
	switch {
	case errors.As(err, &rejected):
		return apiError{http.StatusForbidden, CodeRejected, rejected.Reason, false}
	case errors.Is(err, hook.ErrHookFailed):
		return apiError{http.StatusServiceUnavailable, CodeUnavailable, "the before-send policy could not be checked; nothing was stored, retry with the same cmid", true}
	case errors.As(err, &tooLarge):
		return apiError{http.StatusRequestEntityTooLarge, CodeBodyTooLarge, err.Error(), false}
	case errors.Is(err, ErrUnauthorized):
		return apiError{http.StatusUnauthorized, CodeUnauthorized, err.Error(), false}
	case errors.Is(err, domain.ErrInvalidUserID):
		return apiError{http.StatusBadRequest, CodeInvalidUser, err.Error(), false}
	case errors.Is(err, domain.ErrInvalidConversationID):
		return apiError{http.StatusBadRequest, CodeInvalidConv, err.Error(), false}
	case errors.Is(err, domain.ErrInvalidClientMsgID):
		return apiError{http.StatusBadRequest, CodeInvalidCmid, err.Error(), false}
	case errors.Is(err, domain.ErrEmptyBody):
		return apiError{http.StatusBadRequest, CodeEmptyBody, "the message body is empty", false}
	case errors.Is(err, domain.ErrUnknownContentType):
		return apiError{http.StatusBadRequest, CodeUnknownContentType, err.Error(), false}
	case errors.Is(err, domain.ErrInvalidJSONBody):
		return apiError{http.StatusBadRequest, CodeInvalidJSONBody, "ctype is json but the body is not a valid JSON document", false}
	case errors.Is(err, domain.ErrInvalidUTF8):
		return apiError{http.StatusBadRequest, CodeInvalidUTF8, "the body is not valid UTF-8", false}
	case errors.Is(err, domain.ErrSendToSelf):
		return apiError{http.StatusBadRequest, CodeSendToSelf, "a direct conversation needs another user", false}
	case errors.Is(err, domain.ErrNotMember):
		return apiError{http.StatusForbidden, CodeNotMember, "you are not a member of this conversation", false}
	case errors.Is(err, domain.ErrInvalidLimit):
		return apiError{http.StatusBadRequest, CodeInvalidLimit, "limit must be between 0 and 200", false}
	case errors.Is(err, chat.ErrRateLimited):
		return apiError{http.StatusTooManyRequests, CodeRateLimited, err.Error(), true}
	case errors.Is(err, infrastructure.ErrUnavailable), errors.Is(err, infrastructure.ErrConflict),
		errors.Is(err, context.DeadlineExceeded):
		return apiError{http.StatusServiceUnavailable, CodeUnavailable, "storage is unavailable; nothing was stored, retry with the same cmid", true}
	}
	return apiError{http.StatusInternalServerError, CodeInternal, "internal error; retry later", true}
}
