package chat

import (
	"context"

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
type HistoryHandler struct{ store *store.Store }

// NewHistoryHandler wires the handler.
func NewHistoryHandler(s *store.Store) *HistoryHandler { return &HistoryHandler{store: s} }

// Handle checks membership, then reads. A limit of 0 means store.MaxPage.
func (h *HistoryHandler) Handle(ctx context.Context, q History) (HistoryPage, error) {
	if q.Limit < 0 || q.Limit > store.MaxPage {
		return HistoryPage{}, domain.ErrInvalidLimit
	}
	c, err := resolveMember(q.Reader, q.Conv)
	if err != nil {
		return HistoryPage{}, err
	}
	msgs, more, err := h.store.Messages(ctx, c.ID, q.After, q.Limit)
	if err != nil {
		return HistoryPage{}, err
	}
	return HistoryPage{Conv: c.ID, Messages: msgs, More: more}, nil
}

// ConversationView is one entry of a user's conversation list.
type ConversationView struct {
	Conversation domain.Conversation
	LastSeq      uint64
	ReadSeq      uint64
	Unread       uint64
	Last         *domain.Message
}

// ListConversationsHandler lists a user's conversations with the last
// message and unread count. Safe for concurrent use.
type ListConversationsHandler struct{ store *store.Store }

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
		out = append(out, ConversationView{
			Conversation: s.Conversation, LastSeq: s.LastSeq, ReadSeq: s.ReadSeq,
			Unread: domain.Unread(s.LastSeq, s.ReadSeq), Last: s.Last,
		})
	}
	return out, nil
}

// MarkRead moves the reader's cursor up to Seq.
type MarkRead struct {
	Reader domain.UserID
	Conv   string
	Seq    uint64
}

// MarkReadHandler advances read cursors, never past the newest message.
// Safe for concurrent use.
type MarkReadHandler struct{ store *store.Store }

// NewMarkReadHandler wires the handler.
func NewMarkReadHandler(s *store.Store) *MarkReadHandler { return &MarkReadHandler{store: s} }

// Handle returns the cursor after the change.
func (h *MarkReadHandler) Handle(ctx context.Context, cmd MarkRead) (uint64, error) {
	c, err := resolveMember(cmd.Reader, cmd.Conv)
	if err != nil {
		return 0, err
	}
	head, err := h.store.Head(ctx, c.ID)
	if err != nil {
		return 0, err
	}
	return h.store.AdvanceReadCursor(ctx, c.ID, cmd.Reader, min(cmd.Seq, head))
}
