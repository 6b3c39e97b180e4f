package chat

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
)

// ReadReceipts tells the senders of a group's recent messages how many
// members have read each one ("read_by"), in batches: the read cursors that
// moved in a group during an interval cause one count of that group's
// readers, and one notice per sender and message whose count changed, not
// one per reader. Groups larger than the live setting
// parley.receipts_group_max get no receipts. The zero value is not usable;
// use NewReadReceipts. Safe for concurrent use.
type ReadReceipts struct {
	store    *store.Store
	settings *settings.Live
	notify   Notifier
	log      *zap.Logger
	every    time.Duration

	mu     sync.Mutex
	dirty  map[domain.ConversationID]struct{}
	counts map[domain.ConversationID]map[uint64]uint64 // last counts told
	stop   chan struct{}
	done   chan struct{}
}

// receiptWindow is how many of a group's newest messages get counts.
const receiptWindow = 20

// NewReadReceipts makes the batcher; every is the interval (zero means one
// second). Start runs it; Stop ends it.
func NewReadReceipts(s *store.Store, live *settings.Live, n Notifier, log *zap.Logger, every time.Duration) *ReadReceipts {
	if every <= 0 {
		every = time.Second
	}
	return &ReadReceipts{store: s, settings: live, notify: n, log: log, every: every,
		dirty: make(map[domain.ConversationID]struct{}), counts: make(map[domain.ConversationID]map[uint64]uint64)}
}

// Start runs the batcher until Stop.
func (r *ReadReceipts) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop != nil {
		return
	}
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go r.run(r.stop, r.done)
}

// Stop ends the batcher, after a last batch.
func (r *ReadReceipts) Stop() {
	r.mu.Lock()
	stop, done := r.stop, r.done
	r.stop = nil
	r.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

func (r *ReadReceipts) moved(c domain.ConversationID) {
	r.mu.Lock()
	r.dirty[c] = struct{}{}
	r.mu.Unlock()
}

func (r *ReadReceipts) run(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flush()
		case <-stop:
			r.flush()
			return
		}
	}
}

// flush counts the readers of every group whose cursors moved.
func (r *ReadReceipts) flush() {
	r.mu.Lock()
	dirty := r.dirty
	r.dirty = make(map[domain.ConversationID]struct{})
	r.mu.Unlock()
	for c := range dirty {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.count(ctx, c); err != nil {
			r.log.Warn("read receipts not counted", zap.String("conv", string(c)), zap.Error(err))
		}
		cancel()
	}
}

func (r *ReadReceipts) count(ctx context.Context, c domain.ConversationID) error {
	members, err := r.store.GroupMembers(ctx, c)
	if err != nil {
		return err
	}
	if len(members) > r.settings.Load().ReceiptsGroupMax {
		return nil
	}
	cursors, err := r.store.ReadCursors(ctx, c, members)
	if err != nil {
		return err
	}
	head, err := r.store.Newest(ctx, c)
	if err != nil || head == 0 {
		return err
	}
	after := uint64(0)
	if head > receiptWindow {
		after = head - receiptWindow
	}
	msgs, _, err := r.store.Messages(ctx, c, after, receiptWindow)
	if err != nil {
		return err
	}
	r.mu.Lock()
	told := r.counts[c]
	if told == nil {
		if len(r.counts) >= maxCachedReceiptGroups {
			clear(r.counts)
		}
		told = make(map[uint64]uint64)
		r.counts[c] = told
	}
	type receipt struct {
		sender domain.UserID
		seq, n uint64
	}
	var out []receipt
	for _, m := range msgs {
		if m.ContentType == domain.ContentSystem {
			continue
		}
		var n uint64
		for i, u := range members {
			if u != m.Sender && cursors[i] >= m.Seq {
				n++
			}
		}
		if n != told[m.Seq] {
			told[m.Seq] = n
			out = append(out, receipt{m.Sender, m.Seq, n})
		}
	}
	for seq := range told {
		if seq <= after {
			delete(told, seq)
		}
	}
	r.mu.Unlock()
	for _, rc := range out {
		r.notify.Notify(ctx, []domain.UserID{rc.sender}, Notice{Type: "read_by", Conv: c, Seq: rc.seq, Count: rc.n})
	}
	return nil
}

// maxCachedReceiptGroups bounds the groups whose told counts are kept.
const maxCachedReceiptGroups = 4096
