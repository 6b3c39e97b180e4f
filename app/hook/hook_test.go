package hook

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure/memory"
)

// hookApp serves Method on app "moderation" with reply, after delay.
func hookApp(t *testing.T, reply string, delay time.Duration, live map[string]string) *BeforeSend {
	t.Helper()
	net := &memory.Network{}
	app := memory.NewInvoker(net, "moderation")
	if reply != "" {
		err := app.Serve(Method, func(ctx context.Context, data []byte) ([]byte, error) {
			var req Request
			if err := json.Unmarshal(data, &req); err != nil || req.From != "alice" || req.Body == "" {
				t.Errorf("hook app got %q: %v", data, err)
			}
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return []byte(reply), nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s := settings.NewLive(settings.Defaults())
	if errs := s.Update(live); len(errs) > 0 {
		t.Fatal(errs)
	}
	return New("moderation", memory.NewInvoker(net, "parley"), s, zap.NewNop())
}

// TestBeforeSend: what the sender sees for each answer of the hook app,
// and for a hook that is down or slow under either failure policy.
func TestBeforeSend(t *testing.T) {
	t.Parallel()
	d := domain.Draft{Conv: "d:alice~bob", Sender: "alice", ClientMsgID: "c1", ContentType: domain.Text, Body: "what the heck"}
	failClosed := map[string]string{"parley.hook_fail_open": "false", "parley.hook_timeout_ms": "50"}
	for _, tc := range []struct {
		name     string
		reply    string
		delay    time.Duration
		live     map[string]string
		wantBody string
		wantErr  error
	}{
		{name: "allow", reply: `{"action":"allow"}`, wantBody: d.Body},
		{name: "empty_action_allows", reply: `{}`, wantBody: d.Body},
		{name: "reject_with_reason", reply: `{"action":"reject","reason":"no swearing"}`, wantErr: domain.ErrRejected},
		{name: "rewrite", reply: `{"action":"rewrite","body":"what the h***"}`, wantBody: "what the h***"},
		{name: "down_fail_open", wantBody: d.Body},
		{name: "down_fail_closed", live: failClosed, wantErr: ErrHookFailed},
		{name: "slow_fail_closed", reply: `{"action":"allow"}`, delay: time.Second, live: failClosed, wantErr: ErrHookFailed},
		{name: "unknown_action_fail_closed", reply: `{"action":"maybe"}`, live: failClosed, wantErr: ErrHookFailed},
		{name: "not_json_fail_open", reply: `nope`, wantBody: d.Body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := hookApp(t, tc.reply, tc.delay, tc.live)
			got, err := h.Check(context.Background(), d)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Body != tc.wantBody {
				t.Fatalf("got body %q, err %v; want body %q", got.Body, err, tc.wantBody)
			}
		})
	}
}

// TestBeforeSendRejectReasonReachesTheSender: the hook's reason is what
// the sender is shown.
func TestBeforeSendRejectReasonReachesTheSender(t *testing.T) {
	t.Parallel()
	h := hookApp(t, `{"action":"reject","reason":"no swearing"}`, 0, nil)
	_, err := h.Check(context.Background(), domain.Draft{Sender: "alice", Body: "x"})
	var re *domain.RejectedError
	if !errors.As(err, &re) || re.Reason != "no swearing" {
		t.Fatalf("got %v, want a rejection saying %q", err, "no swearing")
	}
}
