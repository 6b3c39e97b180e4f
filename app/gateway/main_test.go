package gateway

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it starts: servers, pollers, connections and
// their timers. Only the goroutines wsconn keeps for the next frames are
// ignored: they end by themselves, two seconds after their last work.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/parley-im/parley/app/gateway/wsconn.worker"))
}
