package memory_test

import (
	"context"
	"errors"
	"testing"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// TestOutputBindings checks the in-process stand-in for Dapr output
// bindings against what daprd does: a call reaches the named sink with its
// data and metadata, the sink's failure is ErrUnavailable, and a name with
// no sink fails.
func TestOutputBindings(t *testing.T) {
	t.Parallel()
	sinkErr := errors.New("gateway down")
	tests := []struct {
		name    string
		binding string
		fail    bool
		want    error
	}{
		{name: "reaches_the_sink", binding: "push"},
		{name: "sink_failure_is_unavailable", binding: "push", fail: true, want: infrastructure.ErrUnavailable},
		{name: "unknown_binding_is_not_found", binding: "other", want: infrastructure.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := memory.NewOutputBindings()
			var got []memory.BindingCall
			b.Handle("push", func(_ context.Context, c memory.BindingCall) error {
				got = append(got, c)
				if tc.fail {
					return sinkErr
				}
				return nil
			})
			data := []byte(`{"user":"bob"}`)
			err := b.Invoke(context.Background(), tc.binding, "post", data, map[string]string{"X-Key": "v"})
			if tc.want == nil && err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Invoke: err = %v, want %v", err, tc.want)
			}
			if tc.fail && !errors.Is(err, sinkErr) {
				t.Fatalf("Invoke: err = %v does not keep the sink's cause", err)
			}
			if tc.binding != "push" {
				if len(got) != 0 {
					t.Fatalf("the push sink got %d calls for binding %q", len(got), tc.binding)
				}
				return
			}
			data[0] = 'X' // the sink holds its own copy
			if len(got) != 1 || got[0].Name != "push" || got[0].Operation != "post" || string(got[0].Data) != `{"user":"bob"}` || got[0].Metadata["X-Key"] != "v" {
				t.Fatalf("sink got %+v", got)
			}
		})
	}
}
