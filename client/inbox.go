package client

import (
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	pb "github.com/parley-im/parley/proto/parley/v1"
)

// Inbox is what one device holds: messages from live pushes and syncs,
// with duplicates dropped by id and each conversation kept in seq order.
// A message.recalled or message.edited event it holds is applied to the
// message it targets, whichever of the two arrives first, so that the
// inbox shows what history would: a recalled message with no body, an
// edited one with its latest body.
// The zero value is not usable; use NewInbox. Safe for concurrent use.
type Inbox struct {
	mu     sync.Mutex
	ids    map[string]bool
	convs  map[string]map[uint64]*pb.Message
	dups   int
	merged int
	// changes holds, per conversation and target seq, the latest recall
	// or edit event seen, so that a target that arrives after its event
	// (a sync page cut between them, a late retransmission) is changed too.
	changes map[string]map[uint64]change
}

// change is a recall or an edit of one message, from the event at seq.
type change struct {
	seq    uint64
	recall bool
	ctype  string
	body   string
}

// NewInbox returns an empty inbox.
func NewInbox() *Inbox {
	return &Inbox{ids: map[string]bool{}, convs: map[string]map[uint64]*pb.Message{}, changes: map[string]map[uint64]change{}}
}

// Add keeps m unless its id was seen; it reports whether m was new. A
// recall or edit event changes the held message it targets. The inbox never
// modifies m: a changed message is held as a changed copy.
func (in *Inbox) Add(m *pb.Message) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.ids[m.Id] {
		in.dups++
		return false
	}
	in.ids[m.Id] = true
	c := in.convs[m.Conv]
	if c == nil {
		c = map[uint64]*pb.Message{}
		in.convs[m.Conv] = c
	}
	if ch, ok := in.changes[m.Conv][m.Seq]; ok {
		m = ch.apply(m)
	}
	c[m.Seq] = m
	in.merged++
	if IsSystem(m) {
		in.noteChange(m)
	}
	return true
}

// noteChange records the recall or edit that the event m carries, and
// applies it to the target if it is held.
func (in *Inbox) noteChange(m *pb.Message) {
	e, err := ParseSystemEvent(m)
	if err != nil || e.Target == 0 || (e.Type != EventRecalled && e.Type != EventEdited) {
		return
	}
	byTarget := in.changes[m.Conv]
	if byTarget == nil {
		byTarget = map[uint64]change{}
		in.changes[m.Conv] = byTarget
	}
	prev, had := byTarget[e.Target]
	// Events are applied in seq order, and a recall is final: an older
	// edit that comes late changes nothing.
	if had && (prev.seq > m.Seq || prev.recall) {
		return
	}
	ch := change{seq: m.Seq, recall: e.Type == EventRecalled, ctype: e.Ctype, body: e.Body}
	byTarget[e.Target] = ch
	if t := in.convs[m.Conv][e.Target]; t != nil {
		in.convs[m.Conv][e.Target] = ch.apply(t)
	}
}

// apply returns a copy of m with the change made.
func (ch change) apply(m *pb.Message) *pb.Message {
	out := proto.Clone(m).(*pb.Message)
	if ch.recall {
		out.Recalled, out.Edited, out.Body = true, false, ""
		return out
	}
	if m.Recalled {
		return out
	}
	out.Edited, out.Body = true, ch.body
	if ch.ctype != "" {
		out.Ctype = ch.ctype
	}
	return out
}

// Message returns the message at seq of conv as the inbox holds it (with
// recalls and edits applied), or nil.
func (in *Inbox) Message(conv string, seq uint64) *pb.Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.convs[conv][seq]
}

// Duplicates is how many deliveries Add dropped.
func (in *Inbox) Duplicates() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.dups
}

// Contiguous is the highest seq n of conv such that 1..n are all held: the
// point to sync from.
func (in *Inbox) Contiguous(conv string) uint64 { return in.ContiguousFrom(conv, 0) }

// ContiguousFrom is like Contiguous for a device that does not want what
// came before floor: the highest seq n >= floor such that floor+1..n are
// all held.
func (in *Inbox) ContiguousFrom(conv string, floor uint64) uint64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.convs[conv]
	n := floor
	for c[n+1] != nil {
		n++
	}
	return n
}

// Conversations lists the conversations the inbox holds messages of.
func (in *Inbox) Conversations() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]string, 0, len(in.convs))
	for k := range in.convs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Messages returns conv's messages in seq order.
func (in *Inbox) Messages(conv string) []*pb.Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.convs[conv]
	out := make([]*pb.Message, 0, len(c))
	for _, m := range c {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *pb.Message) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out
}
