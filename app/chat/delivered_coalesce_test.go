package chat_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-im/parley/app/chat"
)

// TestCoalescingNotifier: a burst of acknowledgements for one
// (conversation, sender, reader) gives the first event at once and one more,
// with the newest seq, when the window ends; another reader is not merged.
func TestCoalescingNotifier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rec := &recordingNotifier{}
	n := chat.NewCoalescingNotifier(rec, 20*time.Millisecond)
	for seq := uint64(1); seq <= 1000; seq++ {
		n.NotifyDelivered(ctx, "alice", "d:alice~bob", seq%10+1, "bob")
	}
	n.NotifyDelivered(ctx, "alice", "g:team", 7, "carol")
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.got()) < 3 && time.Now().Before(deadline) {
		<-time.After(5 * time.Millisecond)
	}
	got := rec.got()
	want := []deliveredEvent{{"alice", "d:alice~bob", 2, "bob"}, {"alice", "g:team", 7, "carol"}, {"alice", "d:alice~bob", 10, "bob"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
