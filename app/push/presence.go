package push

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-im/parley/domain"
)

// Registry is what ClusterPresence needs of the presence registry
// (*presence.Registry).
type Registry interface {
	// Alone reports whether no other node held a lease at the last refresh.
	Alone() bool
	// RemoteNodes lists the live nodes other than this one that hold a
	// connection of one of users.
	RemoteNodes(ctx context.Context, users []domain.UserID) ([]string, error)
	// OnlineUsers lists the users connected to any live node, as the
	// nodes' leases last told, plus local.
	OnlineUsers(local []domain.UserID) []domain.UserID
}

// ClusterPresence answers Online from this node's connections and the
// presence registry. Safe for concurrent use once built.
type ClusterPresence struct {
	// Local reports whether u has a device connected to this node. Required.
	Local func(u domain.UserID) bool
	// Registry finds devices on other nodes. Required.
	Registry Registry
	// ExactUpTo is how many users one call looks up one by one in the
	// registry, exactly; for more, the users the other nodes' leases list
	// answer, which are as old as a lease renewal. Zero value means 16.
	ExactUpTo int
	// LeaseCacheFor is how long the lease lists are reused between calls.
	// Zero value means one second.
	LeaseCacheFor time.Duration

	mu       sync.Mutex
	cached   map[domain.UserID]bool
	cachedAt time.Time
}

var _ Presence = (*ClusterPresence)(nil)

// Online reports which of users have a device connected here or on another
// live node.
func (c *ClusterPresence) Online(ctx context.Context, users []domain.UserID) (map[domain.UserID]bool, error) {
	online := map[domain.UserID]bool{}
	var rest []domain.UserID
	for _, u := range users {
		if c.Local(u) {
			online[u] = true
		} else {
			rest = append(rest, u)
		}
	}
	if len(rest) == 0 || c.Registry.Alone() {
		// Alone: a node that joins announces itself before it serves.
		return online, nil
	}
	exact := c.ExactUpTo
	if exact <= 0 {
		exact = 16
	}
	if len(rest) > exact {
		leases := c.leaseUsers()
		for _, u := range rest {
			if leases[u] {
				online[u] = true
			}
		}
		return online, nil
	}
	for _, u := range rest {
		nodes, err := c.Registry.RemoteNodes(ctx, []domain.UserID{u})
		if err != nil {
			return nil, fmt.Errorf("presence of %s: %w", u, err)
		}
		if len(nodes) > 0 {
			online[u] = true
		}
	}
	return online, nil
}

// leaseUsers returns the users the other nodes' leases list, rebuilt at
// most once per LeaseCacheFor: a large group's message would otherwise
// rebuild it for each.
func (c *ClusterPresence) leaseUsers() map[domain.UserID]bool {
	every := c.LeaseCacheFor
	if every <= 0 {
		every = time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached != nil && time.Since(c.cachedAt) < every {
		return c.cached
	}
	list := c.Registry.OnlineUsers(nil)
	m := make(map[domain.UserID]bool, len(list))
	for _, u := range list {
		m[u] = true
	}
	c.cached, c.cachedAt = m, time.Now()
	return m
}
