package dapr_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr"
)

// coalescingFake is a fake sidecar whose state store is of a type whose
// calls the adapter coalesces.
func coalescingFake() *fakeSidecar {
	return &fakeSidecar{components: []*pb.RegisteredComponents{{Name: "statestore", Type: "state.in-memory"}}}
}

// startHeld connects to f, makes one Get so that the adapter knows the
// store's type, then holds every state call in f until release is called.
func startHeld(t *testing.T, f *fakeSidecar) (c *dapr.Client, release func()) {
	t.Helper()
	c = startFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Backend().State.Get(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold, f.arrived = hold, make(chan struct{}, 1024)
	f.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	return c, release
}

// awaitHeld waits until n state calls wait in f.
func awaitHeld(t *testing.T, f *fakeSidecar, n int) {
	t.Helper()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for range n {
		select {
		case <-f.arrived:
		case <-timeout.C:
			t.Fatalf("fewer than %d state calls reached the fake sidecar", n)
		}
	}
}

// queueBehind gives the calls started behind the held ones time to queue.
// A sleep, because there is no condition to wait on: the queue is inside
// the adapter, and the fake sidecar sees nothing of it until the held
// batches are released.
func queueBehind() { time.Sleep(100 * time.Millisecond) }

// TestBatchesInFlightFollowTheStore: a store inside daprd gets one batch in
// flight at a time (its CPU is the sidecar's), a store on a server of its
// own two, so that a second batch overlaps the wait on that server.
func TestBatchesInFlightFollowTheStore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		storeType string
		want      int
	}{{"state.in-memory", 1}, {"state.redis", 2}, {"state.postgresql", 2}} {
		t.Run(tc.storeType, func(t *testing.T) {
			t.Parallel()
			f := &fakeSidecar{components: []*pb.RegisteredComponents{{Name: "statestore", Type: tc.storeType}}}
			c, release := startHeld(t, f)
			s := c.Backend().State
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() { _, _ = s.Get(ctx, "k"+strconv.Itoa(i)) })
			}
			awaitHeld(t, f, tc.want)
			select {
			case <-f.arrived:
				t.Fatalf("a state call beyond %d reached the sidecar while %d were in flight", tc.want, tc.want)
			case <-time.After(200 * time.Millisecond):
			}
			release()
			wg.Wait()
		})
	}
}

func TestConcurrentGetsAreCoalesced(t *testing.T) {
	t.Parallel()
	f := coalescingFake()
	c, release := startHeld(t, f)
	s := c.Backend().State
	before := f.callCount("GetState") + f.callCount("GetBulkState")

	const n = 100
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			it, err := s.Get(ctx, "k"+strconv.Itoa(i%10))
			if err == nil && (it.Found || it.Key != "k"+strconv.Itoa(i%10)) {
				err = errors.New("wrong item for a missing key")
			}
			errs <- err
		})
	}
	awaitHeld(t, f, dapr.MaxBatchesInFlight)
	queueBehind()
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("get: %v", err)
		}
	}
	sent := f.callCount("GetState") + f.callCount("GetBulkState") - before
	gets, _, _ := dapr.CoalescedCalls(c)
	t.Logf("%d concurrent Gets reached the sidecar as %d calls", n, sent)
	if sent >= n/4 || gets == 0 {
		t.Fatalf("%d concurrent Gets reached the sidecar as %d calls (%d coalesced), want fewer than %d", n, sent, gets, n/4)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bulkKeys > 10*f.calls["GetBulkState"] {
		t.Fatalf("GetBulkState asked for %d keys in %d calls; a batch asks for each of the 10 keys once", f.bulkKeys, f.calls["GetBulkState"])
	}
}

func TestLoneGetGoesOutAtOnce(t *testing.T) {
	t.Parallel()
	f := coalescingFake()
	c, release := startHeld(t, f)
	before := f.callCount("GetState")

	done := make(chan error, 1)
	go func() {
		_, err := c.Backend().State.Get(context.Background(), "alone")
		done <- err
	}()
	// The Get reaches the sidecar while it is the only call: it waited for
	// no company and no timer.
	awaitHeld(t, f, 1)
	if got := f.callCount("GetState") - before; got != 1 || f.callCount("GetBulkState") != 0 {
		t.Fatalf("a lone Get reached the sidecar as %d GetState and %d GetBulkState calls, want one GetState", got, f.callCount("GetBulkState"))
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestFailedBulkSaveAnswersEachCall(t *testing.T) {
	t.Parallel()
	f := coalescingFake()
	f.failKey = "bad"
	c, release := startHeld(t, f)
	s := c.Backend().State
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for _, k := range []string{"first", "second"} {
		wg.Go(func() { _ = s.Set(ctx, k, []byte("v")) })
	}
	awaitHeld(t, f, dapr.MaxBatchesInFlight)
	const n = 30
	errs := make([]error, n)
	key := func(i int) string {
		if i == n/2 {
			return "bad"
		}
		return "k" + strconv.Itoa(i)
	}
	for i := range n {
		wg.Go(func() {
			var opts []infrastructure.WriteOption
			if i%2 == 0 {
				opts = append(opts, infrastructure.IfAbsent())
			}
			errs[i] = s.Set(ctx, key(i), []byte("v"+strconv.Itoa(i)), opts...)
		})
	}
	queueBehind()
	release()
	wg.Wait()
	for i, err := range errs {
		if key(i) == "bad" {
			var oe *infrastructure.OpError
			if !errors.Is(err, infrastructure.ErrInvalidArgument) || !errors.As(err, &oe) || oe.Op != "set" || oe.Key != "bad" {
				t.Errorf("set of the refused key = %v, want an ErrInvalidArgument OpError for set bad", err)
			}
		} else if err != nil {
			t.Errorf("set %s = %v, want success", key(i), err)
		}
	}
	if _, sets, _ := dapr.CoalescedCalls(c); sets == 0 {
		t.Fatal("no Set went out in a batch")
	}
}

func TestFailedMergedTransactionAnswersEachCall(t *testing.T) {
	t.Parallel()
	f := coalescingFake()
	f.failKey = "bad"
	c, release := startHeld(t, f)
	s := c.Backend().State
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for _, k := range []string{"first", "second"} {
		wg.Go(func() { _ = s.Transact(ctx, []infrastructure.StateOp{{Key: k, Value: []byte("v")}}) })
	}
	awaitHeld(t, f, dapr.MaxBatchesInFlight)
	const n = 20
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			k := "t" + strconv.Itoa(i)
			if i == n/2 {
				k = "bad"
			}
			errs[i] = s.Transact(ctx, []infrastructure.StateOp{{Key: k, Value: []byte("v")}, {Key: k + "-other", Delete: true}})
		})
	}
	queueBehind()
	release()
	wg.Wait()
	for i, err := range errs {
		if i == n/2 {
			var oe *infrastructure.OpError
			if !errors.Is(err, infrastructure.ErrInvalidArgument) || !errors.As(err, &oe) || oe.Op != "transact" || oe.Key != "bad (+1 more)" {
				t.Errorf("refused transaction = %v, want an ErrInvalidArgument OpError for transact %q", err, "bad (+1 more)")
			}
		} else if err != nil {
			t.Errorf("transaction %d = %v, want success", i, err)
		}
	}
	if _, _, txs := dapr.CoalescedCalls(c); txs == 0 {
		t.Fatal("no transaction was merged")
	}
}

func TestCloseEndsQueuedCalls(t *testing.T) {
	t.Parallel()
	f := coalescingFake()
	c, _ := startHeld(t, f)
	s := c.Backend().State

	const n = 20
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.Get(context.Background(), "k"+strconv.Itoa(i))
			errs <- err
		}()
	}
	awaitHeld(t, f, dapr.MaxBatchesInFlight)
	queueBehind()
	closed := make(chan struct{})
	go func() {
		_ = c.Close()
		close(closed)
	}()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, infrastructure.ErrUnavailable) {
				t.Errorf("get cut off by Close = %v, want ErrUnavailable", err)
			}
		case <-timeout.C:
			t.Fatal("Gets still waiting after Close")
		}
	}
	select {
	case <-closed:
	case <-timeout.C:
		t.Fatal("Close did not return: a batch outlived the connection")
	}
}
