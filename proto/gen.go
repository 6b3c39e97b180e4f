// Package proto holds parley's protobuf definitions. The generated Go code is
// committed; regenerate it with `go generate ./proto` after installing protoc
// and protoc-gen-go (see the README).
package proto

//go:generate protoc --go_out=. --go_opt=module=github.com/parley-im/parley/proto parley/v1/frame.proto
