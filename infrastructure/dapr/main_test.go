package dapr_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the
// adapter owns subscription streams, configuration watches, state batchers
// and its gRPC connection, and Close must end them all. No goroutine of
// grpc or the Dapr SDK needs ignoring: with the client closed, none is
// left.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
