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
	inflight inflight
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

	release, err := h.inflight.acquire(ctx, cmd.Sender, cmd.ClientMsgID)
	if err != nil {
		return SendResult{}, err
	}
	defer release()
	// Look for an earlier attempt's record before taking the lock, so that
	// the lookup of one send overlaps the claims of others. A record
	// repaired meanwhile (an attempt cut off before its commit, found by a
	// writer probing past it) is looked for again under the lock.
	st := h.stripes.of(conv.ID)
	st.Lock()
	repairs := st.repairs
	st.Unlock()
	if prior, ok, err := h.prior(ctx, cmd.Sender, cmd.ClientMsgID); err != nil || ok {
		return prior, err
	}

	// Under the conversation's lock: claim the seq, and hand the message to
	// local devices so that they see seqs in order.
	st.Lock()
	if st.repairs != repairs {
		if prior, ok, err := h.prior(ctx, cmd.Sender, cmd.ClientMsgID); err != nil || ok {
			st.Unlock()
			return prior, err
		}
	}
	msg, dup, err := h.claim(ctx, st, conv, draft, nowMs, cfg.IdempotencyTTL)
	if err != nil {
		st.Unlock()
		return SendResult{}, err
	}
	if !dup {
		// An earlier attempt that stored it was delivered then, or its
		// devices sync it: it is not pushed twice.
		h.deliver.Deliver(ctx, &conv, &msg, cmd.Origin)
	}
	q := st.commits[conv.ID]
	if q == nil {
		q = &commitQueue{}
		st.commits[conv.ID] = q
	}
	req := &commitReq{msg: &msg, done: make(chan struct{})}
	q.pending = append(q.pending, req)
	lead := !q.running
	q.running = true
	st.Unlock()

	// The message is durable: it is the insert. The commit (idempotency
	// record, head hint, sender's read cursor) runs outside the lock, so the
	// next send of the conversation claims its seq meanwhile; one commit of
	// a conversation at a time, in seq order, so that the hint and the
	// cursor never move back, each taking every send queued before it.
	if lead {
		h.commits(ctx, st, conv.ID, q, cfg.IdempotencyTTL)
	}
	<-req.done
	return SendResult{Message: msg, Duplicate: dup}, nil
}

// commits commits what q holds, then hands the next batch, if any, to a
// goroutine of its own so that this send's ACK does not wait for it.
func (h *SendMessageHandler) commits(ctx context.Context, st *stripe, conv domain.ConversationID, q *commitQueue, idemTTL time.Duration) {
	st.Lock()
	batch := q.pending
	q.pending = nil
	st.Unlock()
	msgs := make([]*domain.Message, len(batch))
	for i, r := range batch {
		msgs[i] = r.msg
	}
	// Detached: the batch holds other senders' messages too.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	h.commit(cctx, st, msgs, idemTTL)
	cancel()
	for _, r := range batch {
		close(r.done)
	}
	st.Lock()
	defer st.Unlock()
	if len(q.pending) == 0 {
		q.running = false
		if st.commits[conv] == q {
			delete(st.commits, conv)
		}
		return
	}
	go h.commits(ctx, st, conv, q, idemTTL)
}

// commitTimeout bounds one commit, which runs apart from any one caller.
const commitTimeout = 10 * time.Second

// claim stores the message at the next free seq; st is locked.
func (h *SendMessageHandler) claim(ctx context.Context, st *stripe, conv domain.Conversation, draft domain.Draft, nowMs int64, idemTTL time.Duration) (domain.Message, bool, error) {
	if _, ok := h.known.Load(conv.ID); !ok {
		if err := h.store.CreateConversation(ctx, conv); err != nil {
			return domain.Message{}, false, err
		}
		h.known.Store(conv.ID, struct{}{})
	}
	head, cached := st.heads[conv.ID]
	if !cached {
		var err error
		if head, err = h.store.Head(ctx, conv.ID); err != nil {
			return domain.Message{}, false, err
		}
	}
	msg, dup, err := h.insert(ctx, st, draft, head, nowMs, idemTTL)
	if err != nil {
		delete(st.heads, conv.ID)
		return domain.Message{}, false, err
	}
	st.heads[conv.ID] = msg.Seq
	return msg, dup, nil
}

// commit records stored messages' sends. A failed commit does not fail
// the sends: the messages are stored, and a retry finds one by probing. The
// records are tried again in the background, since later sends of the
// conversation may already have moved the head past them; the head cache is
// dropped so that this node re-reads the head.
func (h *SendMessageHandler) commit(ctx context.Context, st *stripe, msgs []*domain.Message, idemTTL time.Duration) {
	err := h.store.CommitSends(ctx, msgs, idemTTL)
	if err == nil {
		return
	}
	st.Lock()
	delete(st.heads, msgs[0].Conv)
	st.Unlock()
	go func() {
		bctx := context.WithoutCancel(ctx)
		for wait := time.Second; wait <= 8*time.Second && len(msgs) > 0; wait *= 2 {
			time.Sleep(wait)
			var left []*domain.Message
			for _, m := range msgs {
				cctx, cancel := context.WithTimeout(bctx, 5*time.Second)
				if err := h.store.RecordSend(cctx, m, idemTTL); err != nil {
					left = append(left, m)
				}
				cancel()
			}
			msgs = left
		}
	}()
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
func (h *SendMessageHandler) insert(ctx context.Context, st *stripe, d domain.Draft, head uint64, nowMs int64, idemTTL time.Duration) (domain.Message, bool, error) {
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
			st.repairs++
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
