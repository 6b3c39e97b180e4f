package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// ErrClientMsgIDReused means a client message id was used again for another
// message: another conversation, content type or body. The earlier message
// stands; the new one is not stored. The client must use a fresh cmid.
var ErrClientMsgIDReused = errors.New("client message id already used for another message")

// AppendOptions are the per-call parts of an Append.
type AppendOptions struct {
	// NowMs is the server time given to a new message.
	NowMs int64
	// IdempotencyTTL is how long a retry of the send finds this message.
	// Zero means the record does not expire.
	IdempotencyTTL time.Duration
	// Stored, when set, is called once with the message after it is
	// durable and before Append returns, unless the send turns out to be a
	// retry of one stored before. Calls for one conversation come from
	// this node in seq order and never overlap, so a Stored that pushes to
	// devices gives them the conversation's messages in order. It must not
	// block: it runs ahead of the commits of the conversation's next sends.
	Stored func(*domain.Message)
	// Turn, when set, orders this send after the previous send of its
	// source (see Turn). Append places it once the send is queued for its
	// seq; the caller places it too when Append returns, for the sends
	// that end before.
	Turn *Turn
}

// Appended is the result of an Append. Duplicate is true when the same
// (sender, client message id) was stored before and Message is that one.
type Appended struct {
	Message   domain.Message
	Duplicate bool
}

// Append stores draft as the next message of conv and returns once it is
// durable and handed on (Stored), so that the caller may acknowledge it;
// its idempotency record, the head hint and the sender's newest seq are
// committed right after (see commits). It owns the
// whole "no gaps" rule of a conversation's seqs:
//
//   - claim: the seq is taken by inserting msg:{conv}:{seq} only if absent.
//     That single-key insert is atomic on every store, so two writers, even
//     on two nodes, never share a seq, and a seq is only taken by a message
//     that is stored;
//   - group claim: the sends of a conversation queued on this node claim
//     consecutive seqs together, one concurrent insert each, so that a
//     batching adapter carries them in one sidecar call. A batch never
//     leaves a free seq below a stored one that it reports: see claimRound;
//   - head cache: this node remembers the newest seq it gave each
//     conversation and claims past it; the head key is only a hint, and a
//     node that does not know the head probes one insert at a time;
//   - repair: a writer that finds a seq taken reads it. If it holds a send
//     of its own batch (an earlier attempt whose reply was lost), that is
//     the answer. If it holds another sender's message, that message's
//     idempotency record is written again on the way past, so a send cut
//     off between its insert and its commit is still found by its retry;
//   - order: the sends of one source (a connection, see Turn) join the
//     claim queue in the order they came, and, while another node writes
//     the conversation too, claim in separate rounds (see claimable);
//   - idempotency: a retry of (sender, cmid) gets the first message back;
//   - commit: the idempotency records, the head hint and the senders' newest
//     seqs are written in one transaction after the inserts, one commit
//     of a conversation at a time and in seq order, each taking every send
//     queued behind it.
//
// conv must have been authorised for draft.Sender by the caller.
func (s *Store) Append(ctx context.Context, conv domain.Conversation, draft domain.Draft, o AppendOptions) (Appended, error) {
	release, err := s.inflight.acquire(ctx, draft.Sender, draft.ClientMsgID)
	if err != nil {
		return Appended{}, err
	}
	// A send answered before its commit keeps its turn until the commit
	// ends, so that a retry here waits for the record (see commits).
	var req *sendReq
	defer func() {
		if req == nil || !req.committing {
			release()
		}
	}()
	// Look for an earlier attempt's record before taking the lock, so that
	// the lookup of one send overlaps the claims of others. A record
	// repaired meanwhile is looked for again under the lock.
	st := s.stripes.of(conv.ID)
	st.Lock()
	repairs := st.repairs
	st.Unlock()
	if prior, ok, err := s.prior(ctx, draft); err != nil || ok {
		return prior, err
	}
	// The source's previous send first: its seq comes before this one's.
	if err := o.Turn.wait(ctx); err != nil {
		return Appended{}, err
	}

	st.Lock()
	if st.repairs != repairs {
		if prior, ok, err := s.prior(ctx, draft); err != nil || ok {
			st.Unlock()
			return prior, err
		}
	}
	req = &sendReq{draft: draft, conv: conv, opts: o, done: make(chan struct{}), repairs: st.repairs, release: release}
	q := st.claims[conv.ID]
	if q == nil && st.claimMu.TryLock() {
		// Nothing queued and the turn is free: this send's round is its
		// own.
		req.taken = true
		st.Unlock()
		o.Turn.Placed()
		s.claims(ctx, st, []*sendReq{req})
		return req.wait()
	}
	if q == nil {
		q = &claimQueue{}
		st.claims[conv.ID] = q
	}
	q.pending = append(q.pending, req)
	st.Unlock()
	o.Turn.Placed()

	// One claim round of the stripe's conversations at a time. The send
	// that gets the turn claims for every send of its conversation queued
	// by then, itself included; a send whose round already ran only waits
	// for its answer.
	st.claimMu.Lock()
	st.Lock()
	var batch []*sendReq
	if !req.taken {
		n := claimable(q.pending, st.contendedNow(conv.ID))
		batch = slices.Clone(q.pending[:n])
		for _, r := range batch {
			r.taken = true
		}
		q.pending = q.pending[n:]
		if len(q.pending) == 0 && st.claims[conv.ID] == q {
			delete(st.claims, conv.ID)
		}
	}
	st.Unlock()
	if batch == nil {
		st.claimMu.Unlock()
	} else {
		s.claims(ctx, st, batch)
	}
	return req.wait()
}

// wait waits for the send's answer.
func (r *sendReq) wait() (Appended, error) {
	<-r.done
	if r.err != nil {
		return Appended{}, r.err
	}
	return Appended{Message: r.msg, Duplicate: r.dup}, nil
}

// maxClaim bounds the sends of one conversation that claim seqs together.
const maxClaim = 32

// claimable is how many of a conversation's pending sends, from the first,
// claim their seqs in one round: at most maxClaim, and, while another
// node writes the conversation too (contended), no two of one source
// (store.Turn). A round's sends after the anchor are written together,
// and one whose seq another node took first claims again after the others
// are stored: two sends of one source in such a round would be stored in
// the reverse of their order.
func claimable(pending []*sendReq, contended bool) int {
	n := min(len(pending), maxClaim)
	if !contended {
		return n
	}
	for i := 1; i < n; i++ {
		src := pending[i].opts.Turn.sourceOf()
		if src == nil {
			continue
		}
		for _, r := range pending[:i] {
			if r.opts.Turn.sourceOf() == src {
				return i
			}
		}
	}
	return n
}

// claims runs claim rounds for batch until every send in it is stored or
// failed, hands each round's stored sends to the commit queue in seq
// order, releases the stripe's claim turn (held by the caller), and then,
// if no commit of the conversation runs, starts one. The next round of the
// stripe thus overlaps this commit.
func (s *Store) claims(ctx context.Context, st *stripe, batch []*sendReq) {
	conv := batch[0].conv.ID
	cctx, cancel := ctx, context.CancelFunc(func() {})
	if len(batch) > 1 {
		// Detached: the batch holds other senders' sends too.
		cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	}
	var cq *commitQueue
	lead := false
	for len(batch) > 0 {
		settled, again := s.claimRound(cctx, st, batch)
		st.Lock()
		// Queued in seq order before the next round can queue its own:
		// the commit queue hands messages on in the order they join it.
		if q, l := st.queueCommits(conv, settled); q != nil {
			if l {
				s.committing.Add(1)
			}
			cq, lead = q, lead || l
		}
		st.Unlock()
		// The sends that lost their seq to another writer claim again.
		batch = again
	}
	cancel()
	st.claimMu.Unlock()
	if lead {
		// Apart from the caller, whose send is answered before the commit.
		go s.commits(ctx, st, conv, cq)
	}
}

// claimRound stores the sends of batch, all of one conversation, at the
// seqs that follow the head. It returns the stored ones in seq order, and
// the sends to claim again: those whose seq another writer took first, and
// those the round did not get to.
//
// The first send is the anchor: it probes from the head one insert at a
// time (insert), as every send did alone, so it finds the end of the log
// and, on the way, any earlier attempt of a send of the batch. Once it is
// stored, no seq above it was taken when it was, so the rest can only meet
// writers that came later: they are inserted at the seqs after it in one
// write that the store applies whole (infrastructure.BatchInserter), or,
// on a store that cannot, claimed by the next rounds one by one. A whole
// write leaves no free seq below one it stored, so no send is acknowledged
// above a free seq, and an insert whose fate is unknown fails with the
// rest of its write, for the retries to find by probing.
func (s *Store) claimRound(ctx context.Context, st *stripe, batch []*sendReq) (settled, again []*sendReq) {
	conv := batch[0].conv
	fail := func(reqs []*sendReq, err error) {
		for _, r := range reqs {
			r.fail(err)
		}
	}
	st.Lock()
	head, cached := st.heads[conv.ID]
	forgets := st.forgets
	st.Unlock()
	if !cached {
		hint, err := s.Head(ctx, conv.ID)
		if err != nil {
			fail(batch, err)
			return nil, nil
		}
		head = hint
	}
	// A probe of an earlier round may have repaired the record of a send
	// that was already queued: such a send looks for its record again, as
	// it would have before queueing. Reading the hint counts as a repair:
	// the hint may have passed a message whose commit wrote it after a
	// send of this batch looked for its record (the send is answered
	// before its commit), and a retry of it made meanwhile would claim
	// past it.
	st.Lock()
	if !cached {
		st.repairs++
	}
	repairs := st.repairs
	st.Unlock()
	batch = slices.DeleteFunc(batch, func(r *sendReq) bool {
		if r.repairs == repairs {
			return false
		}
		r.repairs = repairs
		prior, ok, err := s.prior(ctx, r.draft)
		switch {
		case err != nil:
			r.fail(err)
		case ok:
			r.msg, r.dup = prior.Message, true
			close(r.done)
		}
		return err != nil || ok
	})
	if len(batch) == 0 {
		return nil, nil
	}
	// A group's record and its members' indexes are written when it is
	// created and as members join (CreateGroup, ApplyGroupEvent), not by
	// its first message on each node, which would re-index every member.
	if _, ok := s.known.Load(conv.ID); !ok && conv.Kind != domain.Group {
		if err := s.CreateConversation(ctx, conv); err != nil {
			fail(batch, err)
			return nil, nil
		}
		if s.knownCount.Add(1) > maxKnown {
			// Bounded: forgetting costs one create-if-absent per send.
			s.known.Clear()
			s.knownCount.Store(0)
		}
		s.known.Store(conv.ID, struct{}{})
	}
	first, rest := batch[0], batch[1:]
	var passed []domain.Message
	msg, dup, err := s.insert(ctx, st, first.draft, head, first.opts, &passed)
	if errors.Is(err, ErrClientMsgIDReused) {
		first.fail(err)
		return nil, rest
	}
	if err != nil {
		s.forgetHead(st, conv.ID)
		fail(batch, err)
		return nil, nil
	}
	first.msg, first.dup = msg, dup
	settled = append(settled, first)
	// Sends of the batch whose earlier attempt the probe passed.
	rest = slices.DeleteFunc(rest, func(r *sendReq) bool {
		if len(passed) == 0 {
			return false
		}
		id := domain.MessageID(r.draft.Sender, r.draft.ClientMsgID)
		i := slices.IndexFunc(passed, func(m domain.Message) bool { return m.ID == id })
		if i < 0 {
			return false
		}
		held := passed[i]
		if !sameContent(&held, r.draft) {
			r.fail(ErrClientMsgIDReused)
			return true
		}
		r.msg, r.dup = held, true
		settled = append(settled, r)
		return true
	})
	bi, batches := s.state.(infrastructure.BatchInserter)
	if dup || len(rest) == 0 || !batches {
		// A duplicate's seq may lie below the end of the log: the next
		// round probes again.
		s.setHead(st, conv.ID, msg.Seq, !dup, forgets)
		sortBySeq(settled)
		return settled, rest
	}
	items := make([]infrastructure.Insert, 0, len(rest))
	rest = slices.DeleteFunc(rest, func(r *sendReq) bool {
		r.msg = r.draft.Accept(msg.Seq+uint64(len(items)+1), r.opts.NowMs)
		data, err := json.Marshal(&r.msg)
		if err != nil {
			r.fail(fmt.Errorf("encode message %s: %w", r.msg.ID, err))
			return true
		}
		items = append(items, infrastructure.Insert{Key: msgKey(r.msg.Conv, r.msg.Seq), Value: data})
		return false
	})
	errs, ok := bi.InsertAll(ctx, items)
	if !ok {
		s.setHead(st, conv.ID, msg.Seq, true, forgets)
		return settled, rest
	}
	clean := !slices.ContainsFunc(errs, func(err error) bool { return err != nil })
	if clean {
		settled = append(settled, rest...)
		s.setHead(st, conv.ID, msg.Seq+uint64(len(rest)), true, forgets)
		return settled, nil
	}
	// Seqs taken by writers that came after the anchor: read what holds
	// them, to find this batch's own sends (the same send made at once on
	// another node) and to repair other senders' records on the way.
	held := make(map[string]domain.Message)
	for i, err := range errs {
		if !errors.Is(err, infrastructure.ErrConflict) {
			continue
		}
		m, ok, rerr := s.message(ctx, items[i].Key)
		if rerr != nil || !ok {
			errs[i] = fmt.Errorf("seq %d is taken but could not be read: %w", rest[i].msg.Seq, infrastructure.ErrUnavailable)
			continue
		}
		held[m.ID] = m
	}
	ids := make(map[string]bool, len(rest))
	for i, r := range rest {
		ids[r.msg.ID] = true
		if h, ok := held[r.msg.ID]; ok {
			if !sameContent(&h, r.draft) {
				r.fail(ErrClientMsgIDReused)
				continue
			}
			r.msg, r.dup = h, true
			settled = append(settled, r)
			continue
		}
		switch err := errs[i]; {
		case err == nil:
			settled = append(settled, r)
		case errors.Is(err, infrastructure.ErrConflict):
			again = append(again, r)
		default:
			r.fail(err)
		}
	}
	repaired := false
	for id, m := range held {
		if ids[id] {
			continue
		}
		if err := s.repairRecord(ctx, &m, first.opts.IdempotencyTTL); err == nil {
			repaired = true
		}
	}
	st.Lock()
	if repaired {
		st.repairs++
	}
	delete(st.heads, conv.ID)
	st.contend(conv.ID)
	st.Unlock()
	sortBySeq(settled)
	return settled, again
}

// setHead remembers head as conv's newest seq on this node when known is
// true and no commit failed since forgets was read (a failed commit drops
// the head so that retries of its sends probe); otherwise it forgets it.
func (s *Store) setHead(st *stripe, conv domain.ConversationID, head uint64, known bool, forgets uint64) {
	st.Lock()
	defer st.Unlock()
	if !known || st.forgets != forgets {
		delete(st.heads, conv)
		return
	}
	if len(st.heads) >= maxHeadsPerStripe {
		// Bounded: a forgotten head costs one read of the hint.
		clear(st.heads)
	}
	st.heads[conv] = head
}

func sortBySeq(reqs []*sendReq) {
	slices.SortFunc(reqs, func(a, b *sendReq) int { return cmp.Compare(a.msg.Seq, b.msg.Seq) })
}

// forgetHead drops this node's head of conv: the next claim probes from
// the hint.
func (s *Store) forgetHead(st *stripe, conv domain.ConversationID) {
	st.Lock()
	delete(st.heads, conv)
	st.Unlock()
}

// queueCommits appends settled sends, in seq order, to conv's commit
// queue; lead reports that no commit runs, so the caller must run it. st
// is locked.
func (st *stripe) queueCommits(conv domain.ConversationID, settled []*sendReq) (q *commitQueue, lead bool) {
	if len(settled) == 0 {
		return nil, false
	}
	q = st.commits[conv]
	if q == nil {
		q = &commitQueue{}
		st.commits[conv] = q
	}
	q.pending = append(q.pending, settled...)
	q.ttl = settled[len(settled)-1].opts.IdempotencyTTL
	lead = !q.running
	q.running = true
	return q, lead
}

// commits hands on, answers and commits what q holds, then passes the next
// batch, if any, to a goroutine of its own.
//
// A send is answered once its message is stored and handed on, before its
// commit: the message is durable, and the commit's records only serve a
// retry, which finds the message by probing while they are not written
// (see commit). The send's (sender, cmid) stays taken on this node until
// the commit ends, so a retry made here waits for the record rather than
// claiming past a head that this node cached above the message.
func (s *Store) commits(ctx context.Context, st *stripe, conv domain.ConversationID, q *commitQueue) {
	st.Lock()
	batch, idemTTL := q.pending, q.ttl
	q.pending = nil
	st.Unlock()
	msgs := make([]*domain.Message, len(batch))
	for i, r := range batch {
		msgs[i] = &r.msg
		if !r.dup && r.opts.Stored != nil {
			// An earlier attempt that stored a duplicate handed it on
			// then, or its devices sync it: it is not pushed twice.
			r.opts.Stored(&r.msg)
		}
	}
	for _, r := range batch {
		r.committing = true
		close(r.done)
	}
	// Detached: the batch holds other senders' messages too.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	s.commit(cctx, st, msgs, idemTTL)
	cancel()
	for _, r := range batch {
		r.release()
	}
	st.Lock()
	defer st.Unlock()
	if len(q.pending) == 0 {
		q.running = false
		if st.commits[conv] == q {
			delete(st.commits, conv)
		}
		s.committing.Done()
		return
	}
	go s.commits(ctx, st, conv, q)
}

// commitTimeout bounds one commit, which runs apart from any one caller.
const commitTimeout = 10 * time.Second

// maxProbe bounds how far past a stale head hint a writer looks for a free
// seq before it re-reads the head.
const maxProbe = 64

// maxKnown and maxHeadsPerStripe bound what a node remembers of the
// conversations it served; past them it starts over.
const (
	maxKnown          = 1 << 20
	maxHeadsPerStripe = 4096
)

// insert claims the first free seq after head; see Append.
//
// passed, when not nil, gets every message the probe found in its way.
func (s *Store) insert(ctx context.Context, st *stripe, d domain.Draft, head uint64, o AppendOptions, passed *[]domain.Message) (domain.Message, bool, error) {
	id := domain.MessageID(d.Sender, d.ClientMsgID)
	for probe := 1; ; probe++ {
		msg := d.Accept(head+uint64(probe), o.NowMs)
		err := s.insertMessage(ctx, &msg)
		if err == nil {
			return msg, false, nil
		}
		if !errors.Is(err, infrastructure.ErrConflict) {
			return domain.Message{}, false, err
		}
		held, ok, err := s.message(ctx, msgKey(d.Conv, msg.Seq)) // as first stored, not as changed since
		if err != nil {
			return domain.Message{}, false, err
		}
		if ok && held.ID == id {
			if !sameContent(&held, d) {
				return domain.Message{}, false, ErrClientMsgIDReused
			}
			return held, true, nil
		}
		if ok && passed != nil {
			*passed = append(*passed, held)
		}
		if ok {
			if err := s.repairRecord(ctx, &held, o.IdempotencyTTL); err != nil {
				return domain.Message{}, false, err
			}
			st.Lock()
			st.repairs++
			st.contend(d.Conv)
			st.Unlock()
		}
		if probe == maxProbe {
			fresh, herr := s.Head(ctx, d.Conv)
			if herr != nil {
				return domain.Message{}, false, herr
			}
			if fresh <= head {
				// The hint lags more than maxProbe behind (a batch whose
				// commit never happened): seqs have no gaps, so probing on
				// finds the end.
				fresh = head + maxProbe
			} else if prior, ok, err := s.prior(ctx, d); err != nil || ok {
				// A jump to the hint passes messages unseen, this send's
				// earlier attempt among them if its commit came since
				// this send looked for its record.
				return prior.Message, ok, err
			}
			head, probe = fresh, 0
		}
	}
}

// repairRecord writes the idempotency record of m, another sender's
// message that a claim met, trying again after a short wait while the
// store is unavailable: the sender's own commit may be writing the same
// record at that moment, and MySQL answers two such writes with a
// deadlock that it asks to restart.
func (s *Store) repairRecord(ctx context.Context, m *domain.Message, idemTTL time.Duration) error {
	wait := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.recordSend(ctx, m, idemTTL)
		if err == nil || attempt == repairAttempts || !errors.Is(err, infrastructure.ErrUnavailable) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		wait *= 2
	}
}

// repairAttempts bounds the writes of one repaired record.
const repairAttempts = 4

// commit records stored messages' sends. A failed commit does not fail the
// sends: the messages are stored, and a retry finds one by probing. The
// records are tried again in the background, since later sends of the
// conversation may already have moved the head past them; the head cache
// is dropped so that this node re-reads the head.
func (s *Store) commit(ctx context.Context, st *stripe, msgs []*domain.Message, idemTTL time.Duration) {
	err := s.commitSends(ctx, msgs, idemTTL)
	if err == nil {
		return
	}
	st.Lock()
	delete(st.heads, msgs[0].Conv)
	st.forgets++
	st.Unlock()
	s.retries.Add(1)
	go func() {
		defer s.retries.Done()
		bctx := context.WithoutCancel(ctx)
		t := time.NewTimer(0)
		defer t.Stop()
		for wait := time.Second; wait <= 8*time.Second && len(msgs) > 0; wait *= 2 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-s.closing:
				return
			}
			var left []*domain.Message
			for _, m := range msgs {
				cctx, cancel := context.WithTimeout(bctx, 5*time.Second)
				if err := s.recordSend(cctx, m, idemTTL); err != nil {
					left = append(left, m)
				}
				cancel()
			}
			msgs = left
		}
	}()
}

// Close waits for the commits of sends already answered, then stops the
// retries of failed records and waits for them. Call it once no Append
// can start. A record
// left unwritten is repaired by the next writer that probes past its
// message, or found by its sender's retry probing: nothing is lost. Safe to
// call more than once.
func (s *Store) Close() {
	s.committing.Wait()
	s.closeOnce.Do(func() { close(s.closing) })
	s.retries.Wait()
}

// prior finds the message an earlier attempt of the same send stored.
func (s *Store) prior(ctx context.Context, d domain.Draft) (Appended, bool, error) {
	rec, ok, err := s.priorSend(ctx, d.Sender, d.ClientMsgID)
	if err != nil || !ok {
		return Appended{}, false, err
	}
	m, ok, err := s.message(ctx, msgKey(rec.Conv, rec.Seq))
	if err != nil {
		return Appended{}, false, err
	}
	if !ok || m.ID != domain.MessageID(d.Sender, d.ClientMsgID) {
		// A refused insert on a store without atomic transactions can leave
		// a record pointing at another message: it is not this send's.
		return Appended{}, false, nil
	}
	if !sameContent(&m, d) {
		return Appended{}, false, ErrClientMsgIDReused
	}
	return Appended{Message: m, Duplicate: true}, true, nil
}

// sameContent reports whether m is what d asks to store: a retry carries
// the same conversation, content type and body. d is the draft as a
// before-send hook left it, which is what was stored the first time.
func sameContent(m *domain.Message, d domain.Draft) bool {
	return m.Conv == d.Conv && m.ContentType == d.ContentType && m.Body == d.Body
}

// stripes serialises work per conversation on this node with a fixed set of
// mutexes, so memory does not grow with the number of conversations. Two
// conversations may share a stripe; that only costs a little concurrency.
type stripes struct {
	seed  maphash.Seed
	locks [256]stripe
}

// stripe is the lock of some conversations and what it guards.
type stripe struct {
	sync.Mutex
	// heads caches the newest seq this node gave each conversation.
	heads map[domain.ConversationID]uint64
	// claimMu is the turn of one claim round of the stripe's
	// conversations; it is held across the round's writes.
	claimMu sync.Mutex
	// claims holds, per conversation, the sends waiting to claim a seq.
	claims map[domain.ConversationID]*claimQueue
	// commits holds, per conversation, the sends waiting for their commit.
	commits map[domain.ConversationID]*commitQueue
	// forgets counts heads dropped by failed commits (see commit).
	forgets uint64
	// repairs counts idempotency records rewritten by writers probing past
	// another sender's message (see insert): a send that looked for its
	// record before one of them must look again.
	repairs uint64
	// contended holds, per conversation, until when (Unix nanoseconds)
	// its claims take one send of a source per round (see claimable):
	// contendedFor after this node last met another writer's message
	// where it claimed.
	contended map[domain.ConversationID]int64
}

// contendedFor is how long a conversation counts as written by another
// node after this node last met that node's message in its claims.
const contendedFor = 10 * time.Second

// contend marks conv as written by another node too. st is locked.
func (st *stripe) contend(conv domain.ConversationID) {
	if st.contended == nil || len(st.contended) >= maxHeadsPerStripe {
		// Bounded: a conversation forgotten early batches again, as one
		// that no other node writes.
		st.contended = make(map[domain.ConversationID]int64)
	}
	st.contended[conv] = time.Now().Add(contendedFor).UnixNano()
}

// contendedNow reports whether another node wrote conv lately. st is
// locked.
func (st *stripe) contendedNow(conv domain.ConversationID) bool {
	until, ok := st.contended[conv]
	if !ok {
		return false
	}
	if time.Now().UnixNano() < until {
		return true
	}
	delete(st.contended, conv)
	return false
}

func newStripes() *stripes {
	s := &stripes{seed: maphash.MakeSeed()}
	for i := range s.locks {
		s.locks[i].heads = make(map[domain.ConversationID]uint64)
		s.locks[i].claims = make(map[domain.ConversationID]*claimQueue)
		s.locks[i].commits = make(map[domain.ConversationID]*commitQueue)
	}
	return s
}

func (s *stripes) of(c domain.ConversationID) *stripe {
	return &s.locks[maphash.String(s.seed, string(c))%uint64(len(s.locks))]
}

// claimQueue is a conversation's sends waiting to claim seqs, and whether
// a claim round runs. Guarded by the stripe's lock.
type claimQueue struct {
	pending []*sendReq
}

// commitQueue is a conversation's stored sends waiting for their commit,
// and whether a commit is running. Guarded by the stripe's lock.
type commitQueue struct {
	pending []*sendReq
	running bool
	ttl     time.Duration // the idempotency TTL of the newest sends queued
}

// sendReq is one Append on its way through the claim and the commit.
type sendReq struct {
	draft domain.Draft
	conv  domain.Conversation
	opts  AppendOptions
	// msg and dup are set by the claim; err when the send fails.
	msg  domain.Message
	dup  bool
	err  error
	done chan struct{}
	// taken is set, under the stripe lock, once a round took the send.
	taken bool
	// committing is set, before done is closed, when the send is answered
	// ahead of its commit; release, its (sender, cmid) turn on this node,
	// is then freed by the commit (see commits).
	committing bool
	release    func()
	// repairs is the stripe's repairs when the send last looked for an
	// earlier attempt's record.
	repairs uint64
}

// fail ends the send with err.
func (r *sendReq) fail(err error) {
	r.err = err
	close(r.done)
}

// inflight lets one attempt per (sender, client message id) run at a time
// on this node: a retry that races its first attempt waits for it, then
// finds its record. Safe for concurrent use.
type inflight struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// acquire waits until no other attempt of the same send runs here, then
// claims it; release frees it.
func (f *inflight) acquire(ctx context.Context, sender domain.UserID, cmid string) (release func(), err error) {
	key := string(sender) + "\x00" + cmid
	for {
		f.mu.Lock()
		if f.m == nil {
			f.m = make(map[string]chan struct{})
		}
		busy, ok := f.m[key]
		if !ok {
			done := make(chan struct{})
			f.m[key] = done
			f.mu.Unlock()
			return func() {
				f.mu.Lock()
				delete(f.m, key)
				f.mu.Unlock()
				close(done)
			}, nil
		}
		f.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, fmt.Errorf("an earlier attempt of this send is still running: %w", infrastructure.ErrUnavailable)
		}
	}
}
