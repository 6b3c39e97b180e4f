// Package dapr implements parley's infrastructure interfaces over a Dapr
// sidecar (daprd), through github.com/dapr/go-sdk over gRPC.
//
// The SDK client stays inside this package: the core sees only the
// infrastructure interfaces, handed out by Client.Backend. The sidecar itself
// is started by the process manager in production, and by
// infrastructure/dapr/daprd in tests and in the local run command.
package dapr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/parley-im/parley/infrastructure"
)

// Config says where the sidecar listens and which of its components parley
// uses. The component names are the same in every profile (components/*).
type Config struct {
	// GRPCAddress is daprd's gRPC API address, e.g. "127.0.0.1:50001". Required.
	GRPCAddress string
	// HTTPAddress is daprd's HTTP API address, e.g. "127.0.0.1:3500", used
	// for /v1.0/healthz/outbound. Required.
	HTTPAddress string
	// StateStore is the state component's name. Zero value means "statestore".
	StateStore string
	// PubSub is the pub/sub component's name. Zero value means "pubsub".
	PubSub string
	// ConfigStore is the configuration component's name. Zero value means
	// "configstore". A profile without one still works: ConfigStore calls
	// then fail with ErrNotFound.
	ConfigStore string
	// RouteStore is the name of the state component that every unit of a
	// deployment shares for its route table (components/units). Zero value
	// means "routes". A sidecar without it still works: route calls then
	// fail, and only a node started as a unit makes them.
	RouteStore string
	// ReadyTimeout bounds how long New waits for the sidecar to become ready.
	// Zero value means 10 * time.Second.
	ReadyTimeout time.Duration
	// Logger receives the adapter's own events (re-subscriptions and the
	// like), never message bodies. Zero value means zap.NewNop().
	Logger *zap.Logger
	// Observer is told of every call to daprd and of the size of every
	// coalesced state call, for metrics. Zero value means none.
	Observer Observer
	// TracerProvider makes the client span of every call to daprd, whose
	// trace context (traceparent) daprd continues. Zero value means the
	// process-wide provider (otel.GetTracerProvider), which records
	// nothing until tracing is set up; the caller's trace context travels
	// to daprd either way.
	TracerProvider trace.TracerProvider
	// APIToken is sent to daprd on every call (the dapr-api-token header),
	// for a daprd started with DAPR_API_TOKEN. Zero value means none.
	APIToken string
	// AppAPIToken, when set, must come with every call daprd makes into
	// this app (daprd started with APP_API_TOKEN sends it): others are
	// refused with 401. Zero value means calls are not checked.
	AppAPIToken string
}

func (c *Config) setDefaults() {
	if c.StateStore == "" {
		c.StateStore = "statestore"
	}
	if c.PubSub == "" {
		c.PubSub = "pubsub"
	}
	if c.ConfigStore == "" {
		c.ConfigStore = "configstore"
	}
	if c.RouteStore == "" {
		c.RouteStore = "routes"
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// Client is a connection to one daprd. It is safe for concurrent use. Its
// zero value is not usable: build it with New, and Close it when done.
type Client struct {
	cfg       Config
	log       *zap.Logger
	sdk       dapr.Client
	http      *http.Client
	healthURL string

	state   *stateStore
	routes  *stateStore
	pubsub  *pubSub
	config  *configStore
	invoker *invoker

	// hasConfigStore and stateTypes cache metadata answers: a component
	// that daprd loaded keeps its name and type while daprd runs.
	// stateTypes maps a state component's name to a *string.
	hasConfigStore atomic.Bool
	stateTypes     sync.Map

	mu     sync.Mutex
	closed bool
	// live holds the subscriptions and configuration watches that Close
	// must stop; each removes itself when it ends.
	live map[io.Closer]struct{}
}

// sdkLoggerOnce silences the SDK's process-wide standard logger once: it
// writes to stdout, and this package logs the same events through zap.
var sdkLoggerOnce sync.Once

// New connects to the sidecar at cfg's addresses and waits, at most
// cfg.ReadyTimeout, until it reports ready. Without a sidecar it fails with
// an error that names the addresses it tried and says how to start one.
func New(ctx context.Context, cfg Config) (*Client, error) {
	return newClient(ctx, cfg)
}

// newClient is New with extra dial options, which the tests use to reach an
// in-process fake sidecar.
func newClient(ctx context.Context, cfg Config, dialOpts ...grpc.DialOption) (*Client, error) {
	if cfg.GRPCAddress == "" || cfg.HTTPAddress == "" {
		return nil, errors.New("dapr: Config.GRPCAddress and Config.HTTPAddress are required")
	}
	cfg.setDefaults()
	sdkLoggerOnce.Do(func() { dapr.SetLogger(nil) })

	// grpc.NewClient connects lazily and reconnects by itself, so one
	// ClientConn outlives daprd restarts; the SDK's own constructors dial
	// with WithBlock and would give up on a sidecar that is still starting.
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("parley"),
	}, observeDialOptions(cfg.Observer, cfg.TracerProvider)...)
	if cfg.APIToken != "" {
		// On the connection rather than through the SDK: the batchers call
		// daprd's gRPC API directly too.
		opts = append(opts, grpc.WithChainUnaryInterceptor(tokenUnary(cfg.APIToken)),
			grpc.WithChainStreamInterceptor(tokenStream(cfg.APIToken)))
	}
	opts = append(opts, dialOpts...)
	conn, err := grpc.NewClient(cfg.GRPCAddress, opts...)
	if err != nil {
		return nil, fmt.Errorf("dapr: connect to daprd at %s: %w", cfg.GRPCAddress, err)
	}

	c := &Client{
		cfg:       cfg,
		log:       cfg.Logger,
		sdk:       dapr.NewClientWithConnection(conn),
		http:      &http.Client{Timeout: 2 * time.Second},
		healthURL: "http://" + cfg.HTTPAddress + "/v1.0/healthz/outbound",
		live:      make(map[io.Closer]struct{}),
	}
	c.state = newStateStore(c, cfg.StateStore)
	c.routes = newStateStore(c, cfg.RouteStore)
	c.pubsub = &pubSub{c: c, name: cfg.PubSub}
	c.config = &configStore{c: c, store: cfg.ConfigStore}
	c.invoker = &invoker{c: c, handlers: make(map[string]infrastructure.InvocationHandler)}

	if err := c.waitReady(ctx); err != nil {
		c.sdk.Close()
		return nil, err
	}
	return c, nil
}

// waitReady polls the sidecar's outbound health endpoint, which answers 204
// once daprd has loaded its components and can serve the app's calls.
func (c *Client) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()

	tick := time.NewTimer(0)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("dapr: no sidecar ready at gRPC %s / HTTP %s after %s (last error: %v); "+
				"start one with `make run`, or build it with `make sidecar` and start it with the launcher in infrastructure/dapr/daprd",
				c.cfg.GRPCAddress, c.cfg.HTTPAddress, c.cfg.ReadyTimeout, last)
		case <-tick.C:
		}
		if last = c.ready(ctx); last == nil {
			return nil
		}
		tick.Reset(100 * time.Millisecond)
	}
}

// ready asks daprd's HTTP API whether it is ready.
func (c *Client) ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.healthURL, nil)
	if err == nil && c.cfg.APIToken != "" {
		req.Header.Set(apiTokenHeader, c.cfg.APIToken)
	}
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", c.healthURL, resp.Status)
	}
	return nil
}

// Backend returns the adapter's implementations of every interface.
// Backend.Close closes c.
func (c *Client) Backend() infrastructure.Backend {
	return infrastructure.Backend{
		State:   c.state,
		Routes:  c.routes,
		PubSub:  c.pubsub,
		Config:  c.config,
		Invoker: c.invoker,
		Ready: func(ctx context.Context) error {
			if err := c.ready(ctx); err != nil {
				return &infrastructure.OpError{Op: "ready", Key: c.cfg.HTTPAddress, Kind: infrastructure.ErrUnavailable, Err: err}
			}
			return nil
		},
		Close: c.Close,
	}
}

// HasConfigStore reports whether the sidecar loaded a configuration
// component named Config.ConfigStore. Any error reads as false.
func (c *Client) HasConfigStore(ctx context.Context) bool {
	if c.hasConfigStore.Load() {
		return true
	}
	md, err := c.sdk.GetMetadata(ctx)
	if err != nil {
		c.log.Debug("dapr: read sidecar metadata", zap.Error(err))
		return false
	}
	for _, comp := range md.RegisteredComponents {
		if comp.Name == c.cfg.ConfigStore && strings.HasPrefix(comp.Type, "configuration.") {
			c.hasConfigStore.Store(true)
			return true
		}
	}
	return false
}

// stateStoreType returns the type of the state component named store,
// e.g. "state.redis", or "" when the sidecar cannot tell right now. The
// state store and the route store may be of different types.
func (c *Client) stateStoreType(ctx context.Context, store string) string {
	if t, ok := c.stateTypes.Load(store); ok {
		return *t.(*string)
	}
	md, err := c.sdk.GetMetadata(ctx)
	if err != nil {
		return ""
	}
	for _, comp := range md.RegisteredComponents {
		if comp.Name == store {
			t := comp.Type
			c.stateTypes.Store(store, &t)
			return t
		}
	}
	return ""
}

// Close stops every subscription and configuration watch, waiting for the
// handlers in flight, then closes the connection, which ends the state
// batches in flight, and fails the state calls still queued with
// ErrUnavailable. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	live := make([]io.Closer, 0, len(c.live))
	for l := range c.live {
		live = append(live, l)
	}
	c.mu.Unlock()

	for _, l := range live {
		_ = l.Close()
	}
	c.sdk.Close()
	c.state.close()
	c.routes.close()
	return nil
}

// track registers a subscription or watch for Close. It fails once the
// client is closed, so that nothing starts after Close returned.
func (c *Client) track(l io.Closer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("client is closed")
	}
	c.live[l] = struct{}{}
	return nil
}

func (c *Client) untrack(l io.Closer) {
	c.mu.Lock()
	delete(c.live, l)
	c.mu.Unlock()
}

// apiTokenHeader is the metadata key daprd reads DAPR_API_TOKEN from.
const apiTokenHeader = "dapr-api-token"

func tokenUnary(token string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, apiTokenHeader, token), method, req, reply, cc, opts...)
	}
}

func tokenStream(token string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(metadata.AppendToOutgoingContext(ctx, apiTokenHeader, token), desc, cc, method, opts...)
	}
}
