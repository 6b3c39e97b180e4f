package chat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
)

// ChangeMessage asks to recall a message (Recall) or to replace its body
// (ContentType and Body). Seq names the message in Conv.
type ChangeMessage struct {
	Actor       domain.UserID
	Conv        string
	Seq         uint64
	Recall      bool
	ContentType string
	Body        string
	// ClientMsgID makes a retry find the change's event; empty means none.
	ClientMsgID string
}

// ChangeMessageHandler recalls and edits messages. A change is an event
// with its own seq in the conversation's stream, so devices learn of it
// live or by sync; history then shows the message as a tombstone (recall)
// or with its latest body, flagged edited. The zero value is not usable;
// use NewChangeMessageHandler. Safe for concurrent use.
type ChangeMessageHandler struct {
	store    *store.Store
	settings *settings.Live
	deliver  Deliverer
	now      Clock
	homes    Homes
}

// WithHomes makes the handler, in a deployment of several units, send a
// change of a conversation homed elsewhere to its home, and hand the
// events it stores to the other units for their devices.
func (h *ChangeMessageHandler) WithHomes(homes Homes) *ChangeMessageHandler {
	h.homes = homes
	return h
}

// NewChangeMessageHandler wires the handler.
func NewChangeMessageHandler(s *store.Store, live *settings.Live, d Deliverer, now Clock) *ChangeMessageHandler {
	return &ChangeMessageHandler{store: s, settings: live, deliver: d, now: now}
}

// Handle checks the window and the actor's rights, stores the event,
// delivers it, and records the changed message. It returns the event.
func (h *ChangeMessageHandler) Handle(ctx context.Context, cmd ChangeMessage) (domain.Message, error) {
	id, remote, release, err := remoteHome(ctx, h.homes, cmd.Actor, cmd.Conv, HomeWrite)
	if err != nil {
		return domain.Message{}, err
	}
	defer release()
	if remote {
		cmd.Conv = id
		return h.homes.ForwardChange(ctx, cmd)
	}
	cfg := h.settings.Load()
	nowMs := h.now().UnixMilli()
	conv, win, err := readWindow(ctx, h.store, cmd.Actor, cmd.Conv)
	if err != nil {
		return domain.Message{}, err
	}
	if cmd.Seq == 0 || cmd.Seq < win.from || (win.to != 0 && cmd.Seq > win.to) {
		return domain.Message{}, &domain.InvalidError{Kind: domain.ErrInvalidReply, Value: fmt.Sprint(cmd.Seq), Reason: "no message you can see has this seq"}
	}
	target, ok, err := h.store.Message(ctx, conv, cmd.Seq)
	if err != nil {
		return domain.Message{}, err
	}
	if !ok {
		return domain.Message{}, &domain.InvalidError{Kind: domain.ErrInvalidReply, Value: fmt.Sprint(cmd.Seq), Reason: "no message has this seq yet"}
	}
	// Who hears of it, and, in a group, the roles that decide a recall.
	c := domain.Conversation{ID: conv, Kind: conv.Kind()}
	var actorRole, senderRole domain.Role
	if conv.Kind() == domain.Group {
		g, actor, users, err := h.store.GroupForSend(ctx, conv, cmd.Actor)
		if err != nil {
			return domain.Message{}, err
		}
		if err := g.AuthorizeSend(actor, domain.Draft{}, nowMs); err != nil {
			return domain.Message{}, err
		}
		recs, err := h.store.MemberRecords(ctx, conv, []domain.UserID{target.Sender})
		if err != nil {
			return domain.Message{}, err
		}
		actorRole, senderRole = actor.CurrentRole(), recs[0].CurrentRole()
		c.Members = users
	} else {
		_, members, err := domain.ParseConversationID(string(conv))
		if err != nil {
			return domain.Message{}, err
		}
		c.Members = members
	}
	var ev domain.SystemEvent
	if cmd.Recall {
		ev, err = domain.Recall(target, cmd.Actor, actorRole, senderRole, nowMs, cfg.RecallWindow)
	} else {
		ctype, cerr := domain.ParseContentType(cmd.ContentType)
		if cerr != nil {
			return domain.Message{}, cerr
		}
		ev, err = domain.Edit(target, cmd.Actor, ctype, cmd.Body, cfg.MaxBodyBytes, nowMs, cfg.EditWindow)
	}
	if err != nil {
		return domain.Message{}, err
	}
	msg, err := appendEvent(ctx, h.store, c, ev, cmd.ClientMsgID, nowMs, cfg.IdempotencyTTL, func(m *domain.Message) {
		deliverEverywhere(ctx, h.deliver, h.homes, &c, m, "")
	})
	if err != nil {
		return domain.Message{}, err
	}
	if err := h.store.ChangeMessage(ctx, target.Apply(ev), msg.Seq); err != nil {
		// The event is stored and delivered: devices apply it. History
		// shows the change once a retry of this request records it.
		return domain.Message{}, err
	}
	return *msg, nil
}

// appendEvent stores e in conv's stream as a system message from its
// actor, calling stored once it is durable. cmid makes a retried request
// find its event; empty means a new one.
func appendEvent(ctx context.Context, s *store.Store, conv domain.Conversation, e domain.SystemEvent, cmid string, nowMs int64, idemTTL time.Duration, stored func(*domain.Message)) (*domain.Message, error) {
	if cmid == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		cmid = "sys-" + hex.EncodeToString(b[:])
	}
	d, err := e.Draft(conv.ID, cmid)
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", e.Type, err)
	}
	res, err := s.Append(ctx, conv, d, store.AppendOptions{NowMs: nowMs, IdempotencyTTL: idemTTL, Stored: stored})
	if err != nil {
		return nil, err
	}
	return &res.Message, nil
}

// Typing says User started (Active) or stopped typing in Conv.
type Typing struct {
	User   domain.UserID
	Conv   string
	Active bool
}

// TypingHandler passes typing notices to the other members' online
// devices. Nothing is stored or acknowledged; a user's notices in one
// conversation faster than domain.TypingInterval are dropped (a stop always
// passes). The zero value is not usable; use NewTypingHandler. Safe for
// concurrent use.
type TypingHandler struct {
	store  *store.Store
	notify Notifier
	now    Clock
	seed   maphash.Seed
	shards [32]struct {
		sync.Mutex
		last map[string]time.Time
	}
}

// NewTypingHandler wires the handler.
func NewTypingHandler(s *store.Store, n Notifier, now Clock) *TypingHandler {
	h := &TypingHandler{store: s, notify: n, now: now, seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].last = make(map[string]time.Time)
	}
	return h
}

// maxTypists bounds the typists a shard remembers; past it the shard
// starts over, which lets at most one extra notice through per typist.
const maxTypists = 4096

// Handle checks membership and passes the notice on. It reports whether
// the notice was passed (false: dropped as too frequent).
func (h *TypingHandler) Handle(ctx context.Context, cmd Typing) (bool, error) {
	t := domain.Typing{Conv: domain.ConversationID(cmd.Conv), User: cmd.User, Active: cmd.Active}
	if err := t.Validate(); err != nil {
		return false, err
	}
	now := h.now()
	key := string(cmd.User) + "\x00" + cmd.Conv
	sh := &h.shards[maphash.String(h.seed, key)%uint64(len(h.shards))]
	sh.Lock()
	if cmd.Active && now.Sub(sh.last[key]) < domain.TypingInterval {
		sh.Unlock()
		return false, nil
	}
	if len(sh.last) >= maxTypists {
		clear(sh.last)
	}
	if cmd.Active {
		sh.last[key] = now
	} else {
		delete(sh.last, key)
	}
	sh.Unlock()

	var members []domain.UserID
	if t.Conv.Kind() == domain.Group {
		g, m, users, err := h.store.GroupForSend(ctx, t.Conv, cmd.User)
		if err != nil {
			return false, err
		}
		if err := g.AuthorizeSend(m, domain.Draft{}, now.UnixMilli()); err != nil {
			return false, err
		}
		members = users
	} else {
		c, err := resolveMember(cmd.User, cmd.Conv)
		if err != nil {
			return false, err
		}
		members = c.Members
	}
	others := make([]domain.UserID, 0, len(members))
	for _, u := range members {
		if u != cmd.User {
			others = append(others, u)
		}
	}
	var active uint64
	if cmd.Active {
		active = 1
	}
	h.notify.Notify(ctx, others, Notice{Type: "typing", Conv: t.Conv, User: cmd.User, Count: active})
	return true, nil
}
