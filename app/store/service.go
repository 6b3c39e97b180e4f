package store

import (
	"context"
	"fmt"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// Customer-service conversations keep their messages in the same log as
// every conversation (msg:{conv}:{seq}) and, beside it, one record:
//
//	svc:{conv}   the conversation's parties and assigned agent
//	             (domain.ServiceConversation), with the seq of the
//	             assignment event it reflects (compare-and-set)
//
// The stream is the truth: an assignment is an EventAgentAssigned stored
// first, and the record follows it. Two assignments written at once leave
// the record on the later event, as the stream shows it.

func serviceKey(c domain.ConversationID) string { return "svc:" + string(c) }

// serviceRecord is what svc:{conv} holds.
type serviceRecord struct {
	domain.ServiceConversation
	// AgentSeq is the seq of the event that assigned Agent; 0 before any.
	AgentSeq uint64 `json:"agent_seq,omitempty"`
}

// ServiceConversation reads the record of a customer-service conversation.
// ok is false when none was created yet.
func (s *Store) ServiceConversation(ctx context.Context, conv domain.ConversationID) (domain.ServiceConversation, bool, error) {
	it, err := s.state.Get(ctx, serviceKey(conv))
	if err != nil {
		return domain.ServiceConversation{}, false, fmt.Errorf("read service conversation %s: %w", conv, err)
	}
	if !it.Found {
		return domain.ServiceConversation{}, false, nil
	}
	var rec serviceRecord
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return domain.ServiceConversation{}, false, fmt.Errorf("decode service conversation %s: %w", conv, err)
	}
	return rec.ServiceConversation, true, nil
}

// CreateServiceConversation stores sc unless a record exists, and returns
// the record that holds afterwards: sc, or the one another writer stored
// first. It does not touch the stream; the first message's Append creates
// the conversation and lists it for the customer and the shop.
func (s *Store) CreateServiceConversation(ctx context.Context, sc domain.ServiceConversation) (domain.ServiceConversation, error) {
	out := sc
	err := infrastructure.Update(ctx, s.state, serviceKey(sc.ID), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		if cur.Found {
			var rec serviceRecord
			if err := json.Unmarshal(cur.Value, &rec); err != nil {
				return nil, 0, fmt.Errorf("decode service conversation %s: %w", sc.ID, err)
			}
			out = rec.ServiceConversation
			return nil, infrastructure.Keep, nil
		}
		out = sc
		data, err := json.Marshal(serviceRecord{ServiceConversation: sc})
		return data, infrastructure.Put, err
	})
	if err != nil {
		return domain.ServiceConversation{}, fmt.Errorf("create service conversation %s: %w", sc.ID, err)
	}
	return out, nil
}

// ApplyServiceEvent records the assignment event e, stored at seq in the
// stream, and lists the conversation for the new agent, so that it shows
// in the agent's conversation list with its whole history. An event older
// than the one the record reflects changes nothing. It returns the record
// as it holds afterwards.
func (s *Store) ApplyServiceEvent(ctx context.Context, conv domain.ConversationID, e domain.SystemEvent, seq uint64) (domain.ServiceConversation, error) {
	var out domain.ServiceConversation
	err := infrastructure.Update(ctx, s.state, serviceKey(conv), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		if !cur.Found {
			return nil, 0, fmt.Errorf("no record: %w", infrastructure.ErrNotFound)
		}
		var rec serviceRecord
		if err := json.Unmarshal(cur.Value, &rec); err != nil {
			return nil, 0, fmt.Errorf("decode: %w", err)
		}
		if seq <= rec.AgentSeq {
			out = rec.ServiceConversation
			return nil, infrastructure.Keep, nil
		}
		rec.Apply(e)
		rec.AgentSeq = seq
		out = rec.ServiceConversation
		data, err := json.Marshal(rec)
		return data, infrastructure.Put, err
	})
	if err != nil {
		return domain.ServiceConversation{}, fmt.Errorf("apply %s to service conversation %s at seq %d: %w", e.Type, conv, seq, err)
	}
	if out.Agent != "" {
		if err := s.addToIndex(ctx, out.Agent, conv); err != nil {
			return out, err
		}
	}
	return out, nil
}
