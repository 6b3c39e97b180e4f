package dapr

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/infrastructure"
)

// Coalescing concurrent calls (group commit).
//
// daprd spends about 90 µs of CPU on every state call, however little it
// carries, and on a busy node that CPU, not the store, bounds throughput:
// each chat send makes three or four state calls in a row, and every
// connection sends from its own goroutine. A batcher merges the calls of one
// kind that arrive while earlier ones are in flight into one daprd call that
// carries them all.
//
// It never waits to fill a batch, and sets no timer. A call that finds
// fewer than the batcher's slots (see batchSlots) in flight goes out at
// once, alone, exactly as it did before batching. Only calls that find the
// sidecar busy queue, and when a batch ends, what is queued (up to the
// batch limit) goes out as the next batch. So an idle node sees no added
// latency, and a busy one sends bigger batches as the load grows.
//
// Each caller gets the answer it would have had alone: state_batch.go says
// how each kind of batch keeps to that when part of it fails.

// batchSlots is how many batches of one kind may be in flight before calls
// queue, by where the store does its work:
//   - in daprd's own process (state.in-memory), one: the sidecar's CPU is
//     the limit under load, and with two in flight half the batches were
//     small. Measured through daprd + local, 50 conversations flat out:
//     6,650-6,900 msg/s with one, 5,750-6,100 with two, and a tenth less
//     sidecar CPU per message;
//   - on a server of its own (Redis, PostgreSQL, ...), two: most of a
//     batch's time is spent waiting on that server, and a second batch
//     overlaps the wait. Measured through daprd + redis, same load, old
//     and new binaries alternating: 2,609 -> 3,050 msg/s (median of 3).
func batchSlots(storeType string) int32 {
	if storeType == "state.in-memory" {
		return 1
	}
	return 2
}

const (
	// batchTimeout bounds a batch, which runs detached from its callers:
	// one caller giving up must not fail the others.
	batchTimeout = 10 * time.Second
)

// errClientClosed answers the calls still queued when the client closes.
var errClientClosed = errors.New("client is closed")

// result is one call's answer.
type result[Res any] struct {
	res Res
	err error
}

// call is one queued call.
type call[Req, Res any] struct {
	ctx  context.Context
	req  Req
	key  string
	done chan result[Res] // buffered: a batch never blocks on a caller that left
}

// batcher coalesces concurrent calls of one kind. Build it with all the
// function fields set; close it after the connection, when the client closes.
type batcher[Req, Res any] struct {
	// op names the calls in errors: "get", "set", "transact".
	op string
	// key names a call's key in errors, and in the exclusion below.
	key func(Req) string
	// distinct keeps at most one call per key in flight, in all batches
	// and alone calls together; later calls for a busy key wait in order.
	distinct bool
	// limit is the most calls one batch carries.
	limit int
	// alone runs one call by itself, on its caller's ctx: the path every
	// call took before batching.
	alone func(ctx context.Context, req Req) (Res, error)
	// bulk runs two or more calls as a batch and answers each, in order.
	bulk func(ctx context.Context, reqs []Req) []result[Res]
	// sized, when set, is told how many calls each daprd call carried:
	// 1 for a call that went alone.
	sized func(n int)
	// slots is how many batches may be in flight; below 1 means 1. It may
	// change at any time (see batchSlots).
	slots atomic.Int32

	mu      sync.Mutex
	queue   []*call[Req, Res]
	running int                 // batches in flight, alone calls included
	busy    map[string]struct{} // keys in flight, when distinct
	closed  bool
	wg      sync.WaitGroup // batch goroutines

	// coalesced counts the calls that went out in a batch of two or more.
	coalesced atomic.Int64
}

// do runs req, alone at once when few batches are in flight, else in the
// next batch. It returns when req is answered or ctx ends, whichever comes
// first; in the latter case req may still run.
func (b *batcher[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	key := b.key(req)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.alone(ctx, req)
	}
	// When a slot is free nothing eligible is queued (startLocked takes it
	// all), so going first does not overtake anyone.
	if b.running < b.maxInFlight() && !b.isBusy(key) {
		b.running++
		b.hold(key)
		b.mu.Unlock()
		b.observe(1)
		res, err := b.alone(ctx, req)
		b.mu.Lock()
		b.running--
		b.unhold(key)
		b.startLocked()
		b.mu.Unlock()
		return res, err
	}
	c := &call[Req, Res]{ctx: ctx, req: req, key: key, done: make(chan result[Res], 1)}
	b.queue = append(b.queue, c)
	b.startLocked()
	b.mu.Unlock()

	select {
	case r := <-c.done:
		return r.res, r.err
	case <-ctx.Done():
		select {
		case r := <-c.done: // answered just in time
			return r.res, r.err
		default:
		}
		var zero Res
		return zero, opError(ctx, b.op, key, ctx.Err(), false)
	}
}

func (b *batcher[Req, Res]) observe(n int) {
	if b.sized != nil {
		b.sized(n)
	}
}

func (b *batcher[Req, Res]) isBusy(key string) bool {
	if !b.distinct {
		return false
	}
	_, ok := b.busy[key]
	return ok
}

func (b *batcher[Req, Res]) hold(key string) {
	if b.distinct {
		if b.busy == nil {
			b.busy = make(map[string]struct{})
		}
		b.busy[key] = struct{}{}
	}
}

func (b *batcher[Req, Res]) unhold(key string) {
	if b.distinct {
		delete(b.busy, key)
	}
}

func (b *batcher[Req, Res]) maxInFlight() int { return int(max(b.slots.Load(), 1)) }

// startLocked starts batches from the queue while slots are free. Each runs
// in a goroutine of its own, so that the caller that started it (often one
// whose own call just ended) returns at once.
func (b *batcher[Req, Res]) startLocked() {
	for !b.closed && b.running < b.maxInFlight() {
		batch := b.takeLocked()
		if len(batch) == 0 {
			return
		}
		b.running++
		b.wg.Add(1)
		go b.run(batch)
	}
}

// takeLocked removes the next batch from the queue, in arrival order:
// calls whose caller already left are dropped, and, when distinct, a call
// whose key is busy or already taken stays queued for a later batch.
func (b *batcher[Req, Res]) takeLocked() []*call[Req, Res] {
	var batch []*call[Req, Res]
	rest := b.queue[:0]
	for _, c := range b.queue {
		switch {
		case c.ctx.Err() != nil:
		case len(batch) == b.limit || b.isBusy(c.key):
			rest = append(rest, c)
		default:
			b.hold(c.key)
			batch = append(batch, c)
		}
	}
	clear(b.queue[len(rest):])
	b.queue = rest
	return batch
}

// run sends one batch and answers its callers. A batch of one is that call
// alone, on its caller's ctx.
func (b *batcher[Req, Res]) run(batch []*call[Req, Res]) {
	defer b.wg.Done()
	b.observe(len(batch))
	if len(batch) == 1 {
		c := batch[0]
		res, err := b.alone(c.ctx, c.req)
		c.done <- result[Res]{res: res, err: err}
	} else {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), batchTimeout)
		reqs := make([]Req, len(batch))
		for i, c := range batch {
			reqs[i] = c.req
		}
		b.coalesced.Add(int64(len(batch)))
		results := b.bulk(ctx, reqs)
		cancel()
		for i, c := range batch {
			c.done <- results[i]
		}
	}
	b.finished(batch)
}

// finished frees the slot and the keys of a batch, and starts the next one.
func (b *batcher[Req, Res]) finished(batch []*call[Req, Res]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running--
	for _, c := range batch {
		b.unhold(c.key)
	}
	b.startLocked()
}

// close answers the queued calls with ErrUnavailable and waits for the
// batches in flight. Call it after closing the connection, which ends them.
// Calls made afterwards run alone, and fail as any call on a closed
// connection does.
func (b *batcher[Req, Res]) close() {
	b.mu.Lock()
	b.closed = true
	queue := b.queue
	b.queue = nil
	b.mu.Unlock()
	for _, c := range queue {
		c.done <- result[Res]{err: &infrastructure.OpError{Op: b.op, Key: c.key, Kind: infrastructure.ErrUnavailable, Err: errClientClosed}}
	}
	b.wg.Wait()
}
