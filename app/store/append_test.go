package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

var aliceBob = domain.Conversation{ID: "d:alice~bob", Kind: domain.Direct, Members: []domain.UserID{"alice", "bob"}}

func draft(sender domain.UserID, cmid, body string) domain.Draft {
	return domain.Draft{Conv: aliceBob.ID, Sender: sender, ClientMsgID: cmid, ContentType: domain.Text, Body: body}
}

// checkLog reads the whole conversation and fails unless it holds exactly
// want messages at seqs 1..want, each once.
func checkLog(t *testing.T, s *Store, want int) []domain.Message {
	t.Helper()
	var all []domain.Message
	var after uint64
	for {
		page, more, err := s.Messages(context.Background(), aliceBob.ID, after, MaxPage)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if !more {
			break
		}
		after = page[len(page)-1].Seq
	}
	if len(all) != want {
		t.Fatalf("conversation holds %d messages, want %d", len(all), want)
	}
	ids := make(map[string]bool, len(all))
	for i, m := range all {
		if m.Seq != uint64(i+1) {
			t.Fatalf("position %d holds seq %d: a gap", i, m.Seq)
		}
		if ids[m.ID] {
			t.Fatalf("message %s stored twice", m.ID)
		}
		ids[m.ID] = true
	}
	return all
}

// TestAppendConcurrentNodesGapFree: two stores over one state store are
// two nodes; many writers on each append to one conversation at once, and
// every send ends at its own seq with none skipped, each retry included.
func TestAppendConcurrentNodesGapFree(t *testing.T) {
	t.Parallel()
	state := memory.NewStateStore()
	nodes := []*Store{New(state), New(state)}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	seqs := make(chan uint64, writers*each*2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sender := domain.UserID([]string{"alice", "bob"}[w%2])
			for i := range each {
				d := draft(sender, fmt.Sprintf("w%d-%d", w, i), "hello")
				res, err := nodes[w%2].Append(context.Background(), aliceBob, d, AppendOptions{NowMs: 1})
				if err != nil {
					t.Error(err)
					return
				}
				// The same send again, on the other node: the same message.
				again, err := nodes[(w+1)%2].Append(context.Background(), aliceBob, d, AppendOptions{NowMs: 2})
				if err != nil {
					t.Error(err)
					return
				}
				if !again.Duplicate || again.Message.Seq != res.Message.Seq || res.Duplicate {
					t.Errorf("retry of %s got seq %d (duplicate %v), first got %d (duplicate %v)", d.ClientMsgID, again.Message.Seq, again.Duplicate, res.Message.Seq, res.Duplicate)
				}
				seqs <- res.Message.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	checkLog(t, nodes[0], writers*each)
}

// failingState fails writes whose key has a prefix, while fail is set: a
// sidecar or node that dies between a send's insert and its commit.
type failingState struct {
	infrastructure.StateStore
	fail atomic.Bool
}

func (f *failingState) Transact(ctx context.Context, ops []infrastructure.StateOp) error {
	if f.fail.Load() {
		return fmt.Errorf("commit cut off: %w", infrastructure.ErrUnavailable)
	}
	return f.StateStore.Transact(ctx, ops)
}

func (f *failingState) Set(ctx context.Context, key string, value []byte, opts ...infrastructure.WriteOption) error {
	if f.fail.Load() && len(key) > 5 && key[:5] == "idem:" {
		return fmt.Errorf("record cut off: %w", infrastructure.ErrUnavailable)
	}
	return f.StateStore.Set(ctx, key, value, opts...)
}

// TestAppendRetryAfterCutOffFindsTheMessage: a send whose message was
// stored but whose commit never happened (the node died) is retried on
// another node, after other messages moved the conversation on; the retry
// gets the first message back, and nothing is stored twice.
func TestAppendRetryAfterCutOffFindsTheMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := &failingState{StateStore: memory.NewStateStore()}
	dying, other := New(state), New(state)
	defer dying.Close()

	state.fail.Store(true)
	first, err := dying.Append(ctx, aliceBob, draft("alice", "c1", "are you there?"), AppendOptions{NowMs: 1})
	if err != nil {
		t.Fatalf("the insert is what makes a send durable; a failed commit must not fail it: %v", err)
	}
	state.fail.Store(false)
	if _, ok, _ := dying.priorSend(ctx, "alice", "c1"); ok {
		t.Fatal("test setup: the record was written although the commit failed")
	}
	// Bob's send on the other node probes past alice's message (this
	// node never saw the head move) and repairs her record on the way.
	bobs, err := other.Append(ctx, aliceBob, draft("bob", "b1", "yes"), AppendOptions{NowMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if bobs.Message.Seq != first.Message.Seq+1 {
		t.Fatalf("bob's message got seq %d, want %d", bobs.Message.Seq, first.Message.Seq+1)
	}
	if _, ok, _ := other.priorSend(ctx, "alice", "c1"); !ok {
		t.Fatal("alice's record was not repaired by the writer that probed past her message")
	}
	// More traffic, then alice's retry on the other node.
	for i := range 5 {
		if _, err := other.Append(ctx, aliceBob, draft("bob", fmt.Sprintf("b%d", i+2), "more"), AppendOptions{NowMs: 3}); err != nil {
			t.Fatal(err)
		}
	}
	retry, err := other.Append(ctx, aliceBob, draft("alice", "c1", "are you there?"), AppendOptions{NowMs: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !retry.Duplicate || retry.Message.Seq != first.Message.Seq || retry.Message.ID != first.Message.ID {
		t.Fatalf("retry got seq %d id %s duplicate %v; want the first message, seq %d id %s", retry.Message.Seq, retry.Message.ID, retry.Duplicate, first.Message.Seq, first.Message.ID)
	}
	checkLog(t, other, 7)
}

// TestAppendRepairFromAnInsertWithoutRecord: the message alone is in the
// store (its writer died right after the insert, before any record); a
// retry of that very send on a node with no head cache finds it by probing.
func TestAppendRepairFromAnInsertWithoutRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New(memory.NewStateStore())
	d := draft("alice", "c1", "hi")
	m := d.Accept(1, 1)
	if err := s.insertMessage(ctx, &m); err != nil {
		t.Fatal(err)
	}
	res, err := s.Append(ctx, aliceBob, d, AppendOptions{NowMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Duplicate || res.Message.Seq != 1 {
		t.Fatalf("got seq %d duplicate %v; want seq 1, duplicate", res.Message.Seq, res.Duplicate)
	}
	next, err := s.Append(ctx, aliceBob, draft("bob", "b1", "hey"), AppendOptions{NowMs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if next.Message.Seq != 2 {
		t.Fatalf("next message got seq %d, want 2", next.Message.Seq)
	}
	checkLog(t, s, 2)
}

// TestAppendReusedClientMsgID: a cmid sent again with another body or to
// another conversation is refused with ErrClientMsgIDReused, and nothing
// new is stored; the same send again is a duplicate.
func TestAppendReusedClientMsgID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := New(memory.NewStateStore())
	if _, err := s.Append(ctx, aliceBob, draft("alice", "c1", "one"), AppendOptions{NowMs: 1}); err != nil {
		t.Fatal(err)
	}
	other := domain.Conversation{ID: "d:alice~carol", Kind: domain.Direct, Members: []domain.UserID{"alice", "carol"}}
	for _, tc := range []struct {
		name string
		conv domain.Conversation
		d    domain.Draft
	}{
		{"other_body", aliceBob, draft("alice", "c1", "two")},
		{"other_conversation", other, domain.Draft{Conv: other.ID, Sender: "alice", ClientMsgID: "c1", ContentType: domain.Text, Body: "one"}},
	} {
		_, err := s.Append(ctx, tc.conv, tc.d, AppendOptions{NowMs: 2})
		if !errors.Is(err, ErrClientMsgIDReused) {
			t.Errorf("%s: got %v, want ErrClientMsgIDReused", tc.name, err)
		}
	}
	same, err := s.Append(ctx, aliceBob, draft("alice", "c1", "one"), AppendOptions{NowMs: 3})
	if err != nil || !same.Duplicate {
		t.Fatalf("the same send again: %+v, %v; want a duplicate", same, err)
	}
	checkLog(t, s, 1)
}

// TestAppendStoredInSeqOrder: Stored sees a conversation's new messages in
// seq order, one at a time, each once, and never a retry's.
func TestAppendStoredInSeqOrder(t *testing.T) {
	t.Parallel()
	s := New(memory.NewStateStore())
	var mu sync.Mutex
	var seen []uint64
	var busy atomic.Bool
	stored := func(m *domain.Message) {
		if !busy.CompareAndSwap(false, true) {
			t.Error("Stored calls of one conversation overlap")
		}
		mu.Lock()
		seen = append(seen, m.Seq)
		mu.Unlock()
		time.Sleep(50 * time.Microsecond) // widen the window an overlap would need
		busy.Store(false)
	}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				d := draft("alice", fmt.Sprintf("w%d-%d", w, i), "x")
				for range 2 { // the second is a retry: not handed on again
					if _, err := s.Append(context.Background(), aliceBob, d, AppendOptions{NowMs: 1, Stored: stored}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != 180 {
		t.Fatalf("Stored called %d times, want 180", len(seen))
	}
	for i, seq := range seen {
		if seq != uint64(i+1) {
			t.Fatalf("call %d had seq %d: out of order", i, seq)
		}
	}
}

// heldCommits holds every commit (a transaction that writes idempotency
// records) until release is closed: a commit that is slow to land.
type heldCommits struct {
	infrastructure.StateStore
	held    chan struct{} // gets a value as each commit starts waiting
	release chan struct{}
}

func (h *heldCommits) Transact(ctx context.Context, ops []infrastructure.StateOp) error {
	if slices.ContainsFunc(ops, func(op infrastructure.StateOp) bool { return strings.HasPrefix(op.Key, "idem:") }) {
		h.held <- struct{}{}
		<-h.release
	}
	return h.StateStore.Transact(ctx, ops)
}

// TestAppendAnswersBeforeItsCommit: a send is answered once its message is
// stored, while its commit is still on its way. A retry of it on the same
// node waits for the commit and gets the message back; a retry on another
// node finds it by probing; the listing shows it as the last message, read
// by its sender; and Close waits for the commit to land.
func TestAppendAnswersBeforeItsCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := &heldCommits{StateStore: memory.NewStateStore(), held: make(chan struct{}, 16), release: make(chan struct{})}
	if err := state.StateStore.Set(ctx, headKey(aliceBob.ID), []byte("0")); err != nil {
		t.Fatal(err)
	}
	node, other := New(state), New(state)
	if err := node.CreateConversation(ctx, aliceBob); err != nil {
		t.Fatal(err)
	}
	d := draft("alice", "c1", "hi @bob")
	d.Mentions = []domain.UserID{"bob"}
	first, err := node.Append(ctx, aliceBob, d, AppendOptions{NowMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	<-state.held
	if first.Duplicate || first.Message.Seq != 1 {
		t.Fatalf("got seq %d duplicate %v, want seq 1, new", first.Message.Seq, first.Duplicate)
	}
	if _, ok, _ := node.priorSend(ctx, "alice", "c1"); ok {
		t.Fatal("test setup: the record is written although the commit is held")
	}

	sums, err := node.Summaries(ctx, "alice", []domain.ConversationID{aliceBob.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].LastSeq != 1 || sums[0].Last == nil || sums[0].Last.ID != first.Message.ID || sums[0].ReadSeq != 1 {
		t.Fatalf("alice's listing before the commit: %+v; want last seq 1, her message, read up to 1", sums)
	}
	sums, err = node.Summaries(ctx, "bob", []domain.ConversationID{aliceBob.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].LastSeq != 1 || sums[0].ReadSeq != 0 || sums[0].PeerReadSeq != 1 || sums[0].MentionSeq != 1 {
		t.Fatalf("bob's listing before the commit: %+v; want last seq 1 unread, mentioning him, read by alice", sums)
	}

	sameNode := make(chan Appended, 1)
	go func() {
		res, err := node.Append(ctx, aliceBob, d, AppendOptions{NowMs: 2})
		if err != nil {
			t.Error(err)
		}
		sameNode <- res
	}()
	select {
	case res := <-sameNode:
		t.Fatalf("a retry on the sending node was answered (%+v) before the first attempt's commit landed", res)
	case <-time.After(50 * time.Millisecond):
	}

	// The other node's retry probes from the hint, below the message.
	retry, err := other.Append(ctx, aliceBob, d, AppendOptions{NowMs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !retry.Duplicate || retry.Message.Seq != 1 {
		t.Fatalf("retry on another node got seq %d duplicate %v, want seq 1, duplicate", retry.Message.Seq, retry.Duplicate)
	}
	<-state.held // the other node's commit of the record it found

	closed := make(chan struct{})
	go func() {
		node.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a commit of answered sends was held")
	case <-time.After(50 * time.Millisecond):
	}
	close(state.release)
	<-closed
	if res := <-sameNode; !res.Duplicate || res.Message.Seq != 1 {
		t.Fatalf("retry on the sending node got seq %d duplicate %v, want seq 1, duplicate", res.Message.Seq, res.Duplicate)
	}
	if _, ok, _ := node.priorSend(ctx, "alice", "c1"); !ok {
		t.Fatal("the record is missing after Close")
	}
	other.Close()
	checkLog(t, node, 1)
}

// TestACommitLandingLateKeepsTheReadCursor: bob's send is answered, bob
// marks a later message read, and only then does his send's commit land:
// his cursor stays where he moved it.
func TestACommitLandingLateKeepsTheReadCursor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := &heldCommits{StateStore: memory.NewStateStore(), held: make(chan struct{}, 16), release: make(chan struct{})}
	node, other := New(state), New(state)
	bobs, err := node.Append(ctx, aliceBob, draft("bob", "b1", "first"), AppendOptions{NowMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	<-state.held
	alices, err := other.Append(ctx, aliceBob, draft("alice", "a1", "second"), AppendOptions{NowMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	<-state.held
	if alices.Message.Seq != bobs.Message.Seq+1 {
		t.Fatalf("seqs %d then %d, want consecutive", bobs.Message.Seq, alices.Message.Seq)
	}
	if cur, err := node.AdvanceReadCursor(ctx, aliceBob.ID, "bob", alices.Message.Seq); err != nil || cur != alices.Message.Seq {
		t.Fatalf("bob marks %d read: cursor %d, %v", alices.Message.Seq, cur, err)
	}
	close(state.release)
	node.Close()
	other.Close()
	got, err := node.ReadCursors(ctx, aliceBob.ID, []domain.UserID{"alice", "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != alices.Message.Seq || got[1] != alices.Message.Seq {
		t.Fatalf("cursors alice %d, bob %d after the commits; want %d each (alice sent it, bob read it)", got[0], got[1], alices.Message.Seq)
	}
}

// TestListingCountsOwnSendsAsRead: in a direct and in a customer-service
// conversation, a user's own messages count as read in the listing once
// their commit landed, though the newest message is another member's.
func TestListingCountsOwnSendsAsRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc, err := domain.NewServiceConversation("shop", "carol", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, conv := range []domain.Conversation{
		aliceBob,
		{ID: svc.ID, Kind: domain.Service, Members: svc.Members()},
	} {
		s := New(memory.NewStateStore())
		own, other := conv.Members[0], conv.Members[1]
		for i, from := range []domain.UserID{own, own, other} {
			d := domain.Draft{Conv: conv.ID, Sender: from, ClientMsgID: fmt.Sprintf("c%d", i), ContentType: domain.Text, Body: "x"}
			if _, err := s.Append(ctx, conv, d, AppendOptions{NowMs: 1}); err != nil {
				t.Fatal(err)
			}
		}
		s.Close() // the commits have landed
		sums, err := s.Summaries(ctx, own, []domain.ConversationID{conv.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(sums) != 1 || sums[0].LastSeq != 3 || sums[0].ReadSeq != 2 {
			t.Fatalf("%s: %s's listing %+v; want last seq 3, read up to 2 (their own sends)", conv.ID, own, sums)
		}
	}
}

// flakyRecords refuses the first refusals idempotency record writes made
// with Set as unavailable, as MySQL refuses a write that deadlocked with
// another transaction on the same key.
type flakyRecords struct {
	infrastructure.StateStore
	refusals atomic.Int32
}

func (f *flakyRecords) Set(ctx context.Context, key string, value []byte, opts ...infrastructure.WriteOption) error {
	if strings.HasPrefix(key, "idem:") && f.refusals.Add(-1) >= 0 {
		return fmt.Errorf("deadlock found: %w", infrastructure.ErrUnavailable)
	}
	return f.StateStore.Set(ctx, key, value, opts...)
}

// TestARepairThatMeetsADeadlockIsTriedAgain: a send that probes past
// another sender's unrecorded message repairs its record; a write refused
// as unavailable a few times is tried again, and the send succeeds.
func TestARepairThatMeetsADeadlockIsTriedAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	state := &flakyRecords{StateStore: memory.NewStateStore()}
	s := New(state)
	defer s.Close()
	d := draft("bob", "b1", "unrecorded")
	m := d.Accept(1, 1)
	if err := s.insertMessage(ctx, &m); err != nil {
		t.Fatal(err)
	}
	state.refusals.Store(3)
	res, err := s.Append(ctx, aliceBob, draft("alice", "a1", "next"), AppendOptions{NowMs: 2})
	if err != nil {
		t.Fatalf("alice's send failed on a repair the store refused 3 times: %v", err)
	}
	if res.Message.Seq != 2 {
		t.Fatalf("alice's message got seq %d, want 2", res.Message.Seq)
	}
	if _, ok, _ := s.priorSend(ctx, "bob", "b1"); !ok {
		t.Fatal("bob's record was not repaired")
	}
}
