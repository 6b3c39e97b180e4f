package wsconn

import (
	"sync/atomic"
	"time"
)

// Go runs fn on a goroutine of its own, reusing one that finished earlier
// work when one waits. A new goroutine starts on a small stack that grows,
// by copying, as deep as a frame's handling goes (the use case, the store,
// the sidecar client); at tens of thousands of frames a second that
// copying cost more than the handling. A goroutine kept from earlier work
// has its stack grown already.
//
// At most maxIdleWorkers wait for work, each at most idleWorkerTimeout:
// idle connections hold no goroutine, and a node that goes quiet lets the
// kept ones go.
func Go(fn func()) {
	select {
	case work <- fn:
	default:
		go worker(fn)
	}
}

const (
	maxIdleWorkers    = 128
	idleWorkerTimeout = 2 * time.Second
)

var (
	work        = make(chan func())
	idleWorkers atomic.Int32
)

func worker(fn func()) {
	fn()
	var t *time.Timer
	for {
		if idleWorkers.Add(1) > maxIdleWorkers {
			idleWorkers.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(idleWorkerTimeout)
		} else {
			t.Reset(idleWorkerTimeout)
		}
		select {
		case fn = <-work:
			idleWorkers.Add(-1)
			fn()
		case <-t.C:
			idleWorkers.Add(-1)
			return
		}
	}
}
