package chat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// SendMessage asks to store a message and deliver it to the conversation.
// Conv names the conversation; To names the peer of a direct conversation
// when Conv is empty.
type SendMessage struct {
	Sender      domain.UserID
	Conv        string
	To          string
	ClientMsgID string
	ContentType string
	Body        string
	// Origin is the connection the message comes from; it gets the ACK and
	// no push. Empty when it comes over HTTP or from another service.
	Origin string
}

// SendResult is the stored message. Duplicate is true when the same
// (sender, client message id) was sent before and this is that message.
type SendResult struct {
	Message   domain.Message
	Duplicate bool
}

// Hook may rewrite or refuse a draft before it is stored.
type Hook interface {
	Check(ctx context.Context, d domain.Draft) (domain.Draft, error)
}

// SendMessageHandler stores messages with a gap-free seq and hands them to
// the Deliverer. The zero value is not usable; use NewSendMessageHandler.
// Safe for concurrent use.
type SendMessageHandler struct {
	store    *store.Store
	settings *settings.Live
	deliver  Deliverer
	now      Clock
	stripes  *stripes
	limiter  *limiter
	hook     Hook
	// known holds conversations this node already created, to skip the
	// create-if-absent writes on every send.
	known sync.Map
}

// NewSendMessageHandler wires the handler.
func NewSendMessageHandler(s *store.Store, live *settings.Live, d Deliverer, now Clock) *SendMessageHandler {
	return &SendMessageHandler{store: s, settings: live, deliver: d, now: now, stripes: newStripes(), limiter: newLimiter()}
}

// WithHook makes the handler ask hook before storing a message.
func (h *SendMessageHandler) WithHook(hook Hook) *SendMessageHandler {
	h.hook = hook
	return h
}

// maxProbe bounds how far past a stale head hint a writer looks for a free
// seq before it re-reads the head.
const maxProbe = 64

// Handle validates, deduplicates, stores and delivers. It returns only after
// the message is durable: the caller may acknowledge it.
func (h *SendMessageHandler) Handle(ctx context.Context, cmd SendMessage) (SendResult, error) {
	cfg := h.settings.Load()
	now := h.now()
	nowMs := now.UnixMilli()
	conv, err := resolve(cmd.Sender, cmd.Conv, cmd.To, nowMs)
	if err != nil {
		return SendResult{}, err
	}
	ctype, err := domain.ParseContentType(cmd.ContentType)
	if err != nil {
		return SendResult{}, err
	}
	draft := domain.Draft{Conv: conv.ID, Sender: cmd.Sender, ClientMsgID: cmd.ClientMsgID, ContentType: ctype, Body: cmd.Body}
	if err := draft.Validate(cfg.MaxBodyBytes); err != nil {
		return SendResult{}, err
	}
	if !h.limiter.allow(cmd.Sender, cfg.SendRate, now) {
		return SendResult{}, ErrRateLimited
	}
	if h.hook != nil {
		if draft, err = h.hook.Check(ctx, draft); err != nil {
			return SendResult{}, err
		}
		// A rewrite must obey the same rules as the original.
		if err := draft.Validate(cfg.MaxBodyBytes); err != nil {
			return SendResult{}, fmt.Errorf("rewritten by the before-send hook: %w", err)
		}
	}

	heads, unlock := h.stripes.lock(conv.ID)
	defer unlock()
	if _, ok := h.known.Load(conv.ID); !ok {
		if err := h.store.CreateConversation(ctx, conv); err != nil {
			return SendResult{}, err
		}
		h.known.Store(conv.ID, struct{}{})
	}
	// Under the lock, so that a retry racing its first attempt on this node
	// waits for it and then finds it.
	if prior, ok, err := h.prior(ctx, cmd.Sender, cmd.ClientMsgID); err != nil || ok {
		return prior, err
	}
	head, cached := heads[conv.ID]
	if !cached {
		if head, err = h.store.Head(ctx, conv.ID); err != nil {
			return SendResult{}, err
		}
	}
	msg, dup, err := h.insert(ctx, draft, head, nowMs, cfg.IdempotencyTTL)
	if err != nil {
		delete(heads, conv.ID)
		return SendResult{}, err
	}
	heads[conv.ID] = msg.Seq
	// The message is durable now. A failed commit leaves a stale head hint
	// (writers probe past it, and repair the idempotency key on the way), so
	// the send still succeeds.
	if err := h.store.CommitSend(ctx, &msg, cfg.IdempotencyTTL); err != nil {
		delete(heads, conv.ID)
	}
	if dup {
		// An earlier attempt stored it and was delivered then, or its
		// devices sync it: do not push it twice.
		return SendResult{Message: msg, Duplicate: true}, nil
	}
	// Deliver under the conversation lock so that local devices see seqs in order.
	h.deliver.Deliver(ctx, &conv, &msg, cmd.Origin)
	return SendResult{Message: msg}, nil
}

// insert claims the first free seq after head. Insert-if-absent on the
// message key is the claim itself, so concurrent writers on other nodes
// can never share a seq nor leave a hole.
//
// A seq that is taken is read: if it holds this very message (an earlier
// attempt whose reply was lost when the sidecar or this node died), that is
// the result, reported as a duplicate. If it holds another sender's message,
// its idempotency key is written again on the way past, so that a message
// whose send was cut off between insert and commit is still found by its
// sender's retry, even after later messages moved the head beyond it.
func (h *SendMessageHandler) insert(ctx context.Context, d domain.Draft, head uint64, nowMs int64, idemTTL time.Duration) (domain.Message, bool, error) {
	id := domain.MessageID(d.Sender, d.ClientMsgID)
	for probe := 1; ; probe++ {
		msg := d.Accept(head+uint64(probe), nowMs)
		err := h.store.InsertMessage(ctx, &msg)
		if err == nil {
			return msg, false, nil
		}
		if !errors.Is(err, infrastructure.ErrConflict) {
			return domain.Message{}, false, err
		}
		held, ok, err := h.store.Message(ctx, d.Conv, msg.Seq)
		if err != nil {
			return domain.Message{}, false, err
		}
		if ok && held.ID == id {
			return held, true, nil
		}
		if ok {
			if err := h.store.RecordSend(ctx, &held, idemTTL); err != nil {
				return domain.Message{}, false, err
			}
		}
		if probe == maxProbe {
			fresh, herr := h.store.Head(ctx, d.Conv)
			if herr != nil {
				return domain.Message{}, false, herr
			}
			if fresh <= head {
				return domain.Message{}, false, fmt.Errorf("no free seq in %s after %d: %w", d.Conv, head, infrastructure.ErrConflict)
			}
			head, probe = fresh, 0
		}
	}
}

func (h *SendMessageHandler) prior(ctx context.Context, sender domain.UserID, cmid string) (SendResult, bool, error) {
	rec, ok, err := h.store.PriorSend(ctx, sender, cmid)
	if err != nil || !ok {
		return SendResult{}, false, err
	}
	m, ok, err := h.store.Message(ctx, rec.Conv, rec.Seq)
	if err != nil {
		return SendResult{}, false, err
	}
	if !ok || m.ID != domain.MessageID(sender, cmid) {
		// A refused insert on a store without atomic transactions can leave
		// a record pointing at another message: it is not this send's.
		return SendResult{}, false, nil
	}
	return SendResult{Message: m, Duplicate: true}, true, nil
}
