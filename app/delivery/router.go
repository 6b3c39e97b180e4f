package delivery

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	jsoniter "github.com/json-iterator/go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

var json = jsoniter.ConfigFastest

// Presence tells which other nodes hold connections of some users.
type Presence interface {
	RemoteNodes(ctx context.Context, users []domain.UserID) ([]string, error)
	// Alone reports whether no other node held a lease at the last refresh.
	Alone() bool
	// Others lists the other live nodes.
	Others() []string
	// Refresh re-reads the live nodes now.
	Refresh(ctx context.Context) error
}

// eventTimeout bounds the hand-off of an event to other nodes: events are
// hints, and the device that caused one must not wait on a slow backend.
const eventTimeout = 2 * time.Second

// handoff is what one node sends another on its node topic.
type handoff struct {
	Users []domain.UserID `json:"users"`
	Msg   *domain.Message `json:"msg,omitempty"`
	Event *Event          `json:"event,omitempty"`
	// Joined or Left names a node that just started or stopped; receivers
	// refresh their view of the cluster at once instead of at the next
	// lease renewal.
	Joined string `json:"joined,omitempty"`
	Left   string `json:"left,omitempty"`
	// Trace carries the sender's trace context (W3C traceparent) to the
	// receiving node, whose delivery then joins the send's trace: the
	// streaming subscription does not pass it on. Empty when the send was
	// not sampled.
	Trace map[string]string `json:"trace,omitempty"`
}

// tracer makes the receiving node's span of a traced hand-off.
var tracer = otel.Tracer("github.com/parley-im/parley/app/delivery")

// NodeTopic is the topic a node subscribes to for deliveries from others.
func NodeTopic(node string) string { return "node." + node }

// Router delivers to this node's devices in-process and to other nodes'
// devices with one handoff per node on that node's topic. The zero value
// is not usable; use NewRouter. Safe for concurrent use.
type Router struct {
	hub      *Hub
	presence Presence
	pubsub   infrastructure.PubSub
	node     string
	log      *zap.Logger
	sub      infrastructure.Subscription
	metrics  *metrics.Metrics

	// handoffs queue messages for other nodes, one lane per group of
	// conversations so that a conversation's messages leave in seq order,
	// without the sender waiting on the presence read and the publish.
	mu       sync.RWMutex
	stopped  bool
	stopping chan struct{} // closed when Stop begins: Deliver waits no more
	stopOnce sync.Once
	handoffs [handoffLanes]chan outgoing
	lanes    sync.WaitGroup
	seed     maphash.Seed
}

// outgoing is a message waiting for its hand-off to other nodes.
type outgoing struct {
	members []domain.UserID
	msg     *domain.Message
	// span is the send's span context, so that the hand-off (its publish
	// to daprd, and the receiving node's delivery) joins the send's trace.
	span trace.SpanContext
}

const (
	// broadcastAbove is the member count above which a message goes to
	// every other node rather than to the nodes presence names.
	broadcastAbove = 64
	// handoffLanes is how many hand-offs to other nodes run at once.
	handoffLanes = 8
	// handoffQueue bounds each lane. A full lane makes Deliver wait: the
	// backend does not keep up, and the conversation's next sends wait with
	// it rather than messages being dropped.
	handoffQueue = 1024
	// handoffTimeout bounds one hand-off: its presence read and publishes.
	handoffTimeout = 5 * time.Second
)

// NewRouter wires a router for node. Its hand-off lanes run until Stop.
func NewRouter(hub *Hub, p Presence, ps infrastructure.PubSub, node string, log *zap.Logger) *Router {
	r := &Router{hub: hub, presence: p, pubsub: ps, node: node, log: log, seed: maphash.MakeSeed(), stopping: make(chan struct{})}
	for i := range r.handoffs {
		q := make(chan outgoing, handoffQueue)
		r.handoffs[i] = q
		r.lanes.Add(1)
		go r.handoffLane(q)
	}
	return r
}

// SetMetrics makes r count the hand-offs it drops. Call it before Start.
// Without it nothing is counted.
func (r *Router) SetMetrics(m *metrics.Metrics) { r.metrics = m }

// handoffLane hands its messages to the nodes that hold members' devices,
// in the order they were queued, until the lane is closed and empty.
func (r *Router) handoffLane(q chan outgoing) {
	defer r.lanes.Done()
	for o := range q {
		ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
		env := handoff{Users: o.members, Msg: o.msg}
		if o.span.IsSampled() {
			ctx = trace.ContextWithSpanContext(ctx, o.span)
			env.Trace = map[string]string{}
			otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(env.Trace))
		}
		r.forward(ctx, o.members, env, o.msg.ID)
		cancel()
	}
}

// Start subscribes to this node's topic. The adapter re-subscribes by
// itself after a sidecar restart.
func (r *Router) Start(ctx context.Context) error {
	sub, err := r.pubsub.Subscribe(ctx, NodeTopic(r.node), r.receive)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", NodeTopic(r.node), err)
	}
	r.sub = sub
	// Tell the others we are here, so that they stop treating themselves
	// as alone before any client can connect to this node.
	r.announce(ctx, handoff{Joined: r.node})
	return nil
}

// Stop pushes what the hub's fan-out lanes hold, hands on the messages
// still queued for other nodes (until ctx ends), tells the others this node
// is gone (call it after the lease was deleted), then ends the
// subscription, waiting for deliveries in flight.
func (r *Router) Stop(ctx context.Context) {
	r.hub.Close()
	r.stopOnce.Do(func() { close(r.stopping) })
	r.mu.Lock()
	if !r.stopped {
		r.stopped = true
		for _, q := range r.handoffs {
			close(q)
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.lanes.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.log.Warn("shutdown deadline: some hand-offs to other nodes did not leave; those devices will sync")
	}
	r.announce(ctx, handoff{Left: r.node})
	if r.sub != nil {
		_ = r.sub.Close()
	}
}

func (r *Router) announce(ctx context.Context, env handoff) {
	data, _ := json.Marshal(env)
	for _, n := range r.presence.Others() {
		if err := r.pubsub.Publish(ctx, NodeTopic(n), data); err != nil {
			r.log.Warn("announcement failed; that node learns of it at its next lease renewal", zap.String("to_node", n), zap.Error(err))
		}
	}
}

func (r *Router) receive(ctx context.Context, msg *infrastructure.Message) infrastructure.Outcome {
	var env handoff
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		r.log.Error("undecodable handoff dropped", zap.String("topic", msg.Topic), zap.Error(err))
		r.metrics.MessageDropped(metrics.DropBadEnvelope)
		return infrastructure.Drop
	}
	switch {
	case env.Joined != "" || env.Left != "":
		if err := r.presence.Refresh(ctx); err != nil {
			r.log.Warn("refresh after a node joined or left", zap.String("joined", env.Joined), zap.String("left", env.Left), zap.Error(err))
			return infrastructure.Retry
		}
	case env.Msg != nil:
		if len(env.Trace) > 0 {
			var span trace.Span
			ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(env.Trace))
			_, span = tracer.Start(ctx, "deliver", trace.WithSpanKind(trace.SpanKindConsumer))
			defer span.End()
		}
		e := r.hub.newEnvelope(env.Msg, len(env.Users))
		for _, u := range env.Users {
			for _, s := range r.hub.Sessions(u) {
				if stale(s, env.Msg) {
					continue
				}
				s.Push(e)
			}
		}
	case env.Event != nil:
		for _, u := range env.Users {
			r.hub.NotifyUser(u, *env.Event)
		}
	}
	return infrastructure.Success
}

// staleMargin is how much older than a connection a message handed over by
// another node must be for the connection not to be pushed it. It covers
// clock skew between nodes and the time a device takes to sync after
// connecting.
const staleMargin = 2 * time.Second

// Connected is a Session that knows when its device connected.
type Connected interface {
	// ConnectedMs is when the device connected, in Unix milliseconds.
	ConnectedMs() int64
}

// stale reports whether s need not be pushed m: m was stored well before s
// connected, so the sync that every device runs after connecting returns
// it. That is the backlog a node finds on its topic when it restarts
// under the same id: pushing it to devices that reconnected at once would
// repeat what their sync gave them, out of seq order.
func stale(s Session, m *domain.Message) bool {
	c, ok := s.(Connected)
	return ok && m.ServerMs < c.ConnectedMs()-staleMargin.Milliseconds()
}

// Deliver pushes m to local devices at once, then queues it for every
// other node that holds a member's device. The caller does not wait for
// the presence read or the publish; a conversation's messages still leave
// in the order Deliver was called. A failed hand-off is logged: the message
// is stored, so those devices get it when they sync.
//
// While this node is alone it skips the hand-off: a node that joins
// announces itself before it serves, and every node refreshes its view at
// each lease renewal besides.
func (r *Router) Deliver(ctx context.Context, conv *domain.Conversation, m *domain.Message, origin string) {
	r.hub.Deliver(ctx, conv, m, origin)
	if r.presence.Alone() {
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.stopped {
		r.log.Warn("node stopping: message not handed to other nodes; their devices will sync", zap.String("msg_id", m.ID))
		return
	}
	select {
	case r.handoffs[maphash.String(r.seed, string(conv.ID))%handoffLanes] <- outgoing{members: conv.Members, msg: m,
		span: trace.SpanContextFromContext(ctx)}:
	case <-r.stopping:
		// A full lane while the node stops: Stop must not wait behind it.
		r.log.Warn("node stopping: message not handed to other nodes; their devices will sync", zap.String("msg_id", m.ID))
	}
}

// Notify sends ev to every device of u, wherever it is connected. Unlike
// messages, events skip the presence lookup while this node is alone: they
// are hints, and a device that joins meanwhile misses nothing it cannot
// learn by sync.
func (r *Router) Notify(ctx context.Context, u domain.UserID, ev Event) {
	r.hub.NotifyUser(u, ev)
	if r.presence.Alone() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, eventTimeout)
	defer cancel()
	r.forward(ctx, []domain.UserID{u}, handoff{Users: []domain.UserID{u}, Event: &ev}, "")
}

func (r *Router) forward(ctx context.Context, users []domain.UserID, env handoff, msgID string) {
	var nodes []string
	if len(users) > broadcastAbove {
		// A large group: asking presence where each member is costs more
		// than sending to every node, which each keeps what its own
		// devices need of the member list.
		nodes = r.presence.Others()
	} else {
		var err error
		nodes, err = r.presence.RemoteNodes(ctx, users)
		if err != nil {
			r.log.Warn("presence lookup failed; remote devices will sync", zap.String("msg_id", msgID), zap.Error(err))
			return
		}
	}
	if len(nodes) == 0 {
		return
	}
	data, err := json.Marshal(env)
	if err != nil {
		r.log.Error("encode handoff", zap.String("msg_id", msgID), zap.Error(err))
		return
	}
	for _, n := range nodes {
		if err := r.pubsub.Publish(ctx, NodeTopic(n), data); err != nil {
			r.log.Warn("hand-off to node failed; its devices will sync", zap.String("to_node", n), zap.String("msg_id", msgID), zap.Error(err))
		}
	}
}
