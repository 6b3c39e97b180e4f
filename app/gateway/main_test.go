package gateway

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it starts: servers, pollers, connections and
// their timers. Nothing is ignored.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
