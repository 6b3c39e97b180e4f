package push_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when one of them leaves a goroutine
// running: the Pusher's workers must end with Stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
