package units

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// Errors of a move, sorted by the operator API.
var (
	// ErrNotMovable: only direct conversations have a route, and move.
	ErrNotMovable = errors.New("only a direct conversation can move to another unit")
	// ErrUnknownUnit: the unit named is not in -units.
	ErrUnknownUnit = errors.New("no such unit")
	// ErrNoRoute: the conversation has no home yet; it gets one at its
	// first message.
	ErrNoRoute = errors.New("the conversation has no home yet")
	// ErrMoveBusy: another move of the conversation is under way.
	ErrMoveBusy = errors.New("another move of the conversation is under way")
)

// errMoving refuses a write to a conversation while it moves: the client
// retries with the same cmid, and the retry lands in the new home.
var errMoving = errors.New("the conversation is moving to another unit")

// moveBatch is how many messages one copy call carries.
const moveBatch = 100

// Move moves conv to the unit named to, and returns its new route. The old
// home runs the move: any unit asked forwards it there.
//
//  1. The route becomes {old home, epoch, moving: to} (compare-and-set).
//     From then the old home refuses writes to the conversation with
//     unit_unavailable, which clients retry with the same cmid.
//  2. The old home waits for the writes under way on this node, and out
//     the route lease, after which its other nodes have seen the move.
//  3. It copies the log to the new home, at the same seqs, with the
//     change records of recalls and edits, the senders' idempotency
//     records (a retry of an old send finds its message there) and the
//     read cursors, until a read finds nothing more.
//  4. The route becomes {to, epoch+1} (compare-and-set). Writes arriving
//     at the old home get wrong_unit from then on, and are sent on.
//
// A failed move puts the route back and leaves the partial copy in the
// new home, where a later move passes over it. A move interrupted between
// 1 and 4 (the node stopped) leaves the route moving, and the conversation
// refusing writes, until Move is called again, which resumes it. Moving a
// conversation to its home is a no-op.
func (u *Units) Move(ctx context.Context, conv domain.ConversationID, to string) (Route, error) {
	if conv.Kind() != domain.Direct {
		return Route{}, fmt.Errorf("%s: %w", conv, ErrNotMovable)
	}
	if _, ok := u.unit(to); !ok {
		return Route{}, fmt.Errorf("%q: %w", to, ErrUnknownUnit)
	}
	r, etag, ok, err := u.table.Read(ctx, conv)
	switch {
	case err != nil:
		return Route{}, &unavailableError{unit: "routes", err: err}
	case !ok:
		return Route{}, fmt.Errorf("%s: %w", conv, ErrNoRoute)
	case r.Unit == to && r.Moving == "":
		return r, nil
	case r.Unit != u.self.Name:
		home, ok := u.unit(r.Unit)
		if !ok {
			return Route{}, &unavailableError{unit: r.Unit, err: errors.New("no such unit in -units")}
		}
		data, _ := json.Marshal(moveRequest{Conv: conv, To: to})
		reply, err := u.cfg.Invoker.Invoke(ctx, home.AppID, MethodMove, data)
		if err != nil {
			return Route{}, &unavailableError{unit: home.Name, err: err}
		}
		var mr moveReply
		if err := json.Unmarshal(reply, &mr); err != nil {
			return Route{}, &unavailableError{unit: home.Name, err: fmt.Errorf("decode the reply to %s: %w", MethodMove, err)}
		}
		return mr.Route, fromWire(mr.Err)
	}
	return u.moveHere(ctx, conv, to, r, etag)
}

// unit finds a unit by name, this one included.
func (u *Units) unit(name string) (Unit, bool) {
	if name == u.self.Name {
		return u.self, true
	}
	i := slices.IndexFunc(u.peers, func(p Unit) bool { return p.Name == name })
	if i < 0 {
		return Unit{}, false
	}
	return u.peers[i], true
}

// moveHere runs the move of conv, homed here with route r, to unit to.
func (u *Units) moveHere(ctx context.Context, conv domain.ConversationID, to string, r Route, etag string) (Route, error) {
	if u.local.Store == nil {
		return Route{}, errors.New("units: this unit serves no store to move from")
	}
	if r.Moving != "" && r.Moving != to {
		return Route{}, fmt.Errorf("%s is moving to %s: %w", conv, r.Moving, ErrMoveBusy)
	}
	dest, _ := u.unit(to)
	log := u.log.With(zap.String("conv", string(conv)), zap.String("to", to), zap.Uint64("epoch", r.Epoch))
	started := time.Now()
	if r.Moving == "" {
		moving := Route{Unit: u.self.Name, Epoch: r.Epoch, Moving: to}
		if err := u.table.Swap(ctx, conv, etag, moving); err != nil {
			return Route{}, swapError(conv, err)
		}
		r = moving
	}
	log.Info("units: moving a conversation: writes to it are refused until it is done")
	if err := u.gate.close(ctx, conv); err != nil {
		u.abortMove(ctx, conv, r, log)
		return Route{}, &unavailableError{unit: u.self.Name, err: fmt.Errorf("wait for the writes under way: %w", err)}
	}
	defer u.gate.open(conv)
	// Every other node of this unit reads the route again within the
	// lease, and refuses writes from then on.
	t := time.NewTimer(time.Until(started.Add(u.table.Lease())))
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		u.abortMove(ctx, conv, r, log)
		return Route{}, &unavailableError{unit: u.self.Name, err: ctx.Err()}
	}
	n, err := u.copyTo(ctx, conv, dest)
	if err != nil {
		u.abortMove(ctx, conv, r, log)
		return Route{}, err
	}
	cur, etag, ok, err := u.table.Read(ctx, conv)
	if err != nil || !ok || cur != r {
		u.abortMove(ctx, conv, r, log)
		return Route{}, fmt.Errorf("%s: the route changed during the move (%+v): %w", conv, cur, ErrMoveBusy)
	}
	moved := Route{Unit: to, Epoch: r.Epoch + 1}
	if err := u.table.Swap(ctx, conv, etag, moved); err != nil {
		u.abortMove(ctx, conv, r, log)
		return Route{}, swapError(conv, err)
	}
	log.Info("units: conversation moved", zap.Uint64("messages", n), zap.Duration("took", time.Since(started)))
	return moved, nil
}

func swapError(conv domain.ConversationID, err error) error {
	if errors.Is(err, infrastructure.ErrConflict) {
		return fmt.Errorf("%s: %w", conv, ErrMoveBusy)
	}
	return &unavailableError{unit: "routes", err: err}
}

// abortMove puts the route of a failed move back, so that the
// conversation takes writes here again.
func (u *Units) abortMove(ctx context.Context, conv domain.ConversationID, moving Route, log *zap.Logger) {
	ctx = context.WithoutCancel(ctx)
	cur, etag, ok, err := u.table.Read(ctx, conv)
	if err == nil && ok && cur == moving {
		err = u.table.Swap(ctx, conv, etag, Route{Unit: moving.Unit, Epoch: moving.Epoch})
	}
	if err != nil {
		log.Error("units: a failed move left the conversation refusing writes; move it again", zap.Error(err))
		return
	}
	log.Warn("units: move failed; the conversation stays here")
}

// copyTo copies conv's log and read cursors into unit dest's store, and
// returns how many messages it copied.
func (u *Units) copyTo(ctx context.Context, conv domain.ConversationID, dest Unit) (uint64, error) {
	st := u.local.Store
	c, ok, err := st.Conversation(ctx, conv)
	if err != nil {
		return 0, &unavailableError{unit: u.self.Name, err: err}
	}
	if !ok {
		// Bound, but its first message never reached the store.
		id, members, err := domain.ParseConversationID(string(conv))
		if err != nil {
			return 0, err
		}
		c = domain.Conversation{ID: id, Kind: domain.Direct, Members: members, CreatedMs: time.Now().UnixMilli()}
	}
	var after uint64
	for {
		msgs, err := st.ExportMessages(ctx, conv, after, moveBatch)
		if err != nil {
			return after, &unavailableError{unit: u.self.Name, err: err}
		}
		req := importRequest{From: u.self.Name, Conv: c, Msgs: msgs}
		if len(msgs) == 0 {
			// The end of the log: the cursors go last, so that no copied
			// send's own cursor moves one back.
			seqs, err := st.ReadCursors(ctx, conv, c.Members)
			if err != nil {
				return after, &unavailableError{unit: u.self.Name, err: err}
			}
			req.Cursors = map[domain.UserID]uint64{}
			for i, m := range c.Members {
				if seqs[i] > 0 {
					req.Cursors[m] = seqs[i]
				}
			}
		}
		data, err := json.Marshal(req)
		if err != nil {
			return after, fmt.Errorf("encode the copy of %s: %w", conv, err)
		}
		reply, err := u.cfg.Invoker.Invoke(ctx, dest.AppID, MethodImport, data)
		if err != nil {
			return after, &unavailableError{unit: dest.Name, err: err}
		}
		var ir importReply
		if err := json.Unmarshal(reply, &ir); err != nil {
			return after, &unavailableError{unit: dest.Name, err: fmt.Errorf("decode the reply to %s: %w", MethodImport, err)}
		}
		if err := fromWire(ir.Err); err != nil {
			return after, err
		}
		if len(msgs) == 0 {
			return after, nil
		}
		after = msgs[len(msgs)-1].Msg.Seq
	}
}

func (u *Units) serveMove(ctx context.Context, body []byte) ([]byte, error) {
	var req moveRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest(MethodMove, err)
	}
	r, _, ok, err := u.table.Read(ctx, req.Conv)
	switch {
	case err != nil:
		err = &unavailableError{unit: "routes", err: err}
	case !ok || r.Unit != u.self.Name:
		// It moved meanwhile: the caller asks again where it is now.
		err = errWrongUnit
	default:
		r, err = u.Move(ctx, req.Conv, req.To)
	}
	return json.Marshal(moveReply{Route: r, Err: toWire(err)})
}

// serveImport stores a batch of a conversation that moves here. It takes
// it only from the unit the route names, while the route says the
// conversation moves here.
func (u *Units) serveImport(ctx context.Context, body []byte) ([]byte, error) {
	var req importRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest(MethodImport, err)
	}
	r, _, ok, err := u.table.Read(ctx, req.Conv.ID)
	switch {
	case err != nil:
		err = &unavailableError{unit: "routes", err: err}
	case u.local.Store == nil:
		err = errors.New("this unit serves no store to move into")
	case !ok || r.Unit != req.From || r.Moving != u.self.Name:
		err = fmt.Errorf("%s: route %+v does not move it from %s to here: %w", req.Conv.ID, r, req.From, ErrMoveBusy)
	default:
		err = u.importBatch(ctx, req)
	}
	return json.Marshal(importReply{Err: toWire(err)})
}

func (u *Units) importBatch(ctx context.Context, req importRequest) error {
	var ttl time.Duration
	if u.local.IdempotencyTTL != nil {
		ttl = u.local.IdempotencyTTL()
	}
	if err := u.local.Store.ImportMessages(ctx, req.Conv, req.Msgs, ttl); err != nil {
		return err
	}
	for user, seq := range req.Cursors {
		if _, err := u.local.Store.AdvanceReadCursor(ctx, req.Conv.ID, user, seq); err != nil {
			return err
		}
	}
	return nil
}

// gate counts the writes under way on this node per conversation homed
// here, so that a move starts copying only once they are done, and refuses
// new ones while it runs. The zero value is ready. Safe for concurrent
// use.
type gate struct {
	mu    sync.Mutex
	convs map[domain.ConversationID]*gateEntry
}

type gateEntry struct {
	writes int
	moving bool
	// idle is closed when writes drops to 0 during a move.
	idle chan struct{}
}

// enter counts a write to conv; ok is false while conv moves.
func (g *gate) enter(conv domain.ConversationID) (release func(), ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entryLocked(conv)
	if e.moving {
		return nil, false
	}
	e.writes++
	var once sync.Once
	return func() { once.Do(func() { g.leave(conv, e) }) }, true
}

// entryLocked is conv's entry, made if it has none; g.mu is held.
func (g *gate) entryLocked(conv domain.ConversationID) *gateEntry {
	if g.convs == nil {
		g.convs = make(map[domain.ConversationID]*gateEntry)
	}
	e := g.convs[conv]
	if e == nil {
		e = &gateEntry{}
		g.convs[conv] = e
	}
	return e
}

func (g *gate) leave(conv domain.ConversationID, e *gateEntry) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e.writes--
	if e.writes > 0 {
		return
	}
	if e.moving {
		close(e.idle)
		return
	}
	delete(g.convs, conv)
}

// close refuses new writes to conv and waits for those under way.
func (g *gate) close(ctx context.Context, conv domain.ConversationID) error {
	g.mu.Lock()
	e := g.entryLocked(conv)
	if e.moving {
		g.mu.Unlock()
		return ErrMoveBusy
	}
	e.moving = true
	e.idle = make(chan struct{})
	if e.writes == 0 {
		close(e.idle)
	}
	idle := e.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		g.open(conv)
		return ctx.Err()
	}
}

// open takes writes to conv again.
func (g *gate) open(conv domain.ConversationID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.convs[conv]
	if e == nil {
		return
	}
	e.moving = false
	if e.writes == 0 {
		delete(g.convs, conv)
	}
}
