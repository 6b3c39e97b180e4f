package wsconn

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it starts: pollers, writers, close goroutines and
// test servers. Nothing is ignored.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
