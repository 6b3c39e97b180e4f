package domain

import "slices"

// Member is one user's record in a group. A group keeps one log of messages
// (read diffusion); a member's record says which window of that log they may
// read and how far they have read it, so a send writes no per-member rows.
//
// The visible window runs from the floor to the ceiling, both inclusive: the
// floor is JoinedSeq (1 with SeesHistory), the ceiling LeftSeq once they
// left or were kicked, so a member who left keeps what they had, including
// the event of their leaving. The zero value is not a member. A Member is a
// value: not safe for concurrent mutation.
type Member struct {
	User UserID `json:"user"`
	Role Role   `json:"role"`
	// JoinedSeq is the seq of the event that made them a member (group
	// creation, join, invitation or approval): the floor of their unread
	// count and, unless SeesHistory, of what they may read.
	JoinedSeq uint64 `json:"joined"`
	// SeesHistory lets them read from seq 1. It is copied from the group's
	// HistoryVisible when they join, so changing the setting later does not
	// open or close anyone's past.
	SeesHistory bool `json:"history,omitempty"`
	// LeftSeq is the seq of the event that ended their membership, their
	// ceiling; 0 while they are a current member.
	LeftSeq uint64 `json:"left,omitempty"`
	// MutedUntilMs ends their own mute, in Unix milliseconds; 0 or a past
	// time means not muted.
	MutedUntilMs int64 `json:"muted_until,omitempty"`
	// ReadSeq is their read cursor.
	ReadSeq uint64 `json:"read,omitempty"`
	// LastSentSeq is the seq of their newest own message or event, which
	// they have read by definition.
	LastSentSeq uint64 `json:"sent,omitempty"`
	// JoinedMs is when they joined, in Unix milliseconds.
	JoinedMs int64 `json:"joined_ms,omitempty"`
}

// NewMember returns the record of u joining with role at the event with seq
// joinedSeq. seesHistory is the group's HistoryVisible at that moment.
func NewMember(u UserID, role Role, joinedSeq uint64, seesHistory bool, nowMs int64) Member {
	return Member{User: u, Role: role, JoinedSeq: joinedSeq, SeesHistory: seesHistory, JoinedMs: nowMs}
}

// Current reports whether m is a member now: joined and not left.
func (m Member) Current() bool { return m.JoinedSeq > 0 && m.LeftSeq == 0 && m.Role != "" }

// CurrentRole is the role Permit should see: m.Role for a current member and
// the zero Role (not a member) otherwise.
func (m Member) CurrentRole() Role {
	if !m.Current() {
		return ""
	}
	return m.Role
}

// Muted reports whether m's own mute is in force at nowMs.
func (m Member) Muted(nowMs int64) bool { return m.MutedUntilMs > nowMs }

// floor is the first seq m may read.
func (m Member) floor() uint64 {
	if m.SeesHistory {
		return 1
	}
	return m.JoinedSeq
}

// VisibleRange returns the seqs m may read when the group's newest seq is
// lastSeq, both inclusive. The range is empty when to < from, as for a user
// who never joined.
func (m Member) VisibleRange(lastSeq uint64) (from, to uint64) {
	if m.JoinedSeq == 0 {
		return 1, 0
	}
	to = lastSeq
	if m.LeftSeq != 0 && m.LeftSeq < to {
		to = m.LeftSeq
	}
	return m.floor(), to
}

// CanRead reports whether m may read the message at seq: it lies between
// their floor and their ceiling. It does not know the group's newest seq;
// the store does.
func (m Member) CanRead(seq uint64) bool {
	return m.JoinedSeq > 0 && seq >= m.floor() && (m.LeftSeq == 0 || seq <= m.LeftSeq)
}

// AuthorizeSync checks a sync or history request for the messages after
// seq after. A user who never joined, or who left at or before after, gets
// ErrNotMember: there is nothing more for them. Clamp the range with
// VisibleRange.
func (m Member) AuthorizeSync(after uint64) error {
	if m.JoinedSeq == 0 || m.Role == "" || m.LeftSeq != 0 && after >= m.LeftSeq {
		return ErrNotMember
	}
	return nil
}

// Unread counts the messages m has not read when the group's newest seq is
// lastSeq: the end of their window minus the highest of their floor, their
// read cursor and their own last send. What came before they joined is never
// unread, even when they can see it, and sending implies reading.
func (m Member) Unread(lastSeq uint64) uint64 {
	if m.JoinedSeq == 0 {
		return 0
	}
	end := lastSeq
	if m.LeftSeq != 0 && m.LeftSeq < end {
		end = m.LeftSeq
	}
	return Unread(end, max(m.JoinedSeq, m.ReadSeq, m.LastSentSeq))
}

// MarkRead moves the read cursor forward to seq, never back and never past
// the ceiling of a member who left. It reports whether the cursor moved.
func (m *Member) MarkRead(seq uint64) bool {
	if m.LeftSeq != 0 && seq > m.LeftSeq {
		seq = m.LeftSeq
	}
	if seq <= m.ReadSeq {
		return false
	}
	m.ReadSeq = seq
	return true
}

// MarkSent records that m wrote the message or event at seq.
func (m *Member) MarkSent(seq uint64) {
	if seq > m.LastSentSeq {
		m.LastSentSeq = seq
	}
}

// Apply updates a current member's record for the event e stored at seq:
// leaving and kicks set the ceiling, role changes, mutes and ownership
// transfers change the fields they name. Events that are not about m leave
// it unchanged. New members get records from GroupInfo.NewMembers instead.
func (m *Member) Apply(e SystemEvent, seq uint64) {
	// An event from before this membership began (one applied again after
	// the member left and came back) is not about it.
	if !m.Current() || seq < m.JoinedSeq {
		return
	}
	named := slices.Contains(e.Users, m.User)
	switch e.Type {
	case EventMemberLeft:
		if e.Actor == m.User {
			m.LeftSeq = seq
		}
	case EventMemberKicked:
		if named {
			m.LeftSeq = seq
		}
	case EventRoleChanged:
		if named {
			m.Role = e.Role
		}
	case EventMemberMuted:
		if named {
			m.MutedUntilMs = e.UntilMs
		}
	case EventMemberUnmuted:
		if named {
			m.MutedUntilMs = 0
		}
	case EventOwnerChanged:
		if named {
			m.Role = RoleOwner
		} else if e.Actor == m.User {
			m.Role = RoleMember
		}
	}
}
