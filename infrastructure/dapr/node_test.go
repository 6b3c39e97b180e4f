package dapr_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/parley-im/parley/infrastructure/dapr"
	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// node is one parley process as the tests see it: a real daprd, the
// adapter's client, and the HTTP listener daprd calls for invocations.
type node struct {
	sidecar *daprd.Sidecar
	client  *dapr.Client
}

// startNode starts daprd for profile with an app port, connects the adapter
// and serves its invocation handler. Everything stops with the test.
func startNode(t testing.TB, profile string, opts ...daprdtest.Option) *node {
	t.Helper()
	return startNodeWith(t, profile, nil, opts...)
}

// startNodeWith is startNode with the adapter's Config changed by edit.
func startNodeWith(t testing.TB, profile string, edit func(*dapr.Config), opts ...daprdtest.Option) *node {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The app port must accept connections before daprd starts, but the
	// client, whose handler serves it, needs daprd's ports: until the
	// client exists, answer daprd's start-up probes (/dapr/subscribe,
	// /dapr/config) as the handler would, with 404.
	var handler atomic.Pointer[http.Handler]
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := handler.Load()
			if h == nil {
				http.NotFound(w, r)
				return
			}
			(*h).ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("app server: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })

	opts = append([]daprdtest.Option{daprdtest.WithAppPort(lis.Addr().(*net.TCPAddr).Port)}, opts...)
	sc := daprdtest.StartForTest(t, profile, opts...)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := dapr.Config{
		GRPCAddress: sc.GRPCAddr(),
		HTTPAddress: sc.HTTPAddr(),
		Logger:      zaptest.NewLogger(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := dapr.New(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to daprd: %v", err)
	}
	// Registered after StartForTest's cleanup, so it runs first: the
	// client closes its streams while daprd still answers.
	t.Cleanup(func() { _ = c.Close() })
	h := c.InvocationHandler()
	handler.Store(&h)
	return &node{sidecar: sc, client: c}
}
