package chat

import (
	"cmp"
	"context"
	"slices"

	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
)

// History asks for a page of a conversation after a seq.
type History struct {
	Reader domain.UserID
	Conv   string
	After  uint64
	Limit  int
}

// HistoryPage is one page; More says a further page exists.
type HistoryPage struct {
	Conv     domain.ConversationID
	Messages []domain.Message
	More     bool
}

// HistoryHandler reads history for members only. Safe for concurrent use.
type HistoryHandler struct {
	store *store.Store
	homes Homes
}

// WithHomes makes the handler ask the home unit of a direct conversation
// homed elsewhere.
func (h *HistoryHandler) WithHomes(homes Homes) *HistoryHandler {
	h.homes = homes
	return h
}

// remoteHome reports whether convID names a direct conversation of u, a
// group or a customer-service conversation homed in another unit, and
// returns its canonical id. Anything else, including a direct
// conversation u is not a member of, is answered here, which refuses it
// the same way in every unit; the home of a group or a customer-service
// conversation checks that u belongs to it.
//
// release is never nil: the caller calls it once its writes are done.
func remoteHome(ctx context.Context, homes Homes, u domain.UserID, convID string, use HomeUse) (id string, remote bool, release func(), err error) {
	if homes == nil {
		return "", false, func() {}, nil
	}
	var c domain.ConversationID
	switch domain.ConversationID(convID).Kind() {
	case domain.Direct:
		dc, err := resolveMember(u, convID)
		if err != nil {
			return "", false, func() {}, nil
		}
		c = dc.ID
	case domain.Group:
		// The home checks membership and the reader's window.
		if c, err = parseGroupID(convID); err != nil {
			return "", false, func() {}, nil
		}
	case domain.Service:
		// The home checks that u is a party.
		if c, err = parseServiceID(convID); err != nil {
			return "", false, func() {}, nil
		}
	default:
		return "", false, func() {}, nil
	}
	remote, release, err = homes.Remote(ctx, c, use)
	if err != nil {
		return "", false, func() {}, err
	}
	return string(c), remote, release, nil
}

// NewHistoryHandler wires the handler.
func NewHistoryHandler(s *store.Store) *HistoryHandler { return &HistoryHandler{store: s} }

// Handle checks membership, then reads. A limit of 0 means store.MaxPage.
func (h *HistoryHandler) Handle(ctx context.Context, q History) (HistoryPage, error) {
	if q.Limit < 0 || q.Limit > store.MaxPage {
		return HistoryPage{}, domain.ErrInvalidLimit
	}
	if id, remote, release, err := remoteHome(ctx, h.homes, q.Reader, q.Conv, HomeRead); err != nil {
		return HistoryPage{}, err
	} else if release(); remote {
		q.Conv = id
		return h.homes.ForwardHistory(ctx, q)
	}
	c, win, err := readWindow(ctx, h.store, q.Reader, q.Conv)
	if err != nil {
		return HistoryPage{}, err
	}
	after := max(q.After, win.from-1)
	if win.to != 0 && after >= win.to {
		// A member who left has nothing past their ceiling.
		return HistoryPage{}, domain.ErrNotMember
	}
	msgs, more, err := h.store.Messages(ctx, c, after, q.Limit)
	if err != nil {
		return HistoryPage{}, err
	}
	if win.to != 0 {
		for i, m := range msgs {
			if m.Seq > win.to {
				msgs, more = msgs[:i], false
				break
			}
		}
	}
	return HistoryPage{Conv: c, Messages: msgs, More: more}, nil
}

// ConversationView is one entry of a user's conversation list.
type ConversationView struct {
	Conversation domain.Conversation
	LastSeq      uint64
	ReadSeq      uint64
	Unread       uint64
	Last         *domain.Message
	// PeerReadSeq is the other member's read cursor in a direct
	// conversation: the reader's messages up to it were seen.
	PeerReadSeq uint64
	// Mentioned is true when a message past the reader's read cursor (and
	// in their window) mentions them, by name or as everyone.
	Mentioned bool
	// Group is the group's profile, for a group.
	Group *domain.GroupInfo
}

// ListConversationsHandler lists a user's conversations with the last
// message and unread count. Safe for concurrent use.
type ListConversationsHandler struct {
	store *store.Store
	homes Homes
}

// WithHomes makes the handler add the user's conversations homed in the
// other units to the listing.
func (h *ListConversationsHandler) WithHomes(homes Homes) *ListConversationsHandler {
	h.homes = homes
	return h
}

// NewListConversationsHandler wires the handler.
func NewListConversationsHandler(s *store.Store) *ListConversationsHandler {
	return &ListConversationsHandler{store: s}
}

// MaxConversations bounds one listing.
const MaxConversations = 500

// Handle lists at most MaxConversations, newest first.
func (h *ListConversationsHandler) Handle(ctx context.Context, u domain.UserID) ([]ConversationView, error) {
	ids, err := h.store.UserConversations(ctx, u)
	if err != nil {
		return nil, err
	}
	if len(ids) > MaxConversations {
		ids = ids[len(ids)-MaxConversations:]
	}
	sums, err := h.store.Summaries(ctx, u, ids)
	if err != nil {
		return nil, err
	}
	out := make([]ConversationView, 0, len(sums))
	for i := len(sums) - 1; i >= 0; i-- {
		s := sums[i]
		v := ConversationView{
			Conversation: s.Conversation, LastSeq: s.LastSeq, ReadSeq: s.ReadSeq,
			Unread: domain.Unread(s.LastSeq, s.ReadSeq), Last: s.Last, Group: s.Group, PeerReadSeq: s.PeerReadSeq,
		}
		v.Mentioned = s.MentionSeq > s.ReadSeq && s.MentionSeq <= s.LastSeq
		if s.Member != nil {
			m := *s.Member
			m.ReadSeq = max(m.ReadSeq, s.ReadSeq)
			v.Unread = m.Unread(s.LastSeq)
			// What came before the join is never news, even when the
			// member may read it.
			v.Mentioned = v.Mentioned && m.CanRead(s.MentionSeq) && s.MentionSeq > max(m.JoinedSeq, m.LastSentSeq)
		}
		out = append(out, v)
	}
	if h.homes != nil {
		return h.withRemote(ctx, u, out)
	}
	return out, nil
}

// withRemote merges the conversations homed in other units into local,
// newest first. A conversation listed twice (one that moved) keeps the
// entry that is further ahead.
func (h *ListConversationsHandler) withRemote(ctx context.Context, u domain.UserID, local []ConversationView) ([]ConversationView, error) {
	remote, err := h.homes.ForwardList(ctx, u)
	if err != nil || len(remote) == 0 {
		return local, err
	}
	at := make(map[domain.ConversationID]int, len(local)+len(remote))
	out := local
	for i, v := range out {
		at[v.Conversation.ID] = i
	}
	for _, v := range remote {
		if i, ok := at[v.Conversation.ID]; ok {
			if v.LastSeq > out[i].LastSeq {
				out[i] = v
			}
			continue
		}
		at[v.Conversation.ID] = len(out)
		out = append(out, v)
	}
	newest := func(v ConversationView) int64 {
		if v.Last != nil {
			return v.Last.ServerMs
		}
		return v.Conversation.CreatedMs
	}
	slices.SortStableFunc(out, func(a, b ConversationView) int { return cmp.Compare(newest(b), newest(a)) })
	if len(out) > MaxConversations {
		out = out[:MaxConversations]
	}
	return out, nil
}

// MarkRead moves the reader's cursor up to Seq.
type MarkRead struct {
	Reader domain.UserID
	Conv   string
	Seq    uint64
}

// MarkReadHandler advances read cursors, never past the newest message,
// and tells others: the peer of a direct conversation at once, the senders
// of a group's messages through ReadReceipts. Safe for concurrent use.
type MarkReadHandler struct {
	store    *store.Store
	notify   Notifier
	receipts *ReadReceipts
	homes    Homes
}

// WithHomes makes the handler move cursors of a direct conversation homed
// elsewhere in its home unit.
func (h *MarkReadHandler) WithHomes(homes Homes) *MarkReadHandler {
	h.homes = homes
	return h
}

// NewMarkReadHandler wires the handler.
func NewMarkReadHandler(s *store.Store) *MarkReadHandler { return &MarkReadHandler{store: s} }

// WithReceipts makes the handler tell others of read cursors that moved:
// n tells a direct conversation's peer, r a group's senders (r may be nil).
func (h *MarkReadHandler) WithReceipts(n Notifier, r *ReadReceipts) *MarkReadHandler {
	h.notify, h.receipts = n, r
	return h
}

// Handle returns the cursor after the change.
func (h *MarkReadHandler) Handle(ctx context.Context, cmd MarkRead) (uint64, error) {
	id, remote, release, err := remoteHome(ctx, h.homes, cmd.Reader, cmd.Conv, HomeWrite)
	if err != nil {
		return 0, err
	}
	defer release()
	if remote {
		cmd.Conv = id
		return h.homes.ForwardMarkRead(ctx, cmd)
	}
	c, win, err := readWindow(ctx, h.store, cmd.Reader, cmd.Conv)
	if err != nil {
		return 0, err
	}
	head, err := h.store.Newest(ctx, c)
	if err != nil {
		return 0, err
	}
	if cmd.Seq > head {
		// The head hint is written by the commit that follows a send's
		// ACK, and a device may be pushed the message first: a seq above
		// the hint may be stored already.
		if _, ok, err := h.store.Message(ctx, c, cmd.Seq); err != nil {
			return 0, err
		} else if ok {
			head = cmd.Seq
		}
	}
	if win.to != 0 {
		head = min(head, win.to)
	}
	want := min(cmd.Seq, head)
	cur, err := h.store.AdvanceReadCursor(ctx, c, cmd.Reader, want)
	if err != nil || want == 0 {
		return cur, err
	}
	// Told even when this call did not move the cursor: the reader's own
	// send may have moved it first (a send records its sender's cursor),
	// and nobody was told then. A repeated notice is harmless.
	switch {
	case c.Kind() == domain.Group && h.receipts != nil:
		h.receipts.moved(c)
	case c.Kind() == domain.Direct && h.notify != nil:
		if _, members, err := domain.ParseConversationID(string(c)); err == nil {
			for _, u := range members {
				if u != cmd.Reader {
					h.notify.Notify(ctx, []domain.UserID{u}, Notice{Type: "seen", Conv: c, Seq: cur, User: cmd.Reader})
				}
			}
		}
	}
	return cur, nil
}

// window is the part of a conversation's log a reader may read: from
// from, and up to to when to is not 0. Direct conversations are read whole.
type window struct{ from, to uint64 }

// readWindow finds the conversation convID names and the window u may read
// of it: all of a direct conversation u is a member of; in a group, from
// the join floor (seq 1 when the group showed history at the join) to the
// leave ceiling of a member who left.
func readWindow(ctx context.Context, s *store.Store, u domain.UserID, convID string) (domain.ConversationID, window, error) {
	if domain.ConversationID(convID).Kind() == domain.Service {
		return readServiceWindow(ctx, s, u, convID)
	}
	if domain.ConversationID(convID).Kind() != domain.Group {
		c, err := resolveMember(u, convID)
		return c.ID, window{from: 1}, err
	}
	id, err := parseGroupID(convID)
	if err != nil {
		return "", window{}, err
	}
	_, m, ok, err := s.Group(ctx, id, u)
	if err != nil {
		return "", window{}, err
	}
	if !ok || m.JoinedSeq == 0 {
		return "", window{}, domain.ErrNotMember
	}
	from, _ := m.VisibleRange(0)
	return id, window{from: from, to: m.LeftSeq}, nil
}
