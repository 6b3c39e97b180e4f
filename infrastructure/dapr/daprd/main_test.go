package daprd_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: a
// Sidecar owns the goroutine that waits for its daprd process.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
