// Package hook calls a business app before a message is stored: it may
// allow the message, reject it with a reason the sender sees, or rewrite its
// body. The app is reached by Dapr service invocation, so a team plugs in
// moderation or agent assignment without touching parley.
package hook

import (
	"context"
	"errors"
	"fmt"
	"time"

	jsoniter "github.com/json-iterator/go"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

var json = jsoniter.ConfigFastest

// Method is the method parley invokes on the hook app.
const Method = "before-send"

// Request is what the hook app receives.
type Request struct {
	Conv  domain.ConversationID `json:"conv"`
	From  domain.UserID         `json:"from"`
	Cmid  string                `json:"cmid"`
	Ctype domain.ContentType    `json:"ctype"`
	Body  string                `json:"body"`
}

// Reply is what the hook app answers. Action is "allow", "reject" (with a
// reason) or "rewrite" (with the new body).
type Reply struct {
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	Body   string `json:"body,omitempty"`
}

// ErrHookFailed means the hook could not be asked and the policy is
// fail-closed: the send is refused as retryable.
var ErrHookFailed = errors.New("before-send hook unavailable")

// BeforeSend calls the hook app appID. The zero value is not usable; use New.
// Safe for concurrent use.
type BeforeSend struct {
	appID    string
	invoker  infrastructure.Invoker
	settings *settings.Live
	log      *zap.Logger
}

// New returns a hook that calls appID through invoker.
func New(appID string, invoker infrastructure.Invoker, live *settings.Live, log *zap.Logger) *BeforeSend {
	return &BeforeSend{appID: appID, invoker: invoker, settings: live, log: log}
}

// Check returns the draft to store (possibly rewritten), a
// *domain.RejectedError, or ErrHookFailed under fail-closed.
func (h *BeforeSend) Check(ctx context.Context, d domain.Draft) (domain.Draft, error) {
	cfg := h.settings.Load()
	ctx, cancel := context.WithTimeout(ctx, cfg.HookTimeout)
	defer cancel()
	req, _ := json.Marshal(Request{Conv: d.Conv, From: d.Sender, Cmid: d.ClientMsgID, Ctype: d.ContentType, Body: d.Body})
	start := time.Now()
	out, err := h.invoker.Invoke(ctx, h.appID, Method, req)
	var r Reply
	if err == nil {
		if jerr := json.Unmarshal(out, &r); jerr != nil {
			err = fmt.Errorf("hook reply is not JSON: %w", jerr)
		}
	}
	if err == nil {
		switch r.Action {
		case "allow", "":
			return d, nil
		case "reject":
			if r.Reason == "" {
				r.Reason = "the message was refused"
			}
			return d, &domain.RejectedError{Reason: r.Reason}
		case "rewrite":
			d.Body = r.Body
			return d, nil
		default:
			err = fmt.Errorf("hook answered unknown action %q", r.Action)
		}
	}
	if cfg.HookFailOpen {
		h.log.Warn("before-send hook failed; letting the message through (fail-open)",
			zap.String("hook", h.appID), zap.String("cmid", d.ClientMsgID), zap.Duration("took", time.Since(start)), zap.Error(err))
		return d, nil
	}
	h.log.Warn("before-send hook failed; refusing the message (fail-closed)",
		zap.String("hook", h.appID), zap.String("cmid", d.ClientMsgID), zap.Duration("took", time.Since(start)), zap.Error(err))
	return d, fmt.Errorf("%w: %v", ErrHookFailed, err)
}
