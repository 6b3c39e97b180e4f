// Command daprd is the real Dapr sidecar, built from github.com/dapr/dapr at the
// version pinned in go.mod. parley never imitates Dapr: this module only links
// the upstream entry point so that the build is reproducible from the Go module
// proxy alone.
package main

import (
	"github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/components-contrib/pubsub/jetstream"
	"github.com/dapr/dapr/cmd/daprd/app"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"
)

// The SQLite name resolver ships with daprd but is registered only by the
// allcomponents build tag, which does not build on Go 1.26. Registering it
// here, exactly as upstream's cmd/daprd/components/nameresolution_sqlite.go
// does, lets daprd processes on one machine find each other through a shared
// file instead of mDNS multicast, so service invocation stays on loopback.
func init() {
	nrLoader.DefaultRegistry.RegisterComponent(sqlite.NewResolver, "sqlite")
	// pubsub.jetstream is not in the stablecomponents build either; the
	// jetstream profile (components/jetstream) needs it. Registered as
	// upstream's cmd/daprd/components/pubsub_jetstream.go does.
	pubsubLoader.DefaultRegistry.RegisterComponent(jetstream.NewJetStream, "jetstream")
}

func main() { app.Run() }
