package memory

import (
	"context"
	"maps"
	"sync"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.ConfigStore = (*ConfigStore)(nil)

// ConfigStore holds settings in memory. The local profile loads it from a
// file at start; tests change it with Set to prove hot reload. Safe for
// concurrent use; the zero value is not usable, call NewConfigStore.
type ConfigStore struct {
	mu       sync.Mutex
	values   map[string]string
	watchers map[int]*watcher
	nextID   int
}

type watcher struct {
	keys map[string]bool
	ch   chan map[string]string
}

// NewConfigStore returns a store holding initial (which may be nil).
func NewConfigStore(initial map[string]string) *ConfigStore {
	v := make(map[string]string, len(initial))
	maps.Copy(v, initial)
	return &ConfigStore{values: v, watchers: make(map[int]*watcher)}
}

func (c *ConfigStore) Get(ctx context.Context, keys ...string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, &infrastructure.OpError{Op: "config get", Kind: infrastructure.ErrUnavailable, Err: err}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if v, ok := c.values[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

// Set changes values and notifies the watchers of the keys that changed.
func (c *ConfigStore) Set(values map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := make(map[string]string)
	for k, v := range values {
		if old, ok := c.values[k]; !ok || old != v {
			c.values[k] = v
			changed[k] = v
		}
	}
	for _, w := range c.watchers {
		sub := make(map[string]string)
		for k, v := range changed {
			if w.keys[k] {
				sub[k] = v
			}
		}
		if len(sub) == 0 {
			continue
		}
		// Coalesce: a watcher that has not consumed the previous change gets
		// the union, so Set never blocks on a slow callback.
		select {
		case prev := <-w.ch:
			maps.Copy(prev, sub)
			sub = prev
		default:
		}
		w.ch <- sub
	}
}

func (c *ConfigStore) Watch(ctx context.Context, keys []string, fn func(map[string]string)) (func(), error) {
	w := &watcher{keys: make(map[string]bool, len(keys)), ch: make(chan map[string]string, 1)}
	for _, k := range keys {
		w.keys[k] = true
	}
	c.mu.Lock()
	id := c.nextID
	c.nextID++
	c.watchers[id] = w
	c.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-wctx.Done():
				return
			case m := <-w.ch:
				fn(m)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.watchers, id)
			c.mu.Unlock()
			cancel()
			<-done
		})
	}, nil
}
