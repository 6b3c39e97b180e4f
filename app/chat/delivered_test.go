package chat_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

// deliveredEvent is one "delivered" notification as the sender would get it.
type deliveredEvent struct {
	Sender domain.UserID
	Conv   domain.ConversationID
	Seq    uint64
	Reader domain.UserID
}

// recordingNotifier keeps the notifications it is given.
type recordingNotifier struct {
	mu     sync.Mutex
	events []deliveredEvent
}

func (n *recordingNotifier) NotifyDelivered(_ context.Context, sender domain.UserID, conv domain.ConversationID, seq uint64, reader domain.UserID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.events = append(n.events, deliveredEvent{sender, conv, seq, reader})
}

func (n *recordingNotifier) got() []deliveredEvent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]deliveredEvent(nil), n.events...)
}

type noDeliver struct{}

func (noDeliver) Deliver(context.Context, *domain.Conversation, *domain.Message, string) {}

// TestConfirmDelivery: an acknowledgement tells the sender, once, with the
// reader; one whose sender cannot be found, or that a non-member sends,
// tells no one.
func TestConfirmDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := store.New(memory.NewStateStore())
	send := chat.NewSendMessageHandler(st, settings.NewLive(settings.Defaults()), noDeliver{}, time.Now)
	res, err := send.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "c1", Body: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	conv, seq := res.Message.Conv, res.Message.Seq
	for _, tc := range []struct {
		name string
		cmd  chat.ConfirmDelivery
		want []deliveredEvent
	}{
		{"pushed_message_names_its_sender", chat.ConfirmDelivery{Reader: "bob", Conv: conv, Seq: seq, Sender: "alice"},
			[]deliveredEvent{{"alice", conv, seq, "bob"}}},
		{"synced_message_sender_is_read", chat.ConfirmDelivery{Reader: "bob", Conv: conv, Seq: seq},
			[]deliveredEvent{{"alice", conv, seq, "bob"}}},
		{"own_message_on_another_device", chat.ConfirmDelivery{Reader: "alice", Conv: conv, Seq: seq}, nil},
		{"seq_past_the_head", chat.ConfirmDelivery{Reader: "bob", Conv: conv, Seq: seq + 1}, nil},
		{"seq_zero", chat.ConfirmDelivery{Reader: "bob", Conv: conv, Seq: 0}, nil},
		{"not_a_member", chat.ConfirmDelivery{Reader: "mallory", Conv: conv, Seq: seq}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := &recordingNotifier{}
			h := chat.NewConfirmDeliveryHandler(chat.NewHistoryHandler(st), n)
			_ = h.Handle(ctx, tc.cmd)
			got := n.got()
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestConfirmDeliveryInAGroupTellsNoOne: in a group the sender learns how
// many read a message (read_by), not of every device that got it.
func TestConfirmDeliveryInAGroupTellsNoOne(t *testing.T) {
	t.Parallel()
	n := &recordingNotifier{}
	h := chat.NewConfirmDeliveryHandler(nil, n)
	if err := h.Handle(context.Background(), chat.ConfirmDelivery{Reader: "bob", Conv: "g:aaaaaaaaaaaaaaaaaaaaaaaaaa", Seq: 3, Sender: "alice"}); err != nil {
		t.Fatal(err)
	}
	if got := n.got(); len(got) != 0 {
		t.Fatalf("the sender was told %v", got)
	}
}
