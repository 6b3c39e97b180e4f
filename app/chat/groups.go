package chat

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
)

// GroupOp names a change to a group, as clients send it.
type GroupOp string

// The changes a GroupChange can ask for.
const (
	OpInvite   GroupOp = "invite"   // Users join at once
	OpJoin     GroupOp = "join"     // the actor joins, or asks to (Note)
	OpApprove  GroupOp = "approve"  // Users[0]'s request is granted
	OpReject   GroupOp = "reject"   // Users[0]'s request is refused
	OpLeave    GroupOp = "leave"    // the actor leaves
	OpKick     GroupOp = "kick"     // Users[0] is removed
	OpSetRole  GroupOp = "set_role" // Users[0] gets Role (admin or member)
	OpMute     GroupOp = "mute"     // Users[0] is muted until UntilMs
	OpUnmute   GroupOp = "unmute"   // Users[0]'s mute ends
	OpMuteAll  GroupOp = "mute_all" // On: only the owner and admins speak
	OpRename   GroupOp = "rename"   // Name
	OpNotice   GroupOp = "notice"   // Notice; empty clears it
	OpExt      GroupOp = "ext"      // Ext, a JSON object; empty clears it
	OpPolicy   GroupOp = "policy"   // Policy
	OpHistory  GroupOp = "history"  // On: new members see what came before
	OpTransfer GroupOp = "transfer" // Users[0] becomes the owner
	OpDissolve GroupOp = "dissolve" // the group takes nothing more
	OpRequests GroupOp = "requests" // not a change: list pending join requests
)

// ErrUnknownGroupOp means a GroupChange named no known change.
var ErrUnknownGroupOp = errors.New("unknown group operation")

// CreateGroup asks for a new group with Actor as its owner.
type CreateGroup struct {
	Actor domain.UserID
	Spec  domain.GroupSpec
	// ClientMsgID makes a retry return the same group; empty means none.
	ClientMsgID string
}

// GroupChange asks for one change to a group; see GroupOp for the fields
// each change reads.
type GroupChange struct {
	Actor       domain.UserID
	Conv        string
	Op          GroupOp
	Users       []domain.UserID
	Role        string
	UntilMs     int64
	On          bool
	Name        string
	Notice      string
	Ext         string
	Policy      string
	Note        string
	ClientMsgID string
}

// GroupResult is a change's outcome: the group after it, and the event
// message stored in the group's stream (nil for a join request or a
// rejection, which are not stored).
type GroupResult struct {
	Group    domain.GroupInfo
	Event    *domain.Message
	Requests []JoinRequest
}

// JoinRequest is a pending request to join a group.
type JoinRequest = store.JoinRequest

// Notice is something devices are told that is not a message of a
// conversation's stream: it is not stored, and a device that is offline
// misses it.
type Notice struct {
	// Type is "join_requested", "join_rejected", "typing", "seen" (a peer's read cursor) or
	// "read_by".
	Type string
	Conv domain.ConversationID
	// Seq is the message concerned, or a read cursor.
	Seq uint64
	// User is who caused it: the requester, the typist, the reader.
	User domain.UserID
	// Count is how many members read message Seq ("read_by"); whether a
	// typist started or stopped ("typing": 1 or 0).
	Count uint64
	// Note is a join request's message.
	Note string
}

// Notifier tells users' devices, wherever they are connected, about a
// Notice. It must not block on a slow device.
type Notifier interface {
	Notify(ctx context.Context, users []domain.UserID, n Notice)
}

// GroupsHandler creates and changes groups. Each change is checked by the
// domain's permission table, stored as a system event at its own seq in
// the group's stream, delivered like a message, then applied to the
// group's records. Changes of one group on this node run one at a time;
// records are written with compare-and-set, so nodes changing one group at
// once keep each other's changes. The zero value is not usable; use
// NewGroupsHandler. Safe for concurrent use.
type GroupsHandler struct {
	store    *store.Store
	settings *settings.Live
	deliver  Deliverer
	notify   Notifier
	now      Clock
	seed     maphash.Seed
	locks    [64]sync.Mutex
	homes    Homes
}

// WithHomes makes the handler, in a deployment of several units, home the
// groups it creates in this unit, send changes of groups homed elsewhere
// to their home, and hand its events to the other units for their devices.
func (h *GroupsHandler) WithHomes(homes Homes) *GroupsHandler {
	h.homes = homes
	return h
}

// NewGroupsHandler wires the handler.
func NewGroupsHandler(s *store.Store, live *settings.Live, d Deliverer, n Notifier, now Clock) *GroupsHandler {
	return &GroupsHandler{store: s, settings: live, deliver: d, notify: n, now: now, seed: maphash.MakeSeed()}
}

// Create makes a group, stores its creation event at seq 1 and delivers it
// to the first members.
func (h *GroupsHandler) Create(ctx context.Context, cmd CreateGroup) (GroupResult, error) {
	cfg := h.settings.Load()
	nowMs := h.now().UnixMilli()
	var random [16]byte
	if cmd.ClientMsgID != "" {
		// A retry makes the same id, and finds its group.
		sum := domain.MessageID(cmd.Actor, "group:"+cmd.ClientMsgID)
		copy(random[:], sum)
	} else if _, err := rand.Read(random[:]); err != nil {
		return GroupResult{}, fmt.Errorf("make a group id: %w", err)
	}
	id := domain.NewGroupID(random)
	if g, _, ok, err := h.store.Group(ctx, id, ""); err != nil || ok {
		if err == nil && g.Owner != cmd.Actor {
			return GroupResult{}, store.ErrClientMsgIDReused
		}
		if err == nil && h.homes != nil {
			// A retry after a claim that failed claims again.
			err = h.homes.Claim(ctx, id)
		}
		return GroupResult{Group: g}, err
	}
	g, ev, err := domain.NewGroup(id, cmd.Actor, cmd.Spec, domain.ClampMemberCap(cfg.GroupMemberCap), nowMs)
	if err != nil {
		return GroupResult{}, err
	}
	conv := domain.Conversation{ID: id, Kind: domain.Group, Members: append([]domain.UserID{cmd.Actor}, ev.Users...), CreatedMs: nowMs}
	msg, err := appendEvent(ctx, h.store, conv, ev, cmd.ClientMsgID, nowMs, cfg.IdempotencyTTL, nil)
	if err != nil {
		return GroupResult{}, err
	}
	members := g.NewMembers(ev, msg.Seq, nowMs)
	if err := h.store.CreateGroup(ctx, g, members); err != nil {
		return GroupResult{}, err
	}
	if h.homes != nil {
		// The group lives where it was created; a retry (same cmid)
		// claims again if this fails.
		if err := h.homes.Claim(ctx, id); err != nil {
			return GroupResult{}, err
		}
	}
	deliverEverywhere(ctx, h.deliver, h.homes, &conv, msg, "")
	return GroupResult{Group: g, Event: msg}, nil
}

func (h *GroupsHandler) lock(c domain.ConversationID) *sync.Mutex {
	return &h.locks[maphash.String(h.seed, string(c))%uint64(len(h.locks))]
}

// Change applies one change to a group.
func (h *GroupsHandler) Change(ctx context.Context, cmd GroupChange) (GroupResult, error) {
	id, err := parseGroupID(cmd.Conv)
	if err != nil {
		return GroupResult{}, err
	}
	if h.homes != nil {
		remote, release, err := h.homes.Remote(ctx, id, HomeWrite)
		if err != nil {
			return GroupResult{}, err
		}
		defer release()
		if remote {
			cmd.Conv = string(id)
			return h.homes.ForwardGroupChange(ctx, cmd)
		}
	}
	mu := h.lock(id)
	mu.Lock()
	defer mu.Unlock()

	cfg := h.settings.Load()
	capN := domain.ClampMemberCap(cfg.GroupMemberCap)
	nowMs := h.now().UnixMilli()
	g, actor, ok, err := h.store.Group(ctx, id, cmd.Actor)
	if err != nil {
		return GroupResult{}, err
	}
	if !ok {
		return GroupResult{}, domain.ErrNotMember
	}
	target := func() (domain.Member, error) {
		if len(cmd.Users) != 1 {
			return domain.Member{}, &domain.InvalidError{Kind: domain.ErrInvalidUserID, Value: fmt.Sprint(cmd.Users), Reason: "name exactly one user"}
		}
		u, err := domain.ParseUserID(string(cmd.Users[0]))
		if err != nil {
			return domain.Member{}, err
		}
		recs, err := h.store.MemberRecords(ctx, id, []domain.UserID{u})
		if err != nil {
			return domain.Member{}, err
		}
		t := recs[0]
		t.User = u
		return t, nil
	}

	var ev domain.SystemEvent
	switch cmd.Op {
	case OpInvite:
		recs, err := h.store.MemberRecords(ctx, id, cmd.Users)
		if err != nil {
			return GroupResult{}, err
		}
		var fresh []domain.UserID
		for i, u := range cmd.Users {
			if !recs[i].Current() {
				fresh = append(fresh, u)
			}
		}
		if len(fresh) == 0 {
			return GroupResult{Group: g}, domain.ErrAlreadyMember
		}
		ev, err = g.Invite(actor, fresh, capN)
		if err != nil {
			return GroupResult{}, err
		}
	case OpJoin:
		actor.User = cmd.Actor
		ev, err = g.Join(actor, cmd.Note, capN)
		if err != nil {
			return GroupResult{}, err
		}
		if ev.Type == domain.EventJoinRequested {
			if err := h.store.SetJoinRequest(ctx, id, cmd.Actor, ev.Note, nowMs); err != nil {
				return GroupResult{}, err
			}
			h.notifyAdmins(ctx, g, ev)
			return GroupResult{Group: g}, nil
		}
	case OpApprove, OpReject:
		t, err := target()
		if err != nil {
			return GroupResult{}, err
		}
		if cmd.Op == OpApprove {
			ev, err = g.Approve(actor, t, capN)
		} else {
			ev, err = g.Reject(actor, t.User)
		}
		if err != nil {
			return GroupResult{}, err
		}
		pending, err := h.store.TakeJoinRequest(ctx, id, t.User)
		if err != nil {
			return GroupResult{}, err
		}
		if !pending {
			return GroupResult{}, fmt.Errorf("%s has no pending request to join: %w", t.User, domain.ErrNotMember)
		}
		if cmd.Op == OpReject {
			if h.notify != nil {
				h.notify.Notify(ctx, []domain.UserID{t.User}, Notice{Type: "join_rejected", Conv: id, User: cmd.Actor})
			}
			return GroupResult{Group: g}, nil
		}
	case OpRequests:
		if err := domain.Permit(actor.CurrentRole(), domain.ActionApprove, ""); err != nil {
			return GroupResult{}, err
		}
		reqs, err := h.store.JoinRequests(ctx, id)
		if err != nil {
			return GroupResult{}, err
		}
		return GroupResult{Group: g, Requests: reqs}, nil
	case OpLeave:
		ev, err = g.Leave(actor)
	case OpKick, OpSetRole, OpMute, OpUnmute, OpTransfer:
		t, terr := target()
		if terr != nil {
			return GroupResult{}, terr
		}
		switch cmd.Op {
		case OpKick:
			ev, err = g.Kick(actor, t)
		case OpSetRole:
			role, rerr := domain.ParseRole(cmd.Role)
			if rerr != nil {
				return GroupResult{}, rerr
			}
			ev, err = g.SetRole(actor, t, role)
		case OpMute:
			ev, err = g.Mute(actor, t, cmd.UntilMs, nowMs)
		case OpUnmute:
			ev, err = g.Unmute(actor, t)
		case OpTransfer:
			ev, err = g.Transfer(actor, t)
		}
	case OpMuteAll:
		ev, err = g.MuteAll(actor, cmd.On)
	case OpRename:
		ev, err = g.Rename(actor, cmd.Name)
	case OpNotice:
		ev, err = g.SetNotice(actor, cmd.Notice)
	case OpExt:
		ev, err = g.SetExt(actor, cmd.Ext)
	case OpPolicy:
		p, perr := domain.ParseJoinPolicy(cmd.Policy)
		if perr != nil {
			return GroupResult{}, perr
		}
		ev, err = g.SetPolicy(actor, p)
	case OpHistory:
		ev, err = g.SetHistoryVisible(actor, cmd.On)
	case OpDissolve:
		ev, err = g.Dissolve(actor)
	default:
		return GroupResult{}, fmt.Errorf("%w %q: see the protocol section of the README", ErrUnknownGroupOp, cmd.Op)
	}
	if err != nil {
		return GroupResult{}, err
	}

	// Everyone who is a member before or after the change learns of it:
	// those who leave or are kicked see the event that ends their window.
	before, err := h.store.GroupMembers(ctx, id)
	if err != nil {
		return GroupResult{}, err
	}
	recipients := slices.Clone(before)
	for _, u := range ev.Users {
		if !slices.Contains(recipients, u) {
			recipients = append(recipients, u)
		}
	}
	conv := domain.Conversation{ID: id, Kind: domain.Group, Members: recipients}
	// An event that lets users in is delivered once their records exist,
	// so that their devices can sync at once; the others in seq order with
	// the conversation's messages.
	joins := ev.Type == domain.EventMemberJoined
	var stored func(*domain.Message)
	if !joins {
		stored = func(m *domain.Message) { deliverEverywhere(ctx, h.deliver, h.homes, &conv, m, "") }
	}
	msg, err := appendEvent(ctx, h.store, conv, ev, cmd.ClientMsgID, nowMs, cfg.IdempotencyTTL, stored)
	if err != nil {
		return GroupResult{}, err
	}
	if err := h.store.ApplyGroupEvent(ctx, id, ev, msg.Seq, nowMs); err != nil {
		return GroupResult{}, err
	}
	if joins {
		deliverEverywhere(ctx, h.deliver, h.homes, &conv, msg, "")
	}
	g.Apply(ev)
	return GroupResult{Group: g, Event: msg}, nil
}

// notifyAdmins tells the owner and admins of g about a join request.
func (h *GroupsHandler) notifyAdmins(ctx context.Context, g domain.GroupInfo, e domain.SystemEvent) {
	if h.notify == nil {
		return
	}
	users, err := h.store.GroupMembers(ctx, g.ID)
	if err != nil {
		return
	}
	recs, err := h.store.MemberRecords(ctx, g.ID, users)
	if err != nil {
		return
	}
	var admins []domain.UserID
	for _, m := range recs {
		if m.Current() && domain.Permit(m.Role, domain.ActionApprove, "") == nil {
			admins = append(admins, m.User)
		}
	}
	h.notify.Notify(ctx, admins, Notice{Type: "join_requested", Conv: g.ID, User: e.Actor, Note: e.Note})
}

// parseGroupID accepts only group ids.
func parseGroupID(s string) (domain.ConversationID, error) {
	id, _, err := domain.ParseConversationID(s)
	if err != nil {
		return "", err
	}
	if id.Kind() != domain.Group {
		return "", &domain.InvalidError{Kind: domain.ErrInvalidConversationID, Value: s, Reason: "not a group id"}
	}
	return id, nil
}
