// Package presence keeps, in the state store, which user is connected where:
// per user the live connections (connection id, node, device, since), and per
// node a lease that the node renews. A node that dies stops counting as soon
// as its lease expires; nobody has to clean up after it.
//
// Keys:
//
//	presence:{user}  JSON list of Entry, written with ETags
//	node:{node}      the node's Lease, with a TTL
//	nodes            JSON list of node ids that ever held a lease recently
package presence

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	jsoniter "github.com/json-iterator/go"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/metrics"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

var json = jsoniter.ConfigFastest

// Entry is one live connection of a user.
type Entry struct {
	Conn    string `json:"conn"`
	Node    string `json:"node"`
	Device  string `json:"device,omitempty"`
	SinceMs int64  `json:"since"`
}

// Lease says a node is alive, where clients reach it, and how loaded it is.
type Lease struct {
	Node      string          `json:"node"`
	URL       string          `json:"url"`
	Conns     int             `json:"conns"`
	Users     []domain.UserID `json:"users,omitempty"`
	RenewedMs int64           `json:"renewed"`
}

// Config sets up a Registry. Zero values have defaults.
type Config struct {
	// Node is this node's id. Required.
	Node string
	// URL is where clients reach this node, for GET /v1/route.
	URL string
	// LeaseTTL is how long a lease lives without renewal. Zero means 15s.
	LeaseTTL time.Duration
	// Renew is how often the lease is renewed. Zero means LeaseTTL/3.
	Renew time.Duration
	// MaxUsersInLease bounds the user list each node publishes for the
	// online list. Zero means 10000.
	MaxUsersInLease int
	// Metrics counts presence writes and lease renewals. Nil means none.
	Metrics *metrics.Metrics
}

// Registry is the cluster-wide presence registry. The zero value is not
// usable; use New. Safe for concurrent use.
type Registry struct {
	cfg   Config
	state infrastructure.StateStore
	log   *zap.Logger
	local func() (conns int, users []domain.UserID)

	mu       sync.RWMutex
	live     map[string]Lease    // node id -> lease, refreshed with the lease
	pending  []pendingDisconnect // removals to retry
	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
}

// New returns a registry for this node. local reports this node's
// connection count and users for the lease.
func New(cfg Config, state infrastructure.StateStore, log *zap.Logger, local func() (int, []domain.UserID)) *Registry {
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	if cfg.Renew == 0 {
		cfg.Renew = cfg.LeaseTTL / 3
	}
	if cfg.MaxUsersInLease == 0 {
		cfg.MaxUsersInLease = 10000
	}
	return &Registry{cfg: cfg, state: state, log: log, local: local, live: map[string]Lease{}, stop: make(chan struct{}), stopped: make(chan struct{})}
}

// Node is this node's id.
func (r *Registry) Node() string { return r.cfg.Node }

func presenceKey(u domain.UserID) string { return "presence:" + string(u) }
func leaseKey(node string) string        { return "node:" + node }

const nodesKey = "nodes"

// Start writes the first lease and renews it until Stop.
func (r *Registry) Start(ctx context.Context) error {
	if err := r.renew(ctx); err != nil {
		return fmt.Errorf("write the lease of node %s: %w", r.cfg.Node, err)
	}
	if err := r.addNode(ctx); err != nil {
		return err
	}
	go r.loop()
	return nil
}

func (r *Registry) loop() {
	defer close(r.stopped)
	t := time.NewTicker(r.cfg.Renew)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Renew)
		if err := r.renew(ctx); err != nil {
			r.log.Warn("lease renewal failed; retrying", zap.Error(err))
		}
		r.retryDisconnects(ctx)
		cancel()
	}
}

// maxPendingDisconnects bounds the removals kept for retry; past it an entry
// stays until the user's next connect or disconnect rewrites the list, or
// this node's lease ends.
const maxPendingDisconnects = 100_000

// retryBatch is how many failed removals one renewal tick retries.
const retryBatch = 2000

type pendingDisconnect struct {
	user domain.UserID
	conn string
}

// Disconnect removes a connection of u. When the store does not answer (a
// storm of disconnects, a sidecar restart) the removal is kept and retried
// at each lease renewal, so a live node does not leave stale entries.
func (r *Registry) Disconnect(ctx context.Context, u domain.UserID, conn string) error {
	err := r.update(ctx, u, func(list []Entry) []Entry {
		return slices.DeleteFunc(list, func(e Entry) bool { return e.Conn == conn })
	})
	if err != nil {
		r.mu.Lock()
		if len(r.pending) < maxPendingDisconnects {
			r.pending = append(r.pending, pendingDisconnect{u, conn})
		}
		r.mu.Unlock()
	}
	return err
}

func (r *Registry) retryDisconnects(ctx context.Context) {
	r.mu.Lock()
	n := min(len(r.pending), retryBatch)
	batch := append([]pendingDisconnect(nil), r.pending[:n]...)
	r.pending = r.pending[n:]
	r.mu.Unlock()
	for i, p := range batch {
		if ctx.Err() != nil {
			r.mu.Lock()
			r.pending = append(r.pending, batch[i:]...)
			r.mu.Unlock()
			return
		}
		// Disconnect queues it again if it still fails.
		_ = r.Disconnect(ctx, p.user, p.conn)
	}
}

// Stop ends renewal and deletes this node's lease, so that its connections
// stop counting at once rather than when the lease would expire.
func (r *Registry) Stop(ctx context.Context) {
	r.stopOnce.Do(func() {
		close(r.stop)
		<-r.stopped
		if err := r.state.Delete(ctx, leaseKey(r.cfg.Node)); err != nil {
			r.log.Warn("delete lease", zap.Error(err))
		}
	})
}

func (r *Registry) renew(ctx context.Context) (err error) {
	defer func() { r.cfg.Metrics.LeaseRenewal(err) }()
	conns, users := r.local()
	if len(users) > r.cfg.MaxUsersInLease {
		users = users[:r.cfg.MaxUsersInLease]
	}
	l := Lease{Node: r.cfg.Node, URL: r.cfg.URL, Conns: conns, Users: users, RenewedMs: time.Now().UnixMilli()}
	data, _ := json.Marshal(l)
	if err := r.state.Set(ctx, leaseKey(r.cfg.Node), data, infrastructure.WithTTL(r.cfg.LeaseTTL)); err != nil {
		return err
	}
	return r.refreshLive(ctx)
}

// addNode lists this node in the nodes index, dropping nodes whose lease
// expired, with compare-and-set.
func (r *Registry) addNode(ctx context.Context) error {
	err := infrastructure.Update(ctx, r.state, nodesKey, func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		var nodes []string
		if cur.Found {
			_ = json.Unmarshal(cur.Value, &nodes)
		}
		leases, err := r.readLeases(ctx, nodes)
		if err != nil {
			return nil, 0, err
		}
		kept := []string{r.cfg.Node}
		for _, n := range nodes {
			if _, ok := leases[n]; ok && n != r.cfg.Node {
				kept = append(kept, n)
			}
		}
		slices.Sort(kept)
		data, err := json.Marshal(kept)
		return data, infrastructure.Put, err
	})
	if err != nil {
		return fmt.Errorf("list node %s: %w", r.cfg.Node, err)
	}
	return r.refreshLive(ctx)
}

func (r *Registry) readLeases(ctx context.Context, nodes []string) (map[string]Lease, error) {
	keys := make([]string, len(nodes))
	for i, n := range nodes {
		keys[i] = leaseKey(n)
	}
	out := map[string]Lease{}
	if len(keys) == 0 {
		return out, nil
	}
	items, err := r.state.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read node leases: %w", err)
	}
	for i, it := range items {
		var l Lease
		if it.Found && json.Unmarshal(it.Value, &l) == nil {
			out[nodes[i]] = l
		}
	}
	return out, nil
}

// refreshLive re-reads the index and the leases into the cache that
// delivery and routing consult.
func (r *Registry) refreshLive(ctx context.Context) error {
	it, err := r.state.Get(ctx, nodesKey)
	if err != nil {
		return err
	}
	var nodes []string
	if it.Found {
		_ = json.Unmarshal(it.Value, &nodes)
	}
	if !slices.Contains(nodes, r.cfg.Node) && it.Found {
		// Another node pruned us while our lease was late: list us again.
		defer func() { _ = r.addNode(ctx) }()
	}
	leases, err := r.readLeases(ctx, nodes)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.live = leases
	r.mu.Unlock()
	return nil
}

// LiveNodes returns the leases of the nodes alive at the last refresh.
func (r *Registry) LiveNodes() []Lease {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Lease, 0, len(r.live))
	for _, l := range r.live {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Conns - b.Conns })
	return out
}

// Alone reports whether no node but this one held a lease at the last
// refresh.
func (r *Registry) Alone() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for n := range r.live {
		if n != r.cfg.Node {
			return false
		}
	}
	return true
}

// Others lists the live nodes other than this one.
func (r *Registry) Others() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []string
	for n := range r.live {
		if n != r.cfg.Node {
			out = append(out, n)
		}
	}
	return out
}

// Refresh re-reads the node index and leases now.
func (r *Registry) Refresh(ctx context.Context) error { return r.refreshLive(ctx) }

// IsLive reports whether node held a lease at the last refresh. This node
// always counts as live.
func (r *Registry) IsLive(node string) bool {
	if node == r.cfg.Node {
		return true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.live[node]
	return ok
}

// OnlineUsers lists users connected to any live node, sorted.
func (r *Registry) OnlineUsers(local []domain.UserID) []domain.UserID {
	set := map[domain.UserID]struct{}{}
	for _, u := range local {
		set[u] = struct{}{}
	}
	r.mu.RLock()
	for n, l := range r.live {
		if n == r.cfg.Node {
			continue
		}
		for _, u := range l.Users {
			set[u] = struct{}{}
		}
	}
	r.mu.RUnlock()
	out := make([]domain.UserID, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// Connect records a connection of u on this node.
func (r *Registry) Connect(ctx context.Context, u domain.UserID, e Entry) error {
	e.Node = r.cfg.Node
	return r.update(ctx, u, func(list []Entry) []Entry {
		return append(list, e)
	})
}

// update applies fn to u's entries with compare-and-set, pruning entries of
// dead nodes on the way, so concurrent connects never lose one another.
func (r *Registry) update(ctx context.Context, u domain.UserID, fn func([]Entry) []Entry) error {
	err := infrastructure.Update(ctx, r.state, presenceKey(u), func(cur infrastructure.Item) ([]byte, infrastructure.Change, error) {
		var list []Entry
		if cur.Found {
			_ = json.Unmarshal(cur.Value, &list)
		}
		list = slices.DeleteFunc(list, func(e Entry) bool { return !r.IsLive(e.Node) })
		list = fn(list)
		if len(list) == 0 {
			return nil, infrastructure.Remove, nil
		}
		data, err := json.Marshal(list)
		return data, infrastructure.Put, err
	})
	r.cfg.Metrics.PresenceWrite(err)
	if err != nil {
		return fmt.Errorf("write presence of %s: %w", u, err)
	}
	return nil
}

// RemoteNodes returns, for the given users, the live nodes other than this
// one that hold at least one of their connections.
func (r *Registry) RemoteNodes(ctx context.Context, users []domain.UserID) ([]string, error) {
	keys := make([]string, len(users))
	for i, u := range users {
		keys[i] = presenceKey(u)
	}
	items, err := r.state.BulkGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	var nodes []string
	for _, it := range items {
		if !it.Found {
			continue
		}
		var list []Entry
		if json.Unmarshal(it.Value, &list) != nil {
			continue
		}
		for _, e := range list {
			if e.Node != r.cfg.Node && !slices.Contains(nodes, e.Node) && r.isLiveNow(ctx, e.Node) {
				nodes = append(nodes, e.Node)
			}
		}
	}
	return nodes, nil
}

// isLiveNow is IsLive, but a node the cache does not know yet (it joined
// since the last refresh) is looked up at once rather than ignored: a
// device that just connected there must not miss messages.
func (r *Registry) isLiveNow(ctx context.Context, node string) bool {
	if r.IsLive(node) {
		return true
	}
	it, err := r.state.Get(ctx, leaseKey(node))
	if err != nil || !it.Found {
		return false
	}
	var l Lease
	if json.Unmarshal(it.Value, &l) != nil {
		return false
	}
	r.mu.Lock()
	r.live[node] = l
	r.mu.Unlock()
	return true
}
