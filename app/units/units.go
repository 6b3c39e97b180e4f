// Package units runs parley as several units: deployments with their own
// Dapr app-id and profile (on-prem PostgreSQL and RabbitMQ, cloud Redis)
// that serve one set of users together. Each conversation has a home unit,
// named in a route table every unit shares; the home assigns the
// conversation's seqs and stores its messages. A unit that receives a
// send, a sync or a read cursor of a conversation homed elsewhere forwards
// it to the home through Dapr service invocation, and the home hands each
// stored message to every other unit, whose own delivery pushes it to the
// devices connected there.
//
// Which unit a new conversation is bound to is a live setting (the burst
// policy): the unit that sees it first, or the unit the setting names.
// Conversations already bound keep their home.
package units

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// ErrUnitUnavailable means the home unit of the conversation could not be
// reached, or could not reach its own storage: nothing was stored, and the
// request may be retried with the same cmid once the unit is back. It also
// matches infrastructure.ErrUnavailable, so that an edge that does not know
// units sorts it as a retryable "unavailable".
var ErrUnitUnavailable = errors.New("the conversation's home unit is unavailable")

// unavailableError is ErrUnitUnavailable with the unit and the cause.
type unavailableError struct {
	unit string
	err  error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("home unit %s is unavailable: %v", e.unit, e.err)
}

func (e *unavailableError) Unwrap() error { return e.err }

func (e *unavailableError) Is(target error) bool {
	return target == ErrUnitUnavailable || target == infrastructure.ErrUnavailable
}

// Unit is one deployment of parley.
type Unit struct {
	// Name is how routes and settings name the unit: "onprem", "cloud".
	Name string
	// AppID is the Dapr app-id of the unit's parley nodes, which other
	// units invoke.
	AppID string
}

// ParseUnits reads a list like "onprem=parley-onprem,cloud=parley-cloud".
func ParseUnits(s string) ([]Unit, error) {
	var out []Unit
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, app, ok := strings.Cut(part, "=")
		name, app = strings.TrimSpace(name), strings.TrimSpace(app)
		if !ok || name == "" || app == "" {
			return nil, fmt.Errorf("unit %q: want name=app-id", part)
		}
		if slices.ContainsFunc(out, func(u Unit) bool { return u.Name == name }) {
			return nil, fmt.Errorf("unit %q listed twice", name)
		}
		out = append(out, Unit{Name: name, AppID: app})
	}
	if len(out) == 0 {
		return nil, errors.New("no units: want name=app-id,...")
	}
	return out, nil
}

// Config configures Units.
type Config struct {
	// Self is this unit's name; it must be one of Units. Required.
	Self string
	// Units lists every unit, this one included. Required.
	Units []Unit
	// Routes is the state store all units share (keyPrefix none). Required.
	Routes infrastructure.StateStore
	// Invoker reaches the other units by app-id. Required.
	Invoker infrastructure.Invoker
	// Logger gets forwarding failures, never message bodies. Zero value
	// means zap.NewNop().
	Logger *zap.Logger
	// CallTimeout bounds one forwarded call when the caller's context has
	// no sooner deadline: it is a backstop for requests on long-lived
	// connections; timeouts, retries and circuit breakers per unit are the
	// sidecar's resiliency policy. Zero value means 10s.
	CallTimeout time.Duration
	// CacheSize bounds the route cache. Zero value means 100,000.
	CacheSize int
	// DeliverQueue bounds the messages waiting for each other unit. Zero
	// value means 4096.
	DeliverQueue int
	// Pending is this unit's own state store, where local mode keeps the
	// sends whose home unit cannot be reached. Nil means no local mode.
	Pending infrastructure.StateStore
	// Lease is how long a node trusts a cached route naming its own unit;
	// a move waits it out before copying, so that every node of the
	// conversation's home has seen the move start. Zero value means
	// DefaultLease.
	Lease time.Duration
}

// Local is this unit's own use cases, which serve the other units'
// forwarded requests, and its delivery, which pushes the messages the
// other units hand over to the devices connected here.
type Local struct {
	Send     *chat.SendMessageHandler
	History  *chat.HistoryHandler
	MarkRead *chat.MarkReadHandler
	List     *chat.ListConversationsHandler
	Groups   *chat.GroupsHandler
	Change   *chat.ChangeMessageHandler
	Deliver  chat.Deliverer
	// Store is this unit's store, which a move copies from and into.
	Store *store.Store
	// IdempotencyTTL is how long the retry of a send finds its message,
	// for the records a move copies. Nil means they do not expire.
	IdempotencyTTL func() time.Duration
}

// Units routes conversations to their home unit. It implements
// chat.Homes. The zero value is not usable; use New, then Serve, and Stop
// at shutdown. Safe for concurrent use.
type Units struct {
	cfg    Config
	self   Unit
	peers  []Unit
	table  *Table
	log    *zap.Logger
	bindTo atomic.Pointer[string]
	local  Local
	gate   gate

	localPending atomic.Bool
	pending      pendingState
	// replayCtx is the life of the replay loop's calls; Stop ends it.
	replayCtx    context.Context
	cancelReplay context.CancelFunc

	mu      sync.RWMutex
	stopped bool
	lanes   map[string]chan deliverEnvelope
	wg      sync.WaitGroup
	// laneCtx is the life of the hand-offs to other units: Stop cancels it
	// at its deadline, so that the lanes end even if a unit hangs.
	laneCtx    context.Context
	cancelLane context.CancelFunc
}

var _ chat.Homes = (*Units)(nil)

// New checks cfg and starts one delivery lane per other unit.
func New(cfg Config) (*Units, error) {
	if cfg.Routes == nil || cfg.Invoker == nil {
		return nil, errors.New("units: Config.Routes and Config.Invoker are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.DeliverQueue <= 0 {
		cfg.DeliverQueue = 4096
	}
	u := &Units{cfg: cfg, log: cfg.Logger, table: NewTable(cfg.Routes, cfg.CacheSize, cfg.Self, cfg.Lease), lanes: map[string]chan deliverEnvelope{}}
	// The lanes outlive any request: their context is the units', ended
	// by Stop.
	u.laneCtx, u.cancelLane = context.WithCancel(context.Background())
	u.replayCtx, u.cancelReplay = context.WithCancel(context.Background())
	u.pending = pendingState{convs: map[domain.ConversationID]string{}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	found := false
	for _, x := range cfg.Units {
		if x.Name == cfg.Self {
			u.self, found = x, true
			continue
		}
		u.peers = append(u.peers, x)
	}
	if !found {
		return nil, fmt.Errorf("units: this unit %q is not among the units listed", cfg.Self)
	}
	for _, p := range u.peers {
		q := make(chan deliverEnvelope, cfg.DeliverQueue)
		u.lanes[p.Name] = q
		u.wg.Add(1)
		go u.deliverLane(p, q)
	}
	if cfg.Pending != nil {
		// Sends kept before a restart are replayed whether local mode is
		// on now or not.
		u.wg.Add(1)
		go u.replayLoop()
	}
	return u, nil
}

// Self is this unit's name.
func (u *Units) Self() string { return u.self.Name }

// Table is the route table this unit reads and binds through.
func (u *Units) Table() *Table { return u.table }

// SetBindTo is the burst policy: new conversations are bound to the unit
// named, or to the unit that sees them first when name is empty or names
// no unit (which is logged). Conversations already bound keep their home.
func (u *Units) SetBindTo(name string) {
	name = strings.TrimSpace(name)
	if name != "" && name != u.self.Name && !slices.ContainsFunc(u.peers, func(p Unit) bool { return p.Name == name }) {
		u.log.Warn("units: bind_to names no unit; new conversations bind where they start", zap.String("bind_to", name))
		name = ""
	}
	u.bindTo.Store(&name)
}

// BindTo is the unit new conversations are bound to now.
func (u *Units) BindTo() string {
	if p := u.bindTo.Load(); p != nil && *p != "" {
		return *p
	}
	return u.self.Name
}

// forwardedKey marks the context of a request another unit forwarded:
// this unit answers it itself and never forwards it again.
type forwardedKey struct{}

func forwarded(ctx context.Context) bool { return ctx.Value(forwardedKey{}) != nil }

// Remote reports whether conv is homed in another unit. A send binds a
// conversation without a home first, to BindTo. A request another unit
// forwarded is answered here unless the route names another unit, which
// means the conversation moved: errWrongUnit. A write to a conversation
// homed here is refused, retryable, while the conversation moves away;
// otherwise it holds the conversation until release, so that a move waits
// for it.
func (u *Units) Remote(ctx context.Context, conv domain.ConversationID, use chat.HomeUse) (bool, func(), error) {
	var r Route
	var ok bool
	var err error
	if use == chat.HomeSend && !forwarded(ctx) {
		r, err = u.table.Bind(ctx, conv, u.BindTo())
		ok = err == nil
	} else {
		r, ok, err = u.table.Lookup(ctx, conv)
	}
	if err != nil {
		// Without the route table nobody can tell where the conversation
		// lives: storing it here could give it two homes.
		return false, nil, &unavailableError{unit: "routes", err: err}
	}
	if !ok || r.Unit == u.self.Name {
		if use == chat.HomeRead {
			return false, noRelease, nil
		}
		if r.Moving != "" {
			return false, nil, &unavailableError{unit: u.self.Name, err: errMoving}
		}
		release, ok := u.gate.enter(conv)
		if !ok {
			return false, nil, &unavailableError{unit: u.self.Name, err: errMoving}
		}
		return false, release, nil
	}
	if forwarded(ctx) {
		u.table.Forget(conv)
		return false, nil, errWrongUnit
	}
	return true, noRelease, nil
}

func noRelease() {}

// Route is conv's route as this node knows it: cached, or read.
func (u *Units) Route(ctx context.Context, conv domain.ConversationID) (chat.Route, bool) {
	r, ok, err := u.table.Lookup(ctx, conv)
	if err != nil || !ok {
		return chat.Route{}, false
	}
	return chat.Route{Unit: r.Unit, Epoch: r.Epoch}, true
}

// errHomeIsSelf says a conversation's route, read again after its old
// home refused a request, names this unit: the conversation moved here.
var errHomeIsSelf = errors.New("the conversation is homed in this unit")

// home returns the unit conv's cached or stored route names.
func (u *Units) home(ctx context.Context, conv domain.ConversationID) (Unit, error) {
	r, ok, err := u.table.Lookup(ctx, conv)
	if err != nil {
		return Unit{}, &unavailableError{unit: "routes", err: err}
	}
	if !ok {
		return Unit{}, &unavailableError{unit: "routes", err: fmt.Errorf("%s has no route", conv)}
	}
	if r.Unit == u.self.Name {
		return Unit{}, errHomeIsSelf
	}
	i := slices.IndexFunc(u.peers, func(p Unit) bool { return p.Name == r.Unit })
	if i < 0 {
		return Unit{}, &unavailableError{unit: r.Unit, err: errors.New("no such unit in -units")}
	}
	return u.peers[i], nil
}

// call invokes method on conv's home unit and decodes the reply into out.
// A home that answers it is not the home any more (the conversation
// moved) makes this unit drop its cached route and ask once again.
func call[R any](ctx context.Context, u *Units, conv domain.ConversationID, method string, req any, errOf func(*R) *wireError) (R, error) {
	var zero R
	data, err := json.Marshal(req)
	if err != nil {
		return zero, fmt.Errorf("encode %s: %w", method, err)
	}
	for attempt := 0; ; attempt++ {
		home, err := u.home(ctx, conv)
		if err != nil {
			return zero, err
		}
		cctx, cancel := context.WithTimeout(ctx, u.cfg.CallTimeout)
		reply, err := u.cfg.Invoker.Invoke(cctx, home.AppID, method, data)
		cancel()
		if err != nil {
			return zero, &unavailableError{unit: home.Name, err: err}
		}
		// A fresh reply each time: one decoded over the last would keep
		// its error where the new one has none.
		var out R
		if err := json.Unmarshal(reply, &out); err != nil {
			return zero, &unavailableError{unit: home.Name, err: fmt.Errorf("decode the reply to %s: %w", method, err)}
		}
		werr := errOf(&out)
		if werr != nil && werr.Code == codeWrongUnit && attempt == 0 {
			u.table.Forget(conv)
			continue
		}
		return out, fromWire(werr)
	}
}

// ForwardSend has the home unit of cmd.Conv store cmd. The home dedupes on
// (sender, cmid), so a retry after a lost reply returns the same message.
// In local mode, a send the home cannot take now, or one to a conversation
// whose earlier sends still wait, is kept here for the home (pending.go).
func (u *Units) ForwardSend(ctx context.Context, cmd chat.SendMessage) (chat.SendResult, error) {
	conv := domain.ConversationID(cmd.Conv)
	local := cmd.AcceptPending && u.cfg.Pending != nil && u.localPending.Load() && ctx.Value(replayKey{}) == nil
	if local {
		if home, ok := u.waiting(conv); ok {
			return u.pend(ctx, home, cmd)
		}
	}
	res, err := u.forwardNow(ctx, cmd)
	if err != nil && local && pendable(err) {
		home, herr := u.home(ctx, conv)
		if herr != nil {
			return res, err
		}
		kept, perr := u.pend(ctx, home.Name, cmd)
		switch {
		case perr == nil:
			return kept, nil
		case errors.Is(perr, store.ErrClientMsgIDReused):
			return chat.SendResult{}, perr
		}
		u.log.Warn("units: send not kept for its home unit", zap.String("unit", home.Name), zap.String("conv", cmd.Conv), zap.Error(perr))
	}
	return res, err
}

// forwardNow has the home unit store cmd now.
func (u *Units) forwardNow(ctx context.Context, cmd chat.SendMessage) (chat.SendResult, error) {
	cmd.AcceptPending = false
	r, err := call(ctx, u, domain.ConversationID(cmd.Conv), MethodSend, cmd, func(r *sendReply) *wireError { return r.Err })
	switch {
	case errors.Is(err, errHomeIsSelf) && u.local.Send != nil:
		return u.local.Send.Handle(ctx, cmd)
	case err != nil:
		return chat.SendResult{}, err
	}
	return r.Result, nil
}

// ForwardHistory has the home unit of q.Conv answer q.
func (u *Units) ForwardHistory(ctx context.Context, q chat.History) (chat.HistoryPage, error) {
	r, err := call(ctx, u, domain.ConversationID(q.Conv), MethodHistory, q, func(r *historyReply) *wireError { return r.Err })
	switch {
	case errors.Is(err, errHomeIsSelf) && u.local.History != nil:
		return u.local.History.Handle(ctx, q)
	case err != nil:
		return chat.HistoryPage{}, err
	}
	return r.Page, nil
}

// ForwardMarkRead has the home unit of cmd.Conv move the read cursor.
func (u *Units) ForwardMarkRead(ctx context.Context, cmd chat.MarkRead) (uint64, error) {
	r, err := call(ctx, u, domain.ConversationID(cmd.Conv), MethodRead, cmd, func(r *readReply) *wireError { return r.Err })
	switch {
	case errors.Is(err, errHomeIsSelf) && u.local.MarkRead != nil:
		return u.local.MarkRead.Handle(ctx, cmd)
	case err != nil:
		return 0, err
	}
	return r.Seq, nil
}

// Claim makes this unit the home of conv, a group created here.
func (u *Units) Claim(ctx context.Context, conv domain.ConversationID) error {
	r, err := u.table.Bind(ctx, conv, u.self.Name)
	if err != nil {
		return &unavailableError{unit: "routes", err: err}
	}
	if r.Unit != u.self.Name {
		return fmt.Errorf("claim %s: it is homed in %s: %w", conv, r.Unit, infrastructure.ErrConflict)
	}
	return nil
}

// ForwardGroupChange has the home unit of cmd.Conv, a group, apply cmd.
func (u *Units) ForwardGroupChange(ctx context.Context, cmd chat.GroupChange) (chat.GroupResult, error) {
	r, err := call(ctx, u, domain.ConversationID(cmd.Conv), MethodGroup, cmd, func(r *groupReply) *wireError { return r.Err })
	switch {
	case errors.Is(err, errHomeIsSelf) && u.local.Groups != nil:
		return u.local.Groups.Change(ctx, cmd)
	case err != nil:
		return chat.GroupResult{}, err
	}
	return r.Result, nil
}

// ForwardChange has the home unit of cmd.Conv recall or edit a message.
func (u *Units) ForwardChange(ctx context.Context, cmd chat.ChangeMessage) (domain.Message, error) {
	r, err := call(ctx, u, domain.ConversationID(cmd.Conv), MethodChange, cmd, func(r *changeReply) *wireError { return r.Err })
	switch {
	case errors.Is(err, errHomeIsSelf) && u.local.Change != nil:
		return u.local.Change.Handle(ctx, cmd)
	case err != nil:
		return domain.Message{}, err
	}
	return r.Event, nil
}

// ForwardList asks every other unit for user's conversations homed there.
// A unit that does not answer is left out and logged: the listing shows
// what can be reached, and the conversations of that unit come back with
// it.
func (u *Units) ForwardList(ctx context.Context, user domain.UserID) ([]chat.ConversationView, error) {
	if forwarded(ctx) || len(u.peers) == 0 {
		return nil, nil
	}
	data, _ := json.Marshal(listRequest{User: user})
	var (
		mu  sync.Mutex
		out []chat.ConversationView
		wg  sync.WaitGroup
	)
	for _, p := range u.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, u.cfg.CallTimeout)
			defer cancel()
			reply, err := u.cfg.Invoker.Invoke(cctx, p.AppID, MethodList, data)
			var r listReply
			if err == nil {
				err = json.Unmarshal(reply, &r)
			}
			if err == nil {
				err = fromWire(r.Err)
			}
			if err != nil {
				u.log.Warn("units: listing left out a unit", zap.String("unit", p.Name), zap.String("user", string(user)), zap.Error(err))
				return
			}
			mu.Lock()
			out = append(out, r.Views...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, nil
}

// Delivered queues m for every other unit. A full queue (a unit that does
// not keep up) drops the hand-off, which is logged: the message is
// stored, and those devices get it when they sync.
func (u *Units) Delivered(_ context.Context, conv *domain.Conversation, m *domain.Message, origin string) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.stopped {
		return
	}
	env := deliverEnvelope{Conv: *conv, Msg: m, Origin: origin}
	for _, p := range u.peers {
		select {
		case u.lanes[p.Name] <- env:
		default:
			u.log.Warn("units: hand-off queue full; that unit's devices will sync", zap.String("unit", p.Name), zap.String("msg_id", m.ID))
		}
	}
}

// deliverLane hands messages to unit p in the order they were stored,
// until Stop closes q. What queued up while one call was under way goes in
// the next call together, so that a busy lane costs one round trip per
// batch rather than per message.
func (u *Units) deliverLane(p Unit, q chan deliverEnvelope) {
	defer u.wg.Done()
	batch := make([]deliverEnvelope, 0, maxDeliverBatch)
	for env := range q {
		batch = append(batch[:0], env)
	fill:
		for len(batch) < maxDeliverBatch {
			select {
			case next, ok := <-q:
				if !ok {
					break fill
				}
				batch = append(batch, next)
			default:
				break fill
			}
		}
		data, err := json.Marshal(deliverBatch{Batch: batch})
		if err != nil {
			u.log.Error("units: encode hand-off", zap.String("msg_id", env.Msg.ID), zap.Error(err))
			continue
		}
		err = u.handOff(p, data)
		if err != nil {
			u.log.Warn("units: hand-off to unit failed; its devices will sync", zap.String("unit", p.Name),
				zap.String("conv", string(env.Conv.ID)), zap.Uint64("seq", env.Msg.Seq), zap.Int("messages", len(batch)), zap.Error(err))
		}
	}
}

// handOff makes one hand-off call, tried again a few times over about two
// seconds: a sidecar that restarts, or a call cut off by one, costs the
// devices of the other unit a short wait instead of a sync. Later
// hand-offs wait behind it, which keeps their order.
func (u *Units) handOff(p Unit, data []byte) error {
	var err error
	for wait := 100 * time.Millisecond; ; wait *= 4 {
		ctx, cancel := context.WithTimeout(u.laneCtx, u.cfg.CallTimeout)
		_, err = u.cfg.Invoker.Invoke(ctx, p.AppID, MethodDeliver, data)
		cancel()
		if err == nil || wait > 2*time.Second {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-u.laneCtx.Done():
			t.Stop()
			return err
		}
	}
}

// maxDeliverBatch bounds the messages of one hand-off call.
const maxDeliverBatch = 64

// Serve registers the methods the other units call on inv, answered by
// local.
func (u *Units) Serve(inv infrastructure.Invoker, local Local) error {
	u.local = local
	for _, m := range []struct {
		method string
		h      infrastructure.InvocationHandler
	}{
		{MethodSend, u.serveSend},
		{MethodHistory, u.serveHistory},
		{MethodRead, u.serveRead},
		{MethodList, u.serveList},
		{MethodDeliver, u.serveDeliver},
		{MethodGroup, u.serveGroup},
		{MethodChange, u.serveChange},
		{MethodMove, u.serveMove},
		{MethodImport, u.serveImport},
	} {
		if err := inv.Serve(m.method, m.h); err != nil {
			return fmt.Errorf("serve %s: %w", m.method, err)
		}
	}
	return nil
}

func badRequest(method string, err error) error {
	return &infrastructure.OpError{Op: "serve", Key: method, Kind: infrastructure.ErrInvalidArgument, Err: err}
}

func (u *Units) serveSend(ctx context.Context, body []byte) ([]byte, error) {
	var cmd chat.SendMessage
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, badRequest(MethodSend, err)
	}
	res, err := u.local.Send.Handle(context.WithValue(ctx, forwardedKey{}, true), cmd)
	return json.Marshal(sendReply{Result: res, Err: toWire(err)})
}

func (u *Units) serveHistory(ctx context.Context, body []byte) ([]byte, error) {
	var q chat.History
	if err := json.Unmarshal(body, &q); err != nil {
		return nil, badRequest(MethodHistory, err)
	}
	page, err := u.local.History.Handle(context.WithValue(ctx, forwardedKey{}, true), q)
	return json.Marshal(historyReply{Page: page, Err: toWire(err)})
}

func (u *Units) serveRead(ctx context.Context, body []byte) ([]byte, error) {
	var cmd chat.MarkRead
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, badRequest(MethodRead, err)
	}
	seq, err := u.local.MarkRead.Handle(context.WithValue(ctx, forwardedKey{}, true), cmd)
	return json.Marshal(readReply{Seq: seq, Err: toWire(err)})
}

func (u *Units) serveGroup(ctx context.Context, body []byte) ([]byte, error) {
	var cmd chat.GroupChange
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, badRequest(MethodGroup, err)
	}
	if u.local.Groups == nil {
		return json.Marshal(groupReply{Err: toWire(chat.ErrUnknownGroupOp)})
	}
	res, err := u.local.Groups.Change(context.WithValue(ctx, forwardedKey{}, true), cmd)
	return json.Marshal(groupReply{Result: res, Err: toWire(err)})
}

func (u *Units) serveChange(ctx context.Context, body []byte) ([]byte, error) {
	var cmd chat.ChangeMessage
	if err := json.Unmarshal(body, &cmd); err != nil {
		return nil, badRequest(MethodChange, err)
	}
	if u.local.Change == nil {
		return json.Marshal(changeReply{Err: toWire(domain.ErrNotRecallable)})
	}
	ev, err := u.local.Change.Handle(context.WithValue(ctx, forwardedKey{}, true), cmd)
	return json.Marshal(changeReply{Event: ev, Err: toWire(err)})
}

func (u *Units) serveList(ctx context.Context, body []byte) ([]byte, error) {
	var q listRequest
	if err := json.Unmarshal(body, &q); err != nil {
		return nil, badRequest(MethodList, err)
	}
	views, err := u.local.List.Handle(context.WithValue(ctx, forwardedKey{}, true), q.User)
	return json.Marshal(listReply{Views: views, Err: toWire(err)})
}

func (u *Units) serveDeliver(ctx context.Context, body []byte) ([]byte, error) {
	var b deliverBatch
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, badRequest(MethodDeliver, fmt.Errorf("not a hand-off: %v", err))
	}
	if b.Msg != nil {
		// One message, as a unit of the release before batches sends.
		b.Batch = append(b.Batch, b.deliverEnvelope)
	}
	for i := range b.Batch {
		if b.Batch[i].Msg == nil {
			return nil, badRequest(MethodDeliver, errors.New("a hand-off without a message"))
		}
	}
	for i := range b.Batch {
		env := &b.Batch[i]
		u.local.Deliver.Deliver(ctx, &env.Conv, env.Msg, env.Origin)
	}
	return nil, nil
}

// Stop hands on the messages still queued for other units until ctx ends;
// the hand-offs not made by then fail at once and are left to sync. It
// returns once every lane has ended.
func (u *Units) Stop(ctx context.Context) {
	u.mu.Lock()
	if !u.stopped {
		u.stopped = true
		for _, q := range u.lanes {
			close(q)
		}
		close(u.pending.stop)
		u.cancelReplay()
	}
	u.mu.Unlock()
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		u.log.Warn("units: shutdown deadline; some hand-offs to other units did not leave, those devices will sync")
		u.cancelLane()
		<-done
	}
	u.cancelLane()
}
