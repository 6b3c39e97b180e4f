// Command daprd is the real Dapr sidecar, built from github.com/dapr/dapr at the
// version pinned in go.mod. parley never imitates Dapr: this module only links
// the upstream entry point so that the build is reproducible from the Go module
// proxy alone.
package main

import (
	"github.com/dapr/components-contrib/nameresolution/sqlite"
	"github.com/dapr/dapr/cmd/daprd/app"
	nrLoader "github.com/dapr/dapr/pkg/components/nameresolution"
)

// The SQLite name resolver ships with daprd but is registered only by the
// allcomponents build tag, which does not build on Go 1.26. Registering it
// here, exactly as upstream's cmd/daprd/components/nameresolution_sqlite.go
// does, lets daprd processes on one machine find each other through a shared
// file instead of mDNS multicast, so service invocation stays on loopback.
func init() {
	nrLoader.DefaultRegistry.RegisterComponent(sqlite.NewResolver, "sqlite")
}

func main() { app.Run() }
