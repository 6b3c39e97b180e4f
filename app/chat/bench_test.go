package chat_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

// discard is a Deliverer with no devices: the benchmarks measure the use
// case and the store, not the fan-out (app/gateway has that benchmark).
type discard struct{}

func (discard) Deliver(context.Context, *domain.Conversation, *domain.Message, string) {}

const benchBody = "Let's move the stand-up to 10:30, the release review runs late today."

// newBenchSend wires the send handler over the in-memory adapter, with the
// per-user rate limit raised out of the way.
func newBenchSend(b *testing.B) *chat.SendMessageHandler {
	b.Helper()
	live := settings.NewLive(settings.Defaults())
	if errs := live.Update(map[string]string{"parley.send_rate_per_sec": "1000000"}); len(errs) > 0 {
		b.Fatal(errs)
	}
	backend := memory.NewBackend("bench", nil, nil)
	return chat.NewSendMessageHandler(store.New(backend.State), live, discard{}, time.Now)
}

// BenchmarkSendMessage measures the send use case over the memory adapter:
// validate, rate limit, dedupe, allocate the seq, store, commit.
func BenchmarkSendMessage(b *testing.B) {
	ctx := context.Background()

	// One user sending to one peer, one message after the other: the
	// conversation's head stays cached under its stripe lock.
	b.Run("one_conversation", func(b *testing.B) {
		h := newBenchSend(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := h.Handle(ctx, chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "c" + strconv.Itoa(i), Body: benchBody}); err != nil {
				b.Fatal(err)
			}
		}
	})

	// Many pairs at once, one conversation per goroutine: how the stripes
	// and the store's lock share the cores.
	b.Run("parallel_conversations", func(b *testing.B) {
		h := newBenchSend(b)
		var pairs atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			p := strconv.FormatInt(pairs.Add(1), 10)
			from, to := domain.UserID("a"+p), "b"+p
			i := 0
			for pb.Next() {
				i++
				if _, err := h.Handle(ctx, chat.SendMessage{Sender: from, To: to, ClientMsgID: "c" + strconv.Itoa(i), Body: benchBody}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})

	// A conversation's first message also creates it and indexes it for
	// both members. Each op is a new pair of users, so the cost does not
	// grow with b.N.
	b.Run("new_conversation", func(b *testing.B) {
		h := newBenchSend(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			n := strconv.Itoa(i)
			if _, err := h.Handle(ctx, chat.SendMessage{Sender: domain.UserID("a" + n), To: "b" + n, ClientMsgID: "c", Body: benchBody}); err != nil {
				b.Fatal(err)
			}
		}
	})

	// A retry with a client message id already stored: answered from the
	// idempotency record, nothing written.
	b.Run("duplicate_retry", func(b *testing.B) {
		h := newBenchSend(b)
		cmd := chat.SendMessage{Sender: "alice", To: "bob", ClientMsgID: "retried", Body: benchBody}
		if _, err := h.Handle(ctx, cmd); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			res, err := h.Handle(ctx, cmd)
			if err != nil || !res.Duplicate {
				b.Fatalf("retry: duplicate=%v err=%v", res.Duplicate, err)
			}
		}
	})
}
