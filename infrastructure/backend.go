package infrastructure

import "context"

// Backend bundles one adapter's implementations of every interface, so that
// wiring in app/cmd hands the core a single value.
type Backend struct {
	State   StateStore
	PubSub  PubSub
	Config  ConfigStore
	Invoker Invoker
	// Routes is the state store every unit of a deployment shares: the
	// home unit of each conversation (package app/units). It is a store of
	// its own, not State, because State belongs to one unit and prefixes
	// its keys with the unit's app-id. Nil when the adapter has none.
	Routes StateStore
	// Bindings sends to systems outside parley through named output
	// bindings (offline push, package app/push). Nil when the adapter has
	// none.
	Bindings OutputBinding
	// Ready reports whether the backend answers now: for Dapr, whether the
	// sidecar is reachable. The gateway's /readyz calls it.
	Ready func(ctx context.Context) error
	// Close releases connections and stops subscriptions.
	Close func() error
}
