package chat

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	jsoniter "github.com/json-iterator/go"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// AssignMethod is the method parley invokes on the assignment app, through
// Dapr service invocation, when a customer-service conversation has no
// agent. The body is an AssignRequest; the reply an AssignReply.
const AssignMethod = "assign"

// AssignRequest is what the assignment app receives: the conversation and
// its two parties.
type AssignRequest struct {
	Conv     domain.ConversationID `json:"conv"`
	Shop     domain.UserID         `json:"shop"`
	Customer domain.UserID         `json:"customer"`
}

// AssignReply is the assignment app's answer: the agent who answers the
// customer. An empty Agent means nobody can take the customer now; parley
// asks again later.
type AssignReply struct {
	Agent domain.UserID `json:"agent"`
}

// NoticeUnassigned is the Notice type that tells a customer their message
// is stored but no agent is assigned yet: the assignment app could not be
// asked or had nobody to give. Its Seq is the customer's message and its
// User the shop. The EventAgentAssigned that follows in the stream says
// when someone is.
const NoticeUnassigned = "unassigned"

// ErrNoAgent means the assignment app answered, but named no agent.
var ErrNoAgent = errors.New("the assignment app has no agent to give")

// ServiceConfig configures a ServiceHandler.
type ServiceConfig struct {
	// AssignAppID is the Dapr app-id of the assignment app. Empty means no
	// app is asked: conversations wait for an Assign from the shop's
	// systems.
	AssignAppID string
	// IsShop reports whether a user is a shop's business account: a send
	// "to" it opens a service conversation instead of a direct one, and
	// only a shop may be the first party of a service conversation id. It
	// is called on every send, so it should read a live setting rather
	// than the store. Nil means no user is a shop.
	IsShop func(domain.UserID) bool
	// AssignTimeout bounds one call of the assignment app. Zero means 2s.
	AssignTimeout time.Duration
	// RetryMin is the first wait before asking the assignment app again
	// after a failure; each failure doubles it. Zero means 500ms.
	RetryMin time.Duration
	// RetryMax caps the wait between attempts. Zero means 30s.
	RetryMax time.Duration
}

func (c *ServiceConfig) defaults() {
	if c.AssignTimeout <= 0 {
		c.AssignTimeout = 2 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 500 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(30*time.Second, c.RetryMin)
	}
	if c.IsShop == nil {
		c.IsShop = func(domain.UserID) bool { return false }
	}
}

// AssignAgent asks to hand a service conversation to Agent: the first
// assignment, or a transfer from the current agent. Actor is who decides:
// the shop's account (the assignment app acts for it) or the current
// agent; empty means the shop.
type AssignAgent struct {
	Actor domain.UserID
	Conv  string
	Agent domain.UserID
	// ClientMsgID makes a retry find the assignment's event; empty means
	// none.
	ClientMsgID string
}

// AssignResult is the conversation after an assignment and the event
// stored for it in the stream.
type AssignResult struct {
	Conversation domain.ServiceConversation
	Event        *domain.Message
}

// ServiceHandler runs customer-service conversations: a customer writes to
// a shop's account, the assignment app names one of the shop's agents, and
// from then on the customer, the shop and that agent are the members. The
// send path asks it to resolve a send (ForSend) and tells it of each stored
// message (Sent); it asks the assignment app in the background, so the
// customer's ACK never waits on a business app, and keeps asking, with
// backoff, until an agent is assigned or Stop is called.
//
// An assignment is an EventAgentAssigned stored in the conversation's
// stream, delivered to the old members and the new agent, then recorded
// (store.ApplyServiceEvent). The agent reads the whole history.
//
// Assignments of one conversation on this node run one at a time. A
// pending retry lives on the node that stored the message; if that node
// stops, the next message of the conversation starts it again elsewhere.
// The zero value is not usable; use NewServiceHandler. Safe for concurrent
// use.
type ServiceHandler struct {
	store    *store.Store
	settings *settings.Live
	deliver  Deliverer
	notify   Notifier
	invoker  infrastructure.Invoker
	cfg      ServiceConfig
	log      *zap.Logger
	now      Clock
	seed     maphash.Seed
	locks    [64]sync.Mutex

	// ctx is the life of the background assignments: Stop cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	pending map[domain.ConversationID]*pendingAssign

	// homes hands assignment events to the other units, when parley runs
	// as several; set before use by WithHomes.
	homes Homes
}

// WithHomes makes the handler hand the assignment events it stores to the
// other units of a deployment of several, for their devices.
func (h *ServiceHandler) WithHomes(homes Homes) *ServiceHandler {
	h.homes = homes
	return h
}

// pendingAssign is a conversation whose assignment is being asked for.
// Guarded by ServiceHandler.mu.
type pendingAssign struct {
	// failed is set once an attempt failed: the customer's later messages
	// are answered with NoticeUnassigned at once.
	failed bool
}

// NewServiceHandler wires the handler. n may be nil (nobody is told that
// a message is unassigned) and so may inv when cfg.AssignAppID is empty.
func NewServiceHandler(s *store.Store, live *settings.Live, d Deliverer, n Notifier, inv infrastructure.Invoker, cfg ServiceConfig, log *zap.Logger, now Clock) *ServiceHandler {
	cfg.defaults()
	// The background assignments outlive the request that started them:
	// their context is the handler's, ended by Stop.
	ctx, cancel := context.WithCancel(context.Background())
	return &ServiceHandler{
		store: s, settings: live, deliver: d, notify: n, invoker: inv, cfg: cfg, log: log, now: now,
		seed: maphash.MakeSeed(), ctx: ctx, cancel: cancel,
		pending: make(map[domain.ConversationID]*pendingAssign),
	}
}

// IsShop reports whether u is a shop's business account.
func (h *ServiceHandler) IsShop(u domain.UserID) bool { return h.cfg.IsShop(u) }

// ForSend resolves a send that concerns a service conversation: one named
// by its id ("s:{shop}~{customer}"), or a send to a shop's account, which
// opens the conversation of the sender (the customer) with that shop. ok
// is false when the send is not a service send; the caller resolves it as
// before. Otherwise the sender must be the customer, the shop or the
// current agent, and conv lists who the message is delivered to. The
// conversation's record is created by the first send of its customer or
// shop.
func (h *ServiceHandler) ForSend(ctx context.Context, sender domain.UserID, convID, to string, nowMs int64) (conv domain.Conversation, ok bool, err error) {
	var id domain.ConversationID
	switch {
	case convID != "":
		if domain.ConversationID(convID).Kind() != domain.Service {
			return domain.Conversation{}, false, nil
		}
		if id, err = parseServiceID(convID); err != nil {
			return domain.Conversation{}, true, err
		}
	case to != "":
		shop, perr := domain.ParseUserID(to)
		if perr != nil || shop == sender || !h.cfg.IsShop(shop) {
			// Not a shop, or not valid: the direct path says why.
			return domain.Conversation{}, false, nil
		}
		id = domain.ServiceConversationID(shop, sender)
	default:
		return domain.Conversation{}, false, nil
	}
	sc, err := h.conversation(ctx, id, sender, nowMs)
	if err != nil {
		return domain.Conversation{}, true, err
	}
	return serviceConv(sc, nil), true, nil
}

// conversation reads the record of id, creating it when u, its customer
// or shop, writes first, and checks that u is a party of it now.
func (h *ServiceHandler) conversation(ctx context.Context, id domain.ConversationID, u domain.UserID, nowMs int64) (domain.ServiceConversation, error) {
	shop, customer, _ := id.ServiceParties()
	if !h.cfg.IsShop(shop) {
		return domain.ServiceConversation{}, &domain.InvalidError{Kind: domain.ErrInvalidConversationID, Value: string(id), Reason: string(shop) + " is not a shop"}
	}
	sc, ok, err := h.store.ServiceConversation(ctx, id)
	if err != nil {
		return domain.ServiceConversation{}, err
	}
	if !ok {
		if u != shop && u != customer {
			return domain.ServiceConversation{}, domain.ErrNotMember
		}
		fresh, err := domain.NewServiceConversation(shop, customer, nowMs)
		if err != nil {
			return domain.ServiceConversation{}, err
		}
		if sc, err = h.store.CreateServiceConversation(ctx, fresh); err != nil {
			return domain.ServiceConversation{}, err
		}
	}
	if _, err := sc.RoleOf(u); err != nil {
		return domain.ServiceConversation{}, err
	}
	return sc, nil
}

// serviceConv is the conversation a message of sc is delivered to, with
// extra recipients (an agent being handed the conversation).
func serviceConv(sc domain.ServiceConversation, extra []domain.UserID) domain.Conversation {
	members := sc.Members()
	for _, u := range extra {
		if !slices.Contains(members, u) {
			members = append(members, u)
		}
	}
	return domain.Conversation{ID: sc.ID, Kind: domain.Service, Members: members, CreatedMs: sc.CreatedMs}
}

// Sent is told of each message stored in a conversation that ForSend
// resolved, after it is durable. When the conversation has no agent it
// starts asking the assignment app in the background, and answers a
// customer whose conversation already failed to be assigned with
// NoticeUnassigned. It never blocks on the app.
func (h *ServiceHandler) Sent(ctx context.Context, conv domain.Conversation, m *domain.Message) {
	if conv.Kind != domain.Service || h.cfg.AssignAppID == "" {
		return
	}
	shop, customer, ok := conv.ID.ServiceParties()
	if !ok || hasAgent(conv, shop, customer) {
		return
	}
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return
	}
	if p := h.pending[conv.ID]; p != nil {
		failed := p.failed
		h.mu.Unlock()
		if failed && m.Sender == customer {
			h.tellUnassigned(ctx, conv.ID, customer, shop, m.Seq)
		}
		return
	}
	p := &pendingAssign{}
	h.pending[conv.ID] = p
	h.wg.Add(1)
	h.mu.Unlock()
	go h.assignLoop(conv.ID, p, m)
}

// hasAgent reports whether conv, as ForSend resolved it, has an agent
// besides its customer and shop. An agent who is the shop's own account
// is not told apart: the background attempt reads the record and stops.
func hasAgent(conv domain.Conversation, shop, customer domain.UserID) bool {
	for _, u := range conv.Members {
		if u != shop && u != customer {
			return true
		}
	}
	return false
}

// assignLoop asks the assignment app until the conversation has an agent
// or the handler stops. The first failure tells the customer.
func (h *ServiceHandler) assignLoop(id domain.ConversationID, p *pendingAssign, m *domain.Message) {
	defer h.wg.Done()
	defer func() {
		h.mu.Lock()
		delete(h.pending, id)
		h.mu.Unlock()
	}()
	shop, customer, _ := id.ServiceParties()
	wait := h.cfg.RetryMin
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		err := h.assignFirst(h.ctx, id)
		if err == nil {
			if attempt > 1 {
				h.log.Info("service conversation assigned after retries", zap.String("conv", string(id)), zap.Int("attempts", attempt))
			}
			return
		}
		if h.ctx.Err() != nil {
			return
		}
		h.log.Warn("agent not assigned; retrying", zap.String("conv", string(id)), zap.String("assign_app", h.cfg.AssignAppID),
			zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
		h.mu.Lock()
		first := !p.failed
		p.failed = true
		h.mu.Unlock()
		if first && m.Sender == customer {
			h.tellUnassigned(h.ctx, id, customer, shop, m.Seq)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-h.ctx.Done():
			return
		}
		wait = min(2*wait, h.cfg.RetryMax)
	}
}

func (h *ServiceHandler) tellUnassigned(ctx context.Context, id domain.ConversationID, customer, shop domain.UserID, seq uint64) {
	if h.notify != nil {
		h.notify.Notify(ctx, []domain.UserID{customer}, Notice{Type: NoticeUnassigned, Conv: id, Seq: seq, User: shop})
	}
}

// assignFirst asks the assignment app for an agent and assigns them, unless
// the conversation has one by then.
func (h *ServiceHandler) assignFirst(ctx context.Context, id domain.ConversationID) error {
	sc, ok, err := h.store.ServiceConversation(ctx, id)
	if err != nil || !ok || sc.Agent != "" {
		return err
	}
	req, err := jsoniter.ConfigFastest.Marshal(AssignRequest{Conv: id, Shop: sc.Shop, Customer: sc.Customer})
	if err != nil {
		return fmt.Errorf("encode assign request: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, h.cfg.AssignTimeout)
	out, err := h.invoker.Invoke(actx, h.cfg.AssignAppID, AssignMethod, req)
	cancel()
	if err != nil {
		return fmt.Errorf("ask %s for an agent: %w", h.cfg.AssignAppID, err)
	}
	var r AssignReply
	if err := jsoniter.ConfigFastest.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("%s answered no JSON assign reply: %w", h.cfg.AssignAppID, err)
	}
	if r.Agent == "" {
		return ErrNoAgent
	}
	_, err = h.assign(ctx, AssignAgent{Actor: sc.Shop, Conv: string(id), Agent: r.Agent}, true)
	if errors.Is(err, domain.ErrNoChange) {
		return nil
	}
	return err
}

// Assign hands a conversation to cmd.Agent: a transfer when it has an
// agent already. The event goes to the old members and the new agent; the
// agent handed over loses the conversation. Assigning the current agent
// again, as a retry of a transfer does, stores nothing and is
// domain.ErrNoChange, with the conversation as it is in the result.
func (h *ServiceHandler) Assign(ctx context.Context, cmd AssignAgent) (AssignResult, error) {
	return h.assign(ctx, cmd, false)
}

// assign is Assign; onlyFirst makes it change nothing when the
// conversation has an agent by the time it holds the lock.
func (h *ServiceHandler) assign(ctx context.Context, cmd AssignAgent, onlyFirst bool) (AssignResult, error) {
	id, err := parseServiceID(cmd.Conv)
	if err != nil {
		return AssignResult{}, err
	}
	mu := &h.locks[maphash.String(h.seed, string(id))%uint64(len(h.locks))]
	mu.Lock()
	defer mu.Unlock()

	cfg := h.settings.Load()
	nowMs := h.now().UnixMilli()
	sc, ok, err := h.store.ServiceConversation(ctx, id)
	if err != nil {
		return AssignResult{}, err
	}
	if !ok {
		return AssignResult{}, fmt.Errorf("%s has no messages yet: %w", id, domain.ErrNotMember)
	}
	if onlyFirst && sc.Agent != "" {
		return AssignResult{Conversation: sc}, domain.ErrNoChange
	}
	actor := cmd.Actor
	if actor == "" {
		actor = sc.Shop
	}
	ev, err := sc.Assign(actor, cmd.Agent)
	if err != nil {
		return AssignResult{Conversation: sc}, err
	}
	// The agent handed over sees the event that ends their part.
	conv := serviceConv(sc, ev.Users)
	msg, err := appendEvent(ctx, h.store, conv, ev, cmd.ClientMsgID, nowMs, cfg.IdempotencyTTL, func(m *domain.Message) {
		// The record moves before anyone hears of the event, so that the
		// new agent may answer as soon as told. An assignment is rare
		// enough for this write to hold up the conversation's next sends.
		if _, err := h.store.ApplyServiceEvent(ctx, id, ev, m.Seq); err != nil {
			h.log.Warn("assignment stored but not yet recorded", zap.String("conv", string(id)), zap.Uint64("seq", m.Seq), zap.Error(err))
		}
		deliverEverywhere(ctx, h.deliver, h.homes, &conv, m, "")
	})
	if err != nil {
		return AssignResult{}, err
	}
	// Recorded already, unless that failed or a retry found the event
	// stored before: applying it again changes nothing.
	if sc, err = h.store.ApplyServiceEvent(ctx, id, ev, msg.Seq); err != nil {
		// The event is stored and delivered; a retry with the same cmid
		// records it.
		return AssignResult{}, err
	}
	h.log.Info("service conversation assigned", zap.String("conv", string(id)), zap.Uint64("seq", msg.Seq),
		zap.String("actor", string(actor)), zap.String("agent", string(cmd.Agent)))
	return AssignResult{Conversation: sc, Event: msg}, nil
}

// Conversation returns the record of a service conversation as u may see
// it: u must be its customer, shop or current agent.
func (h *ServiceHandler) Conversation(ctx context.Context, u domain.UserID, convID string) (domain.ServiceConversation, error) {
	id, err := parseServiceID(convID)
	if err != nil {
		return domain.ServiceConversation{}, err
	}
	return serviceMember(ctx, h.store, u, id)
}

// serviceMember reads the record of id and checks that u is its customer,
// shop or current agent, who read the whole stream. An agent the
// conversation was transferred from reads it no more.
func serviceMember(ctx context.Context, s *store.Store, u domain.UserID, id domain.ConversationID) (domain.ServiceConversation, error) {
	sc, ok, err := s.ServiceConversation(ctx, id)
	if err != nil {
		return domain.ServiceConversation{}, err
	}
	if !ok {
		return domain.ServiceConversation{}, domain.ErrNotMember
	}
	if _, err := sc.RoleOf(u); err != nil {
		return domain.ServiceConversation{}, err
	}
	return sc, nil
}

// readServiceWindow is readWindow for a service conversation: its parties
// read it whole.
func readServiceWindow(ctx context.Context, s *store.Store, u domain.UserID, convID string) (domain.ConversationID, window, error) {
	id, err := parseServiceID(convID)
	if err != nil {
		return "", window{}, err
	}
	if _, err := serviceMember(ctx, s, u, id); err != nil {
		return "", window{}, err
	}
	return id, window{from: 1}, nil
}

// Stop ends the background assignments and waits for them until ctx ends.
// Conversations still unassigned are asked for again on their next
// message.
func (h *ServiceHandler) Stop(ctx context.Context) error {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.cancel()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop service assignments: %w", ctx.Err())
	}
}

// parseServiceID accepts only service conversation ids.
func parseServiceID(s string) (domain.ConversationID, error) {
	id, _, err := domain.ParseConversationID(s)
	if err != nil {
		return "", err
	}
	if id.Kind() != domain.Service {
		return "", &domain.InvalidError{Kind: domain.ErrInvalidConversationID, Value: s, Reason: "not a customer-service conversation id"}
	}
	return id, nil
}
