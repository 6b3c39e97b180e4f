package domain_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parley-im/parley/domain"
)

const groupID = domain.ConversationID("g:team")

// fixture is a group created at seq 1 by olga with adam made admin at seq 2
// and mia a plain member, with records as the app would keep them.
type fixture struct {
	g                    domain.GroupInfo
	olga, adam, mia, out domain.Member
}

func newFixture(t *testing.T, spec domain.GroupSpec) fixture {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "team"
	}
	spec.Members = append(spec.Members, "adam", "mia")
	g, ev, err := domain.NewGroup(groupID, "olga", spec, domain.DefaultGroupMemberCap, 1000)
	if err != nil {
		t.Fatal(err)
	}
	ms := g.NewMembers(ev, 1, 1000)
	f := fixture{g: g, olga: ms[0], adam: ms[1], mia: ms[2], out: domain.Member{User: "otto"}}
	ev, err = g.SetRole(f.olga, f.adam, domain.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(ev, 2)
	return f
}

// apply records ev at seq as the app does.
func (f *fixture) apply(ev domain.SystemEvent, seq uint64) {
	f.g.Apply(ev)
	for _, m := range []*domain.Member{&f.olga, &f.adam, &f.mia} {
		m.Apply(ev, seq)
	}
}

func TestNewGroup(t *testing.T) {
	t.Parallel()
	g, ev, err := domain.NewGroup(groupID, "olga", domain.GroupSpec{
		Name: "  Ops team ", Members: []domain.UserID{"adam", "olga", "mia", "adam"},
		Policy: domain.PolicyApproval, Ext: `{ "avatar": "a.png" }`,
	}, 10, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "Ops team" || g.Owner != "olga" || g.MemberCount != 3 || g.Policy != domain.PolicyApproval ||
		string(g.Ext) != `{"avatar":"a.png"}` || g.HistoryVisible || g.MutedAll || g.Dissolved || g.CreatedMs != 1000 {
		t.Fatalf("group = %+v", g)
	}
	want := domain.SystemEvent{Type: domain.EventGroupCreated, Actor: "olga", Users: []domain.UserID{"adam", "mia"}, Name: "Ops team", Policy: domain.PolicyApproval}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("event = %+v, want %+v", ev, want)
	}
	ms := g.NewMembers(ev, 1, 1000)
	if len(ms) != 3 || ms[0] != domain.NewMember("olga", domain.RoleOwner, 1, false, 1000) ||
		ms[1] != domain.NewMember("adam", domain.RoleMember, 1, false, 1000) || ms[2].User != "mia" {
		t.Fatalf("members = %+v", ms)
	}

	many := make([]domain.UserID, domain.MaxMembersPerCall+1)
	for i := range many {
		many[i] = domain.UserID(fmt.Sprintf("u%d", i))
	}
	cases := []struct {
		name string
		id   domain.ConversationID
		spec domain.GroupSpec
		cap  int
		want error
	}{
		{"direct_id", "d:a~b", domain.GroupSpec{Name: "x"}, 10, domain.ErrInvalidConversationID},
		{"empty_group_key", "g:", domain.GroupSpec{Name: "x"}, 10, domain.ErrInvalidConversationID},
		{"no_name", groupID, domain.GroupSpec{Name: "   "}, 10, domain.ErrInvalidName},
		{"name_too_long", groupID, domain.GroupSpec{Name: strings.Repeat("é", 65)}, 10, domain.ErrInvalidName},
		{"notice_too_long", groupID, domain.GroupSpec{Name: "x", Notice: strings.Repeat("n", domain.MaxNoticeBytes+1)}, 10, domain.ErrInvalidNotice},
		{"ext_not_object", groupID, domain.GroupSpec{Name: "x", Ext: `[1]`}, 10, domain.ErrInvalidExt},
		{"unknown_policy", groupID, domain.GroupSpec{Name: "x", Policy: "closed"}, 10, domain.ErrUnknownJoinPolicy},
		{"bad_member_id", groupID, domain.GroupSpec{Name: "x", Members: []domain.UserID{"a b"}}, 10, domain.ErrInvalidUserID},
		{"over_per_call_limit", groupID, domain.GroupSpec{Name: "x", Members: many}, domain.MaxGroupMemberCap, domain.ErrTooManyMembers},
		{"over_cap", groupID, domain.GroupSpec{Name: "x", Members: []domain.UserID{"a", "b"}}, 2, domain.ErrTooManyMembers},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if _, _, err := domain.NewGroup(c.id, "olga", c.spec, c.cap, 1); !errors.Is(err, c.want) {
				t.Fatalf("NewGroup = %v, want %v", err, c.want)
			}
		})
	}
	var tooMany *domain.TooManyMembersError
	if _, _, err := domain.NewGroup(groupID, "olga", domain.GroupSpec{Name: "x", Members: []domain.UserID{"a", "b"}}, 2, 1); !errors.As(err, &tooMany) || tooMany.Count != 3 || tooMany.Limit != 2 {
		t.Fatalf("over cap: %v does not carry count 3 and limit 2", err)
	}
}

// TestGroupLifecycle follows one group from creation to dissolution and
// checks the records a user's view depends on after each change.
func TestGroupLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.GroupSpec{})
	if f.adam.Role != domain.RoleAdmin || f.g.MemberCount != 3 {
		t.Fatalf("after promotion: adam %+v, count %d", f.adam, f.g.MemberCount)
	}

	// seq 3: mia invites otto, who sees nothing from before.
	ev, err := f.g.Invite(f.mia, []domain.UserID{"otto", "mia"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != domain.EventMemberJoined || ev.Actor != "mia" || !slices.Equal(ev.Users, []domain.UserID{"otto"}) {
		t.Fatalf("invite event = %+v", ev)
	}
	f.apply(ev, 3)
	f.out = f.g.NewMembers(ev, 3, 2000)[0]
	if f.g.MemberCount != 4 || f.out.Role != domain.RoleMember || f.out.JoinedSeq != 3 || f.out.CanRead(2) || !f.out.CanRead(3) {
		t.Fatalf("after invite: count %d, otto %+v", f.g.MemberCount, f.out)
	}

	// seq 4: adam renames; seq 5: adam kicks otto, who keeps seqs 3 to 5.
	ev, err = f.g.Rename(f.adam, "ops")
	if err != nil {
		t.Fatal(err)
	}
	f.apply(ev, 4)
	f.out.Apply(ev, 4)
	ev, err = f.g.Kick(f.adam, f.out)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(ev, 5)
	f.out.Apply(ev, 5)
	if f.g.Name != "ops" || f.g.MemberCount != 3 || f.out.LeftSeq != 5 || !f.out.CanRead(5) || f.out.CanRead(6) {
		t.Fatalf("after kick: group %+v, otto %+v", f.g, f.out)
	}
	if err := f.g.AuthorizeSend(f.out, domain.Draft{}, 0); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("kicked member sends: %v", err)
	}

	// seq 6: olga mutes mia until 5000.
	ev, err = f.g.Mute(f.olga, f.mia, 5000, 3000)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(ev, 6)
	var muted *domain.MutedError
	if err := f.g.AuthorizeSend(f.mia, domain.Draft{}, 4999); !errors.As(err, &muted) || muted.UntilMs != 5000 || !errors.Is(err, domain.ErrMuted) {
		t.Fatalf("muted mia sends: %v", err)
	}
	if err := f.g.AuthorizeSend(f.mia, domain.Draft{}, 5000); err != nil {
		t.Fatalf("mia's mute did not end: %v", err)
	}

	// seq 7: olga hands the group to adam and becomes a member.
	ev, err = f.g.Transfer(f.olga, f.adam)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(ev, 7)
	if f.g.Owner != "adam" || f.adam.Role != domain.RoleOwner || f.olga.Role != domain.RoleMember {
		t.Fatalf("after transfer: owner %s, adam %s, olga %s", f.g.Owner, f.adam.Role, f.olga.Role)
	}
	if _, err := f.g.Leave(f.adam); !errors.Is(err, domain.ErrOwnerCannotLeave) {
		t.Fatalf("owner leaves: %v", err)
	}

	// seq 8: olga leaves; seq 9: adam dissolves.
	ev, err = f.g.Leave(f.olga)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(ev, 8)
	if f.olga.LeftSeq != 8 || f.g.MemberCount != 2 {
		t.Fatalf("after leave: olga %+v, count %d", f.olga, f.g.MemberCount)
	}
	ev, err = f.g.Dissolve(f.adam)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(ev, 9)
	if _, err := f.g.Rename(f.adam, "again"); !errors.Is(err, domain.ErrGroupDissolved) {
		t.Fatalf("rename after dissolve: %v", err)
	}
	if err := f.g.AuthorizeSend(f.mia, domain.Draft{}, 9000); !errors.Is(err, domain.ErrGroupDissolved) {
		t.Fatalf("send after dissolve: %v", err)
	}
	if err := f.mia.AuthorizeSync(0); err != nil || f.mia.Unread(9) != 8 {
		t.Fatalf("mia cannot read the dissolved group's history: %v, unread %d", err, f.mia.Unread(9))
	}
}

func TestGroupJoinPolicy(t *testing.T) {
	t.Parallel()
	otto := domain.Member{User: "otto"}
	for _, c := range []struct {
		policy domain.JoinPolicy
		want   domain.EventType
		err    error
	}{
		{domain.PolicyOpen, domain.EventMemberJoined, nil},
		{domain.PolicyApproval, domain.EventJoinRequested, nil},
		{domain.PolicyInviteOnly, "", domain.ErrInviteOnly},
	} {
		t.Run(string(c.policy), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, domain.GroupSpec{Policy: c.policy})
			ev, err := f.g.Join(otto, "hello", 10)
			if !errors.Is(err, c.err) || ev.Type != c.want {
				t.Fatalf("Join = %+v, %v; want %s, %v", ev, err, c.want, c.err)
			}
			if c.want == domain.EventJoinRequested && (ev.Note != "hello" || ev.Actor != "otto" || ev.Type.Stored()) {
				t.Fatalf("join request %+v", ev)
			}
			if _, err := f.g.Join(f.mia, "", 10); !errors.Is(err, domain.ErrAlreadyMember) {
				t.Fatalf("member joins again: %v", err)
			}
		})
	}

	f := newFixture(t, domain.GroupSpec{Policy: domain.PolicyApproval})
	if _, err := f.g.Approve(f.mia, otto, 10); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("member approves: %v", err)
	}
	if _, err := f.g.Approve(f.adam, otto, 3); !errors.Is(err, domain.ErrTooManyMembers) {
		t.Fatalf("approve over cap: %v", err)
	}
	ev, err := f.g.Approve(f.adam, otto, 10)
	if err != nil || ev.Type != domain.EventMemberJoined || ev.Actor != "adam" || !slices.Equal(ev.Users, []domain.UserID{"otto"}) || !ev.Type.Stored() {
		t.Fatalf("Approve = %+v, %v", ev, err)
	}
	ev, err = f.g.Reject(f.adam, "otto")
	if err != nil || ev.Type != domain.EventJoinRejected || ev.Type.Stored() {
		t.Fatalf("Reject = %+v, %v", ev, err)
	}
	if _, err := f.g.Join(otto, strings.Repeat("n", domain.MaxJoinNoteBytes+1), 10); !errors.Is(err, domain.ErrInvalidNotice) {
		t.Fatalf("long join note: %v", err)
	}
	f.g.Policy = domain.PolicyOpen
	if _, err := f.g.Join(otto, "", 3); !errors.Is(err, domain.ErrTooManyMembers) {
		t.Fatalf("open join over cap: %v", err)
	}
}

func TestGroupAuthorizeSend(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.GroupSpec{})
	mutedAll := f.g
	mutedAll.MutedAll = true
	muted := f.mia
	muted.MutedUntilMs = 2000
	left := f.mia
	left.LeftSeq = 3
	cases := []struct {
		name string
		g    domain.GroupInfo
		m    domain.Member
		d    domain.Draft
		now  int64
		want error
	}{
		{"member", f.g, f.mia, domain.Draft{}, 1999, nil},
		{"muted_member", f.g, muted, domain.Draft{}, 1999, domain.ErrMuted},
		{"mute_over", f.g, muted, domain.Draft{}, 2000, nil},
		{"member_when_all_muted", mutedAll, f.mia, domain.Draft{}, 1999, domain.ErrMuted},
		{"admin_when_all_muted", mutedAll, f.adam, domain.Draft{}, 1999, nil},
		{"owner_when_all_muted", mutedAll, f.olga, domain.Draft{}, 1999, nil},
		{"left_member", f.g, left, domain.Draft{}, 1999, domain.ErrNotMember},
		{"outsider", f.g, f.out, domain.Draft{}, 1999, domain.ErrNotMember},
		{"member_mentions_all", f.g, f.mia, domain.Draft{MentionAll: true}, 1999, domain.ErrForbidden},
		{"admin_mentions_all", f.g, f.adam, domain.Draft{MentionAll: true}, 1999, nil},
		{"reply_to_visible", f.g, f.mia, domain.Draft{ReplyTo: 1}, 1999, nil},
		{"reply_before_join", f.g, domain.Member{User: "late", Role: domain.RoleMember, JoinedSeq: 5}, domain.Draft{ReplyTo: 4}, 1999, domain.ErrInvalidReply},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := c.g.AuthorizeSend(c.m, c.d, c.now)
			if c.want == nil && err != nil || !errors.Is(err, c.want) {
				t.Fatalf("AuthorizeSend = %v, want %v", err, c.want)
			}
		})
	}
	var me *domain.MutedError
	if err := mutedAll.AuthorizeSend(f.mia, domain.Draft{}, 1); !errors.As(err, &me) || !me.All || me.UntilMs != 0 {
		t.Fatalf("group mute error %v does not say it is the whole group", err)
	}
	var fe *domain.ForbiddenError
	if err := f.g.AuthorizeSend(f.mia, domain.Draft{MentionAll: true}, 1); !errors.As(err, &fe) || fe.Need != domain.RoleAdmin {
		t.Fatalf("@all by a member: %v does not name the admin role", err)
	}
}

func TestGroupRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.GroupSpec{})
	left := f.mia
	left.LeftSeq = 3
	many := make([]domain.UserID, domain.MaxMembersPerCall+1)
	for i := range many {
		many[i] = domain.UserID(fmt.Sprintf("u%d", i))
	}
	cases := []struct {
		name string
		op   func(g domain.GroupInfo) (domain.SystemEvent, error)
		want error
	}{
		{"member_renames", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Rename(f.mia, "x") }, domain.ErrForbidden},
		{"bad_name", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Rename(f.adam, "a\nb") }, domain.ErrInvalidName},
		{"member_sets_notice", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.SetNotice(f.mia, "x") }, domain.ErrForbidden},
		{"bad_notice", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.SetNotice(f.adam, "\x00") }, domain.ErrInvalidNotice},
		{"bad_ext", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.SetExt(f.adam, "{") }, domain.ErrInvalidExt},
		{"admin_kicks_admin", func(g domain.GroupInfo) (domain.SystemEvent, error) {
			return g.Kick(f.adam, domain.Member{User: "ada", Role: domain.RoleAdmin, JoinedSeq: 1})
		}, domain.ErrForbidden},
		{"admin_kicks_owner", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Kick(f.adam, f.olga) }, domain.ErrForbidden},
		{"kick_a_member_who_left", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Kick(f.olga, left) }, domain.ErrNotMember},
		{"left_member_invites", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Invite(left, []domain.UserID{"z"}, 10) }, domain.ErrNotMember},
		{"invite_nobody_new", func(g domain.GroupInfo) (domain.SystemEvent, error) {
			return g.Invite(f.mia, []domain.UserID{"mia"}, 10)
		}, domain.ErrNoChange},
		{"invite_over_per_call", func(g domain.GroupInfo) (domain.SystemEvent, error) {
			return g.Invite(f.mia, many, domain.MaxGroupMemberCap)
		}, domain.ErrTooManyMembers},
		{"invite_over_cap", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Invite(f.mia, []domain.UserID{"z"}, 3) }, domain.ErrTooManyMembers},
		{"invite_bad_id", func(g domain.GroupInfo) (domain.SystemEvent, error) {
			return g.Invite(f.mia, []domain.UserID{"a:b"}, 10)
		}, domain.ErrInvalidUserID},
		{"make_owner_by_role", func(g domain.GroupInfo) (domain.SystemEvent, error) {
			return g.SetRole(f.olga, f.mia, domain.RoleOwner)
		}, domain.ErrUnknownRole},
		{"admin_promotes", func(g domain.GroupInfo) (domain.SystemEvent, error) {
			return g.SetRole(f.adam, f.mia, domain.RoleAdmin)
		}, domain.ErrForbidden},
		{"role_unchanged", func(g domain.GroupInfo) (domain.SystemEvent, error) {
			return g.SetRole(f.olga, f.adam, domain.RoleAdmin)
		}, domain.ErrNoChange},
		{"mute_in_the_past", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Mute(f.adam, f.mia, 100, 100) }, domain.ErrInvalidMuteTime},
		{"member_mutes", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Mute(f.mia, f.adam, 200, 100) }, domain.ErrForbidden},
		{"member_unmutes", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Unmute(f.mia, f.mia) }, domain.ErrForbidden},
		{"unmute_all_when_not_muted", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.MuteAll(f.adam, false) }, domain.ErrNoChange},
		{"member_mutes_all", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.MuteAll(f.mia, true) }, domain.ErrForbidden},
		{"same_policy", func(g domain.GroupInfo) (domain.SystemEvent, error) {
			return g.SetPolicy(f.adam, domain.PolicyInviteOnly)
		}, domain.ErrNoChange},
		{"no_policy", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.SetPolicy(f.adam, "") }, domain.ErrUnknownJoinPolicy},
		{"member_sets_policy", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.SetPolicy(f.mia, domain.PolicyOpen) }, domain.ErrForbidden},
		{"history_already_closed", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.SetHistoryVisible(f.adam, false) }, domain.ErrNoChange},
		{"admin_transfers", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Transfer(f.adam, f.mia) }, domain.ErrForbidden},
		{"transfer_to_outsider", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Transfer(f.olga, f.out) }, domain.ErrNotMember},
		{"admin_dissolves", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Dissolve(f.adam) }, domain.ErrForbidden},
		{"member_rejects", func(g domain.GroupInfo) (domain.SystemEvent, error) { return g.Reject(f.mia, "otto") }, domain.ErrForbidden},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ev, err := c.op(f.g)
			if !errors.Is(err, c.want) || ev.Type != "" {
				t.Fatalf("got %+v, %v; want %v", ev, err, c.want)
			}
		})
	}
}

// TestGroupSettingsEvents checks the events of settings changes and what
// they do to the group record.
func TestGroupSettingsEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t, domain.GroupSpec{})
	steps := []struct {
		name  string
		op    func() (domain.SystemEvent, error)
		check func(g domain.GroupInfo) bool
	}{
		{"notice", func() (domain.SystemEvent, error) { return f.g.SetNotice(f.adam, "line 1\nline 2") }, func(g domain.GroupInfo) bool { return g.Notice == "line 1\nline 2" }},
		{"ext", func() (domain.SystemEvent, error) { return f.g.SetExt(f.adam, `{"a": 1}`) }, func(g domain.GroupInfo) bool { return string(g.Ext) == `{"a":1}` }},
		{"ext_cleared", func() (domain.SystemEvent, error) { return f.g.SetExt(f.adam, "") }, func(g domain.GroupInfo) bool { return g.Ext == nil }},
		{"policy", func() (domain.SystemEvent, error) { return f.g.SetPolicy(f.adam, domain.PolicyOpen) }, func(g domain.GroupInfo) bool { return g.Policy == domain.PolicyOpen }},
		{"history_opened", func() (domain.SystemEvent, error) { return f.g.SetHistoryVisible(f.adam, true) }, func(g domain.GroupInfo) bool { return g.HistoryVisible }},
		{"muted_all", func() (domain.SystemEvent, error) { return f.g.MuteAll(f.adam, true) }, func(g domain.GroupInfo) bool { return g.MutedAll }},
		{"unmuted_all", func() (domain.SystemEvent, error) { return f.g.MuteAll(f.olga, false) }, func(g domain.GroupInfo) bool { return !g.MutedAll }},
	}
	// Sequential: each step builds on the group the previous one left.
	for i, s := range steps {
		ev, err := s.op()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		f.apply(ev, uint64(3+i))
		if !s.check(f.g) {
			t.Fatalf("%s: group after %+v is %+v", s.name, ev, f.g)
		}
	}
	// History opened before the join: the new member reads from seq 1 but
	// nothing from before the join counts as unread.
	ev, err := f.g.Invite(f.mia, []domain.UserID{"late"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	late := f.g.NewMembers(ev, 20, 1)[0]
	if from, to := late.VisibleRange(25); from != 1 || to != 25 || late.Unread(25) != 5 {
		t.Fatalf("late member sees [%d, %d], unread %d", from, to, late.Unread(25))
	}
}

func TestProfileParsers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		parse func(string) (string, error)
		in    string
		out   string
		want  error
	}{
		{"name_trimmed", domain.ParseGroupName, "  a b  ", "a b", nil},
		{"name_64_runes", domain.ParseGroupName, strings.Repeat("é", 64), strings.Repeat("é", 64), nil},
		{"name_65_runes", domain.ParseGroupName, strings.Repeat("é", 65), "", domain.ErrInvalidName},
		{"name_empty", domain.ParseGroupName, "", "", domain.ErrInvalidName},
		{"name_tab", domain.ParseGroupName, "a\tb", "", domain.ErrInvalidName},
		{"name_not_utf8", domain.ParseGroupName, "\xff", "", domain.ErrInvalidName},
		{"notice_at_limit", domain.ParseNotice, strings.Repeat("n", domain.MaxNoticeBytes), strings.Repeat("n", domain.MaxNoticeBytes), nil},
		{"notice_over_limit", domain.ParseNotice, strings.Repeat("n", domain.MaxNoticeBytes+1), "", domain.ErrInvalidNotice},
		{"notice_empty_clears", domain.ParseNotice, "", "", nil},
		{"notice_lines", domain.ParseNotice, "a\r\n\tb", "a\r\n\tb", nil},
		{"notice_escape", domain.ParseNotice, "a\x1bb", "", domain.ErrInvalidNotice},
		{"notice_not_utf8", domain.ParseNotice, "\xc3", "", domain.ErrInvalidNotice},
		{"ext_compacted", parseExt, ` { "k" : [1, 2] } `, `{"k":[1,2]}`, nil},
		{"ext_empty_clears", parseExt, "", "", nil},
		{"ext_array", parseExt, "[]", "", domain.ErrInvalidExt},
		{"ext_null", parseExt, "null", "", domain.ErrInvalidExt},
		{"ext_number", parseExt, "1", "", domain.ErrInvalidExt},
		{"ext_trailing", parseExt, "{}{}", "", domain.ErrInvalidExt},
		{"ext_over_limit", parseExt, `{"k":"` + strings.Repeat("x", domain.MaxExtBytes) + `"}`, "", domain.ErrInvalidExt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out, err := c.parse(c.in)
			if c.want == nil && err != nil || !errors.Is(err, c.want) || out != c.out {
				t.Fatalf("parse(%q) = %q, %v; want %q, %v", c.in, out, err, c.out, c.want)
			}
		})
	}
}

func parseExt(s string) (string, error) {
	raw, err := domain.ParseExt(s)
	return string(raw), err
}

func TestClampMemberCap(t *testing.T) {
	t.Parallel()
	for in, want := range map[int]int{
		0: domain.DefaultGroupMemberCap, -1: domain.DefaultGroupMemberCap, 1: domain.MinGroupMemberCap,
		500: 500, domain.MaxGroupMemberCap + 1: domain.MaxGroupMemberCap,
	} {
		if got := domain.ClampMemberCap(in); got != want {
			t.Errorf("ClampMemberCap(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestParseJoinPolicy(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]domain.JoinPolicy{"": domain.PolicyInviteOnly, "open": domain.PolicyOpen, "approval": domain.PolicyApproval, "invite_only": domain.PolicyInviteOnly} {
		if got, err := domain.ParseJoinPolicy(in); err != nil || got != want {
			t.Errorf("ParseJoinPolicy(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := domain.ParseJoinPolicy("Open"); !errors.Is(err, domain.ErrUnknownJoinPolicy) {
		t.Errorf("ParseJoinPolicy(Open) = %v", err)
	}
}
