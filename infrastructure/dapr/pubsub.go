package dapr

import (
	"context"
	"fmt"
	"sync"

	dapr "github.com/dapr/go-sdk/client"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"

	"github.com/parley-im/parley/infrastructure"
)

var (
	_ infrastructure.PubSub       = (*pubSub)(nil)
	_ infrastructure.Subscription = (*subscription)(nil)
)

// binaryContentType makes daprd carry the payload as data_base64 in the
// CloudEvent and hand the subscriber the exact bytes back; with no content
// type daprd would assume text/plain.
const binaryContentType = "application/octet-stream"

// pubSub is the PubSub over daprd's pub/sub API and its streaming
// subscriptions, which need no app port.
type pubSub struct {
	c    *Client
	name string
}

func (p *pubSub) Publish(ctx context.Context, topic string, data []byte) error {
	if topic == "" {
		return invalid("publish", topic, "empty topic")
	}
	err := p.c.sdk.PublishEvent(ctx, p.name, topic, data, dapr.PublishEventWithContentType(binaryContentType))
	if err != nil {
		return opError(ctx, "publish", topic, err, false)
	}
	return nil
}

func (p *pubSub) BulkPublish(ctx context.Context, topic string, data [][]byte) error {
	if topic == "" {
		return invalid("bulk publish", topic, "empty topic")
	}
	if len(data) == 0 {
		return nil
	}
	events := make([]any, len(data))
	for i, d := range data {
		events[i] = d // the SDK sends []byte as application/octet-stream
	}
	res := p.c.sdk.PublishEvents(ctx, p.name, topic, events)
	if res.Error == nil {
		return nil
	}
	if _, isRPC := status.FromError(res.Error); isRPC {
		return opError(ctx, "bulk publish", topic, res.Error, false)
	}
	// daprd took the call, and the broker refused some entries.
	return &infrastructure.OpError{Op: "bulk publish", Key: topic, Kind: infrastructure.ErrUnavailable,
		Err: fmt.Errorf("%d of %d messages not published: %w", len(res.FailedEvents), len(events), res.Error)}
}

// Subscribe opens a streaming subscription. The first attempt is made here so
// that a wrong topic or a missing sidecar is reported to the caller; after
// that, a stream that dies (daprd restarted) is re-opened in the background,
// with backoff, until the subscription is closed or ctx ends.
func (p *pubSub) Subscribe(ctx context.Context, topic string, h infrastructure.Handler) (infrastructure.Subscription, error) {
	if topic == "" {
		return nil, invalid("subscribe", topic, "empty topic")
	}
	if h == nil {
		return nil, invalid("subscribe", topic, "nil handler")
	}
	subCtx, cancel := context.WithCancel(ctx)
	s := &subscription{
		c:      p.c,
		opts:   dapr.SubscriptionOptions{PubsubName: p.name, Topic: topic},
		h:      h,
		log:    p.c.log.With(zap.String("pubsub", p.name), zap.String("topic", topic)),
		ctx:    subCtx,
		cancel: cancel,
		// The streams outlive the call to Subscribe but keep its values
		// (trace context); the subscription cancels them itself.
		streamBase: context.WithoutCancel(ctx),
		done:       make(chan struct{}),
	}
	stream, streamCancel, err := s.open(ctx)
	if err != nil {
		cancel()
		return nil, opError(ctx, "subscribe", topic, err, false)
	}
	if err := p.c.track(s); err != nil {
		streamCancel()
		cancel()
		return nil, &infrastructure.OpError{Op: "subscribe", Key: topic, Kind: infrastructure.ErrUnavailable, Err: err}
	}
	s.streamCancel = streamCancel
	runDone := make(chan struct{})
	go s.run(stream, runDone)
	go s.closeWhenDone(runDone)
	return s, nil
}

// subscription delivers one topic's messages to one handler.
type subscription struct {
	c          *Client
	opts       dapr.SubscriptionOptions
	h          infrastructure.Handler
	log        *zap.Logger
	ctx        context.Context // handlers' ctx: ends at Close or when Subscribe's ctx ends
	cancel     context.CancelFunc
	streamBase context.Context
	done       chan struct{} // closed once everything stopped

	mu           sync.Mutex
	closing      bool
	streamCancel context.CancelFunc
	handlers     sync.WaitGroup // Add only under mu while !closing
}

// open starts one stream with daprd. The attempt is abandoned when bound
// ends; the stream itself lives until its cancel func is called.
func (s *subscription) open(bound context.Context) (*dapr.Subscription, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(s.streamBase)
	stop := context.AfterFunc(bound, cancel)
	stream, err := s.c.sdk.Subscribe(ctx, s.opts)
	if !stop() && err == nil {
		err = bound.Err()
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return stream, cancel, nil
}

// run receives messages and hands each to its own goroutine: the broker,
// through daprd, bounds how many are in flight. When the stream dies it
// opens a new one until the subscription closes.
func (s *subscription) run(stream *dapr.Subscription, runDone chan<- struct{}) {
	defer close(runDone)
	bo := newBackoff()
	defer bo.stop()
	for {
		msg, err := stream.Receive()
		if err == nil {
			s.dispatch(msg)
			continue
		}
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("dapr: subscription stream ended, re-subscribing", zap.Error(err))
		for {
			if !bo.wait(s.ctx) {
				return
			}
			next, cancel, err := s.open(s.ctx)
			if err != nil {
				s.log.Debug("dapr: re-subscribe failed", zap.Error(err))
				continue
			}
			s.mu.Lock()
			if s.closing {
				s.mu.Unlock()
				cancel()
				return
			}
			s.streamCancel()
			s.streamCancel = cancel
			s.mu.Unlock()
			stream = next
			bo.reset()
			s.log.Info("dapr: re-subscribed")
			break
		}
	}
}

func (s *subscription) dispatch(msg *dapr.SubscriptionMessage) {
	s.mu.Lock()
	if s.closing {
		// Not acknowledged: the broker delivers it again later.
		s.mu.Unlock()
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	go s.handle(msg)
}

func (s *subscription) handle(msg *dapr.SubscriptionMessage) {
	defer s.handlers.Done()
	m := &infrastructure.Message{ID: msg.ID, Topic: msg.Topic, Data: msg.RawData}
	var err error
	switch s.h(s.ctx, m) {
	case infrastructure.Success:
		err = msg.Success()
	case infrastructure.Drop:
		err = msg.Drop()
	default:
		err = msg.Retry()
	}
	if err != nil {
		// The stream died under the handler; daprd delivers the message again.
		s.log.Debug("dapr: acknowledge message", zap.String("id", msg.ID), zap.Error(err))
	}
}

// closeWhenDone finishes the subscription once its ctx ends: no new
// deliveries, then the handlers in flight answer on the still-open stream,
// then the stream is cancelled, which stops run.
func (s *subscription) closeWhenDone(runDone <-chan struct{}) {
	<-s.ctx.Done()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.handlers.Wait()
	s.mu.Lock()
	s.streamCancel()
	s.mu.Unlock()
	<-runDone
	s.c.untrack(s)
	close(s.done)
}

// Close stops delivery and waits for the handler calls in flight. It is
// idempotent and safe for concurrent use, but must not be called from the
// subscription's own handler, which it would wait for.
func (s *subscription) Close() error {
	s.cancel()
	<-s.done
	return nil
}
