package store

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// gatedState holds the insert of one message key until release is closed,
// counts InsertAll calls and their sizes, and can make the next InsertAll
// fail, before or after it is applied (a reply lost with its sidecar).
type gatedState struct {
	*memory.StateStore
	hold    string
	release chan struct{}
	reached chan struct{} // closed when the held insert arrives
	once    sync.Once

	mu      sync.Mutex
	sizes   []int
	failing string // "", "before" or "after": the next InsertAll of several keys
}

func (g *gatedState) Set(ctx context.Context, key string, value []byte, opts ...infrastructure.WriteOption) error {
	if key == g.hold {
		g.once.Do(func() { close(g.reached) })
		<-g.release
	}
	return g.StateStore.Set(ctx, key, value, opts...)
}

// InsertAll holds the insert of the hold key, as Set does, and counts and
// fails (failing) only the inserts of several keys: a claim round's anchor
// inserts one key by itself.
func (g *gatedState) InsertAll(ctx context.Context, items []infrastructure.Insert) ([]error, bool) {
	if len(items) == 1 {
		if items[0].Key == g.hold {
			g.once.Do(func() { close(g.reached) })
			<-g.release
		}
		return g.StateStore.InsertAll(ctx, items)
	}
	g.mu.Lock()
	g.sizes = append(g.sizes, len(items))
	failing := g.failing
	g.failing = ""
	g.mu.Unlock()
	errs := make([]error, len(items))
	if failing == "after" {
		g.StateStore.InsertAll(ctx, items)
	}
	if failing != "" {
		for i := range errs {
			errs[i] = fmt.Errorf("write cut off %s: %w", failing, infrastructure.ErrUnavailable)
		}
		return errs, true
	}
	return g.StateStore.InsertAll(ctx, items)
}

// queueBehindFirst sends n drafts of aliceBob at once while the insert of
// seq 1 is held, so that all but the first queue for the next round, and
// returns each send's result.
func queueBehindFirst(t *testing.T, s *Store, g *gatedState, n int, stored func(*domain.Message)) ([]Appended, []error) {
	t.Helper()
	res := make([]Appended, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	var started atomic.Int32
	for i := range n {
		wg.Go(func() {
			started.Add(1)
			res[i], errs[i] = s.Append(context.Background(), aliceBob, draft("alice", fmt.Sprintf("c%d", i), fmt.Sprintf("m%d", i)), AppendOptions{NowMs: 1, Stored: stored})
		})
		if i == 0 {
			// The first send is the anchor of the first round.
			<-g.reached
		}
	}
	for started.Load() < int32(n) || s.queued(aliceBob.ID) < n-1 {
		runtime.Gosched()
	}
	close(g.release)
	wg.Wait()
	return res, errs
}

// queued counts the sends of conv waiting for a claim round.
func (s *Store) queued(conv domain.ConversationID) int {
	st := s.stripes.of(conv)
	st.Lock()
	defer st.Unlock()
	if q := st.claims[conv]; q != nil {
		return len(q.pending)
	}
	return 0
}

// TestAppendClaimsQueuedSendsTogether: sends of one conversation that
// queue behind a round claim their seqs in one write, gap-free, and are
// handed on in seq order.
func TestAppendClaimsQueuedSendsTogether(t *testing.T) {
	t.Parallel()
	g := &gatedState{StateStore: memory.NewStateStore(), hold: msgKey(aliceBob.ID, 1), release: make(chan struct{}), reached: make(chan struct{})}
	s := New(g)
	var mu sync.Mutex
	var handed []uint64
	stored := func(m *domain.Message) { mu.Lock(); handed = append(handed, m.Seq); mu.Unlock() }
	const n = 10
	res, errs := queueBehindFirst(t, s, g, n, stored)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if res[i].Duplicate {
			t.Errorf("send %d came back as a duplicate", i)
		}
	}
	checkLog(t, s, n)
	if len(g.sizes) == 0 || g.sizes[0] != n-2 {
		// The second round's anchor goes alone; the other eight together.
		t.Errorf("InsertAll calls carried %v sends, want one call of %d", g.sizes, n-2)
	}
	for i, seq := range handed {
		if seq != uint64(i+1) {
			t.Fatalf("handed on in order %v", handed)
		}
	}
}

// TestAppendClaimWriteCutOff: the write of a batch fails; when it was not
// applied, the sends fail and their retries store each once; when it was
// applied and only its answer was lost, the retries, in any order, find
// the messages the write stored. Seqs stay gap-free either way.
func TestAppendClaimWriteCutOff(t *testing.T) {
	t.Parallel()
	for _, when := range []string{"before", "after"} {
		t.Run(when, func(t *testing.T) {
			t.Parallel()
			g := &gatedState{StateStore: memory.NewStateStore(), hold: msgKey(aliceBob.ID, 1), release: make(chan struct{}), reached: make(chan struct{}), failing: when}
			s := New(g)
			const n = 6
			res, errs := queueBehindFirst(t, s, g, n, nil)
			var failed []int
			for i, err := range errs {
				if err != nil {
					if !strings.Contains(err.Error(), "cut off") {
						t.Errorf("send %d: %v", i, err)
					}
					failed = append(failed, i)
				}
			}
			if len(failed) != n-2 {
				t.Fatalf("%d sends failed, want the %d of the cut-off write", len(failed), n-2)
			}
			// Retries, last first: one that probes must not store a send
			// whose earlier attempt is further on.
			for k := len(failed) - 1; k >= 0; k-- {
				i := failed[k]
				again, err := s.Append(context.Background(), aliceBob, draft("alice", fmt.Sprintf("c%d", i), fmt.Sprintf("m%d", i)), AppendOptions{NowMs: 2})
				if err != nil {
					t.Fatalf("retry of send %d: %v", i, err)
				}
				if when == "after" && !again.Duplicate {
					t.Errorf("retry of send %d stored it again at seq %d; the cut-off write had stored it", i, again.Message.Seq)
				}
				res[i] = again
			}
			msgs := checkLog(t, s, n)
			for i, r := range res {
				if msgs[r.Message.Seq-1].ID != r.Message.ID {
					t.Errorf("send %d was answered seq %d, which holds %s", i, r.Message.Seq, msgs[r.Message.Seq-1].ID)
				}
			}
		})
	}
}

// TestAppendQueuedRetryFindsRepairedRecord: a send whose earlier attempt
// was stored without its record (its node died) is retried while another
// send's probe is on its way past that attempt. The retry queued before
// the probe repaired its record, so it must look again when its turn
// comes, and get the earlier message rather than store it twice.
func TestAppendQueuedRetryFindsRepairedRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mem := memory.NewStateStore()
	dead := New(mem) // the node that died after its inserts
	x := draft("alice", "x", "stored by the dead node")
	for seq, d := range []domain.Draft{x, draft("bob", "y", "also")} {
		m := d.Accept(uint64(seq+1), 1)
		if err := dead.insertMessage(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	g := &gatedState{StateStore: mem, hold: msgKey(aliceBob.ID, 1), release: make(chan struct{}), reached: make(chan struct{})}
	s := New(g)
	var wg sync.WaitGroup
	var z Appended
	wg.Go(func() {
		var err error
		if z, err = s.Append(ctx, aliceBob, draft("bob", "z", "new"), AppendOptions{NowMs: 2}); err != nil {
			t.Error(err)
		}
	})
	<-g.reached // z probes seq 1, which holds x
	var retry Appended
	wg.Go(func() {
		var err error
		if retry, err = s.Append(ctx, aliceBob, x, AppendOptions{NowMs: 3}); err != nil {
			t.Error(err)
		}
	})
	for s.queued(aliceBob.ID) < 1 {
		runtime.Gosched()
	}
	close(g.release)
	wg.Wait()
	if !retry.Duplicate || retry.Message.Seq != 1 {
		t.Errorf("the retry got seq %d (duplicate %v); want the earlier attempt at seq 1", retry.Message.Seq, retry.Duplicate)
	}
	if z.Message.Seq != 3 {
		t.Errorf("z got seq %d, want 3", z.Message.Seq)
	}
	checkLog(t, s, 3)
}

// TestClaimableKeepsASourceApartWhileContended: while another node writes
// the conversation, a round takes at most one send of each connection, so
// that a seq taken under a batched write cannot put a connection's send
// after its next one; otherwise the whole queue goes together.
func TestClaimableKeepsASourceApartWhileContended(t *testing.T) {
	t.Parallel()
	a1 := NewTurn(nil)
	a2 := NewTurn(a1)
	b1 := NewTurn(nil)
	b2 := NewTurn(b1)
	pending := []*sendReq{{opts: AppendOptions{Turn: a1}}, {opts: AppendOptions{Turn: b1}}, {}, {opts: AppendOptions{Turn: a2}}, {opts: AppendOptions{Turn: b2}}}
	if n := claimable(pending, false); n != len(pending) {
		t.Errorf("uncontended: a round takes %d sends, want all %d", n, len(pending))
	}
	if n := claimable(pending, true); n != 3 {
		t.Errorf("contended: a round takes %d sends, want 3 (a1, b1 and the send without a turn)", n)
	}
}

// TestAnotherNodesMessageMarksContention: a claim that probes past a
// message another node stored marks the conversation as contended; one
// that meets none does not.
func TestAnotherNodesMessageMarksContention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := memory.NewStateStore()
	one, two := New(state), New(state)
	if _, err := one.Append(ctx, aliceBob, draft("alice", "a1", "hi"), AppendOptions{NowMs: 1}); err != nil {
		t.Fatal(err)
	}
	st := one.stripes.of(aliceBob.ID)
	contended := func() bool { st.Lock(); defer st.Unlock(); return st.contendedNow(aliceBob.ID) }
	if contended() {
		t.Fatal("contended after this node's own send")
	}
	if _, err := two.Append(ctx, aliceBob, draft("bob", "b1", "hello"), AppendOptions{NowMs: 2}); err != nil {
		t.Fatal(err)
	}
	m, err := one.Append(ctx, aliceBob, draft("alice", "a2", "again"), AppendOptions{NowMs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if m.Message.Seq != 3 {
		t.Fatalf("stored at seq %d, want 3", m.Message.Seq)
	}
	if !contended() {
		t.Error("not contended after probing past the other node's message")
	}
}
