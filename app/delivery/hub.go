// Package delivery pushes stored messages to the devices that are connected
// to this node, and keeps the registry of those connections.
package delivery

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/parley-im/parley/domain"
)

// Session is one connected device. Push must not block: a session that
// cannot keep up disconnects itself.
type Session interface {
	ID() string
	User() domain.UserID
	Push(env *Envelope)
	// Notify sends a small event (such as "delivered") to the device.
	Notify(ev Event)
}

// Encoding is a wire format of messages pushed to devices.
type Encoding uint8

// The encodings a device may speak; see the gateway's codecs.
const (
	EncodingJSON Encoding = iota
	EncodingProtobuf
	numEncodings
)

// Envelope carries one message to many sessions and encodes it once per
// wire format, however many devices receive it. Safe for concurrent use.
type Envelope struct {
	Msg *domain.Message
	// NoAck says devices do not acknowledge this push and it is not sent
	// again: the message is of a group above the acknowledged size (see
	// Hub.SetGroupAckMax).
	NoAck   bool
	encoded [numEncodings]struct {
		once sync.Once
		data []byte
		err  error
	}
}

// Encoded returns the push in enc, calling encode only the first time.
func (e *Envelope) Encoded(enc Encoding, encode func(*Envelope) ([]byte, error)) ([]byte, error) {
	slot := &e.encoded[enc]
	slot.once.Do(func() { slot.data, slot.err = encode(e) })
	return slot.data, slot.err
}

// newEnvelope wraps m for a delivery to members users.
func (h *Hub) newEnvelope(m *domain.Message, members int) *Envelope {
	return &Envelope{Msg: m, NoAck: m.Conv.Kind() == domain.Group && int64(members) > h.groupAckMax.Load()}
}

// Event tells a device about something that is not a message of a stream:
// a message it sent was delivered or read, someone is typing, a join
// request. Events are not stored and not retransmitted.
type Event struct {
	// Type is "delivered", "seen", "read_by", "typing", "join_requested",
	// "join_rejected" or "unassigned".
	Type string
	Conv domain.ConversationID
	Seq  uint64
	User domain.UserID // who caused it, e.g. the receiver
	// Count is how many read message Seq ("read_by"), or 1 when a typist
	// started and 0 when they stopped ("typing").
	Count uint64 `json:",omitempty"`
	// Note is a join request's message.
	Note string `json:",omitempty"`
}

// Hub is the registry of this node's sessions by user. The zero value is
// not usable; use NewHub. Safe for concurrent use.
type Hub struct {
	seed maphash.Seed
	// groupAckMax is the largest group whose pushes devices acknowledge.
	groupAckMax atomic.Int64

	// The fan-out lanes of large conversations, started on first use.
	lanesOnce   sync.Once
	lanesMu     sync.RWMutex // held to send on lanes; taken to close them
	lanesClosed bool
	lanes       [fanoutLanes]chan fanout
	lanesDone   sync.WaitGroup
	shards      [64]struct {
		sync.RWMutex
		users map[domain.UserID][]Session
	}
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	h := &Hub{seed: maphash.MakeSeed()}
	h.groupAckMax.Store(DefaultGroupAckMax)
	for i := range h.shards {
		h.shards[i].users = make(map[domain.UserID][]Session)
	}
	return h
}

// DefaultGroupAckMax is the largest group whose pushes devices acknowledge
// until SetGroupAckMax says otherwise (the live setting
// parley.group_ack_max).
const DefaultGroupAckMax = 500

// SetGroupAckMax sets the largest group whose pushes devices acknowledge
// with recv, and that are sent again until they do. Pushes of larger
// groups are marked NoAck. Safe to call at any time.
func (h *Hub) SetGroupAckMax(n int) { h.groupAckMax.Store(int64(n)) }

func (h *Hub) shard(u domain.UserID) int {
	return int(maphash.String(h.seed, string(u)) % uint64(len(h.shards)))
}

// Add registers s and reports how many sessions its user has now.
func (h *Hub) Add(s Session) int {
	sh := &h.shards[h.shard(s.User())]
	sh.Lock()
	defer sh.Unlock()
	sh.users[s.User()] = append(sh.users[s.User()], s)
	return len(sh.users[s.User()])
}

// Remove unregisters s and reports how many sessions its user has left.
func (h *Hub) Remove(s Session) int {
	sh := &h.shards[h.shard(s.User())]
	sh.Lock()
	defer sh.Unlock()
	list := sh.users[s.User()]
	if i := slices.Index(list, s); i >= 0 {
		// Copy rather than shift in place: Deliver may be iterating over
		// the old slice without the lock.
		list = append(list[:i:i], list[i+1:]...)
	}
	if len(list) == 0 {
		delete(sh.users, s.User())
		return 0
	}
	sh.users[s.User()] = list
	return len(list)
}

// Sessions returns u's sessions on this node. The slice must not be modified.
func (h *Hub) Sessions(u domain.UserID) []Session {
	sh := &h.shards[h.shard(u)]
	sh.RLock()
	defer sh.RUnlock()
	return sh.users[u]
}

// Deliver pushes m to every session of every member on this node, the
// sender's other devices included, except the session origin that sent it:
// its ACK carries the message's id and seq already.
//
// A conversation of more than inlineFanout members is pushed by a fan-out
// lane, so that the caller (a send, before its ACK) does not wait for
// thousands of pushes; one conversation always uses the same lane, so its
// messages still reach each device in the order Deliver was called.
// conv.Members must not change afterwards (the member lists of the store's
// cache are replaced, never modified).
func (h *Hub) Deliver(_ context.Context, conv *domain.Conversation, m *domain.Message, origin string) {
	if len(conv.Members) > inlineFanout && h.queueFanout(fanout{conv: conv.ID, members: conv.Members, msg: m, origin: origin}) {
		return
	}
	h.push(conv.Members, m, origin)
}

// push delivers m to the sessions of users, except origin.
func (h *Hub) push(users []domain.UserID, m *domain.Message, origin string) {
	env := h.newEnvelope(m, len(users))
	for _, u := range users {
		for _, s := range h.Sessions(u) {
			if origin == "" || s.ID() != origin {
				s.Push(env)
			}
		}
	}
}

const (
	// inlineFanout is the most members Deliver pushes to itself.
	inlineFanout = 64
	// fanoutLanes is how many large conversations are pushed at once; a
	// large conversation waits behind another only when both hash to the
	// same lane. A lane is a goroutine, started on first use.
	fanoutLanes = 16
	// fanoutQueue bounds each lane. A full lane makes Deliver wait: the
	// devices' node does not keep up, and the conversation's next sends
	// wait with it rather than messages being dropped.
	fanoutQueue = 256
)

// fanout is one message of a large conversation waiting for its pushes.
type fanout struct {
	conv    domain.ConversationID
	members []domain.UserID
	msg     *domain.Message
	origin  string
}

// queueFanout hands f to its conversation's lane, starting the lanes on
// first use. It reports false once the hub is closed: the caller pushes
// itself.
func (h *Hub) queueFanout(f fanout) bool {
	h.lanesOnce.Do(func() {
		for i := range h.lanes {
			q := make(chan fanout, fanoutQueue)
			h.lanes[i] = q
			h.lanesDone.Add(1)
			go func() {
				defer h.lanesDone.Done()
				for f := range q {
					h.push(f.members, f.msg, f.origin)
				}
			}()
		}
	})
	h.lanesMu.RLock()
	defer h.lanesMu.RUnlock()
	if h.lanesClosed {
		return false
	}
	h.lanes[maphash.String(h.seed, string(f.conv))%fanoutLanes] <- f
	return true
}

// Close pushes what the fan-out lanes hold and stops them; later
// deliveries are pushed by their callers. Safe to call more than once.
func (h *Hub) Close() {
	h.lanesOnce.Do(func() {}) // no lanes start after this
	h.lanesMu.Lock()
	if !h.lanesClosed {
		h.lanesClosed = true
		for _, q := range h.lanes {
			if q != nil {
				close(q)
			}
		}
	}
	h.lanesMu.Unlock()
	h.lanesDone.Wait()
}

// NotifyUser sends ev to every session of u on this node.
func (h *Hub) NotifyUser(u domain.UserID, ev Event) {
	for _, s := range h.Sessions(u) {
		s.Notify(ev)
	}
}

// OnlineUsers lists users with at least one session, sorted.
func (h *Hub) OnlineUsers() []domain.UserID {
	var out []domain.UserID
	for i := range h.shards {
		sh := &h.shards[i]
		sh.RLock()
		for u := range sh.users {
			out = append(out, u)
		}
		sh.RUnlock()
	}
	slices.Sort(out)
	return out
}

// Count is the number of sessions on this node.
func (h *Hub) Count() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.RLock()
		for _, l := range sh.users {
			n += len(l)
		}
		sh.RUnlock()
	}
	return n
}

// All returns every session, for shutdown.
func (h *Hub) All() []Session {
	var out []Session
	for i := range h.shards {
		sh := &h.shards[i]
		sh.RLock()
		for _, l := range sh.users {
			out = append(out, l...)
		}
		sh.RUnlock()
	}
	return out
}
