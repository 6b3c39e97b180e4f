package dapr_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure/dapr"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// TestAPITokens: with DAPR_API_TOKEN, daprd serves the app that sends the
// token and refuses a caller without it; with APP_API_TOKEN, the app takes
// calls that come through its sidecar and refuses one made straight to its
// port. On two profiles, since the token check is daprd's, not a store's.
func TestAPITokens(t *testing.T) {
	for _, profile := range []string{daprdtest.Local, daprdtest.Redis} {
		t.Run(profile, func(t *testing.T) {
			const api, app = "api-token-for-the-test", "app-token-for-the-test"
			n := startNodeWith(t, profile, func(c *dapr.Config) { c.APIToken, c.AppAPIToken = api, app },
				daprdtest.WithAPITokens(api, app))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			// The app with the token: state and invocation work, daprd
			// calling back into the app with its own token.
			state := n.client.Backend().State
			key := daprdtest.UniqueName("token")
			if err := state.Set(ctx, key, []byte("v")); err != nil {
				t.Fatalf("set with the token: %v", err)
			}
			inv := n.client.Backend().Invoker
			if err := inv.Serve("echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil }); err != nil {
				t.Fatal(err)
			}
			if out, err := inv.Invoke(ctx, n.sidecar.AppID(), "echo", []byte("hi")); err != nil || string(out) != "hi" {
				t.Fatalf("invoke through the sidecar with the tokens: %q, %v", out, err)
			}

			// A caller without the API token is refused by daprd.
			stranger, err := dapr.New(ctx, dapr.Config{GRPCAddress: n.sidecar.GRPCAddr(), HTTPAddress: n.sidecar.HTTPAddr()})
			if err != nil {
				t.Fatalf("connect without the token: %v", err)
			}
			defer stranger.Close()
			if _, err := stranger.Backend().State.Get(ctx, key); err == nil {
				t.Fatal("daprd served a caller without the API token")
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.sidecar.HTTPAddr()+"/v1.0/invoke/"+n.sidecar.AppID()+"/method/echo", strings.NewReader("hi"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("HTTP invoke through daprd without the token: %s, want 401", resp.Status)
			}

			// A call straight to the app's port, skipping daprd, is refused.
			req, _ = http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(n.sidecar.AppPort())+"/echo", strings.NewReader("hi"))
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("direct call to the app without the app token: %s, want 401", resp.Status)
			}
		})
	}
}
