package chat

import (
	"context"
	"errors"
	"testing"

	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

// TestReadServiceWindow: the customer, the shop and the current agent read
// a service conversation from its first seq; a former agent and outsiders
// read nothing, and a conversation with no record is nobody's.
func TestReadServiceWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := store.New(memory.NewStateStore())
	sc, err := domain.NewServiceConversation("shop", "carol", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateServiceConversation(ctx, sc); err != nil {
		t.Fatal(err)
	}
	for seq, agent := range []domain.UserID{"ann", "ben"} {
		ev := domain.SystemEvent{Type: domain.EventAgentAssigned, Actor: "shop", Users: []domain.UserID{agent}}
		if _, err := st.ApplyServiceEvent(ctx, sc.ID, ev, uint64(seq+2)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		user domain.UserID
		conv string
		want error
	}{
		{name: "customer", user: "carol", conv: string(sc.ID)},
		{name: "shop", user: "shop", conv: string(sc.ID)},
		{name: "current_agent", user: "ben", conv: string(sc.ID)},
		{name: "former_agent", user: "ann", conv: string(sc.ID), want: domain.ErrNotMember},
		{name: "outsider", user: "zed", conv: string(sc.ID), want: domain.ErrNotMember},
		{name: "no_record", user: "dave", conv: "s:shop~dave", want: domain.ErrNotMember},
		{name: "not_a_service_id", user: "carol", conv: "d:carol~shop", want: domain.ErrInvalidConversationID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id, win, err := readServiceWindow(ctx, st, tc.user, tc.conv)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil || id != sc.ID || win != (window{from: 1}) {
				t.Fatalf("got %s %+v %v; want %s read from seq 1", id, win, err, sc.ID)
			}
		})
	}
}
