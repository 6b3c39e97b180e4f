package client

import (
	"context"
	"time"

	pb "github.com/parley-im/parley/proto/parley/v1"
)

// GroupOp names a change to a group, the op of a group frame. The README's
// protocol section lists the role each one needs.
type GroupOp string

// The group ops of the protocol.
const (
	// OpInvite adds Users at once.
	OpInvite GroupOp = "invite"
	// OpJoin joins an open group, or asks to join an approval group with Note.
	OpJoin GroupOp = "join"
	// OpApprove and OpReject decide the pending request of Users[0].
	OpApprove GroupOp = "approve"
	OpReject  GroupOp = "reject"
	// OpRequests lists the pending join requests (GroupResult.Requests).
	OpRequests GroupOp = "requests"
	// OpLeave: you leave; the owner cannot.
	OpLeave GroupOp = "leave"
	// OpKick removes Users[0].
	OpKick GroupOp = "kick"
	// OpSetRole gives Users[0] the Role admin or member.
	OpSetRole GroupOp = "set_role"
	// OpMute mutes Users[0] until Until; OpUnmute lifts it.
	OpMute   GroupOp = "mute"
	OpUnmute GroupOp = "unmute"
	// OpMuteAll mutes (On) or unmutes the whole group.
	OpMuteAll GroupOp = "mute_all"
	// OpRename, OpNotice, OpExt and OpPolicy set Name, Notice, Ext and Policy.
	OpRename GroupOp = "rename"
	OpNotice GroupOp = "notice"
	OpExt    GroupOp = "ext"
	OpPolicy GroupOp = "policy"
	// OpHistory opens (On) or closes the history to members who join later.
	OpHistory GroupOp = "history"
	// OpTransfer makes Users[0] the owner and you a member.
	OpTransfer GroupOp = "transfer"
	// OpDissolve ends the group; its history stays readable.
	OpDissolve GroupOp = "dissolve"
)

// Join policies of a group.
const (
	PolicyOpen       = "open"
	PolicyApproval   = "approval"
	PolicyInviteOnly = "invite_only"
)

// NewGroup describes a group to create. Only Name is required.
type NewGroup struct {
	// Name is 1-64 characters.
	Name string
	// Users are the first members besides the creator, up to 500.
	Users []string
	// Notice (up to 2 KiB) and Ext (a JSON object as text, up to 4 KiB)
	// start the profile; empty means none.
	Notice, Ext string
	// Policy is PolicyOpen, PolicyApproval or PolicyInviteOnly; empty
	// means invite only.
	Policy string
	// History lets members who join later read what came before.
	History bool
	// Cmid makes a retry return the same group instead of a second one;
	// empty means no retry is safe.
	Cmid string
}

// GroupChange is one change to a group: an op and the fields it takes.
type GroupChange struct {
	Op GroupOp
	// Users are who the change is about (the one user of approve, reject,
	// kick, set_role, mute, unmute and transfer is Users[0]).
	Users []string
	// Role is admin or member, for OpSetRole.
	Role string
	// Until ends a mute (OpMute); it must be in the future.
	Until time.Time
	// On switches OpMuteAll and OpHistory.
	On bool
	// Name, Notice, Ext and Policy are the new values of OpRename,
	// OpNotice, OpExt and OpPolicy; Note is the message of an OpJoin request.
	Name, Notice, Ext, Policy, Note string
	// Cmid makes a retry find the same event; empty is allowed.
	Cmid string
}

// GroupResult is the server's answer to a group creation or change.
type GroupResult struct {
	// Conv is the group's conversation id, "g:" and 26 characters.
	Conv string
	// Group is the group's profile after the change.
	Group *pb.Group
	// Event is the system message that records the change in the group's
	// stream (decode it with ParseSystemEvent); nil when nothing was
	// stored: a join request, a rejection, a list of requests.
	Event *pb.Message
	// Requests are the pending join requests, for OpRequests.
	Requests []*pb.JoinRequest
}

func groupResult(f *pb.Frame) *GroupResult {
	return &GroupResult{Conv: f.Conv, Group: f.Group, Event: f.Msg, Requests: f.Requests}
}

// CreateGroup creates a group owned by the signed-in user.
func (c *Client) CreateGroup(ctx context.Context, g NewGroup) (*GroupResult, error) {
	r, err := c.Request(ctx, &pb.Frame{Type: "group_create", Name: g.Name, Users: g.Users, Notice: g.Notice,
		Ext: g.Ext, Policy: g.Policy, On: g.History, Cmid: g.Cmid})
	if err != nil {
		return nil, err
	}
	return groupResult(r), nil
}

// ChangeGroup applies one change to the group conv. A refusal is an *Error
// with the protocol's code (forbidden, not_member, invite_only...).
func (c *Client) ChangeGroup(ctx context.Context, conv string, ch GroupChange) (*GroupResult, error) {
	f := &pb.Frame{Type: "group", Conv: conv, Op: string(ch.Op), Users: ch.Users, Role: ch.Role, On: ch.On,
		Name: ch.Name, Notice: ch.Notice, Ext: ch.Ext, Policy: ch.Policy, Note: ch.Note, Cmid: ch.Cmid}
	if !ch.Until.IsZero() {
		f.Until = ch.Until.UnixMilli()
	}
	r, err := c.Request(ctx, f)
	if err != nil {
		return nil, err
	}
	return groupResult(r), nil
}

// Invite adds users to the group conv at once.
func (c *Client) Invite(ctx context.Context, conv string, users ...string) (*GroupResult, error) {
	return c.ChangeGroup(ctx, conv, GroupChange{Op: OpInvite, Users: users})
}

// Leave makes the signed-in user leave the group conv; they keep what
// they could read until then.
func (c *Client) Leave(ctx context.Context, conv string) (*GroupResult, error) {
	return c.ChangeGroup(ctx, conv, GroupChange{Op: OpLeave})
}

// Recall takes back the message at seq of conv and returns the
// message.recalled event the server stored. cmid may be empty; with one, a
// retry finds the same event.
func (c *Client) Recall(ctx context.Context, conv string, seq uint64, cmid string) (*pb.Message, error) {
	r, err := c.Request(ctx, &pb.Frame{Type: "recall", Conv: conv, Seq: seq, Cmid: cmid})
	if err != nil {
		return nil, err
	}
	return r.Msg, nil
}

// Edit replaces the body of the signed-in user's message at seq of conv
// and returns the message.edited event the server stored. ctype is "text"
// (or empty) or "json"; cmid may be empty.
func (c *Client) Edit(ctx context.Context, conv string, seq uint64, ctype, body, cmid string) (*pb.Message, error) {
	r, err := c.Request(ctx, &pb.Frame{Type: "edit", Conv: conv, Seq: seq, Ctype: ctype, Body: body, Cmid: cmid})
	if err != nil {
		return nil, err
	}
	return r.Msg, nil
}

// Typing tells the other members' online devices that the signed-in user
// started (on) or stopped typing in conv. The server answers nothing; a
// refusal comes on Events as an error frame, and a notice sooner than 3 s
// after the last one is dropped silently.
func (c *Client) Typing(conv string, on bool) error {
	return c.write(&pb.Frame{Type: "typing", Conv: conv, On: on})
}
