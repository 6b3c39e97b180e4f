package store

import (
	"context"
	"slices"
	"testing"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

// TestApplyGroupEventAgain: an event applied twice (a retry after a call
// that failed part way) counts its members once, and an event applied
// again after later events leaves what those made: a role given since, a
// leave since, a join since.
func TestApplyGroupEventAgain(t *testing.T) {
	ctx := context.Background()
	s := New(memory.NewStateStore())
	conv := domain.NewGroupID([16]byte{1})
	g := domain.GroupInfo{ID: conv, Name: "g", Owner: "alice", Policy: domain.PolicyOpen}
	if err := s.CreateGroup(ctx, g, []domain.Member{
		domain.NewMember("alice", domain.RoleOwner, 1, false, 0),
		domain.NewMember("bob", domain.RoleMember, 1, false, 0),
	}); err != nil {
		t.Fatal(err)
	}
	apply := func(e domain.SystemEvent, seq uint64) {
		t.Helper()
		if err := s.ApplyGroupEvent(ctx, conv, e, seq, 0); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, count int, members ...domain.UserID) {
		t.Helper()
		info, _, ok, err := s.Group(ctx, conv, "")
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		list, err := s.GroupMembers(ctx, conv)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(list)
		if info.MemberCount != count || !slices.Equal(list, members) {
			t.Fatalf("%s: count %d, members %v; want %d, %v", what, info.MemberCount, list, count, members)
		}
	}
	member := func(u domain.UserID) domain.Member {
		t.Helper()
		recs, err := s.MemberRecords(ctx, conv, []domain.UserID{u})
		if err != nil {
			t.Fatal(err)
		}
		return recs[0]
	}

	join := domain.SystemEvent{Type: domain.EventMemberJoined, Actor: "alice", Users: []domain.UserID{"carol"}}
	apply(join, 2)
	apply(join, 2)
	check("carol's join applied twice", 3, "alice", "bob", "carol")

	apply(domain.SystemEvent{Type: domain.EventRoleChanged, Actor: "alice", Users: []domain.UserID{"carol"}, Role: domain.RoleAdmin}, 3)
	apply(join, 2)
	if m := member("carol"); m.Role != domain.RoleAdmin || m.JoinedSeq != 2 {
		t.Fatalf("the join applied again after carol was made admin: %+v", m)
	}

	leave := domain.SystemEvent{Type: domain.EventMemberLeft, Actor: "carol"}
	apply(leave, 4)
	apply(join, 2)
	check("the join applied again after carol left", 2, "alice", "bob")
	if m := member("carol"); m.LeftSeq != 4 {
		t.Fatalf("carol's record after the join applied again: %+v, want left at 4", m)
	}

	apply(domain.SystemEvent{Type: domain.EventMemberJoined, Actor: "alice", Users: []domain.UserID{"carol"}}, 5)
	apply(leave, 4)
	check("the old leave applied again after carol came back", 3, "alice", "bob", "carol")
	if m := member("carol"); !m.Current() || m.JoinedSeq != 5 {
		t.Fatalf("carol's record after the old leave applied again: %+v, want a member since 5", m)
	}
}
