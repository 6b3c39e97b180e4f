package dapr_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure/contract"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// TestContract runs the shared contract suite against a real daprd on every
// profile. A profile whose servers are down is skipped (failed under
// CI=true).
func TestContract(t *testing.T) {
	for _, p := range daprdtest.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			n := startNode(t, p.Name)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if got := n.client.HasConfigStore(ctx); got != p.ConfigStore {
				t.Fatalf("HasConfigStore = %v, want %v for profile %s", got, p.ConfigStore, p.Name)
			}
			contract.Run(t, contract.Factory{
				Name:      "dapr/" + p.Name,
				Backend:   n.client.Backend(),
				AppID:     n.sidecar.AppID(),
				SetConfig: daprdtest.ConfigSetter(t, p.Name),
				Durable:   p.Durable,
			})
		})
	}
}
