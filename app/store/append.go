package store

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
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
}

// Appended is the result of an Append. Duplicate is true when the same
// (sender, client message id) was stored before and Message is that one.
type Appended struct {
	Message   domain.Message
	Duplicate bool
}

// Append stores draft as the next message of conv and returns once it is
// durable and recorded, so that the caller may acknowledge it. It owns the
// whole "no gaps" rule of a conversation's seqs:
//
//   - claim: the seq is taken by inserting msg:{conv}:{seq} only if absent.
//     That single-key insert is atomic on every store, so two writers, even
//     on two nodes, never share a seq, and a seq is only taken by a message
//     that is stored;
//   - head cache: this node remembers the newest seq it gave each
//     conversation and probes past it; the head key is only a hint;
//   - repair: a writer that finds a seq taken reads it. If it holds this
//     very send (an earlier attempt whose reply was lost), that is the
//     answer. If it holds another sender's message, that message's
//     idempotency record is written again on the way past, so a send cut
//     off between its insert and its commit is still found by its retry;
//   - idempotency: a retry of (sender, cmid) gets the first message back;
//   - commit: the idempotency record, the head hint and the sender's read
//     cursor are written in one transaction after the insert, one commit of
//     a conversation at a time and in seq order, each taking every send
//     queued behind it.
//
// conv must have been authorised for draft.Sender by the caller.
func (s *Store) Append(ctx context.Context, conv domain.Conversation, draft domain.Draft, o AppendOptions) (Appended, error) {
	release, err := s.inflight.acquire(ctx, draft.Sender, draft.ClientMsgID)
	if err != nil {
		return Appended{}, err
	}
	defer release()
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

	st.Lock()
	if st.repairs != repairs {
		if prior, ok, err := s.prior(ctx, draft); err != nil || ok {
			st.Unlock()
			return prior, err
		}
	}
	msg, dup, err := s.claim(ctx, st, conv, draft, o)
	if err != nil {
		st.Unlock()
		return Appended{}, err
	}
	q := st.commits[conv.ID]
	if q == nil {
		q = &commitQueue{}
		st.commits[conv.ID] = q
	}
	req := &commitReq{msg: &msg, done: make(chan struct{})}
	if !dup {
		// An earlier attempt that stored it handed it on then, or its
		// devices sync it: it is not pushed twice.
		req.stored = o.Stored
	}
	q.pending = append(q.pending, req)
	lead := !q.running
	q.running = true
	st.Unlock()

	// The message is durable: it is the insert. What follows runs outside
	// the lock, so the next send of the conversation claims its seq
	// meanwhile.
	if lead {
		s.commits(ctx, st, conv.ID, q, o.IdempotencyTTL)
	}
	<-req.done
	return Appended{Message: msg, Duplicate: dup}, nil
}

// commits hands on and commits what q holds, then passes the next batch, if
// any, to a goroutine of its own so that this send's reply does not wait
// for it.
func (s *Store) commits(ctx context.Context, st *stripe, conv domain.ConversationID, q *commitQueue, idemTTL time.Duration) {
	st.Lock()
	batch := q.pending
	q.pending = nil
	st.Unlock()
	msgs := make([]*domain.Message, len(batch))
	for i, r := range batch {
		msgs[i] = r.msg
		if r.stored != nil {
			r.stored(r.msg)
		}
	}
	// Detached: the batch holds other senders' messages too.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	s.commit(cctx, st, msgs, idemTTL)
	cancel()
	for _, r := range batch {
		close(r.done)
	}
	st.Lock()
	defer st.Unlock()
	if len(q.pending) == 0 {
		q.running = false
		if st.commits[conv] == q {
			delete(st.commits, conv)
		}
		return
	}
	go s.commits(ctx, st, conv, q, idemTTL)
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

// claim stores the message at the next free seq; st is locked.
func (s *Store) claim(ctx context.Context, st *stripe, conv domain.Conversation, draft domain.Draft, o AppendOptions) (domain.Message, bool, error) {
	// A group's record and its members' indexes are written when it is
	// created and as members join (CreateGroup, ApplyGroupEvent), not by
	// its first message on each node, which would re-index every member.
	if _, ok := s.known.Load(conv.ID); !ok && conv.Kind != domain.Group {
		if err := s.CreateConversation(ctx, conv); err != nil {
			return domain.Message{}, false, err
		}
		if s.knownCount.Add(1) > maxKnown {
			// Bounded: forgetting costs one create-if-absent per send.
			s.known.Clear()
			s.knownCount.Store(0)
		}
		s.known.Store(conv.ID, struct{}{})
	}
	head, cached := st.heads[conv.ID]
	if !cached {
		var err error
		if head, err = s.Head(ctx, conv.ID); err != nil {
			return domain.Message{}, false, err
		}
	}
	msg, dup, err := s.insert(ctx, st, draft, head, o)
	if err != nil {
		delete(st.heads, conv.ID)
		return domain.Message{}, false, err
	}
	if len(st.heads) >= maxHeadsPerStripe {
		// Bounded: a forgotten head costs one read of the hint.
		clear(st.heads)
	}
	st.heads[conv.ID] = msg.Seq
	return msg, dup, nil
}

// insert claims the first free seq after head; see Append.
func (s *Store) insert(ctx context.Context, st *stripe, d domain.Draft, head uint64, o AppendOptions) (domain.Message, bool, error) {
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
		if ok {
			if err := s.recordSend(ctx, &held, o.IdempotencyTTL); err != nil {
				return domain.Message{}, false, err
			}
			st.repairs++
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
			}
			head, probe = fresh, 0
		}
	}
}

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

// Close stops the retries of failed records and waits for them. A record
// left unwritten is repaired by the next writer that probes past its
// message, or found by its sender's retry probing: nothing is lost. Safe to
// call more than once.
func (s *Store) Close() {
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
	// commits holds, per conversation, the sends waiting for their commit.
	commits map[domain.ConversationID]*commitQueue
	// repairs counts idempotency records rewritten by writers probing past
	// another sender's message (see insert): a send that looked for its
	// record before one of them must look again.
	repairs uint64
}

func newStripes() *stripes {
	s := &stripes{seed: maphash.MakeSeed()}
	for i := range s.locks {
		s.locks[i].heads = make(map[domain.ConversationID]uint64)
		s.locks[i].commits = make(map[domain.ConversationID]*commitQueue)
	}
	return s
}

func (s *stripes) of(c domain.ConversationID) *stripe {
	return &s.locks[maphash.String(s.seed, string(c))%uint64(len(s.locks))]
}

// commitQueue is a conversation's sends waiting for their commit, and
// whether a commit is running. Guarded by the stripe's lock.
type commitQueue struct {
	pending []*commitReq
	running bool
}

type commitReq struct {
	msg    *domain.Message
	stored func(*domain.Message)
	done   chan struct{}
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
