// Package store keeps parley's conversations, messages, sequence heads, read
// cursors and idempotency keys in an infrastructure.StateStore. It owns the
// key layout; the use cases above it speak in domain terms only.
//
// Keys (the sidecar prefixes them with the app-id):
//
//	conv:{conv}          the conversation record
//	convs:{user}         the ids of a user's conversations (JSON array)
//	msg:{conv}:{seq}     one message; inserted only if absent, which is what
//	                     makes a seq belong to exactly one message
//	head:{conv}          the newest seq, a hint: writers probe past it
//	read:{conv}:{user}   the user's read cursor, as the user moved it
//	sent:{conv}:{user}   the newest seq the user sent, which they have read
//	                     too: the cursor in force is the higher of the two
//	idem:{user}:{cmid}   the reply to a send, for idempotent retries (TTL)
//	chg:{conv}:{seq}     the message as a recall or edit left it
//	mention:{conv}:{user} the newest seq that mentioned user ("*": @all)
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	jsoniter "github.com/json-iterator/go"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

var json = jsoniter.ConfigFastest

// MaxPage bounds one history read.
const MaxPage = 200

// MaxPageBytes bounds the stored size of one history page, so that a page
// of large messages still fits a device's write queue (1 MiB by default)
// with room to spare: a page is cut by count or by bytes, whichever comes
// first, and always holds at least one message.
const MaxPageBytes = 256 << 10

// Store is the repository of conversations and messages. The zero value is
// not usable; use New. Safe for concurrent use.
type Store struct {
	state infrastructure.StateStore
	// stripes, inflight and known are Append's: see append.go.
	stripes  *stripes
	inflight inflight
	// known holds conversations this node already created, to skip the
	// create-if-absent writes on every send.
	known      sync.Map
	knownCount atomic.Int64
	// lists caches groups' member lists: see groups.go.
	lists memberLists
	// committing counts the conversations whose commits run: their sends
	// are answered, and Close lets their records be written first.
	committing sync.WaitGroup
	// retries are the background writes of records whose commit failed;
	// closing stops them (see Close).
	retries   sync.WaitGroup
	closing   chan struct{}
	closeOnce sync.Once
}

// New returns a Store over state.
func New(state infrastructure.StateStore) *Store {
	return &Store{state: state, stripes: newStripes(), closing: make(chan struct{})}
}

func convKey(c domain.ConversationID) string      { return "conv:" + string(c) }
func convsKey(u domain.UserID) string             { return "convs:" + string(u) }
func headKey(c domain.ConversationID) string      { return "head:" + string(c) }
func idemKey(u domain.UserID, cmid string) string { return "idem:" + string(u) + ":" + cmid }
func readKey(c domain.ConversationID, u domain.UserID) string {
	return "read:" + string(c) + ":" + string(u)
}

// sentKey is written by the commits of u's sends, apart from readKey:
// a commit lands after its send's ACK, and writing the read cursor then
// could move it back past what the user marked read meanwhile.
func sentKey(c domain.ConversationID, u domain.UserID) string {
	return "sent:" + string(c) + ":" + string(u)
}

// mentionKey holds the newest seq that mentioned u in conv; u "*" is
// everyone (@all).
func mentionKey(c domain.ConversationID, u domain.UserID) string {
	return "mention:" + string(c) + ":" + string(u)
}

// changeKey holds a message as a recall or edit left it; msg:{conv}:{seq}
// itself is only ever written once, by the insert that claims the seq.
func changeKey(c domain.ConversationID, seq uint64) string {
	return "chg:" + string(c) + ":" + strconv.FormatUint(seq, 10)
}
func msgKey(c domain.ConversationID, seq uint64) string {
	return "msg:" + string(c) + ":" + strconv.FormatUint(seq, 10)
}

// CreateConversation stores c unless it exists, and lists it in every
// member's conversation index. Calling it again is harmless.
func (s *Store) CreateConversation(ctx context.Context, c domain.Conversation) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode conversation %s: %w", c.ID, err)
	}
	err = s.state.Set(ctx, convKey(c.ID), data, infrastructure.IfAbsent())
	if err != nil && !errors.Is(err, infrastructure.ErrConflict) {
		return fmt.Errorf("create conversation %s: %w", c.ID, err)
	}
	for _, m := range c.Members {
		if err := s.addToIndex(ctx, m, c.ID); err != nil {
			return err
		}
	}
	return nil
}

// addToIndex appends conv to u's index with compare-and-set, so that two
// conversations created at once for the same user are both kept.
func (s *Store) addToIndex(ctx context.Context, u domain.UserID, conv domain.ConversationID) error {
	err := infrastructure.Update(ctx, s.state, convsKey(u), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		var ids []domain.ConversationID
		if cur.Found {
			if err := json.Unmarshal(cur.Value, &ids); err != nil {
				return nil, 0, fmt.Errorf("decode conversations of %s: %w", u, err)
			}
		}
		if slices.Contains(ids, conv) {
			return nil, infrastructure.Keep, nil
		}
		data, err := json.Marshal(append(ids, conv))
		return data, infrastructure.Put, err
	})
	if err != nil {
		return fmt.Errorf("add conversation %s to %s: %w", conv, u, err)
	}
	return nil
}

// UserConversations lists the ids of u's conversations, oldest first.
func (s *Store) UserConversations(ctx context.Context, u domain.UserID) ([]domain.ConversationID, error) {
	it, err := s.state.Get(ctx, convsKey(u))
	if err != nil || !it.Found {
		return nil, err
	}
	var ids []domain.ConversationID
	if err := json.Unmarshal(it.Value, &ids); err != nil {
		return nil, fmt.Errorf("decode conversations of %s: %w", u, err)
	}
	return ids, nil
}

// Head returns the newest seq hint of conv, 0 for a new conversation.
func (s *Store) Head(ctx context.Context, conv domain.ConversationID) (uint64, error) {
	it, err := s.state.Get(ctx, headKey(conv))
	if err != nil || !it.Found {
		return 0, err
	}
	n, err := strconv.ParseUint(string(it.Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("decode head of %s: %w", conv, err)
	}
	return n, nil
}

// insertMessage stores m at its seq if that seq is free. It returns an
// error wrapping infrastructure.ErrConflict when another message holds the
// seq. It is a single-key insert-if-absent on purpose: that is atomic on
// every store, where a transaction is not (Dapr's Redis store ignores
// first-write inside transactions, unless the insert is made as
// BatchInserter makes it).
func (s *Store) insertMessage(ctx context.Context, m *domain.Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode message %s: %w", m.ID, err)
	}
	key := msgKey(m.Conv, m.Seq)
	if bi, ok := s.state.(infrastructure.BatchInserter); ok {
		// An insert of one key, which the adapter may write together with
		// other conversations' inserts: through daprd on Redis one
		// MULTI/EXEC for them all, where a bulk save runs one Set and one
		// round trip to Redis for each.
		if errs, ok := bi.InsertAll(ctx, []infrastructure.Insert{{Key: key, Value: data}}); ok {
			if errs[0] != nil {
				return fmt.Errorf("insert message %s at %s#%d: %w", m.ID, m.Conv, m.Seq, errs[0])
			}
			return nil
		}
	}
	// Unique: the stored message carries its own id, seq and time, and a
	// message key is only ever written by these inserts, so the adapter
	// may insert, in bulk too, without reading the key first.
	if err := s.state.Set(ctx, key, data, infrastructure.IfAbsent(), infrastructure.Unique()); err != nil {
		return fmt.Errorf("insert message %s at %s#%d: %w", m.ID, m.Conv, m.Seq, err)
	}
	return nil
}

// commitSends records, after msgs of one conversation are stored (in seq
// order), each one's idempotency key, and once the new head and each
// sender's read cursor, in one transaction: the head and a cursor written
// for an earlier message would be overwritten by a later one anyway.
func (s *Store) commitSends(ctx context.Context, msgs []*domain.Message, idemTTL time.Duration) error {
	if len(msgs) == 0 {
		return nil
	}
	last := msgs[len(msgs)-1]
	ops := make([]infrastructure.StateOp, 0, len(msgs)+2)
	for _, m := range msgs {
		ops = append(ops, s.idemOp(m, idemTTL))
	}
	ops = append(ops, infrastructure.StateOp{Key: headKey(last.Conv), Value: []byte(strconv.FormatUint(last.Seq, 10))})
	cursors := make(map[domain.UserID]uint64, 2)
	for _, m := range msgs {
		cursors[m.Sender] = max(cursors[m.Sender], m.Seq)
	}
	for u, seq := range cursors {
		ops = append(ops, infrastructure.StateOp{Key: sentKey(last.Conv, u), Value: []byte(strconv.FormatUint(seq, 10))})
	}
	// Who was mentioned, and by which newest seq: the listing shows a
	// conversation as mentioning its reader until the cursor passes it.
	var mentioned map[domain.UserID]uint64
	for _, m := range msgs {
		if len(m.Mentions) == 0 && !m.MentionAll {
			continue
		}
		if mentioned == nil {
			mentioned = make(map[domain.UserID]uint64)
		}
		for _, u := range m.Mentions {
			mentioned[u] = m.Seq
		}
		if m.MentionAll {
			mentioned["*"] = m.Seq
		}
	}
	for u, seq := range mentioned {
		ops = append(ops, infrastructure.StateOp{Key: mentionKey(last.Conv, u), Value: []byte(strconv.FormatUint(seq, 10))})
	}
	if err := s.state.Transact(ctx, ops); err != nil {
		return fmt.Errorf("commit %d sends up to %s#%d: %w", len(msgs), last.Conv, last.Seq, err)
	}
	return nil
}

// recordSend writes only the idempotency key of a stored message: the repair
// of a message whose send was cut off between its insert and its commit.
func (s *Store) recordSend(ctx context.Context, m *domain.Message, idemTTL time.Duration) error {
	op := s.idemOp(m, idemTTL)
	if err := s.state.Set(ctx, op.Key, op.Value, op.Options...); err != nil {
		return fmt.Errorf("record send %s: %w", m.ID, err)
	}
	return nil
}

func (s *Store) idemOp(m *domain.Message, ttl time.Duration) infrastructure.StateOp {
	rec, _ := json.Marshal(sendRecord{Conv: m.Conv, Seq: m.Seq})
	return infrastructure.StateOp{Key: idemKey(m.Sender, m.ClientMsgID), Value: rec, Options: []infrastructure.WriteOption{infrastructure.WithTTL(ttl)}}
}

// sendRecord is what an idempotent retry gets back.
type sendRecord struct {
	Conv domain.ConversationID `json:"conv"`
	Seq  uint64                `json:"seq"`
}

// priorSend finds an earlier send by sender with cmid.
func (s *Store) priorSend(ctx context.Context, sender domain.UserID, cmid string) (sendRecord, bool, error) {
	it, err := s.state.Get(ctx, idemKey(sender, cmid))
	if err != nil || !it.Found {
		return sendRecord{}, false, err
	}
	var r sendRecord
	if err := json.Unmarshal(it.Value, &r); err != nil {
		return sendRecord{}, false, fmt.Errorf("decode send record %s/%s: %w", sender, cmid, err)
	}
	return r, true, nil
}

// Message reads one message as history shows it, recalled or edited.
func (s *Store) Message(ctx context.Context, conv domain.ConversationID, seq uint64) (domain.Message, bool, error) {
	m, ok, err := s.message(ctx, msgKey(conv, seq))
	if err != nil || !ok {
		return m, ok, err
	}
	if c, changed, err := s.message(ctx, changeKey(conv, seq)); err != nil || changed {
		return c, changed, err
	}
	return m, true, nil
}

// ChangeMessage records m as the message at its seq now shows, after the
// event at eventSeq recalled or edited it. Of two changes written at once
// the one of the later event stays.
func (s *Store) ChangeMessage(ctx context.Context, m domain.Message, eventSeq uint64) error {
	type change struct {
		domain.Message
		By uint64 `json:"by"`
	}
	err := infrastructure.Update(ctx, s.state, changeKey(m.Conv, m.Seq), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		if cur.Found {
			var c change
			if err := json.Unmarshal(cur.Value, &c); err == nil && c.By > eventSeq {
				return nil, infrastructure.Keep, nil
			}
		}
		data, err := json.Marshal(change{Message: m, By: eventSeq})
		return data, infrastructure.Put, err
	})
	if err != nil {
		return fmt.Errorf("record change of %s#%d: %w", m.Conv, m.Seq, err)
	}
	return nil
}

// message reads and decodes the message under key.
func (s *Store) message(ctx context.Context, key string) (domain.Message, bool, error) {
	it, err := s.state.Get(ctx, key)
	if err != nil || !it.Found {
		return domain.Message{}, false, err
	}
	var m domain.Message
	if err := json.Unmarshal(it.Value, &m); err != nil {
		return domain.Message{}, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return m, true, nil
}

// Messages reads up to limit messages after seq after, in seq order, and
// no more than MaxPageBytes of them (at least one). It stops at the first
// missing seq: seqs have no gaps, so that is the end. more is true when the
// limit or the byte bound cut the page.
//
// It reads in two windows: the first firstWindow seqs, then, only if they
// were all there, the rest of the page. Most reads (a device catching up
// after a reconnect) end in the first window; reading a whole page of keys
// for them cost the store ten times the work.
func (s *Store) Messages(ctx context.Context, conv domain.ConversationID, after uint64, limit int) (msgs []domain.Message, more bool, err error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	// One past the limit tells the caller whether there is more.
	want := limit + 1
	size := 0
	for read := 0; read < want; {
		n := want - read
		if read == 0 {
			n = min(n, firstWindow)
		}
		// Each message's key, then its change's key (recall or edit): one
		// round trip for both.
		keys := make([]string, 2*n)
		for i := range n {
			seq := after + uint64(read+i) + 1
			keys[2*i], keys[2*i+1] = msgKey(conv, seq), changeKey(conv, seq)
		}
		items, err := s.state.BulkGet(ctx, keys)
		if err != nil {
			return nil, false, fmt.Errorf("read %s after %d: %w", conv, after, err)
		}
		for i := 0; i < len(items); i += 2 {
			it, changed := items[i], items[i+1]
			if !it.Found {
				return msgs, false, nil
			}
			// The stored value is the message's JSON, about what a device
			// is sent of it.
			if len(msgs) == limit || (len(msgs) > 0 && size+len(it.Value) > MaxPageBytes) {
				return msgs, true, nil
			}
			size += len(it.Value)
			value := it.Value
			if changed.Found {
				value = changed.Value
			}
			var m domain.Message
			if err := json.Unmarshal(value, &m); err != nil {
				return nil, false, fmt.Errorf("decode message %s: %w", it.Key, err)
			}
			msgs = append(msgs, m)
		}
		read += n
	}
	return msgs, false, nil
}

// firstWindow is how many seqs Messages reads first.
const firstWindow = 32

// AdvanceReadCursor moves u's cursor in conv up to seq, never down, with
// compare-and-set so that two devices marking at once keep the larger. It
// returns the cursor in force, which u's own newest message may hold
// higher (see sentKey).
func (s *Store) AdvanceReadCursor(ctx context.Context, conv domain.ConversationID, u domain.UserID, seq uint64) (uint64, error) {
	var result uint64
	err := infrastructure.Update(ctx, s.state, readKey(conv, u), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		var at uint64
		if cur.Found {
			at, _ = strconv.ParseUint(string(cur.Value), 10, 64)
		}
		if at >= seq {
			result = at
			return nil, infrastructure.Keep, nil
		}
		result = seq
		return []byte(strconv.FormatUint(seq, 10)), infrastructure.Put, nil
	})
	if err != nil {
		return 0, fmt.Errorf("advance read cursor %s/%s: %w", conv, u, err)
	}
	sent, err := s.state.Get(ctx, sentKey(conv, u))
	if err != nil {
		return 0, fmt.Errorf("read the newest send of %s in %s: %w", u, conv, err)
	}
	return max(result, seqOf(sent)), nil
}

// ReadCursors reads the read cursors in force of users in conv, in order;
// 0 for none.
func (s *Store) ReadCursors(ctx context.Context, conv domain.ConversationID, users []domain.UserID) ([]uint64, error) {
	keys := make([]string, 0, 2*len(users))
	for _, u := range users {
		keys = append(keys, readKey(conv, u), sentKey(conv, u))
	}
	items, err := s.state.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read cursors of %s: %w", conv, err)
	}
	out := make([]uint64, len(users))
	for i := range out {
		out[i] = cursorOf(items[2*i], items[2*i+1])
	}
	return out, nil
}

// cursorOf is the read cursor in force: the higher of the one the user
// moved (read) and the newest seq the user sent (sent).
func cursorOf(read, sent infrastructure.Item) uint64 {
	return max(seqOf(read), seqOf(sent))
}

// seqOf is the seq an item holds, 0 for none.
func seqOf(it infrastructure.Item) uint64 {
	n, _ := strconv.ParseUint(string(it.Value), 10, 64)
	return n
}

// Summary is what a conversation list shows of one conversation.
type Summary struct {
	Conversation domain.Conversation
	LastSeq      uint64
	ReadSeq      uint64
	Last         *domain.Message
	// MentionSeq is the newest seq that mentioned the reader (by name, or
	// everyone in a group), 0 for none.
	MentionSeq uint64
	// PeerReadSeq is the other member's read cursor, for a direct
	// conversation: what a client needs to show its messages as seen after
	// a reload.
	PeerReadSeq uint64
	// Group and Member are the group and the reader's record in it, for a
	// group. LastSeq and Last then stop at the reader's leave ceiling.
	Group  *domain.GroupInfo
	Member *domain.Member
}

// Summaries reads the list entries of convs for reader u with few round
// trips: one bulk read of heads, cursors and records, one of last messages.
func (s *Store) Summaries(ctx context.Context, u domain.UserID, convs []domain.ConversationID) ([]Summary, error) {
	if len(convs) == 0 {
		return nil, nil
	}
	// One bulk read for all: each conversation's record, head and the
	// reader's cursor; for a direct conversation the peer's cursor too, for
	// a group its record and the reader's member record.
	keys := make([]string, 0, 5*len(convs))
	first := make([]int, len(convs)+1)
	for i, c := range convs {
		first[i] = len(keys)
		keys = append(keys, convKey(c), headKey(c), readKey(c, u))
		switch c.Kind() {
		case domain.Direct:
			if _, members, err := domain.ParseConversationID(string(c)); err == nil {
				peer := members[0]
				if peer == u {
					peer = members[1]
				}
				keys = append(keys, readKey(c, peer), mentionKey(c, u), sentKey(c, u), sentKey(c, peer))
			}
		case domain.Group:
			keys = append(keys, groupKey(c), memberKey(c, u), mentionKey(c, u), mentionKey(c, "*"), sentKey(c, u))
		default:
			keys = append(keys, sentKey(c, u))
		}
	}
	first[len(convs)] = len(keys)
	items, err := s.state.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read conversations of %s: %w", u, err)
	}
	out := make([]Summary, 0, len(convs))
	var lastKeys []string
	for i, c := range convs {
		at := items[first[i]:first[i+1]]
		rec, head, read := at[0], at[1], at[2]
		if !rec.Found {
			continue
		}
		var sum Summary
		if err := json.Unmarshal(rec.Value, &sum.Conversation); err != nil {
			return nil, fmt.Errorf("decode %s: %w", rec.Key, err)
		}
		sum.LastSeq, _ = strconv.ParseUint(string(head.Value), 10, 64)
		// The head key is written by the commit that follows a send's
		// answer: the seqs this node gave since are stored already.
		sum.LastSeq = max(sum.LastSeq, s.cachedHead(c))
		sum.ReadSeq, _ = strconv.ParseUint(string(read.Value), 10, 64)
		switch c.Kind() {
		case domain.Direct:
			if len(at) > 6 {
				sum.ReadSeq = cursorOf(read, at[5])
				sum.PeerReadSeq = cursorOf(at[3], at[6])
				sum.MentionSeq, _ = strconv.ParseUint(string(at[4].Value), 10, 64)
			}
		default:
			if len(at) > 3 {
				sum.ReadSeq = cursorOf(read, at[3])
			}
		case domain.Group:
			if len(at) < 8 || !at[3].Found || !at[4].Found {
				continue
			}
			sum.ReadSeq = cursorOf(read, at[7])
			mine, _ := strconv.ParseUint(string(at[5].Value), 10, 64)
			all, _ := strconv.ParseUint(string(at[6].Value), 10, 64)
			sum.MentionSeq = max(mine, all)
			grp, mem := at[3], at[4]
			var g groupRecord
			var m domain.Member
			if err := json.Unmarshal(grp.Value, &g); err != nil {
				return nil, fmt.Errorf("decode %s: %w", grp.Key, err)
			}
			if err := json.Unmarshal(mem.Value, &m); err != nil {
				return nil, fmt.Errorf("decode %s: %w", mem.Key, err)
			}
			if m.JoinedSeq == 0 {
				continue
			}
			// A group's listing names no members: the record holds the
			// first ones, and a current list of thousands would not fit a
			// listing. The profile counts them; GET the group for more.
			sum.Conversation.Members = nil
			sum.Group, sum.Member = &g.GroupInfo, &m
			if m.LeftSeq != 0 {
				sum.LastSeq = min(sum.LastSeq, m.LeftSeq)
			}
		}
		out = append(out, sum)
		if sum.LastSeq > 0 {
			lastKeys = append(lastKeys, msgKey(sum.Conversation.ID, sum.LastSeq))
		}
	}
	if len(lastKeys) == 0 {
		return out, nil
	}
	lasts, err := s.state.BulkGet(ctx, lastKeys)
	if err != nil {
		return nil, fmt.Errorf("read last messages of %s: %w", u, err)
	}
	byKey := make(map[string]*domain.Message, len(lasts))
	for _, it := range lasts {
		if !it.Found {
			continue
		}
		var m domain.Message
		if err := json.Unmarshal(it.Value, &m); err == nil {
			byKey[it.Key] = &m
		}
	}
	for i := range out {
		sum := &out[i]
		sum.Last = byKey[msgKey(sum.Conversation.ID, sum.LastSeq)]
		if sum.Last == nil {
			continue
		}
		// The commit that records mentions may still be on its way.
		if slices.Contains(sum.Last.Mentions, u) || (sum.Last.MentionAll && sum.Conversation.Kind == domain.Group) {
			sum.MentionSeq = max(sum.MentionSeq, sum.LastSeq)
		}
		// Whoever sent the last message has read up to it, though the
		// commit that moves their cursor may still be on its way.
		if sum.Last.Sender == u {
			sum.ReadSeq = max(sum.ReadSeq, sum.LastSeq)
		} else if sum.Conversation.Kind == domain.Direct {
			sum.PeerReadSeq = max(sum.PeerReadSeq, sum.LastSeq)
		}
	}
	return out, nil
}

// Newest is conv's newest seq as far as this node knows without probing:
// the head hint, or the newest seq this node gave, whichever is higher.
// The hint lags a send's ACK until its commit lands (see commits).
func (s *Store) Newest(ctx context.Context, conv domain.ConversationID) (uint64, error) {
	hint, err := s.Head(ctx, conv)
	if err != nil {
		return 0, err
	}
	return max(hint, s.cachedHead(conv)), nil
}

// cachedHead is the newest seq this node gave conv, 0 if it knows none.
func (s *Store) cachedHead(conv domain.ConversationID) uint64 {
	st := s.stripes.of(conv)
	st.Lock()
	defer st.Unlock()
	return st.heads[conv]
}
