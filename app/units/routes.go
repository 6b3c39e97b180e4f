package units

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
)

// Route is where a conversation lives: the unit that assigns its seqs and
// stores its messages. Epoch counts the moves of the conversation: a
// conversation is bound at epoch 1, and each move to another unit bumps it,
// so that a cached route can be told apart from the current one.
type Route struct {
	Unit  string `json:"unit"`
	Epoch uint64 `json:"epoch"`
	// Moving names the unit the conversation is being moved to, while the
	// move runs: Unit still holds it, but takes no writes.
	Moving string `json:"moving,omitempty"`
}

// RouteKey is the key of conv's route in the route store. The store is
// shared by every unit with keyPrefix none, so the key is the same from
// every unit's sidecar.
func RouteKey(conv domain.ConversationID) string { return "route:" + string(conv) }

// Table is the route table: conversation → Route, in the state store that
// every unit shares, with an in-process cache in front. A route never
// changes once bound unless the conversation moves, so the cache keeps
// what it read until told otherwise (Forget), with one exception: a route
// naming the unit the table serves (self), or a move under way, is read
// again once it is older than the lease. That is how the other nodes of a
// conversation's home learn that a move started, and stop writing. The
// zero value is not usable; use NewTable. Safe for concurrent use.
type Table struct {
	store infrastructure.StateStore
	max   int
	self  string
	lease time.Duration
	now   func() time.Time

	mu    sync.RWMutex
	cache map[domain.ConversationID]cachedRoute
}

type cachedRoute struct {
	Route
	at time.Time
}

// NewTable returns a table over store that caches up to cacheSize routes.
// A cacheSize of 0 means 100,000. Routes naming self, or a move, are read
// again after lease; a lease of 0 means DefaultLease.
func NewTable(store infrastructure.StateStore, cacheSize int, self string, lease time.Duration) *Table {
	if cacheSize <= 0 {
		cacheSize = 100_000
	}
	if lease <= 0 {
		lease = DefaultLease
	}
	return &Table{store: store, max: cacheSize, self: self, lease: lease, now: time.Now, cache: make(map[domain.ConversationID]cachedRoute)}
}

// DefaultLease is how long a node trusts a cached route that names its
// own unit: a move waits this long after it starts before it copies.
const DefaultLease = 2 * time.Second

// Lease is how long a cached route naming this unit is trusted.
func (t *Table) Lease() time.Duration { return t.lease }

// Lookup returns conv's route; ok is false when it has none yet. A miss
// is not cached: another unit may bind the conversation at any moment.
func (t *Table) Lookup(ctx context.Context, conv domain.ConversationID) (Route, bool, error) {
	if r, ok := t.cached(conv); ok {
		return r, true, nil
	}
	it, err := t.store.Get(ctx, RouteKey(conv))
	if err != nil {
		return Route{}, false, fmt.Errorf("read the route of %s: %w", conv, err)
	}
	if !it.Found {
		return Route{}, false, nil
	}
	r, err := decodeRoute(conv, it.Value)
	if err != nil {
		return Route{}, false, err
	}
	t.remember(conv, r)
	return r, true, nil
}

// Bind gives conv a home in unit unless it has one, and returns the route
// that holds. The write is an insert-if-absent: of units binding the same
// conversation at once, exactly one wins, and every one of them returns
// the winner's route.
func (t *Table) Bind(ctx context.Context, conv domain.ConversationID, unit string) (Route, error) {
	if r, ok, err := t.Lookup(ctx, conv); err != nil || ok {
		return r, err
	}
	want := Route{Unit: unit, Epoch: 1}
	data, _ := json.Marshal(want)
	err := t.store.Set(ctx, RouteKey(conv), data, infrastructure.IfAbsent())
	switch {
	case err == nil:
		t.remember(conv, want)
		return want, nil
	case errors.Is(err, infrastructure.ErrConflict):
		// Another unit bound it first: its route holds.
		r, ok, err := t.Lookup(ctx, conv)
		if err != nil {
			return Route{}, err
		}
		if !ok {
			return Route{}, fmt.Errorf("bind %s: the insert conflicted but no route is stored: %w", conv, infrastructure.ErrUnavailable)
		}
		return r, nil
	default:
		return Route{}, fmt.Errorf("bind %s to %s: %w", conv, unit, err)
	}
}

// Read reads conv's route from the store, past the cache, with the ETag
// that a compare-and-set (Swap) needs. ok is false when it has none.
func (t *Table) Read(ctx context.Context, conv domain.ConversationID) (r Route, etag string, ok bool, err error) {
	it, err := t.store.Get(ctx, RouteKey(conv))
	if err != nil {
		return Route{}, "", false, fmt.Errorf("read the route of %s: %w", conv, err)
	}
	if !it.Found {
		return Route{}, "", false, nil
	}
	if r, err = decodeRoute(conv, it.Value); err != nil {
		return Route{}, "", false, err
	}
	return r, it.ETag, true, nil
}

// Swap replaces conv's route, read with etag, by next: a compare-and-set
// that fails with infrastructure.ErrConflict when the route changed since.
func (t *Table) Swap(ctx context.Context, conv domain.ConversationID, etag string, next Route) error {
	data, _ := json.Marshal(next)
	if err := t.store.Set(ctx, RouteKey(conv), data, infrastructure.IfMatch(etag)); err != nil {
		return fmt.Errorf("change the route of %s to %s@%d: %w", conv, next.Unit, next.Epoch, err)
	}
	t.mu.Lock()
	t.cache[conv] = cachedRoute{Route: next, at: t.now()}
	t.mu.Unlock()
	return nil
}

// Forget drops conv's cached route, after a unit said it is not the home.
func (t *Table) Forget(conv domain.ConversationID) {
	t.mu.Lock()
	delete(t.cache, conv)
	t.mu.Unlock()
}

// Cached returns how many routes the cache holds.
func (t *Table) Cached() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.cache)
}

func (t *Table) cached(conv domain.ConversationID) (Route, bool) {
	t.mu.RLock()
	r, ok := t.cache[conv]
	t.mu.RUnlock()
	if ok && (r.Unit == t.self || r.Moving != "") && t.now().Sub(r.at) > t.lease {
		return Route{}, false
	}
	return r.Route, ok
}

func (t *Table) remember(conv domain.ConversationID, r Route) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.cache[conv]; ok && cur.Epoch > r.Epoch {
		return // a newer route was read meanwhile
	}
	if len(t.cache) >= t.max {
		// Full: evict one arbitrary entry. Map order is random, which is
		// as good as LRU for a cache whose misses cost one read.
		for k := range t.cache {
			delete(t.cache, k)
			break
		}
	}
	t.cache[conv] = cachedRoute{Route: r, at: t.now()}
}

func decodeRoute(conv domain.ConversationID, data []byte) (Route, error) {
	var r Route
	if err := json.Unmarshal(data, &r); err != nil || r.Unit == "" {
		return Route{}, fmt.Errorf("route of %s is not a route (%q): %w", conv, data, infrastructure.ErrUnavailable)
	}
	return r, nil
}
