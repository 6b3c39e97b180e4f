package domain_test

import (
	"errors"
	"testing"

	"github.com/parley-im/parley/domain"
)

func TestMemberUnread(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		m      domain.Member
		last   uint64
		unread uint64
	}{
		{"new_member_counts_from_join", domain.Member{JoinedSeq: 10}, 15, 5},
		{"history_before_join_is_never_unread", domain.Member{JoinedSeq: 10, SeesHistory: true}, 15, 5},
		{"read_cursor_wins", domain.Member{JoinedSeq: 10, ReadSeq: 13}, 15, 2},
		{"own_send_counts_as_read", domain.Member{JoinedSeq: 10, ReadSeq: 11, LastSentSeq: 14}, 15, 1},
		{"all_read", domain.Member{JoinedSeq: 10, ReadSeq: 15}, 15, 0},
		{"cursor_past_last", domain.Member{JoinedSeq: 10, ReadSeq: 20}, 15, 0},
		{"left_member_stops_at_ceiling", domain.Member{JoinedSeq: 10, LeftSeq: 12}, 30, 2},
		{"left_member_read_to_ceiling", domain.Member{JoinedSeq: 10, LeftSeq: 12, ReadSeq: 12}, 30, 0},
		{"never_joined", domain.Member{}, 30, 0},
		{"join_event_is_newest", domain.Member{JoinedSeq: 7}, 7, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.m.User, c.m.Role = "u", domain.RoleMember
			if got := c.m.Unread(c.last); got != c.unread {
				t.Fatalf("Unread(%d) of %+v = %d, want %d", c.last, c.m, got, c.unread)
			}
		})
	}
}

func TestMemberVisibility(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		m        domain.Member
		last     uint64
		from, to uint64
		readable []uint64
		hidden   []uint64
	}{
		{"sees_from_join", domain.Member{JoinedSeq: 5}, 9, 5, 9, []uint64{5, 9, 100}, []uint64{0, 1, 4}},
		{"history_opened", domain.Member{JoinedSeq: 5, SeesHistory: true}, 9, 1, 9, []uint64{1, 4, 5}, []uint64{0}},
		{"left_keeps_what_they_had", domain.Member{JoinedSeq: 5, LeftSeq: 7}, 9, 5, 7, []uint64{5, 7}, []uint64{4, 8, 9}},
		{"never_joined", domain.Member{}, 9, 1, 0, nil, []uint64{1, 9}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.m.User, c.m.Role = "u", domain.RoleMember
			if from, to := c.m.VisibleRange(c.last); from != c.from || to != c.to {
				t.Fatalf("VisibleRange(%d) = [%d, %d], want [%d, %d]", c.last, from, to, c.from, c.to)
			}
			for _, s := range c.readable {
				if !c.m.CanRead(s) {
					t.Errorf("cannot read seq %d", s)
				}
			}
			for _, s := range c.hidden {
				if c.m.CanRead(s) {
					t.Errorf("can read seq %d", s)
				}
			}
		})
	}
}

func TestMemberAuthorizeSync(t *testing.T) {
	t.Parallel()
	current := domain.Member{User: "u", Role: domain.RoleMember, JoinedSeq: 5}
	left := current
	left.LeftSeq = 8
	cases := []struct {
		name  string
		m     domain.Member
		after uint64
		want  error
	}{
		{"current_from_start", current, 0, nil},
		{"current_far_ahead", current, 1000, nil},
		{"left_before_ceiling", left, 7, nil},
		{"left_at_ceiling", left, 8, domain.ErrNotMember},
		{"left_past_ceiling", left, 9, domain.ErrNotMember},
		{"never_joined", domain.Member{User: "u"}, 0, domain.ErrNotMember},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if err := c.m.AuthorizeSync(c.after); !errors.Is(err, c.want) || c.want == nil && err != nil {
				t.Fatalf("AuthorizeSync(%d) = %v, want %v", c.after, err, c.want)
			}
		})
	}
}

func TestMemberCursors(t *testing.T) {
	t.Parallel()
	m := domain.NewMember("u", domain.RoleMember, 5, false, 1)
	if !m.MarkRead(8) || m.ReadSeq != 8 {
		t.Fatalf("read cursor = %d, want 8", m.ReadSeq)
	}
	if m.MarkRead(6) || m.ReadSeq != 8 {
		t.Fatalf("read cursor moved back to %d", m.ReadSeq)
	}
	m.MarkSent(12)
	m.MarkSent(10)
	if m.LastSentSeq != 12 {
		t.Fatalf("last send = %d, want 12", m.LastSentSeq)
	}
	m.LeftSeq = 9
	if !m.MarkRead(50) || m.ReadSeq != 9 {
		t.Fatalf("read cursor of a member who left = %d, want the ceiling 9", m.ReadSeq)
	}
	if m.Current() || m.CurrentRole() != "" {
		t.Fatal("a member who left is current")
	}
}

func TestUnread(t *testing.T) {
	t.Parallel()
	if domain.Unread(10, 4) != 6 || domain.Unread(4, 10) != 0 || domain.Unread(0, 0) != 0 {
		t.Fatal("unread arithmetic is wrong")
	}
}
