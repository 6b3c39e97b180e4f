package store

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// Groups keep one log of messages (msg:{conv}:{seq}, as every conversation)
// and, beside it, small records that say who may read which part of it:
//
//	group:{conv}            the group record (domain.GroupInfo) and the
//	                        version of its member list (compare-and-set)
//	gmember:{conv}:{user}   one member's record: role, join floor, leave
//	                        ceiling, mute (compare-and-set)
//	gmembers:{conv}         the ids of the current members (JSON array,
//	                        compare-and-set), read by fan-out only when its
//	                        version moved
//	gjoins:{conv}           pending join requests (compare-and-set)
//
// A send reads the group record and its sender's record in one bulk read,
// and takes the member list from this node's cache while its version holds.

func groupKey(c domain.ConversationID) string { return "group:" + string(c) }
func memberKey(c domain.ConversationID, u domain.UserID) string {
	return "gmember:" + string(c) + ":" + string(u)
}
func membersKey(c domain.ConversationID) string { return "gmembers:" + string(c) }
func joinKey(c domain.ConversationID) string    { return "gjoins:" + string(c) }

// groupRecord is what group:{conv} holds.
type groupRecord struct {
	domain.GroupInfo
	// MembersVersion moves each time the member list changes; nodes keep
	// the list while it holds.
	MembersVersion uint64 `json:"members_version"`
	// Applied are the seqs of the last events applied to the record, so
	// that an event applied again (a retry after a partial failure) does
	// not count its members twice.
	Applied []uint64 `json:"applied,omitempty"`
}

// maxApplied is how many applied events a group record remembers; a retry
// comes within seconds, long before that many more changes.
const maxApplied = 16

// memberLists caches member lists by group, with the version they are of.
type memberLists struct {
	mu    sync.Mutex
	lists map[domain.ConversationID]cachedMembers
}

type cachedMembers struct {
	version uint64
	users   []domain.UserID
}

// maxCachedGroups bounds the member lists a node keeps; past it the cache
// starts over, which costs one read per group.
const maxCachedGroups = 4096

// Group reads a group and, when u is not empty, u's record in it (the zero
// Member when u never joined). ok is false when the group does not exist.
func (s *Store) Group(ctx context.Context, conv domain.ConversationID, u domain.UserID) (g domain.GroupInfo, m domain.Member, ok bool, err error) {
	rec, m, ok, err := s.groupAndMember(ctx, conv, u)
	return rec.GroupInfo, m, ok, err
}

func (s *Store) groupAndMember(ctx context.Context, conv domain.ConversationID, u domain.UserID) (groupRecord, domain.Member, bool, error) {
	keys := []string{groupKey(conv)}
	if u != "" {
		keys = append(keys, memberKey(conv, u))
	}
	items, err := s.state.BulkGet(ctx, keys)
	if err != nil {
		return groupRecord{}, domain.Member{}, false, fmt.Errorf("read group %s: %w", conv, err)
	}
	if !items[0].Found {
		return groupRecord{}, domain.Member{}, false, nil
	}
	var rec groupRecord
	if err := json.Unmarshal(items[0].Value, &rec); err != nil {
		return groupRecord{}, domain.Member{}, false, fmt.Errorf("decode group %s: %w", conv, err)
	}
	var m domain.Member
	if u != "" && items[1].Found {
		if err := json.Unmarshal(items[1].Value, &m); err != nil {
			return groupRecord{}, domain.Member{}, false, fmt.Errorf("decode member %s of %s: %w", u, conv, err)
		}
	}
	return rec, m, true, nil
}

// GroupForSend reads what a send to a group needs: the group, the sender's
// record and the current members to deliver to.
func (s *Store) GroupForSend(ctx context.Context, conv domain.ConversationID, sender domain.UserID) (domain.GroupInfo, domain.Member, []domain.UserID, error) {
	rec, m, ok, err := s.groupAndMember(ctx, conv, sender)
	if err != nil {
		return domain.GroupInfo{}, domain.Member{}, nil, err
	}
	if !ok {
		return domain.GroupInfo{}, domain.Member{}, nil, domain.ErrNotMember
	}
	users, err := s.members(ctx, conv, rec.MembersVersion)
	if err != nil {
		return domain.GroupInfo{}, domain.Member{}, nil, err
	}
	return rec.GroupInfo, m, users, nil
}

// GroupMembers lists the current members of a group.
func (s *Store) GroupMembers(ctx context.Context, conv domain.ConversationID) ([]domain.UserID, error) {
	rec, _, ok, err := s.groupAndMember(ctx, conv, "")
	if err != nil || !ok {
		return nil, err
	}
	return s.members(ctx, conv, rec.MembersVersion)
}

// MemberRecords reads the records of users in a group; a user who never
// joined gets the zero Member.
func (s *Store) MemberRecords(ctx context.Context, conv domain.ConversationID, users []domain.UserID) ([]domain.Member, error) {
	keys := make([]string, len(users))
	for i, u := range users {
		keys[i] = memberKey(conv, u)
	}
	items, err := s.state.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read members of %s: %w", conv, err)
	}
	out := make([]domain.Member, len(users))
	for i, it := range items {
		if !it.Found {
			continue
		}
		if err := json.Unmarshal(it.Value, &out[i]); err != nil {
			return nil, fmt.Errorf("decode %s: %w", it.Key, err)
		}
	}
	return out, nil
}

// members returns the member list at version, from the cache when it holds.
func (s *Store) members(ctx context.Context, conv domain.ConversationID, version uint64) ([]domain.UserID, error) {
	s.lists.mu.Lock()
	c, ok := s.lists.lists[conv]
	s.lists.mu.Unlock()
	if ok && c.version == version {
		return c.users, nil
	}
	it, err := s.state.Get(ctx, membersKey(conv))
	if err != nil {
		return nil, fmt.Errorf("read member list of %s: %w", conv, err)
	}
	var list struct {
		Version uint64          `json:"v"`
		Users   []domain.UserID `json:"users"`
	}
	if it.Found {
		if err := json.Unmarshal(it.Value, &list); err != nil {
			return nil, fmt.Errorf("decode member list of %s: %w", conv, err)
		}
	}
	s.lists.mu.Lock()
	if s.lists.lists == nil || len(s.lists.lists) >= maxCachedGroups {
		s.lists.lists = make(map[domain.ConversationID]cachedMembers)
	}
	// Cache only a list that is of the version asked for: a list written
	// after the group record was read is newer, and is read again then.
	if list.Version == version {
		s.lists.lists[conv] = cachedMembers{version: version, users: list.Users}
	}
	s.lists.mu.Unlock()
	return list.Users, nil
}

// CreateGroup stores a new group with its first members' records, and
// lists it in each member's conversations. The event that records the
// creation is appended by the caller first, at seq 1.
func (s *Store) CreateGroup(ctx context.Context, g domain.GroupInfo, members []domain.Member) error {
	users := make([]domain.UserID, len(members))
	for i, m := range members {
		users[i] = m.User
	}
	if err := s.putMembers(ctx, g.ID, members); err != nil {
		return err
	}
	listData, err := json.Marshal(struct {
		Version uint64          `json:"v"`
		Users   []domain.UserID `json:"users"`
	}{1, users})
	if err != nil {
		return fmt.Errorf("encode member list of %s: %w", g.ID, err)
	}
	if err := s.state.Set(ctx, membersKey(g.ID), listData); err != nil {
		return fmt.Errorf("write member list of %s: %w", g.ID, err)
	}
	g.MemberCount = len(users)
	data, err := json.Marshal(groupRecord{GroupInfo: g, MembersVersion: 1})
	if err != nil {
		return fmt.Errorf("encode group %s: %w", g.ID, err)
	}
	if err := s.state.Set(ctx, groupKey(g.ID), data, infrastructure.IfAbsent()); err != nil {
		return fmt.Errorf("create group %s: %w", g.ID, err)
	}
	if err := s.CreateConversation(ctx, domain.Conversation{ID: g.ID, Kind: domain.Group, CreatedMs: g.CreatedMs}); err != nil {
		return err
	}
	for _, u := range users {
		if err := s.addToIndex(ctx, u, g.ID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) putMembers(ctx context.Context, conv domain.ConversationID, members []domain.Member) error {
	for _, m := range members {
		data, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode member %s of %s: %w", m.User, conv, err)
		}
		if err := s.state.Set(ctx, memberKey(conv, m.User), data); err != nil {
			return fmt.Errorf("write member %s of %s: %w", m.User, conv, err)
		}
	}
	return nil
}

// ApplyGroupEvent brings a group's records up to date with e, stored at
// seq: the group record, the records of the members it names, new members'
// records (joined) and the member list. Each record is updated with
// compare-and-set, so two nodes applying events to one group keep both.
//
// Applying an event again is safe, so a call that failed part way is
// finished by calling it again (the send's retry with the same cmid does):
// the group record remembers the events it took, and a member's record or
// place in the list that a later event changed is left as that event made
// it.
func (s *Store) ApplyGroupEvent(ctx context.Context, conv domain.ConversationID, e domain.SystemEvent, seq uint64, nowMs int64) error {
	var joined []domain.Member
	listChanged := false
	var listVersion uint64
	err := infrastructure.Update(ctx, s.state, groupKey(conv), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		if !cur.Found {
			return nil, 0, fmt.Errorf("group %s: %w", conv, domain.ErrNotMember)
		}
		var rec groupRecord
		if err := json.Unmarshal(cur.Value, &rec); err != nil {
			return nil, 0, fmt.Errorf("decode group %s: %w", conv, err)
		}
		joined = rec.GroupInfo.NewMembers(e, seq, nowMs)
		switch e.Type {
		case domain.EventMemberJoined, domain.EventMemberLeft, domain.EventMemberKicked:
			listChanged = true
		}
		if slices.Contains(rec.Applied, seq) {
			listVersion = rec.MembersVersion
			return nil, infrastructure.Keep, nil
		}
		rec.GroupInfo.Apply(e)
		if listChanged {
			rec.MembersVersion++
		}
		listVersion = rec.MembersVersion
		rec.Applied = append(rec.Applied, seq)
		if len(rec.Applied) > maxApplied {
			rec.Applied = slices.Clone(rec.Applied[len(rec.Applied)-maxApplied:])
		}
		data, err := json.Marshal(rec)
		return data, infrastructure.Put, err
	})
	if err != nil {
		return fmt.Errorf("apply %s to group %s: %w", e.Type, conv, err)
	}
	// Users whose membership a later event changed keep what it made, and
	// a record this join wrote already is not written again.
	moved, written, err := s.changedSince(ctx, conv, e, seq)
	if err != nil {
		return err
	}
	joined = slices.DeleteFunc(joined, func(m domain.Member) bool { return moved[m.User] || written[m.User] })
	if err := s.putMembers(ctx, conv, joined); err != nil {
		return err
	}
	// The records of the members the event names.
	named := slices.Clone(e.Users)
	if e.Actor != "" && !slices.Contains(named, e.Actor) {
		named = append(named, e.Actor)
	}
	for _, u := range named {
		if slices.ContainsFunc(joined, func(m domain.Member) bool { return m.User == u }) {
			continue
		}
		err := infrastructure.Update(ctx, s.state, memberKey(conv, u), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
			if !cur.Found {
				return nil, infrastructure.Keep, nil
			}
			var m domain.Member
			if err := json.Unmarshal(cur.Value, &m); err != nil {
				return nil, 0, fmt.Errorf("decode member %s of %s: %w", u, conv, err)
			}
			before := m
			m.Apply(e, seq)
			if m == before {
				return nil, infrastructure.Keep, nil
			}
			data, err := json.Marshal(m)
			return data, infrastructure.Put, err
		})
		if err != nil {
			return fmt.Errorf("apply %s to member %s of %s: %w", e.Type, u, conv, err)
		}
	}
	if !listChanged {
		return nil
	}
	var added []domain.UserID
	err = infrastructure.Update(ctx, s.state, membersKey(conv), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		var list struct {
			Version uint64          `json:"v"`
			Users   []domain.UserID `json:"users"`
		}
		if cur.Found {
			if err := json.Unmarshal(cur.Value, &list); err != nil {
				return nil, 0, fmt.Errorf("decode member list of %s: %w", conv, err)
			}
		}
		added = added[:0]
		switch e.Type {
		case domain.EventMemberJoined:
			for _, u := range e.Users {
				if !moved[u] && !slices.Contains(list.Users, u) {
					list.Users = append(list.Users, u)
					added = append(added, u)
				}
			}
		case domain.EventMemberLeft:
			list.Users = slices.DeleteFunc(list.Users, func(u domain.UserID) bool { return u == e.Actor && !moved[u] })
		case domain.EventMemberKicked:
			list.Users = slices.DeleteFunc(list.Users, func(u domain.UserID) bool { return slices.Contains(e.Users, u) && !moved[u] })
		}
		// The list takes the group record's version, written just before:
		// should a write between the two have failed, the next change of
		// membership brings them together again.
		list.Version = listVersion
		data, err := json.Marshal(list)
		return data, infrastructure.Put, err
	})
	if err != nil {
		return fmt.Errorf("update member list of %s: %w", conv, err)
	}
	for _, u := range added {
		if err := s.addToIndex(ctx, u, conv); err != nil {
			return err
		}
	}
	return nil
}

// changedSince reads the records of the users whose membership e, stored
// at seq, starts or ends, and returns those that an event after seq
// changed (moved: they joined again later, or left after this join), which
// e applied again out of turn must not undo, and, for a join, those whose
// record this join wrote already.
func (s *Store) changedSince(ctx context.Context, conv domain.ConversationID, e domain.SystemEvent, seq uint64) (moved, written map[domain.UserID]bool, err error) {
	var users []domain.UserID
	switch e.Type {
	case domain.EventMemberJoined, domain.EventMemberKicked:
		users = e.Users
	case domain.EventMemberLeft:
		users = []domain.UserID{e.Actor}
	default:
		return nil, nil, nil
	}
	recs, err := s.MemberRecords(ctx, conv, users)
	if err != nil {
		return nil, nil, err
	}
	moved, written = make(map[domain.UserID]bool), make(map[domain.UserID]bool)
	for i, m := range recs {
		joins := e.Type == domain.EventMemberJoined
		moved[users[i]] = m.JoinedSeq > seq || (joins && m.JoinedSeq == seq && m.LeftSeq > seq)
		written[users[i]] = joins && m.JoinedSeq == seq
	}
	return moved, written, nil
}

// JoinRequest is a pending request to join a group.
type JoinRequest struct {
	User domain.UserID `json:"user"`
	Note string        `json:"note,omitempty"`
	AtMs int64         `json:"at"`
}

// maxJoinRequests bounds the requests a group keeps pending; the oldest
// give way.
const maxJoinRequests = 1000

// updateJoinRequests changes a group's pending requests with compare-and-set.
func (s *Store) updateJoinRequests(ctx context.Context, conv domain.ConversationID, change func([]JoinRequest) []JoinRequest) error {
	return infrastructure.Update(ctx, s.state, joinKey(conv), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		var reqs []JoinRequest
		if cur.Found {
			if err := json.Unmarshal(cur.Value, &reqs); err != nil {
				return nil, 0, fmt.Errorf("decode join requests of %s: %w", conv, err)
			}
		}
		next := change(slices.Clone(reqs))
		if slices.Equal(next, reqs) {
			return nil, infrastructure.Keep, nil
		}
		data, err := json.Marshal(next)
		return data, infrastructure.Put, err
	})
}

// SetJoinRequest keeps u's request to join conv, with its note.
func (s *Store) SetJoinRequest(ctx context.Context, conv domain.ConversationID, u domain.UserID, note string, nowMs int64) error {
	err := s.updateJoinRequests(ctx, conv, func(reqs []JoinRequest) []JoinRequest {
		reqs = slices.DeleteFunc(reqs, func(r JoinRequest) bool { return r.User == u })
		reqs = append(reqs, JoinRequest{User: u, Note: note, AtMs: nowMs})
		if len(reqs) > maxJoinRequests {
			reqs = reqs[len(reqs)-maxJoinRequests:]
		}
		return reqs
	})
	if err != nil {
		return fmt.Errorf("keep join request of %s to %s: %w", u, conv, err)
	}
	return nil
}

// TakeJoinRequest removes u's pending request to join conv and reports
// whether there was one.
func (s *Store) TakeJoinRequest(ctx context.Context, conv domain.ConversationID, u domain.UserID) (bool, error) {
	var found bool
	err := s.updateJoinRequests(ctx, conv, func(reqs []JoinRequest) []JoinRequest {
		n := len(reqs)
		reqs = slices.DeleteFunc(reqs, func(r JoinRequest) bool { return r.User == u })
		found = len(reqs) < n
		return reqs
	})
	if err != nil {
		return false, fmt.Errorf("take join request of %s to %s: %w", u, conv, err)
	}
	return found, nil
}

// JoinRequests lists a group's pending requests, oldest first.
func (s *Store) JoinRequests(ctx context.Context, conv domain.ConversationID) ([]JoinRequest, error) {
	it, err := s.state.Get(ctx, joinKey(conv))
	if err != nil || !it.Found {
		return nil, err
	}
	var reqs []JoinRequest
	if err := json.Unmarshal(it.Value, &reqs); err != nil {
		return nil, fmt.Errorf("decode join requests of %s: %w", conv, err)
	}
	return reqs, nil
}
