// Command daprd is the real Dapr sidecar, built from github.com/dapr/dapr at the
// version pinned in go.mod. parley never imitates Dapr: this module only links
// the upstream entry point so that the build is reproducible from the Go module
// proxy alone.
package main

import "github.com/dapr/dapr/cmd/daprd/app"

func main() { app.Run() }
