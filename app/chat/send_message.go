package chat

import (
	"context"
	"fmt"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
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
	// ReplyTo is the seq of the message this one replies to; 0 for none.
	ReplyTo uint64
	// Mentions are user ids, or "@all" (in a group, the owner and admins).
	Mentions []string
	// Origin is the connection the message comes from; it gets the ACK and
	// no push. Empty when it comes over HTTP or from another service.
	Origin string
	// Route is the conversation's route as the client knows it, when
	// parley runs as several units; zero when it knows none. It is never
	// trusted: it only tells whether the reply must carry the current one.
	Route Route
	// AcceptPending says the caller can tell its client that a send is
	// pending (a WebSocket ack can, an HTTP reply cannot): with the local
	// mode of units on, a send whose home unit cannot be reached is then
	// kept here and stored by the home later, instead of refused.
	AcceptPending bool `json:"-"`
	// Turn, when set, keeps this send behind the previous send of its
	// connection for its seq (see store.Turn); the caller places it when
	// Handle returns.
	Turn *store.Turn `json:"-"`
}

// Route is where a conversation lives when parley runs as several units:
// its home unit, and the epoch that counts its moves.
type Route struct {
	Unit  string `json:"unit,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
}

// SendResult is the stored message. Duplicate is true when the same
// (sender, client message id) was sent before and this is that message.
type SendResult struct {
	Message   domain.Message
	Duplicate bool
	// Route is the conversation's current route when the send's Route was
	// missing or stale, for the client to keep; zero otherwise.
	Route Route
	// Pending says the send was kept by this unit while the conversation's
	// home unit could not be reached: Message has its id, conversation,
	// sender, cmid and content, and no seq yet.
	Pending bool
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
	limiter  *limiter
	hook     Hook
	service  *ServiceHandler
	homes    Homes
}

// NewSendMessageHandler wires the handler.
func NewSendMessageHandler(s *store.Store, live *settings.Live, d Deliverer, now Clock) *SendMessageHandler {
	return &SendMessageHandler{store: s, settings: live, deliver: d, now: now, limiter: newLimiter()}
}

// WithHook makes the handler ask hook before storing a message.
func (h *SendMessageHandler) WithHook(hook Hook) *SendMessageHandler {
	h.hook = hook
	return h
}

// WithService makes the handler resolve sends to a shop's account and to
// customer-service conversations through svc, and tell svc of each message
// stored in one.
func (h *SendMessageHandler) WithService(svc *ServiceHandler) *SendMessageHandler {
	h.service = svc
	return h
}

// Homes routes the traffic of a conversation to the unit that homes it,
// for a deployment of several units (package app/units). The unit that
// homes a conversation assigns its seqs and stores its messages; the
// others forward to it. Implementations are safe for concurrent use.
type Homes interface {
	// Remote reports whether conv is homed in another unit. A send
	// (HomeSend) gives a conversation that has no home yet one first; a
	// read of a conversation without a home is answered here. When conv is
	// homed here, the caller calls release once its writes are done: a
	// move of the conversation to another unit waits for them, and a write
	// while one runs is refused with a retryable error.
	Remote(ctx context.Context, conv domain.ConversationID, use HomeUse) (remote bool, release func(), err error)
	// ForwardSend has the home unit of cmd.Conv handle cmd.
	ForwardSend(ctx context.Context, cmd SendMessage) (SendResult, error)
	// ForwardHistory has the home unit of q.Conv answer q.
	ForwardHistory(ctx context.Context, q History) (HistoryPage, error)
	// ForwardMarkRead has the home unit of cmd.Conv move the cursor.
	ForwardMarkRead(ctx context.Context, cmd MarkRead) (uint64, error)
	// ForwardList lists u's conversations homed in the other units.
	ForwardList(ctx context.Context, u domain.UserID) ([]ConversationView, error)
	// Claim makes this unit the home of conv, a group created here; it
	// fails if another unit homes it.
	Claim(ctx context.Context, conv domain.ConversationID) error
	// ForwardGroupChange has the home unit of cmd.Conv apply cmd.
	ForwardGroupChange(ctx context.Context, cmd GroupChange) (GroupResult, error)
	// ForwardChange has the home unit of cmd.Conv recall or edit.
	ForwardChange(ctx context.Context, cmd ChangeMessage) (domain.Message, error)
	// Route is conv's current route, as this node knows it; ok is false
	// when it has none or cannot read it.
	Route(ctx context.Context, conv domain.ConversationID) (r Route, ok bool)
	// Delivered hands a message stored in this unit to the other units,
	// whose devices it reaches through their own delivery. It does not
	// wait for them.
	Delivered(ctx context.Context, conv *domain.Conversation, m *domain.Message, origin string)
}

// HomeUse says what a request does to a conversation, for Homes.Remote.
type HomeUse int

const (
	// HomeRead only reads (history): it is answered while the
	// conversation moves.
	HomeRead HomeUse = iota
	// HomeWrite writes (a read cursor): refused while the conversation
	// moves.
	HomeWrite
	// HomeSend stores a message: it binds a conversation that has no home
	// yet, and is refused while the conversation moves.
	HomeSend
)

// WithHomes makes the handler forward sends to a direct conversation homed
// in another unit to that unit, and hand the messages it stores to the
// other units for their devices.
func (h *SendMessageHandler) WithHomes(homes Homes) *SendMessageHandler {
	h.homes = homes
	return h
}

// Handle validates, rate limits, asks the hook, appends and delivers. It
// returns only after the message is durable: the caller may acknowledge
// it.
//
// Order: the message is stored (the insert that claims its seq), then
// pushed to this node's devices and handed to other nodes, then the caller
// gets it back, while its send is recorded (see store.Append: a retry
// meanwhile still finds this message). Nothing waits on other nodes: the
// hand-off to them is queued (see Deliverer).
func (h *SendMessageHandler) Handle(ctx context.Context, cmd SendMessage) (SendResult, error) {
	var conv domain.Conversation
	res, err := h.handle(ctx, cmd, &conv)
	if err == nil && h.homes != nil && conv.Kind == domain.Direct {
		// The client's route is corrected in the reply when it is
		// missing or stale, as clients that cache routes expect.
		if cur, ok := h.homes.Route(ctx, conv.ID); ok && cur != cmd.Route {
			res.Route = cur
		}
	}
	return res, err
}

// handle is Handle; it sets resolved to the conversation the send names.
func (h *SendMessageHandler) handle(ctx context.Context, cmd SendMessage, resolved *domain.Conversation) (SendResult, error) {
	if id, use, ok, err := h.keptByHome(cmd); err != nil {
		return SendResult{}, err
	} else if ok {
		// The home holds the conversation's records (a group's members,
		// a customer-service conversation's parties), so it resolves and
		// authorises the send.
		remote, release, err := h.homes.Remote(ctx, id, use)
		if err != nil {
			return SendResult{}, err
		}
		defer release()
		if remote {
			cmd.Conv, cmd.To, cmd.AcceptPending = string(id), "", false
			return h.homes.ForwardSend(ctx, cmd)
		}
	}
	cfg := h.settings.Load()
	now := h.now()
	conv, group, err := h.resolve(ctx, cmd, now.UnixMilli())
	if err != nil {
		return SendResult{}, err
	}
	*resolved = conv
	if h.homes != nil && conv.Kind == domain.Direct && cmd.AcceptPending {
		// What can be checked here is checked before a send is kept for a
		// home that cannot be reached: the home checks again when it
		// stores it.
		draft, err := newDraft(conv.ID, cmd)
		if err != nil {
			return SendResult{}, err
		}
		if err := draft.Validate(cfg.MaxBodyBytes); err != nil {
			return SendResult{}, err
		}
		if draft.MentionAll {
			return SendResult{}, &domain.InvalidError{Kind: domain.ErrInvalidMention, Value: domain.MentionAllToken, Reason: "only groups have everyone to mention"}
		}
	}
	if h.homes != nil && conv.Kind == domain.Direct {
		remote, release, err := h.homes.Remote(ctx, conv.ID, HomeSend)
		if err != nil {
			return SendResult{}, err
		}
		// Held until the message is stored and handed on: a move copies
		// the conversation only once no send is under way.
		defer release()
		if remote {
			// The home unit validates, dedupes on (sender, cmid) and
			// stores; a retry through any unit finds the same message.
			cmd.Conv, cmd.To = string(conv.ID), ""
			return h.homes.ForwardSend(ctx, cmd)
		}
	}
	draft, err := newDraft(conv.ID, cmd)
	if err != nil {
		return SendResult{}, err
	}
	if err := draft.Validate(cfg.MaxBodyBytes); err != nil {
		return SendResult{}, err
	}
	if group != nil {
		if err := group.info.AuthorizeSend(group.sender, draft, now.UnixMilli()); err != nil {
			return SendResult{}, err
		}
	} else if draft.MentionAll {
		return SendResult{}, &domain.InvalidError{Kind: domain.ErrInvalidMention, Value: domain.MentionAllToken, Reason: "only groups have everyone to mention"}
	}
	if draft.ReplyTo != 0 {
		if _, ok, err := h.store.Message(ctx, conv.ID, draft.ReplyTo); err != nil {
			return SendResult{}, err
		} else if !ok {
			return SendResult{}, draft.ValidateReply(draft.ReplyTo - 1)
		}
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
	res, err := h.store.Append(ctx, conv, draft, store.AppendOptions{
		NowMs:          now.UnixMilli(),
		IdempotencyTTL: cfg.IdempotencyTTL,
		Turn:           cmd.Turn,
		Stored:         func(m *domain.Message) { deliverEverywhere(ctx, h.deliver, h.homes, &conv, m, cmd.Origin) },
	})
	if err != nil {
		return SendResult{}, err
	}
	if h.service != nil && conv.Kind == domain.Service {
		h.service.Sent(ctx, conv, &res.Message)
	}
	return SendResult{Message: res.Message, Duplicate: res.Duplicate}, nil
}

// keptByHome names the conversation of a send whose records only its home
// unit holds: a group (homed where it was created), or a customer-service
// conversation (bound by its first message, like a direct one). ok is
// false for anything else, and when parley runs as one unit.
func (h *SendMessageHandler) keptByHome(cmd SendMessage) (id domain.ConversationID, use HomeUse, ok bool, err error) {
	if h.homes == nil {
		return "", 0, false, nil
	}
	switch domain.ConversationID(cmd.Conv).Kind() {
	case domain.Group:
		id, err = parseGroupID(cmd.Conv)
		return id, HomeWrite, true, err
	case domain.Service:
		if h.service == nil {
			return "", 0, false, nil
		}
		id, err = parseServiceID(cmd.Conv)
		return id, HomeSend, true, err
	}
	if cmd.Conv == "" && h.service != nil {
		if shop, err := domain.ParseUserID(cmd.To); err == nil && shop != cmd.Sender && h.service.IsShop(shop) {
			return domain.ServiceConversationID(shop, cmd.Sender), HomeSend, true, nil
		}
	}
	return "", 0, false, nil
}

// groupSend is what a send to a group was authorised against.
type groupSend struct {
	info   domain.GroupInfo
	sender domain.Member
}

// resolve finds the conversation a send names: a direct conversation by
// its id or its peer, whose membership follows from the id, or a group,
// whose records are read (group is then set).
func (h *SendMessageHandler) resolve(ctx context.Context, cmd SendMessage, nowMs int64) (domain.Conversation, *groupSend, error) {
	if h.service != nil {
		if c, ok, err := h.service.ForSend(ctx, cmd.Sender, cmd.Conv, cmd.To, nowMs); ok {
			return c, nil, err
		}
	}
	if cmd.Conv == "" || domain.ConversationID(cmd.Conv).Kind() != domain.Group {
		c, err := resolveForSend(cmd.Sender, cmd.Conv, cmd.To, nowMs)
		return c, nil, err
	}
	id, err := parseGroupID(cmd.Conv)
	if err != nil {
		return domain.Conversation{}, nil, err
	}
	g, m, users, err := h.store.GroupForSend(ctx, id, cmd.Sender)
	if err != nil {
		return domain.Conversation{}, nil, err
	}
	return domain.Conversation{ID: id, Kind: domain.Group, Members: users}, &groupSend{info: g, sender: m}, nil
}

// newDraft reads the client's fields of a send.
func newDraft(conv domain.ConversationID, cmd SendMessage) (domain.Draft, error) {
	ctype, err := domain.ParseContentType(cmd.ContentType)
	if err != nil {
		return domain.Draft{}, err
	}
	mentions, all, err := domain.ParseMentions(cmd.Mentions)
	if err != nil {
		return domain.Draft{}, err
	}
	return domain.Draft{
		Conv: conv, Sender: cmd.Sender, ClientMsgID: cmd.ClientMsgID, ContentType: ctype, Body: cmd.Body,
		ReplyTo: cmd.ReplyTo, Mentions: mentions, MentionAll: all,
	}, nil
}

// deliverEverywhere pushes m to this unit's devices and, when parley runs
// as several units, hands it to the others for theirs.
func deliverEverywhere(ctx context.Context, d Deliverer, homes Homes, conv *domain.Conversation, m *domain.Message, origin string) {
	d.Deliver(ctx, conv, m, origin)
	if homes != nil {
		homes.Delivered(ctx, conv, m, origin)
	}
}
