package client

import (
	"slices"
	"sync"

	pb "github.com/parley-im/parley/proto/parley/v1"
)

// Inbox is what one device holds: messages from live pushes and syncs,
// with duplicates dropped by id and each conversation kept in seq order.
// The zero value is not usable; use NewInbox. Safe for concurrent use.
type Inbox struct {
	mu     sync.Mutex
	ids    map[string]bool
	convs  map[string]map[uint64]*pb.Message
	dups   int
	merged int
}

// NewInbox returns an empty inbox.
func NewInbox() *Inbox {
	return &Inbox{ids: map[string]bool{}, convs: map[string]map[uint64]*pb.Message{}}
}

// Add keeps m unless its id was seen; it reports whether m was new.
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
	c[m.Seq] = m
	in.merged++
	return true
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
