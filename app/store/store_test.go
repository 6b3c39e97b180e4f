package store

import (
	"context"
	"testing"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

// TestMessagesPagesAcrossReadWindows: a page is every stored message after
// the cursor, in order, up to the limit, with more set exactly when the
// limit cut it, wherever the page ends relative to the read windows.
func TestMessagesPagesAcrossReadWindows(t *testing.T) {
	ctx := context.Background()
	for _, stored := range []int{0, 1, 31, 32, 33, 64, 200, 201, 250} {
		s := New(memory.NewStateStore())
		conv := domain.ConversationID("d:alice~bob")
		for seq := 1; seq <= stored; seq++ {
			m := domain.Message{ID: "m" + string(rune('a'+seq%26)), Conv: conv, Seq: uint64(seq), Sender: "alice", Body: "hi"}
			if err := s.insertMessage(ctx, &m); err != nil {
				t.Fatal(err)
			}
		}
		for _, after := range []int{0, 1, 30, 31, 32, 100, 199} {
			for _, limit := range []int{1, 5, 31, 32, 33, 200} {
				msgs, more, err := s.Messages(ctx, conv, uint64(after), limit)
				if err != nil {
					t.Fatal(err)
				}
				left := max(stored-after, 0)
				wantN, wantMore := min(left, limit), left > limit
				if len(msgs) != wantN || more != wantMore {
					t.Fatalf("stored %d, after %d, limit %d: got %d messages, more %v; want %d, %v", stored, after, limit, len(msgs), more, wantN, wantMore)
				}
				for i, m := range msgs {
					if m.Seq != uint64(after+i+1) {
						t.Fatalf("stored %d, after %d, limit %d: position %d holds seq %d", stored, after, limit, i, m.Seq)
					}
				}
			}
		}
	}
}
