package infrastructure

import "context"

// ConfigStore reads live settings. Values are strings; parsing belongs to
// the caller, which keeps its defaults for keys that are missing.
type ConfigStore interface {
	// Get returns the values of the keys that exist. Missing keys are absent
	// from the map, not an error.
	Get(ctx context.Context, keys ...string) (map[string]string, error)
	// Watch calls fn with the keys that changed, and their new values, each
	// time one of keys changes, until ctx ends or stop is called. fn runs on
	// one goroutine at a time.
	Watch(ctx context.Context, keys []string, fn func(changed map[string]string)) (stop func(), err error)
}
