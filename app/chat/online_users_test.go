package chat_test

import (
	"context"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/presence"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

type localUsers []domain.UserID

func (l localUsers) OnlineUsers() []domain.UserID { return l }

// TestListOnlineUsers: this node's users, plus those of the other live
// nodes of the presence registry, sorted; an empty list when no one is on.
func TestListOnlineUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := memory.NewStateStore()
	other := presence.New(presence.Config{Node: "n2"}, state, zap.NewNop(), func() (int, []domain.UserID) { return 1, []domain.UserID{"carol"} })
	if err := other.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Stop(ctx) })
	here := presence.New(presence.Config{Node: "n1"}, state, zap.NewNop(), func() (int, []domain.UserID) { return 0, nil })
	if err := here.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { here.Stop(ctx) })
	if err := here.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		local   localUsers
		cluster chat.ClusterUsers
		want    []domain.UserID
	}{
		{"alone_and_empty", nil, nil, []domain.UserID{}},
		{"alone", localUsers{"alice", "bob"}, nil, []domain.UserID{"alice", "bob"}},
		{"with_other_nodes", localUsers{"bob", "dave"}, here, []domain.UserID{"bob", "carol", "dave"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := chat.NewListOnlineUsersHandler(tc.local, tc.cluster).Handle(ctx, chat.ListOnlineUsers{Viewer: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}
