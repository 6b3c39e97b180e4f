package dapr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// TestInvocationErrorsCrossTheSidecar checks that a handler's error reaches
// the caller, through two hops of daprd, as the same sentinel.
func TestInvocationErrorsCrossTheSidecar(t *testing.T) {
	n := startNode(t, daprdtest.Local)
	inv := n.client.Backend().Invoker
	app := n.sidecar.AppID()
	cases := []struct {
		name   string
		result error
		want   error
	}{
		{"invalid_argument", fmt.Errorf("bad request: %w", infrastructure.ErrInvalidArgument), infrastructure.ErrInvalidArgument},
		{"not_found", fmt.Errorf("no such conversation: %w", infrastructure.ErrNotFound), infrastructure.ErrNotFound},
		{"conflict", fmt.Errorf("stale: %w", infrastructure.ErrConflict), infrastructure.ErrConflict},
		{"other_failure", errors.New("database down"), infrastructure.ErrUnavailable},
	}
	for _, tc := range cases {
		if err := inv.Serve("fail/"+tc.name, func(context.Context, []byte) ([]byte, error) { return nil, tc.result }); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, err := inv.Invoke(ctx, app, "fail/"+tc.name, []byte("x"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("invoke = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("unknown_app", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := inv.Invoke(ctx, daprdtest.UniqueName("nobody"), "m", nil)
		// daprd cannot tell an unknown app from one that is down.
		if !errors.Is(err, infrastructure.ErrUnavailable) && !errors.Is(err, infrastructure.ErrNotFound) {
			t.Fatalf("invoke of an unknown app = %v, want ErrUnavailable or ErrNotFound", err)
		}
	})
	t.Run("serve_twice_is_refused", func(t *testing.T) {
		h := func(context.Context, []byte) ([]byte, error) { return nil, nil }
		if err := inv.Serve("twice", h); err != nil {
			t.Fatal(err)
		}
		if err := inv.Serve("twice", h); !errors.Is(err, infrastructure.ErrInvalidArgument) {
			t.Fatalf("second Serve = %v, want ErrInvalidArgument", err)
		}
	})
}
