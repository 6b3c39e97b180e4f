package units

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
}

// RouteKey is the key of conv's route in the route store. The store is
// shared by every unit with keyPrefix none, so the key is the same from
// every unit's sidecar.
func RouteKey(conv domain.ConversationID) string { return "route:" + string(conv) }

// Table is the route table: conversation → Route, in the state store that
// every unit shares, with an in-process cache in front. A route never
// changes once bound unless the conversation moves, so the cache keeps
// what it read until told otherwise (Forget). The zero value is not
// usable; use NewTable. Safe for concurrent use.
type Table struct {
	store infrastructure.StateStore
	max   int

	mu    sync.RWMutex
	cache map[domain.ConversationID]Route
}

// NewTable returns a table over store that caches up to cacheSize routes.
// A cacheSize of 0 means 100,000.
func NewTable(store infrastructure.StateStore, cacheSize int) *Table {
	if cacheSize <= 0 {
		cacheSize = 100_000
	}
	return &Table{store: store, max: cacheSize, cache: make(map[domain.ConversationID]Route)}
}

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
	return r, ok
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
	t.cache[conv] = r
}

func decodeRoute(conv domain.ConversationID, data []byte) (Route, error) {
	var r Route
	if err := json.Unmarshal(data, &r); err != nil || r.Unit == "" {
		return Route{}, fmt.Errorf("route of %s is not a route (%q): %w", conv, data, infrastructure.ErrUnavailable)
	}
	return r, nil
}
