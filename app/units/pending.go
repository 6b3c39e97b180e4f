package units

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// Local mode: with it on (SetLocalPending), a send from a client that can
// be told so (chat.SendMessage.AcceptPending) to a conversation whose home
// unit cannot be reached is kept in this unit's own state store, in one
// queue per home unit, and acknowledged as pending, with no seq. A replay
// loop forwards the queue, in the order it was taken, once the home
// answers; the home dedupes on (sender, cmid), assigns the seqs and
// delivers as usual, to this unit's devices too. While a conversation has
// sends waiting, later sends to it wait behind them, so that the home
// stores them in the order they were taken.

// pendingSend is one send kept for its home unit.
type pendingSend struct {
	Cmd  chat.SendMessage `json:"cmd"`
	AtMs int64            `json:"at"`
}

// pendingQueue is what waits for one home unit, oldest first.
type pendingQueue struct {
	Sends []pendingSend `json:"sends"`
}

// pendingKey is the key of the queue for unit in this unit's state store.
func pendingKey(unit string) string { return "unitpending:" + unit }

// MaxPending bounds the sends waiting for one home unit; past it, sends get
// unit_unavailable as without local mode.
const MaxPending = 5000

// errPendingFull says the queue for a home unit is full.
var errPendingFull = errors.New("the queue of sends for the home unit is full")

// pendingTick is how often the replay loop looks at the queues when sends
// wait; pendingIdle when none were seen here (another node of this unit
// may have taken some).
const (
	pendingTick = time.Second
	pendingIdle = 5 * time.Second
)

// pendingState is what this node knows of the queues: the conversations
// with sends waiting, per home unit.
type pendingState struct {
	mu    sync.Mutex
	convs map[domain.ConversationID]string // conv → home unit
	kick  chan struct{}
	// stop ends the replay loop; Stop closes it.
	stop chan struct{}
}

// SetLocalPending turns local mode on or off. Sends already kept are
// replayed either way.
func (u *Units) SetLocalPending(on bool) { u.localPending.Store(on) }

// LocalPending reports whether local mode is on.
func (u *Units) LocalPending() bool { return u.localPending.Load() }

// pendable reports whether err means the home unit could not be reached or
// could not store, which local mode covers; not knowing the home (the route
// table is down) is not.
func pendable(err error) bool {
	var ue *unavailableError
	if errors.As(err, &ue) && ue.unit == "routes" {
		return false
	}
	return errors.Is(err, ErrUnitUnavailable)
}

// waiting returns the home unit conv has sends waiting for, if any.
func (u *Units) waiting(conv domain.ConversationID) (string, bool) {
	u.pending.mu.Lock()
	defer u.pending.mu.Unlock()
	unit, ok := u.pending.convs[conv]
	return unit, ok
}

// pend keeps cmd for home unit home and returns its pending result. A
// retry of a send already kept gets the same answer.
func (u *Units) pend(ctx context.Context, home string, cmd chat.SendMessage) (chat.SendResult, error) {
	ctype, err := domain.ParseContentType(cmd.ContentType)
	if err != nil {
		return chat.SendResult{}, err
	}
	cmd.AcceptPending, cmd.Origin = false, ""
	now := time.Now().UnixMilli()
	err = infrastructure.Update(ctx, u.cfg.Pending, pendingKey(home), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		var q pendingQueue
		if cur.Found {
			if err := json.Unmarshal(cur.Value, &q); err != nil {
				return nil, 0, fmt.Errorf("decode the queue for %s: %w", home, err)
			}
		}
		for _, p := range q.Sends {
			if p.Cmd.Sender == cmd.Sender && p.Cmd.ClientMsgID == cmd.ClientMsgID {
				if p.Cmd.Conv != cmd.Conv || p.Cmd.Body != cmd.Body || p.Cmd.ContentType != cmd.ContentType {
					return nil, 0, store.ErrClientMsgIDReused
				}
				return nil, infrastructure.Keep, nil
			}
		}
		if len(q.Sends) >= MaxPending {
			return nil, 0, errPendingFull
		}
		q.Sends = append(q.Sends, pendingSend{Cmd: cmd, AtMs: now})
		data, err := json.Marshal(q)
		return data, infrastructure.Put, err
	})
	if err != nil {
		return chat.SendResult{}, err
	}
	conv := domain.ConversationID(cmd.Conv)
	u.pending.mu.Lock()
	u.pending.convs[conv] = home
	u.pending.mu.Unlock()
	select {
	case u.pending.kick <- struct{}{}:
	default:
	}
	u.log.Info("units: send kept until its home unit is back", zap.String("unit", home), zap.String("conv", cmd.Conv),
		zap.String("sender", string(cmd.Sender)), zap.String("cmid", cmd.ClientMsgID))
	return chat.SendResult{Pending: true, Message: domain.Message{
		ID: domain.MessageID(cmd.Sender, cmd.ClientMsgID), Conv: conv, Sender: cmd.Sender, ClientMsgID: cmd.ClientMsgID,
		ContentType: ctype, Body: cmd.Body, ServerMs: now,
	}}, nil
}

// replayLoop replays the queues until Stop.
func (u *Units) replayLoop() {
	defer u.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-u.pending.stop:
			return
		case <-t.C:
		case <-u.pending.kick:
			// A send was just kept: its home was unreachable a moment ago,
			// so the next look is a tick from now, not at once.
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
			t.Reset(pendingTick)
			continue
		}
		left := 0
		for _, p := range u.peers {
			left += u.replay(u.replayCtx, p)
		}
		wait := pendingIdle
		if left > 0 {
			wait = pendingTick
		}
		t.Reset(wait)
	}
}

// replay forwards what waits for unit p, oldest first, until the unit
// fails to answer; it returns how many sends still wait.
func (u *Units) replay(ctx context.Context, p Unit) int {
	key := pendingKey(p.Name)
	it, err := u.cfg.Pending.Get(ctx, key)
	if err != nil {
		u.log.Warn("units: read the sends kept for a unit", zap.String("unit", p.Name), zap.Error(err))
		return 1
	}
	var q pendingQueue
	if it.Found {
		if err := json.Unmarshal(it.Value, &q); err != nil {
			u.log.Error("units: the sends kept for a unit are unreadable", zap.String("unit", p.Name), zap.Error(err))
			return 1
		}
	}
	type sendKey struct {
		sender domain.UserID
		cmid   string
	}
	done := map[sendKey]bool{}
	for _, ps := range q.Sends {
		cmd := ps.Cmd
		_, err := u.forwardNow(context.WithValue(ctx, replayKey{}, true), cmd)
		if err != nil && pendable(err) {
			break // still unreachable: the rest waits, in order
		}
		if err != nil {
			// The home refuses it for good (not a member any more, a body
			// over its limit): it is dropped, and its sender's devices
			// never get it.
			u.log.Warn("units: a kept send was refused by its home unit and dropped", zap.String("unit", p.Name),
				zap.String("conv", cmd.Conv), zap.String("sender", string(cmd.Sender)), zap.String("cmid", cmd.ClientMsgID), zap.Error(err))
		} else {
			u.log.Info("units: a kept send reached its home unit", zap.String("unit", p.Name), zap.String("conv", cmd.Conv),
				zap.String("cmid", cmd.ClientMsgID), zap.Duration("waited", time.Since(time.UnixMilli(ps.AtMs))))
		}
		done[sendKey{cmd.Sender, cmd.ClientMsgID}] = true
	}
	var rest []pendingSend
	if len(done) > 0 {
		err = infrastructure.Update(ctx, u.cfg.Pending, key, func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
			var q pendingQueue
			if cur.Found {
				if err := json.Unmarshal(cur.Value, &q); err != nil {
					return nil, 0, err
				}
			}
			rest = rest[:0]
			for _, ps := range q.Sends {
				if !done[sendKey{ps.Cmd.Sender, ps.Cmd.ClientMsgID}] {
					rest = append(rest, ps)
				}
			}
			if len(rest) == 0 {
				if !cur.Found {
					return nil, infrastructure.Keep, nil
				}
				return nil, infrastructure.Remove, nil
			}
			data, err := json.Marshal(pendingQueue{Sends: rest})
			return data, infrastructure.Put, err
		})
		if err != nil {
			// The next round finds them stored and gets them back as
			// duplicates: nothing is stored twice.
			u.log.Warn("units: replayed sends not taken off the queue", zap.String("unit", p.Name), zap.Error(err))
			return len(q.Sends)
		}
	} else {
		rest = q.Sends
	}
	u.pending.mu.Lock()
	for conv, unit := range u.pending.convs {
		if unit == p.Name {
			delete(u.pending.convs, conv)
		}
	}
	for _, ps := range rest {
		u.pending.convs[domain.ConversationID(ps.Cmd.Conv)] = p.Name
	}
	u.pending.mu.Unlock()
	return len(rest)
}

// replayKey marks the context of a replayed send: it is forwarded, never
// kept again.
type replayKey struct{}
