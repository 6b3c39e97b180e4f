package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of groups. The member cap is a live setting: these are its default
// and range.
const (
	// MaxGroupNameRunes bounds a group name, counted in characters.
	MaxGroupNameRunes = 64
	// MaxNoticeBytes bounds a group notice.
	MaxNoticeBytes = 2 << 10
	// MaxExtBytes bounds a group's free-form ext JSON object.
	MaxExtBytes = 4 << 10
	// MaxJoinNoteBytes bounds the message of a join request.
	MaxJoinNoteBytes = 256
	// MaxMembersPerCall bounds the users added by one create or invite.
	MaxMembersPerCall = 500
	// DefaultGroupMemberCap is the member cap when configuration sets none.
	DefaultGroupMemberCap = 10_000
	// MinGroupMemberCap and MaxGroupMemberCap bound the configured cap.
	MinGroupMemberCap = 2
	MaxGroupMemberCap = 100_000
)

// ClampMemberCap returns the member cap to enforce for a configured value n:
// the default for 0 or less, otherwise n within [MinGroupMemberCap,
// MaxGroupMemberCap].
func ClampMemberCap(n int) int {
	if n <= 0 {
		return DefaultGroupMemberCap
	}
	return min(max(n, MinGroupMemberCap), MaxGroupMemberCap)
}

// ErrNoChange means the request would change nothing, so no event is written.
var ErrNoChange = errors.New("nothing to change")

// JoinPolicy says how users who are not members get in.
type JoinPolicy string

const (
	// PolicyOpen: anyone joins at once.
	PolicyOpen JoinPolicy = "open"
	// PolicyApproval: a user asks, and an admin approves or rejects.
	PolicyApproval JoinPolicy = "approval"
	// PolicyInviteOnly: only an invitation by a member lets a user in.
	PolicyInviteOnly JoinPolicy = "invite_only"
)

// ParseJoinPolicy accepts "open", "approval" and "invite_only"; "" means
// invite_only, so a group is closed unless its creator opens it.
func ParseJoinPolicy(s string) (JoinPolicy, error) {
	switch p := JoinPolicy(s); p {
	case "":
		return PolicyInviteOnly, nil
	case PolicyOpen, PolicyApproval, PolicyInviteOnly:
		return p, nil
	}
	return "", invalid(ErrUnknownJoinPolicy, s, `use "open", "approval" or "invite_only"`)
}

// ParseGroupName trims surrounding white space from s and accepts 1 to
// MaxGroupNameRunes characters of UTF-8 without control characters.
func ParseGroupName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", invalid(ErrInvalidName, s, "not UTF-8")
	}
	s = strings.TrimSpace(s)
	if n := utf8.RuneCountInString(s); n == 0 || n > MaxGroupNameRunes {
		return "", invalid(ErrInvalidName, s, fmt.Sprintf("must be 1 to %d characters", MaxGroupNameRunes))
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "", invalid(ErrInvalidName, s, "has control characters")
	}
	return s, nil
}

// ParseNotice accepts up to MaxNoticeBytes of UTF-8 in which the only
// control characters are line breaks and tabs. "" clears the notice.
func ParseNotice(s string) (string, error) {
	if len(s) > MaxNoticeBytes {
		return "", invalid(ErrInvalidNotice, s, fmt.Sprintf("longer than %d bytes", MaxNoticeBytes))
	}
	if !utf8.ValidString(s) {
		return "", invalid(ErrInvalidNotice, s, "not UTF-8")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }) {
		return "", invalid(ErrInvalidNotice, s, "has control characters")
	}
	return s, nil
}

// ParseExt accepts a JSON object of at most MaxExtBytes, the group's
// free-form data (an avatar URL, business tags), and returns it compacted.
// "" clears it and returns nil.
func ParseExt(s string) (json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxExtBytes {
		return nil, invalid(ErrInvalidExt, s, fmt.Sprintf("longer than %d bytes", MaxExtBytes))
	}
	// Decoding into a map both validates and insists on an object.
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
		return nil, invalid(ErrInvalidExt, s, "must be a JSON object")
	}
	var out bytes.Buffer
	out.Grow(len(s))
	if err := json.Compact(&out, []byte(s)); err != nil {
		return nil, invalid(ErrInvalidExt, s, err.Error())
	}
	return out.Bytes(), nil
}

// ParseJoinNote accepts the message of a join request: up to
// MaxJoinNoteBytes of UTF-8, with the same characters as a notice.
func ParseJoinNote(s string) (string, error) {
	if len(s) > MaxJoinNoteBytes {
		return "", invalid(ErrInvalidNotice, s, fmt.Sprintf("a join request note is at most %d bytes", MaxJoinNoteBytes))
	}
	return ParseNotice(s)
}

// parseNewMembers validates, de-duplicates and bounds a list of users to
// add, dropping except (the actor, who is a member already).
func parseNewMembers(users []UserID, except UserID) ([]UserID, error) {
	if len(users) > MaxMembersPerCall {
		return nil, &TooManyMembersError{Count: len(users), Limit: MaxMembersPerCall}
	}
	out := make([]UserID, 0, len(users))
	for _, u := range users {
		if _, err := ParseUserID(string(u)); err != nil {
			return nil, err
		}
		if u != except && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// GroupInfo is a group conversation's record: its profile, settings and member
// count. Members are records of their own (Member), since a group may have
// up to MaxGroupMemberCap of them. The zero value is not a group; use
// NewGroup. A GroupInfo is a value: not safe for concurrent mutation.
//
// Changing a group takes two steps, so the app can give the change its seq
// in between: a method such as Kick checks the rules and returns the
// SystemEvent; once the event is stored at its seq, GroupInfo.Apply,
// Member.Apply and GroupInfo.NewMembers update the records.
type GroupInfo struct {
	ID     ConversationID  `json:"id"`
	Name   string          `json:"name"`
	Notice string          `json:"notice,omitempty"`
	Ext    json.RawMessage `json:"ext,omitempty"`
	Owner  UserID          `json:"owner"`
	Policy JoinPolicy      `json:"policy"`
	// HistoryVisible lets members who join see the history from before.
	// It is off by default.
	HistoryVisible bool `json:"history,omitempty"`
	// MutedAll lets only the owner and admins send.
	MutedAll bool `json:"muted_all,omitempty"`
	// Dissolved groups take no messages or changes; their history stays
	// readable to those who could read it.
	Dissolved bool `json:"dissolved,omitempty"`
	// MemberCount counts current members, the owner included.
	MemberCount int `json:"count"`
	// CreatedMs is the creation time in Unix milliseconds.
	CreatedMs int64 `json:"created"`
}

// GroupSpec is what a creator chooses for a new group. Name is required;
// zero values elsewhere mean no notice, no ext, invite_only, history hidden.
type GroupSpec struct {
	Name           string
	Notice         string
	Ext            string
	Policy         JoinPolicy
	HistoryVisible bool
	// Members are the first members besides the owner, at most
	// MaxMembersPerCall. Duplicates and the owner are dropped.
	Members []UserID
}

// NewGroup checks spec and returns the group with id, made by owner, and
// its EventGroupCreated. memberCap is the live cap (see ClampMemberCap).
// Store the event at the group's first seq and give its members records
// with NewMembers.
func NewGroup(id ConversationID, owner UserID, spec GroupSpec, memberCap int, nowMs int64) (GroupInfo, SystemEvent, error) {
	if _, _, err := ParseConversationID(string(id)); err != nil || id.Kind() != Group {
		return GroupInfo{}, SystemEvent{}, invalid(ErrInvalidConversationID, string(id), "not a group id")
	}
	if _, err := ParseUserID(string(owner)); err != nil {
		return GroupInfo{}, SystemEvent{}, err
	}
	name, err := ParseGroupName(spec.Name)
	if err != nil {
		return GroupInfo{}, SystemEvent{}, err
	}
	notice, err := ParseNotice(spec.Notice)
	if err != nil {
		return GroupInfo{}, SystemEvent{}, err
	}
	ext, err := ParseExt(spec.Ext)
	if err != nil {
		return GroupInfo{}, SystemEvent{}, err
	}
	policy, err := ParseJoinPolicy(string(spec.Policy))
	if err != nil {
		return GroupInfo{}, SystemEvent{}, err
	}
	members, err := parseNewMembers(spec.Members, owner)
	if err != nil {
		return GroupInfo{}, SystemEvent{}, err
	}
	if n := 1 + len(members); n > memberCap {
		return GroupInfo{}, SystemEvent{}, &TooManyMembersError{Count: n, Limit: memberCap}
	}
	g := GroupInfo{
		ID: id, Name: name, Notice: notice, Ext: ext, Owner: owner, Policy: policy,
		HistoryVisible: spec.HistoryVisible, MemberCount: 1 + len(members), CreatedMs: nowMs,
	}
	return g, SystemEvent{Type: EventGroupCreated, Actor: owner, Users: members, Name: name, Policy: policy}, nil
}

// may checks that the group takes changes and that actor may do action to
// target (the zero Member for untargeted actions).
func (g GroupInfo) may(actor Member, action Action, target Member) error {
	if g.Dissolved {
		return ErrGroupDissolved
	}
	return Permit(actor.CurrentRole(), action, target.CurrentRole())
}

// admit checks that n more members fit under memberCap.
func (g GroupInfo) admit(n, memberCap int) error {
	if g.MemberCount+n > memberCap {
		return &TooManyMembersError{Count: g.MemberCount + n, Limit: memberCap}
	}
	return nil
}

// Invite adds users, who must not be current members: the caller drops
// those it finds records for. Any member may invite, whatever the policy.
func (g GroupInfo) Invite(actor Member, users []UserID, memberCap int) (SystemEvent, error) {
	if err := g.may(actor, ActionInvite, Member{}); err != nil {
		return SystemEvent{}, err
	}
	added, err := parseNewMembers(users, actor.User)
	if err != nil {
		return SystemEvent{}, err
	}
	if len(added) == 0 {
		return SystemEvent{}, ErrNoChange
	}
	if err := g.admit(len(added), memberCap); err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventMemberJoined, Actor: actor.User, Users: added}, nil
}

// Join is a user's own request to join. rec is their record if they have
// one (a past membership) and Member{User: u} otherwise. An open group lets
// them in (EventMemberJoined); an approval group records the request
// (EventJoinRequested, not stored in the stream) for an admin to Approve or
// Reject; an invite-only group refuses with ErrInviteOnly.
func (g GroupInfo) Join(rec Member, note string, memberCap int) (SystemEvent, error) {
	if g.Dissolved {
		return SystemEvent{}, ErrGroupDissolved
	}
	if _, err := ParseUserID(string(rec.User)); err != nil {
		return SystemEvent{}, err
	}
	if rec.Current() {
		return SystemEvent{}, ErrAlreadyMember
	}
	switch g.Policy {
	case PolicyOpen:
		if err := g.admit(1, memberCap); err != nil {
			return SystemEvent{}, err
		}
		return SystemEvent{Type: EventMemberJoined, Actor: rec.User, Users: []UserID{rec.User}}, nil
	case PolicyApproval:
		note, err := ParseJoinNote(note)
		if err != nil {
			return SystemEvent{}, err
		}
		return SystemEvent{Type: EventJoinRequested, Actor: rec.User, Note: note}, nil
	}
	return SystemEvent{}, ErrInviteOnly
}

// Approve lets in the user who asked to join; rec is their record as in
// Join. The result is the EventMemberJoined that records them.
func (g GroupInfo) Approve(actor, rec Member, memberCap int) (SystemEvent, error) {
	if err := g.may(actor, ActionApprove, Member{}); err != nil {
		return SystemEvent{}, err
	}
	if rec.Current() {
		return SystemEvent{}, ErrAlreadyMember
	}
	if _, err := ParseUserID(string(rec.User)); err != nil {
		return SystemEvent{}, err
	}
	if err := g.admit(1, memberCap); err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventMemberJoined, Actor: actor.User, Users: []UserID{rec.User}}, nil
}

// Reject refuses the request of user; the event goes to them, not to the
// stream.
func (g GroupInfo) Reject(actor Member, user UserID) (SystemEvent, error) {
	if err := g.may(actor, ActionApprove, Member{}); err != nil {
		return SystemEvent{}, err
	}
	if _, err := ParseUserID(string(user)); err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventJoinRejected, Actor: actor.User, Users: []UserID{user}}, nil
}

// Leave takes m out of the group. The owner cannot leave: they transfer
// ownership or dissolve the group.
func (g GroupInfo) Leave(m Member) (SystemEvent, error) {
	if err := g.may(m, ActionLeave, Member{}); err != nil {
		return SystemEvent{}, err
	}
	if m.Role == RoleOwner {
		return SystemEvent{}, ErrOwnerCannotLeave
	}
	return SystemEvent{Type: EventMemberLeft, Actor: m.User}, nil
}

// Kick removes target, whom actor must outrank.
func (g GroupInfo) Kick(actor, target Member) (SystemEvent, error) {
	if err := g.may(actor, ActionKick, target); err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventMemberKicked, Actor: actor.User, Users: []UserID{target.User}}, nil
}

// SetRole makes target an admin or a member. The owner role moves only by
// Transfer.
func (g GroupInfo) SetRole(actor, target Member, role Role) (SystemEvent, error) {
	if role != RoleAdmin && role != RoleMember {
		return SystemEvent{}, invalid(ErrUnknownRole, string(role), `set "admin" or "member"; ownership moves by transfer`)
	}
	if err := g.may(actor, ActionSetRole, target); err != nil {
		return SystemEvent{}, err
	}
	if target.Role == role {
		return SystemEvent{}, ErrNoChange
	}
	return SystemEvent{Type: EventRoleChanged, Actor: actor.User, Users: []UserID{target.User}, Role: role}, nil
}

// Mute silences target until untilMs, which must be after nowMs.
func (g GroupInfo) Mute(actor, target Member, untilMs, nowMs int64) (SystemEvent, error) {
	if err := g.may(actor, ActionMute, target); err != nil {
		return SystemEvent{}, err
	}
	if untilMs <= nowMs {
		return SystemEvent{}, ErrInvalidMuteTime
	}
	return SystemEvent{Type: EventMemberMuted, Actor: actor.User, Users: []UserID{target.User}, UntilMs: untilMs}, nil
}

// Unmute lifts target's mute.
func (g GroupInfo) Unmute(actor, target Member) (SystemEvent, error) {
	if err := g.may(actor, ActionMute, target); err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventMemberUnmuted, Actor: actor.User, Users: []UserID{target.User}}, nil
}

// MuteAll mutes (on) or unmutes the group for everyone but the owner and
// admins.
func (g GroupInfo) MuteAll(actor Member, on bool) (SystemEvent, error) {
	if err := g.may(actor, ActionMuteAll, Member{}); err != nil {
		return SystemEvent{}, err
	}
	if g.MutedAll == on {
		return SystemEvent{}, ErrNoChange
	}
	t := EventGroupUnmuted
	if on {
		t = EventGroupMuted
	}
	return SystemEvent{Type: t, Actor: actor.User}, nil
}

// Rename sets the group's name (see ParseGroupName).
func (g GroupInfo) Rename(actor Member, name string) (SystemEvent, error) {
	if err := g.may(actor, ActionRename, Member{}); err != nil {
		return SystemEvent{}, err
	}
	name, err := ParseGroupName(name)
	if err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventRenamed, Actor: actor.User, Name: name}, nil
}

// SetNotice sets the group's notice (see ParseNotice); "" clears it.
func (g GroupInfo) SetNotice(actor Member, notice string) (SystemEvent, error) {
	if err := g.may(actor, ActionNotice, Member{}); err != nil {
		return SystemEvent{}, err
	}
	notice, err := ParseNotice(notice)
	if err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventNoticeChanged, Actor: actor.User, Notice: notice}, nil
}

// SetExt sets the group's free-form JSON object (see ParseExt); "" clears it.
func (g GroupInfo) SetExt(actor Member, ext string) (SystemEvent, error) {
	if err := g.may(actor, ActionExt, Member{}); err != nil {
		return SystemEvent{}, err
	}
	raw, err := ParseExt(ext)
	if err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventExtChanged, Actor: actor.User, Ext: raw}, nil
}

// SetPolicy sets the join policy. It does not touch pending requests: the
// app drops them when the policy leaves PolicyApproval.
func (g GroupInfo) SetPolicy(actor Member, policy JoinPolicy) (SystemEvent, error) {
	if err := g.may(actor, ActionSettings, Member{}); err != nil {
		return SystemEvent{}, err
	}
	if policy == "" {
		return SystemEvent{}, invalid(ErrUnknownJoinPolicy, "", "no policy")
	}
	policy, err := ParseJoinPolicy(string(policy))
	if err != nil {
		return SystemEvent{}, err
	}
	if policy == g.Policy {
		return SystemEvent{}, ErrNoChange
	}
	return SystemEvent{Type: EventPolicyChanged, Actor: actor.User, Policy: policy}, nil
}

// SetHistoryVisible opens (on) or closes the history from before their
// join to members who join from now on.
func (g GroupInfo) SetHistoryVisible(actor Member, on bool) (SystemEvent, error) {
	if err := g.may(actor, ActionSettings, Member{}); err != nil {
		return SystemEvent{}, err
	}
	if g.HistoryVisible == on {
		return SystemEvent{}, ErrNoChange
	}
	t := EventHistoryClosed
	if on {
		t = EventHistoryOpened
	}
	return SystemEvent{Type: t, Actor: actor.User}, nil
}

// Transfer hands the group from its owner, actor, to target, a current
// member; the old owner becomes a member.
func (g GroupInfo) Transfer(actor, target Member) (SystemEvent, error) {
	if err := g.may(actor, ActionTransfer, target); err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventOwnerChanged, Actor: actor.User, Users: []UserID{target.User}}, nil
}

// Dissolve ends the group. Its history stays readable; nothing more is
// written to it.
func (g GroupInfo) Dissolve(actor Member) (SystemEvent, error) {
	if err := g.may(actor, ActionDissolve, Member{}); err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventDissolved, Actor: actor.User}, nil
}

// AuthorizeSend checks that m may send d now: the group is not dissolved,
// m is a current member, neither m nor (for plain members) the whole group
// is muted, only the owner and admins mention everyone, and a reply names a
// message m can read. d itself is checked by Draft.Validate and
// Draft.ValidateReply.
func (g GroupInfo) AuthorizeSend(m Member, d Draft, nowMs int64) error {
	if err := g.may(m, ActionSend, Member{}); err != nil {
		return err
	}
	if m.Muted(nowMs) {
		return &MutedError{UntilMs: m.MutedUntilMs}
	}
	if g.MutedAll && m.Role.rank() < RoleAdmin.rank() {
		return &MutedError{All: true}
	}
	if d.MentionAll {
		if err := Permit(m.Role, ActionMentionAll, ""); err != nil {
			return err
		}
	}
	if d.ReplyTo != 0 && !m.CanRead(d.ReplyTo) {
		return invalid(ErrInvalidReply, strconv.FormatUint(d.ReplyTo, 10), "not visible to the sender")
	}
	return nil
}

// Apply updates the group record for the event e, once e is stored.
func (g *GroupInfo) Apply(e SystemEvent) {
	switch e.Type {
	case EventMemberJoined:
		g.MemberCount += len(e.Users)
	case EventMemberLeft:
		g.MemberCount--
	case EventMemberKicked:
		g.MemberCount -= len(e.Users)
	case EventGroupMuted:
		g.MutedAll = true
	case EventGroupUnmuted:
		g.MutedAll = false
	case EventRenamed:
		g.Name = e.Name
	case EventNoticeChanged:
		g.Notice = e.Notice
	case EventExtChanged:
		g.Ext = e.Ext
	case EventPolicyChanged:
		g.Policy = e.Policy
	case EventHistoryOpened:
		g.HistoryVisible = true
	case EventHistoryClosed:
		g.HistoryVisible = false
	case EventOwnerChanged:
		if len(e.Users) == 1 {
			g.Owner = e.Users[0]
		}
	case EventDissolved:
		g.Dissolved = true
	}
}

// NewMembers returns the records of the users that e, stored at seq, makes
// members: the owner and first members of EventGroupCreated, the users of
// EventMemberJoined. A record replaces any older one of the same user, so a
// member who comes back starts a new window.
func (g GroupInfo) NewMembers(e SystemEvent, seq uint64, nowMs int64) []Member {
	switch e.Type {
	case EventGroupCreated:
		out := make([]Member, 0, 1+len(e.Users))
		out = append(out, NewMember(e.Actor, RoleOwner, seq, g.HistoryVisible, nowMs))
		for _, u := range e.Users {
			out = append(out, NewMember(u, RoleMember, seq, g.HistoryVisible, nowMs))
		}
		return out
	case EventMemberJoined:
		out := make([]Member, 0, len(e.Users))
		for _, u := range e.Users {
			out = append(out, NewMember(u, RoleMember, seq, g.HistoryVisible, nowMs))
		}
		return out
	}
	return nil
}
