package domain

// Role is a group member's rank. The zero value means "not a member".
type Role string

const (
	// RoleOwner created the group or received it by transfer. A group has
	// exactly one owner.
	RoleOwner Role = "owner"
	// RoleAdmin is set and unset by the owner.
	RoleAdmin Role = "admin"
	// RoleMember is every other current member.
	RoleMember Role = "member"
)

// ParseRole accepts "owner", "admin" and "member".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleOwner, RoleAdmin, RoleMember:
		return r, nil
	}
	return "", invalid(ErrUnknownRole, s, `use "owner", "admin" or "member"`)
}

// rank orders roles; 0 is not a role.
func (r Role) rank() int {
	switch r {
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleMember:
		return 1
	}
	return 0
}

// Action is something a member does to a group or to another member. Each
// has one row in the permission table that Permit reads.
type Action string

// The actions of the permission table. Their strings name them in
// ForbiddenError messages.
const (
	ActionSend    Action = "send"    // send a message
	ActionRead    Action = "read"    // read or sync history
	ActionInvite  Action = "invite"  // add users to the group
	ActionLeave   Action = "leave"   // leave the group (the owner transfers first)
	ActionApprove Action = "approve" // approve or reject a join request
	ActionKick    Action = "kick"    // remove a member
	ActionMute    Action = "mute"    // mute or unmute a member
	ActionMuteAll Action = "mute_all"
	ActionSetRole Action = "set_role" // make a member admin, or an admin member
	ActionRename  Action = "rename"
	ActionNotice  Action = "set_notice"
	ActionExt     Action = "set_ext"
	// ActionSettings changes the join policy and history visibility.
	ActionSettings Action = "set_settings"
	ActionTransfer Action = "transfer_owner"
	ActionDissolve Action = "dissolve"
	// ActionRecall recalls another member's message at any time. Recalling
	// one's own message needs no role, only the recall window.
	ActionRecall     Action = "recall"
	ActionMentionAll Action = "mention_all"
)

// permission is one row of the table: the least role the actor needs and
// whether the action applies to another member, whom the actor must then
// outrank.
type permission struct {
	need     Role
	outranks bool
}

// permissions is the one table that decides who may do what in a group.
// Targeted actions need the actor to rank strictly above the target, so an
// admin acts on members, the owner on admins and members, and nobody on the
// owner.
var permissions = map[Action]permission{
	ActionSend:       {need: RoleMember},
	ActionRead:       {need: RoleMember},
	ActionInvite:     {need: RoleMember},
	ActionLeave:      {need: RoleMember},
	ActionApprove:    {need: RoleAdmin},
	ActionKick:       {need: RoleAdmin, outranks: true},
	ActionMute:       {need: RoleAdmin, outranks: true},
	ActionMuteAll:    {need: RoleAdmin},
	ActionSetRole:    {need: RoleOwner, outranks: true},
	ActionRename:     {need: RoleAdmin},
	ActionNotice:     {need: RoleAdmin},
	ActionExt:        {need: RoleAdmin},
	ActionSettings:   {need: RoleAdmin},
	ActionTransfer:   {need: RoleOwner, outranks: true},
	ActionDissolve:   {need: RoleOwner},
	ActionRecall:     {need: RoleAdmin, outranks: true},
	ActionMentionAll: {need: RoleAdmin},
}

// Actions lists every action of the permission table, in a stable order.
func Actions() []Action {
	return []Action{
		ActionSend, ActionRead, ActionInvite, ActionLeave, ActionApprove,
		ActionKick, ActionMute, ActionMuteAll, ActionSetRole, ActionRename,
		ActionNotice, ActionExt, ActionSettings, ActionTransfer, ActionDissolve,
		ActionRecall, ActionMentionAll,
	}
}

// Targeted reports whether a acts on another member, whose role Permit
// then needs.
func (a Action) Targeted() bool { return permissions[a].outranks }

// Permit decides whether a member with role actor may do action, to a member
// with role target for targeted actions (target is ignored otherwise). It
// returns nil, ErrNotMember when actor (or a targeted action's target) is the
// zero Role, ErrUnknownRole for a role that does not exist, or a
// *ForbiddenError naming the role the action needs. An action missing from
// the table is forbidden to everyone.
func Permit(actor Role, action Action, target Role) error {
	if actor == "" {
		return ErrNotMember
	}
	if actor.rank() == 0 {
		return invalid(ErrUnknownRole, string(actor), "actor role")
	}
	p, ok := permissions[action]
	if !ok {
		return &ForbiddenError{Action: action}
	}
	if !p.outranks {
		if actor.rank() < p.need.rank() {
			return &ForbiddenError{Action: action, Need: p.need}
		}
		return nil
	}
	if target == "" {
		return ErrNotMember
	}
	if target.rank() == 0 {
		return invalid(ErrUnknownRole, string(target), "target role")
	}
	// The least role that both meets the row and outranks the target.
	need := p.need
	if need.rank() <= target.rank() {
		need = roleOfRank(target.rank() + 1)
	}
	if actor.rank() < need.rank() || need == "" {
		return &ForbiddenError{Action: action, Need: need, Target: target}
	}
	return nil
}

func roleOfRank(n int) Role {
	switch n {
	case 1:
		return RoleMember
	case 2:
		return RoleAdmin
	case 3:
		return RoleOwner
	}
	return ""
}
