package infrastructure

import (
	"errors"
	"fmt"
)

// Sentinel errors that every adapter returns, wrapped, so that the core can
// act on them with errors.Is without knowing which adapter is behind.
var (
	// ErrNotFound means the key, app or method does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means an optimistic-concurrency check failed: the ETag did
	// not match, or an insert-if-absent found the key present. Re-read and retry.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable means the sidecar or its backend is down or timed out.
	// The operation may or may not have happened; it is safe to retry
	// idempotent operations.
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidArgument means the request itself is malformed and retrying it
	// unchanged will fail again.
	ErrInvalidArgument = errors.New("invalid argument")
)

// OpError records which operation on which key failed, and why. Kind is one of
// the sentinels above, so errors.Is(err, ErrConflict) works through it.
type OpError struct {
	Op   string // "get", "set", "publish", ...
	Key  string // state key, topic, or app-id/method
	Kind error  // one of the sentinels
	Err  error  // the underlying cause, may be nil
}

func (e *OpError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s %q: %v: %v", e.Op, e.Key, e.Kind, e.Err)
	}
	return fmt.Sprintf("%s %q: %v", e.Op, e.Key, e.Kind)
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *OpError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}
