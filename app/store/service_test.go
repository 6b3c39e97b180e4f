package store

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// TestServiceConversationRecord: the first record stands against a later
// create; an assignment moves the agent and lists the conversation for
// them; an event older than the one applied changes nothing.
func TestServiceConversationRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New(memory.NewStateStore())
	sc, err := domain.NewServiceConversation("shop", "carol", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.ServiceConversation(ctx, sc.ID); err != nil || ok {
		t.Fatalf("before create: ok %v, err %v", ok, err)
	}
	if _, err := s.CreateServiceConversation(ctx, sc); err != nil {
		t.Fatal(err)
	}
	later := sc
	later.CreatedMs = 99
	if got, err := s.CreateServiceConversation(ctx, later); err != nil || got.CreatedMs != 1 {
		t.Fatalf("second create returned %+v, %v; want the first record", got, err)
	}

	assign := func(agent domain.UserID, seq uint64) domain.ServiceConversation {
		t.Helper()
		got, err := s.ApplyServiceEvent(ctx, sc.ID, domain.SystemEvent{Type: domain.EventAgentAssigned, Actor: "shop", Users: []domain.UserID{agent}}, seq)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := assign("ann", 2); got.Agent != "ann" {
		t.Fatalf("after assigning ann: agent %q", got.Agent)
	}
	if got := assign("ben", 5); got.Agent != "ben" {
		t.Fatalf("after transferring to ben: agent %q", got.Agent)
	}
	if got := assign("ann", 3); got.Agent != "ben" {
		t.Fatalf("an older event moved the agent to %q", got.Agent)
	}
	if rec, _, _ := s.ServiceConversation(ctx, sc.ID); rec.Agent != "ben" {
		t.Fatalf("stored agent %q, want ben", rec.Agent)
	}
	for _, agent := range []domain.UserID{"ann", "ben"} {
		ids, err := s.UserConversations(ctx, agent)
		if err != nil || !slices.Contains(ids, sc.ID) {
			t.Errorf("conversations of %s = %v, %v; want %s listed", agent, ids, err, sc.ID)
		}
	}
	other := domain.ServiceConversationID("shop", "dave")
	if _, err := s.ApplyServiceEvent(ctx, other, domain.SystemEvent{Type: domain.EventAgentAssigned, Users: []domain.UserID{"ann"}}, 1); !errors.Is(err, infrastructure.ErrNotFound) {
		t.Errorf("assigning a conversation with no record = %v, want ErrNotFound", err)
	}
}
