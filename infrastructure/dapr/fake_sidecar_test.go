package dapr_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "github.com/dapr/dapr/pkg/proto/common/v1"
	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr"
)

// fakeSidecar is an in-process daprd stand-in over bufconn: every unary call
// fails with err when it is set, and streaming subscriptions are scripted
// through streams.
type fakeSidecar struct {
	pb.UnimplementedDaprServer

	mu         sync.Mutex
	err        error
	components []*pb.RegisteredComponents
	configSubs int
	stateReqs  []*pb.SaveStateRequest
	// calls counts the state calls by method name, and bulkKeys the keys
	// that GetBulkState calls asked for.
	calls    map[string]int
	bulkKeys int
	// failKey, when set, fails every SaveState and transaction that
	// writes it with InvalidArgument.
	failKey string
	// hold, when set, keeps every state call waiting until it is closed;
	// arrived then receives a value as each call comes in.
	hold    chan struct{}
	arrived chan struct{}
	// streams scripts each SubscribeTopicEventsAlpha1 call in turn: the
	// events to send, after which the stream fails (to imitate daprd
	// going away) unless it is the last script, which stays open.
	streams [][]*pb.TopicEventRequest
	opened  int
	acks    chan *pb.SubscribeTopicEventsRequestProcessedAlpha1
}

func (f *fakeSidecar) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fakeSidecar) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// stateCall counts a state call, and waits while hold is open.
func (f *fakeSidecar) stateCall(ctx context.Context, method string) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[string]int)
	}
	f.calls[method]++
	hold, arrived := f.hold, f.arrived
	f.mu.Unlock()
	if hold == nil {
		return
	}
	select {
	case arrived <- struct{}{}:
	default:
	}
	select {
	case <-hold:
	case <-ctx.Done():
	}
}

func (f *fakeSidecar) callCount(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeSidecar) GetState(ctx context.Context, _ *pb.GetStateRequest) (*pb.GetStateResponse, error) {
	f.stateCall(ctx, "GetState")
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.GetStateResponse{}, nil
}

func (f *fakeSidecar) GetBulkState(ctx context.Context, in *pb.GetBulkStateRequest) (*pb.GetBulkStateResponse, error) {
	f.stateCall(ctx, "GetBulkState")
	f.mu.Lock()
	f.bulkKeys += len(in.GetKeys())
	f.mu.Unlock()
	if err := f.fail(); err != nil {
		return nil, err
	}
	out := &pb.GetBulkStateResponse{}
	for _, k := range in.GetKeys() {
		out.Items = append(out.Items, &pb.BulkStateItem{Key: k})
	}
	return out, nil
}

func (f *fakeSidecar) SaveState(ctx context.Context, in *pb.SaveStateRequest) (*emptypb.Empty, error) {
	f.stateCall(ctx, "SaveState")
	f.mu.Lock()
	f.stateReqs = append(f.stateReqs, in)
	failKey := f.failKey
	f.mu.Unlock()
	if err := f.fail(); err != nil {
		return nil, err
	}
	for _, st := range in.GetStates() {
		if failKey != "" && st.GetKey() == failKey {
			return nil, status.Error(codes.InvalidArgument, "refused by fake sidecar")
		}
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeSidecar) DeleteState(context.Context, *pb.DeleteStateRequest) (*emptypb.Empty, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeSidecar) ExecuteStateTransaction(ctx context.Context, in *pb.ExecuteStateTransactionRequest) (*emptypb.Empty, error) {
	f.stateCall(ctx, "ExecuteStateTransaction")
	if err := f.fail(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	failKey := f.failKey
	f.mu.Unlock()
	for _, op := range in.GetOperations() {
		if failKey != "" && op.GetRequest().GetKey() == failKey {
			return nil, status.Error(codes.InvalidArgument, "refused by fake sidecar")
		}
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeSidecar) PublishEvent(context.Context, *pb.PublishEventRequest) (*emptypb.Empty, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeSidecar) InvokeService(context.Context, *pb.InvokeServiceRequest) (*commonpb.InvokeResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &commonpb.InvokeResponse{}, nil
}

func (f *fakeSidecar) GetConfiguration(context.Context, *pb.GetConfigurationRequest) (*pb.GetConfigurationResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.GetConfigurationResponse{}, nil
}

func (f *fakeSidecar) GetMetadata(context.Context, *pb.GetMetadataRequest) (*pb.GetMetadataResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &pb.GetMetadataResponse{RegisteredComponents: f.components}, nil
}

func (f *fakeSidecar) SubscribeConfiguration(*pb.SubscribeConfigurationRequest, pb.Dapr_SubscribeConfigurationServer) error {
	f.mu.Lock()
	f.configSubs++
	f.mu.Unlock()
	return status.Error(codes.InvalidArgument, "no such store")
}

func (f *fakeSidecar) SubscribeTopicEventsAlpha1(stream pb.Dapr_SubscribeTopicEventsAlpha1Server) error {
	if _, err := stream.Recv(); err != nil { // the initial request
		return err
	}
	f.mu.Lock()
	n := f.opened
	f.opened++
	var events []*pb.TopicEventRequest
	if n < len(f.streams) {
		events = f.streams[n]
	}
	last := n >= len(f.streams)-1
	f.mu.Unlock()

	err := stream.Send(&pb.SubscribeTopicEventsResponseAlpha1{
		SubscribeTopicEventsResponseType: &pb.SubscribeTopicEventsResponseAlpha1_InitialResponse{
			InitialResponse: &pb.SubscribeTopicEventsResponseInitialAlpha1{},
		},
	})
	if err != nil {
		return err
	}
	for _, ev := range events {
		err := stream.Send(&pb.SubscribeTopicEventsResponseAlpha1{
			SubscribeTopicEventsResponseType: &pb.SubscribeTopicEventsResponseAlpha1_EventMessage{EventMessage: ev},
		})
		if err != nil {
			return err
		}
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		f.acks <- req.GetEventProcessed()
	}
	if !last {
		return status.Error(codes.Unavailable, "sidecar restarting")
	}
	<-stream.Context().Done()
	return nil
}

// startFake serves f over bufconn and returns a Client connected to it; a
// test HTTP server answers the readiness probe.
func startFake(t *testing.T, f *fakeSidecar) *dapr.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pb.RegisterDaprServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1.0/healthz/outbound" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(health.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dapr.NewWithDialer(ctx, dapr.Config{
		GRPCAddress: "passthrough:///bufnet",
		HTTPAddress: strings.TrimPrefix(health.URL, "http://"),
	}, func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
	if err != nil {
		t.Fatalf("connect to fake sidecar: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestGRPCCodesMapToSentinels(t *testing.T) {
	t.Parallel()
	codeCases := []struct {
		name string
		code codes.Code
		want error
	}{
		{"not_found", codes.NotFound, infrastructure.ErrNotFound},
		{"aborted_is_etag_mismatch", codes.Aborted, infrastructure.ErrConflict},
		{"failed_precondition", codes.FailedPrecondition, infrastructure.ErrConflict},
		{"unavailable", codes.Unavailable, infrastructure.ErrUnavailable},
		{"deadline_exceeded", codes.DeadlineExceeded, infrastructure.ErrUnavailable},
		{"internal_backend_failure", codes.Internal, infrastructure.ErrUnavailable},
		{"invalid_argument", codes.InvalidArgument, infrastructure.ErrInvalidArgument},
	}
	ops := []struct {
		name string
		op   string
		key  string
		call func(ctx context.Context, b infrastructure.Backend) error
	}{
		{"get", "get", "k", func(ctx context.Context, b infrastructure.Backend) error {
			_, err := b.State.Get(ctx, "k")
			return err
		}},
		{"bulk_get", "bulk get", "k", func(ctx context.Context, b infrastructure.Backend) error {
			_, err := b.State.BulkGet(ctx, []string{"k"})
			return err
		}},
		{"set", "set", "k", func(ctx context.Context, b infrastructure.Backend) error {
			return b.State.Set(ctx, "k", []byte("v"))
		}},
		{"delete", "delete", "k", func(ctx context.Context, b infrastructure.Backend) error {
			return b.State.Delete(ctx, "k")
		}},
		{"transact", "transact", "k", func(ctx context.Context, b infrastructure.Backend) error {
			return b.State.Transact(ctx, []infrastructure.StateOp{{Key: "k", Value: []byte("v")}})
		}},
		{"publish", "publish", "topic", func(ctx context.Context, b infrastructure.Backend) error {
			return b.PubSub.Publish(ctx, "topic", []byte("m"))
		}},
		{"invoke", "invoke", "app/method", func(ctx context.Context, b infrastructure.Backend) error {
			_, err := b.Invoker.Invoke(ctx, "app", "method", []byte("m"))
			return err
		}},
	}
	for _, cc := range codeCases {
		t.Run(cc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeSidecar{err: status.Error(cc.code, "from fake sidecar")}
			b := startFake(t, f).Backend()
			for _, op := range ops {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := op.call(ctx, b)
				cancel()
				if !errors.Is(err, cc.want) {
					t.Errorf("%s on %s: got %v, want %v", op.name, cc.code, err, cc.want)
					continue
				}
				var oe *infrastructure.OpError
				if !errors.As(err, &oe) || oe.Op != op.op || oe.Key != op.key {
					t.Errorf("%s on %s: got %#v, want an *OpError for op %q key %q", op.name, cc.code, err, op.op, op.key)
				}
			}
		})
	}
}

func TestMalformedETagIsAConflict(t *testing.T) {
	t.Parallel()
	f := &fakeSidecar{err: status.Error(codes.InvalidArgument, "invalid etag value")}
	s := startFake(t, f).Backend().State
	ctx := context.Background()

	if err := s.Set(ctx, "k", []byte("v"), infrastructure.IfMatch("not-a-version")); !errors.Is(err, infrastructure.ErrConflict) {
		t.Errorf("set with a malformed etag = %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, "k", infrastructure.IfMatch("not-a-version")); !errors.Is(err, infrastructure.ErrConflict) {
		t.Errorf("delete with a malformed etag = %v, want ErrConflict", err)
	}
	if err := s.Set(ctx, "k", []byte("v")); !errors.Is(err, infrastructure.ErrInvalidArgument) {
		t.Errorf("set without etag = %v, want ErrInvalidArgument", err)
	}
}

func TestWriteOptionsReachDaprd(t *testing.T) {
	t.Parallel()
	f := &fakeSidecar{}
	s := startFake(t, f).Backend().State
	ctx := context.Background()
	if err := s.Set(ctx, "a", []byte("1"), infrastructure.IfAbsent(), infrastructure.WithTTL(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "b", []byte("2"), infrastructure.IfMatch("7")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "c", []byte("3")); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a, b, c := f.stateReqs[0].GetStates()[0], f.stateReqs[1].GetStates()[0], f.stateReqs[2].GetStates()[0]
	if a.GetEtag() != nil || a.GetOptions().GetConcurrency() != commonpb.StateOptions_CONCURRENCY_FIRST_WRITE || a.GetMetadata()["ttlInSeconds"] != "2" {
		t.Errorf("IfAbsent+TTL sent as etag=%v options=%v metadata=%v; want no etag, first-write, ttlInSeconds=2", a.GetEtag(), a.GetOptions(), a.GetMetadata())
	}
	if b.GetEtag().GetValue() != "7" || b.GetOptions().GetConcurrency() != commonpb.StateOptions_CONCURRENCY_FIRST_WRITE {
		t.Errorf("IfMatch sent as etag=%v options=%v; want etag 7, first-write", b.GetEtag(), b.GetOptions())
	}
	if c.GetEtag() != nil || c.GetOptions().GetConcurrency() != commonpb.StateOptions_CONCURRENCY_LAST_WRITE {
		t.Errorf("plain set sent as etag=%v options=%v; want last-write", c.GetEtag(), c.GetOptions())
	}
}

func TestMissingKeyIsNotFoundFalse(t *testing.T) {
	t.Parallel()
	s := startFake(t, &fakeSidecar{}).Backend().State
	it, err := s.Get(context.Background(), "nope")
	if err != nil || it.Found || it.Value != nil || it.ETag != "" {
		t.Fatalf("get missing = %+v, %v; want Found=false", it, err)
	}
	items, err := s.BulkGet(context.Background(), []string{"x", "y"})
	if err != nil || len(items) != 2 || items[0].Found || items[1].Key != "y" {
		t.Fatalf("bulk get missing = %+v, %v", items, err)
	}
}

func TestInvalidKeysNeverReachDaprd(t *testing.T) {
	t.Parallel()
	f := &fakeSidecar{}
	s := startFake(t, f).Backend().State
	for _, k := range []string{"", "a||b"} {
		if err := s.Set(context.Background(), k, []byte("v")); !errors.Is(err, infrastructure.ErrInvalidArgument) {
			t.Errorf("set %q = %v, want ErrInvalidArgument", k, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.stateReqs) != 0 {
		t.Errorf("daprd got %d requests for invalid keys", len(f.stateReqs))
	}
}

// httpStatusErr is what daprd returns when the invoked app answered over
// HTTP with a non-2xx status: a gRPC code, plus the HTTP status in an
// ErrorInfo detail.
func httpStatusErr(t *testing.T, code codes.Code, httpCode string) error {
	st, err := status.New(code, "app answered "+httpCode).WithDetails(&errdetails.ErrorInfo{
		Reason: "app error", Domain: "dapr.io",
		Metadata: map[string]string{"http.code": httpCode},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestInvokeReadsTheAppsHTTPStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  func(t *testing.T) error
		want error
	}{
		{"bad_request_folded_into_internal", func(t *testing.T) error { return httpStatusErr(t, codes.Internal, "400") }, infrastructure.ErrInvalidArgument},
		{"not_found", func(t *testing.T) error { return httpStatusErr(t, codes.NotFound, "404") }, infrastructure.ErrNotFound},
		{"conflict", func(t *testing.T) error { return httpStatusErr(t, codes.AlreadyExists, "409") }, infrastructure.ErrConflict},
		{"handler_unavailable", func(t *testing.T) error { return httpStatusErr(t, codes.Unavailable, "503") }, infrastructure.ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := startFake(t, &fakeSidecar{err: tc.err(t)}).Backend().Invoker
			_, err := inv.Invoke(context.Background(), "app", "m", nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("invoke = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSidecarGoneIsUnavailable(t *testing.T) {
	t.Parallel()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pb.RegisterDaprServer(srv, &fakeSidecar{})
	go func() { _ = srv.Serve(lis) }()
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer health.Close()

	c, err := dapr.NewWithDialer(context.Background(), dapr.Config{
		GRPCAddress: "passthrough:///bufnet",
		HTTPAddress: strings.TrimPrefix(health.URL, "http://"),
	}, func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv.Stop()
	lis.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Backend().State.Get(ctx, "k"); !errors.Is(err, infrastructure.ErrUnavailable) {
		t.Fatalf("get with the sidecar gone = %v, want ErrUnavailable", err)
	}
}

func TestNewWithoutSidecarSaysHowToStartOne(t *testing.T) {
	t.Parallel()
	// Ports from closed listeners: nothing answers there.
	addrs := make([]string, 2)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = l.Addr().String()
		l.Close()
	}
	_, err := dapr.New(context.Background(), dapr.Config{GRPCAddress: addrs[0], HTTPAddress: addrs[1], ReadyTimeout: 300 * time.Millisecond})
	if err == nil {
		t.Fatal("New without a sidecar succeeded")
	}
	for _, want := range []string{addrs[0], addrs[1], "make run", "make sidecar"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestConfigWithoutStoreNeverSubscribes(t *testing.T) {
	t.Parallel()
	f := &fakeSidecar{components: []*pb.RegisteredComponents{{Name: "statestore", Type: "state.in-memory"}}}
	c := startFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c.HasConfigStore(ctx) {
		t.Fatal("HasConfigStore = true without a configuration component")
	}
	_, err := c.Backend().Config.Watch(ctx, []string{"k"}, func(map[string]string) {})
	if !errors.Is(err, infrastructure.ErrNotFound) {
		t.Fatalf("watch without a store = %v, want ErrNotFound", err)
	}
	if _, err := c.Backend().Config.Get(ctx, "k"); !errors.Is(err, infrastructure.ErrNotFound) {
		t.Fatalf("get without a store = %v, want ErrNotFound", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.configSubs != 0 {
		t.Fatalf("SubscribeConfiguration called %d times", f.configSubs)
	}
}

func TestSubscriptionResubscribesAndAcknowledges(t *testing.T) {
	t.Parallel()
	ev := func(id, data string) *pb.TopicEventRequest {
		return &pb.TopicEventRequest{Id: id, Topic: "t", Data: []byte(data), DataContentType: "application/octet-stream"}
	}
	f := &fakeSidecar{
		// The first stream delivers two messages and dies; the second
		// delivers the third and stays open.
		streams: [][]*pb.TopicEventRequest{{ev("1", "ok"), ev("2", "retry")}, {ev("3", "drop")}},
		acks:    make(chan *pb.SubscribeTopicEventsRequestProcessedAlpha1, 8),
	}
	c := startFake(t, f)
	outcomes := map[string]infrastructure.Outcome{"ok": infrastructure.Success, "retry": infrastructure.Retry, "drop": infrastructure.Drop}
	sub, err := c.Backend().PubSub.Subscribe(context.Background(), "t", func(_ context.Context, m *infrastructure.Message) infrastructure.Outcome {
		return outcomes[string(m.Data)]
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	want := map[string]pb.TopicEventResponse_TopicEventResponseStatus{
		"1": pb.TopicEventResponse_SUCCESS,
		"2": pb.TopicEventResponse_RETRY,
		"3": pb.TopicEventResponse_DROP,
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for range len(want) {
		select {
		case ack := <-f.acks:
			if ack.GetStatus().GetStatus() != want[ack.GetId()] {
				t.Errorf("message %s acknowledged %v, want %v", ack.GetId(), ack.GetStatus().GetStatus(), want[ack.GetId()])
			}
			delete(want, ack.GetId())
		case <-timeout.C:
			t.Fatalf("no acknowledgement for %v: the subscription did not re-subscribe", want)
		}
	}
	f.mu.Lock()
	opened := f.opened
	f.mu.Unlock()
	if opened != 2 {
		t.Fatalf("opened %d streams, want 2", opened)
	}
}
