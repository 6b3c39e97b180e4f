package memory_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the
// adapter's subscriptions and configuration watches start goroutines that
// must end with their context.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
