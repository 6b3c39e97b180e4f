package dapr_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr"
)

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu      sync.Mutex
	calls   map[string]int // "op/outcome"
	batches map[string][]int
}

func (r *recorder) SidecarCall(op, outcome string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d <= 0 {
		op += "(no duration)"
	}
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[op+"/"+outcome]++
}

func (r *recorder) SidecarBatch(op string, size int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batches == nil {
		r.batches = map[string][]int{}
	}
	r.batches[op] = append(r.batches[op], size)
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[key]
}

func (r *recorder) sizes(op string) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches[op])
}

// startObservedFake is startFake with an Observer in the Config.
func startObservedFake(t *testing.T, f *fakeSidecar, obs dapr.Observer) *dapr.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pb.RegisterDaprServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(health.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dapr.NewWithDialer(ctx, dapr.Config{
		GRPCAddress: "passthrough:///bufnet",
		HTTPAddress: strings.TrimPrefix(health.URL, "http://"),
		Observer:    obs,
	}, func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
	if err != nil {
		t.Fatalf("connect to fake sidecar: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestObserverSeesEveryCallWithItsOutcome: each adapter call reaches the
// observer once, named by operation, with the outcome its gRPC answer
// means, and a duration.
func TestObserverSeesEveryCallWithItsOutcome(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		code    codes.Code // codes.OK: the fake answers
		call    func(ctx context.Context, b infrastructure.Backend) error
		wantKey string
	}{
		{"get_ok", codes.OK, func(ctx context.Context, b infrastructure.Backend) error {
			_, err := b.State.Get(ctx, "k")
			return err
		}, "state_get/ok"},
		{"bulk_get_unavailable", codes.Unavailable, func(ctx context.Context, b infrastructure.Backend) error {
			_, err := b.State.BulkGet(ctx, []string{"a", "b"})
			return err
		}, "state_bulk_get/unavailable"},
		{"set_ok", codes.OK, func(ctx context.Context, b infrastructure.Backend) error {
			return b.State.Set(ctx, "k", []byte("v"))
		}, "state_set/ok"},
		{"set_with_etag_conflict", codes.Aborted, func(ctx context.Context, b infrastructure.Backend) error {
			return b.State.Set(ctx, "k", []byte("v"), infrastructure.IfMatch("1"))
		}, "state_set/conflict"},
		{"delete_not_found", codes.NotFound, func(ctx context.Context, b infrastructure.Backend) error {
			return b.State.Delete(ctx, "k")
		}, "state_delete/not_found"},
		{"transaction_internal", codes.Internal, func(ctx context.Context, b infrastructure.Backend) error {
			return b.State.Transact(ctx, []infrastructure.StateOp{{Key: "k", Value: []byte("v")}})
		}, "state_transaction/unavailable"},
		{"publish_invalid", codes.InvalidArgument, func(ctx context.Context, b infrastructure.Backend) error {
			return b.PubSub.Publish(ctx, "topic", []byte("x"))
		}, "publish/invalid"},
		{"invoke_ok", codes.OK, func(ctx context.Context, b infrastructure.Backend) error {
			_, err := b.Invoker.Invoke(ctx, "other-app", "method", []byte("x"))
			return err
		}, "invoke/ok"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeSidecar{}
			if tc.code != codes.OK {
				f.setErr(status.Error(tc.code, "scripted"))
			}
			rec := &recorder{}
			c := startObservedFake(t, f, rec)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := tc.call(ctx, c.Backend())
			if (err == nil) != (tc.code == codes.OK) {
				t.Fatalf("call error = %v, want one only when the fake fails (%s)", err, tc.code)
			}
			if got := rec.count(tc.wantKey); got != 1 {
				t.Errorf("observer saw %s %d times, want 1; saw %v", tc.wantKey, got, rec.calls)
			}
		})
	}
}

func TestObserverSeesACanceledCall(t *testing.T) {
	t.Parallel()
	f := coalescingFake()
	rec := &recorder{}
	c := startObservedFake(t, f, rec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Backend().State.Get(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	defer close(hold)
	f.mu.Lock()
	f.hold, f.arrived = hold, make(chan struct{}, 8)
	f.mu.Unlock()
	callCtx, callCancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := c.Backend().State.Get(callCtx, "k")
		done <- err
	}()
	awaitHeld(t, f, 1)
	callCancel()
	if err := <-done; err == nil {
		t.Fatal("a canceled Get succeeded")
	}
	if got := rec.count("state_get/canceled"); got != 1 {
		t.Errorf("observer saw state_get/canceled %d times, want 1; saw %v", got, rec.calls)
	}
}

// TestObserverSeesBatchSizes: a Set that finds the sidecar idle goes alone
// (size 1); the Sets that queue behind it go out as one batch, whose size
// the observer is told.
func TestObserverSeesBatchSizes(t *testing.T) {
	t.Parallel()
	f := coalescingFake()
	rec := &recorder{}
	c := startObservedFake(t, f, rec)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Backend().State.Get(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold, f.arrived = hold, make(chan struct{}, 64)
	f.mu.Unlock()

	s := c.Backend().State
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Set(ctx, "first", []byte("v")); err != nil {
			t.Error(err)
		}
	})
	awaitHeld(t, f, 1)
	const queued = 5
	for i := range queued {
		wg.Go(func() {
			if err := s.Set(ctx, "k"+strconv.Itoa(i), []byte("v")); err != nil {
				t.Error(err)
			}
		})
	}
	queueBehind()
	close(hold)
	wg.Wait()

	if got, want := rec.sizes("set"), []int{1, queued}; !slices.Equal(got, want) {
		t.Errorf("set batch sizes = %v, want %v", got, want)
	}
	if got := rec.sizes("get"); !slices.Equal(got, []int{1}) {
		t.Errorf("get batch sizes = %v, want [1] (the warm-up, alone)", got)
	}
	if got := rec.count("state_set/ok"); got != 2 {
		t.Errorf("observer saw %d SaveState calls, want 2 (one alone, one batch)", got)
	}
}
