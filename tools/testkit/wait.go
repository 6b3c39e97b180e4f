package testkit

import (
	"context"
	"testing"
	"time"
)

// Poll intervals: a condition is checked at once, then after pollFirst,
// the interval doubling up to pollMax, so that a quick condition costs
// milliseconds and a slow one does not spin.
const (
	pollFirst = 5 * time.Millisecond
	pollMax   = 200 * time.Millisecond
)

// Until checks cond until it holds or ctx ends, and returns ctx's error in
// the second case.
func Until(ctx context.Context, cond func() bool) error {
	wait := pollFirst
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, pollMax)
	}
}

// Eventually checks cond until it holds, and fails the test with the
// formatted message if it does not within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if err := Until(ctx, cond); err != nil {
		t.Fatalf("after %s: "+format, append([]any{timeout}, args...)...)
	}
}
