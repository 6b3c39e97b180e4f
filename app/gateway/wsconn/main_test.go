package wsconn

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it starts: pollers, writers, close goroutines and
// test servers. Only the goroutines kept for the next frames (see Go) are
// ignored: they end by themselves, idleWorkerTimeout after their last work.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/parley-im/parley/app/gateway/wsconn.worker"))
}
