package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/parley-im/parley/domain"
)

func TestParseConversationIDKinds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		in      string
		kind    domain.ConversationKind
		members int
		ok      bool
	}{
		{"direct", "d:alice~bob", domain.Direct, 2, true},
		{"group", "g:team", domain.Group, 0, true},
		{"group_made_by_server", string(domain.NewGroupID([16]byte{1, 2, 3})), domain.Group, 0, true},
		{"group_key_at_limit", "g:" + strings.Repeat("k", domain.MaxGroupKeyLen), domain.Group, 0, true},
		{"group_key_too_long", "g:" + strings.Repeat("k", domain.MaxGroupKeyLen+1), "", 0, false},
		{"group_empty_key", "g:", "", 0, false},
		{"group_tilde", "g:a~b", "", 0, false},
		{"group_at_sign", "g:a@b", "", 0, false},
		{"service", "s:shop~alice", domain.Service, 0, true},
		{"service_any_order", "s:zshop~alice", domain.Service, 0, true},
		{"service_self", "s:shop~shop", "", 0, false},
		{"service_one_party", "s:shop", "", 0, false},
		{"service_bad_party", "s:shop~a b", "", 0, false},
		{"unknown_prefix", "x:a", "", 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			id, members, err := domain.ParseConversationID(c.in)
			if !c.ok {
				if !errors.Is(err, domain.ErrInvalidConversationID) {
					t.Fatalf("ParseConversationID(%q) = %v, want ErrInvalidConversationID", c.in, err)
				}
				return
			}
			if err != nil || string(id) != c.in || id.Kind() != c.kind || len(members) != c.members {
				t.Fatalf("ParseConversationID(%q) = %s (%s) %v, %v", c.in, id, id.Kind(), members, err)
			}
		})
	}
}

func TestNewGroupID(t *testing.T) {
	t.Parallel()
	id := domain.NewGroupID([16]byte{0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	// Stored and shared: the encoding must never change.
	if id != "g:74aqeayeaudaocajbifqydiob4" {
		t.Fatalf("NewGroupID = %s", id)
	}
	if domain.NewGroupID([16]byte{1}) == domain.NewGroupID([16]byte{2}) {
		t.Fatal("different random bytes gave the same id")
	}
}

// TestGroupIDsAreRefusedByMemberAuthorisation: code that authorises a
// conversation by the members its id names lets nobody into a group.
func TestGroupIDsAreRefusedByMemberAuthorisation(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"g:team", "s:shop~alice"} {
		id, members, err := domain.ParseConversationID(s)
		if err != nil {
			t.Fatal(err)
		}
		c := domain.Conversation{ID: id, Kind: domain.Direct, Members: members}
		for _, u := range []domain.UserID{"team", "shop", "alice"} {
			if err := c.Authorize(u); !errors.Is(err, domain.ErrNotMember) {
				t.Errorf("%s authorised %s by its id", s, u)
			}
		}
	}
}

func TestServiceConversation(t *testing.T) {
	t.Parallel()
	s, err := domain.NewServiceConversation("shop", "alice", 5)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "s:shop~alice" || s.ID.Kind() != domain.Service {
		t.Fatalf("id = %s", s.ID)
	}
	if shop, customer, ok := s.ID.ServiceParties(); !ok || shop != "shop" || customer != "alice" {
		t.Fatalf("parties = %s %s %v", shop, customer, ok)
	}
	if _, err := domain.NewServiceConversation("shop", "shop", 5); !errors.Is(err, domain.ErrInvalidConversationID) {
		t.Fatalf("shop as its own customer: %v", err)
	}
	if _, err := s.Assign("alice", "agent1"); !errors.Is(err, domain.ErrForbidden) {
		t.Fatalf("customer assigns: %v", err)
	}
	if _, err := s.Assign("mallory", "agent1"); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("outsider assigns: %v", err)
	}
	if _, err := s.Assign("shop", "alice"); !errors.Is(err, domain.ErrInvalidUserID) {
		t.Fatalf("customer as agent: %v", err)
	}
	ev, err := s.Assign("shop", "agent1")
	if err != nil || ev.Type != domain.EventAgentAssigned {
		t.Fatalf("Assign = %+v, %v", ev, err)
	}
	s.Apply(ev)
	if role, err := s.RoleOf("agent1"); err != nil || role != domain.ServiceAgent || len(s.Members()) != 3 {
		t.Fatalf("agent1 is %s (%v), members %v", role, err, s.Members())
	}
	// The agent hands over; the previous agent is out.
	ev, err = s.Assign("agent1", "agent2")
	if err != nil {
		t.Fatal(err)
	}
	s.Apply(ev)
	if _, err := s.RoleOf("agent1"); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("previous agent still in: %v", err)
	}
	if _, err := s.Assign("shop", "agent2"); !errors.Is(err, domain.ErrNoChange) {
		t.Fatalf("assign to the current agent: %v", err)
	}
	for u, want := range map[domain.UserID]domain.ServiceRole{"alice": domain.ServiceCustomer, "shop": domain.ServiceShop, "agent2": domain.ServiceAgent} {
		if role, err := s.RoleOf(u); err != nil || role != want {
			t.Errorf("RoleOf(%s) = %s, %v", u, role, err)
		}
	}
}
