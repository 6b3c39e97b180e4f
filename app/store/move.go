package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	jsoniter "github.com/json-iterator/go"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// ErrImportConflict means a copied message's seq holds another message in
// the store it is copied to: the two stores disagree on the conversation's
// log, and the copy stops before it makes things worse.
var ErrImportConflict = errors.New("the seq holds another message in the unit the conversation moves to")

// MovedMessage is one message of a conversation as its store holds it, for
// a copy of the conversation to another unit's store: the message as first
// stored and, when a recall or edit changed it, the change record as is.
type MovedMessage struct {
	Msg    domain.Message      `json:"msg"`
	Change jsoniter.RawMessage `json:"chg,omitempty"`
}

// Conversation reads conv's record; ok is false when it has none.
func (s *Store) Conversation(ctx context.Context, conv domain.ConversationID) (domain.Conversation, bool, error) {
	it, err := s.state.Get(ctx, convKey(conv))
	if err != nil || !it.Found {
		return domain.Conversation{}, false, err
	}
	var c domain.Conversation
	if err := json.Unmarshal(it.Value, &c); err != nil {
		return domain.Conversation{}, false, fmt.Errorf("decode conversation %s: %w", conv, err)
	}
	return c, true, nil
}

// ExportMessages reads up to limit messages of conv after seq after, raw:
// each with its change record, if any. Like Messages it stops at the first
// missing seq and at MaxPageBytes (with at least one message).
func (s *Store) ExportMessages(ctx context.Context, conv domain.ConversationID, after uint64, limit int) ([]MovedMessage, error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	keys := make([]string, 2*limit)
	for i := range limit {
		seq := after + uint64(i) + 1
		keys[2*i], keys[2*i+1] = msgKey(conv, seq), changeKey(conv, seq)
	}
	items, err := s.state.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("export %s after %d: %w", conv, after, err)
	}
	var out []MovedMessage
	size := 0
	for i := 0; i < len(items); i += 2 {
		it, chg := items[i], items[i+1]
		if !it.Found || (len(out) > 0 && size+len(it.Value)+len(chg.Value) > MaxPageBytes) {
			break
		}
		size += len(it.Value) + len(chg.Value)
		var mm MovedMessage
		if err := json.Unmarshal(it.Value, &mm.Msg); err != nil {
			return nil, fmt.Errorf("decode message %s: %w", it.Key, err)
		}
		if chg.Found {
			mm.Change = append(jsoniter.RawMessage(nil), chg.Value...)
		}
		out = append(out, mm)
	}
	return out, nil
}

// ImportMessages stores msgs, copied from another unit's store in seq
// order, as conv's messages at the same seqs, with their change records,
// their senders' idempotency records (so that a retry of one of them finds
// it here) and the head. Importing the same messages again is harmless: a
// seq already holding the same message is passed over. A seq holding
// another message fails with ErrImportConflict.
func (s *Store) ImportMessages(ctx context.Context, conv domain.Conversation, msgs []MovedMessage, idemTTL time.Duration) error {
	if err := s.CreateConversation(ctx, conv); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	stored := make([]*domain.Message, 0, len(msgs))
	for i := range msgs {
		m := &msgs[i].Msg
		if m.Conv != conv.ID {
			return fmt.Errorf("import into %s: message %s is of %s: %w", conv.ID, m.ID, m.Conv, infrastructure.ErrInvalidArgument)
		}
		err := s.insertMessage(ctx, m)
		if errors.Is(err, infrastructure.ErrConflict) {
			held, ok, rerr := s.message(ctx, msgKey(m.Conv, m.Seq))
			if rerr != nil {
				return rerr
			}
			if !ok || held.ID != m.ID {
				return fmt.Errorf("import %s#%d: %w", m.Conv, m.Seq, ErrImportConflict)
			}
			err = nil
		}
		if err != nil {
			return err
		}
		if len(msgs[i].Change) > 0 {
			// The old home's change is the truth: its log is the one that
			// moves.
			if err := s.state.Set(ctx, changeKey(m.Conv, m.Seq), msgs[i].Change); err != nil {
				return fmt.Errorf("import the change of %s#%d: %w", m.Conv, m.Seq, err)
			}
		}
		stored = append(stored, m)
	}
	if err := s.commitSends(ctx, stored, idemTTL); err != nil {
		return err
	}
	// This node may remember a head of the conversation from before it
	// moved away: the next send reads the hint just written instead.
	st := s.stripes.of(conv.ID)
	st.Lock()
	delete(st.heads, conv.ID)
	st.Unlock()
	return nil
}
