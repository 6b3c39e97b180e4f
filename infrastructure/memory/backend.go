package memory

import (
	"context"

	"github.com/parley-im/parley/infrastructure"
)

// NewBackend returns a Backend whose parts all live in this process. config
// seeds the configuration store; net may be shared by several backends to let
// their apps invoke each other, or nil for a private one. Its route store is
// its own: a deployment of one unit.
func NewBackend(appID string, config map[string]string, net *Network) infrastructure.Backend {
	if net == nil {
		net = &Network{}
	}
	return infrastructure.Backend{
		State:   NewStateStore(),
		Routes:  NewStateStore(),
		PubSub:  NewPubSub(),
		Config:  NewConfigStore(config),
		Invoker: NewInvoker(net, appID),
		Ready:   func(context.Context) error { return nil },
		Close:   func() error { return nil },
	}
}
