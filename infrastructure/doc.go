// Package infrastructure declares the small interfaces parley's core needs from
// the outside world: state, pub/sub, configuration and service invocation.
//
// The core (domain and app) depends on this package only. Adapters live in
// sub-packages: infrastructure/dapr talks to a real Dapr sidecar over gRPC, and
// infrastructure/memory keeps everything in-process for unit tests and for the
// zero-dependency mode. Only the mains in app/cmd choose between them.
package infrastructure
