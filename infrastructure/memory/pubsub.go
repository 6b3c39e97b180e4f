package memory

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.PubSub = (*PubSub)(nil)

// PubSub is an in-process broker. Each subscription has its own queue and
// goroutine, so a slow handler delays only its own topic. Like Dapr's
// in-memory component, messages published while nobody subscribes are lost.
// Safe for concurrent use; the zero value is not usable, call NewPubSub.
type PubSub struct {
	mu     sync.RWMutex
	subs   map[string][]*subscription
	nextID atomic.Uint64
	// RetryDelay is how long a message waits before redelivery after a
	// handler returned Retry. Zero means 50ms.
	RetryDelay time.Duration
	// MaxRetries bounds redeliveries of one message; after it the message is
	// dropped, as a dead-letter policy would. Zero means 10.
	MaxRetries int
}

// NewPubSub returns a broker with no subscriptions.
func NewPubSub() *PubSub {
	return &PubSub{subs: make(map[string][]*subscription)}
}

type delivery struct {
	msg   *infrastructure.Message
	tries int
}

type subscription struct {
	ps      *PubSub
	topic   string
	handler infrastructure.Handler
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	queue   []delivery
	wake    chan struct{}
	done    chan struct{}
	closed  bool
	retries sync.WaitGroup
}

func (p *PubSub) Publish(ctx context.Context, topic string, data []byte) error {
	return p.BulkPublish(ctx, topic, [][]byte{data})
}

func (p *PubSub) BulkPublish(ctx context.Context, topic string, data [][]byte) error {
	if topic == "" {
		return &infrastructure.OpError{Op: "publish", Key: topic, Kind: infrastructure.ErrInvalidArgument, Err: errEmptyKey}
	}
	if err := ctx.Err(); err != nil {
		return &infrastructure.OpError{Op: "publish", Key: topic, Kind: infrastructure.ErrUnavailable, Err: err}
	}
	p.mu.RLock()
	subs := p.subs[topic]
	p.mu.RUnlock()
	for _, d := range data {
		id := strconv.FormatUint(p.nextID.Add(1), 10)
		for _, s := range subs {
			// Each subscriber gets its own copy: a handler may keep or modify it.
			s.enqueue(delivery{msg: &infrastructure.Message{ID: id, Topic: topic, Data: append([]byte(nil), d...)}})
		}
	}
	return nil
}

func (p *PubSub) Subscribe(ctx context.Context, topic string, h infrastructure.Handler) (infrastructure.Subscription, error) {
	if topic == "" || h == nil {
		return nil, &infrastructure.OpError{Op: "subscribe", Key: topic, Kind: infrastructure.ErrInvalidArgument, Err: errEmptyKey}
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{ps: p, topic: topic, handler: h, ctx: sctx, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.mu.Lock()
	p.subs[topic] = append(p.subs[topic], s)
	p.mu.Unlock()
	go s.run()
	return s, nil
}

func (s *subscription) enqueue(d delivery) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, d)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for i, d := range batch {
			if s.ctx.Err() != nil {
				return
			}
			s.deliver(d)
			batch[i] = delivery{}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
	}
}

func (s *subscription) deliver(d delivery) {
	switch s.handler(s.ctx, d.msg) {
	case infrastructure.Success, infrastructure.Drop:
		return
	}
	maxRetries := s.ps.MaxRetries
	if maxRetries == 0 {
		maxRetries = 10
	}
	if d.tries >= maxRetries {
		return
	}
	delay := s.ps.RetryDelay
	if delay == 0 {
		delay = 50 * time.Millisecond
	}
	d.tries++
	s.retries.Add(1)
	time.AfterFunc(delay, func() {
		defer s.retries.Done()
		s.enqueue(d)
	})
}

func (s *subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	s.ps.mu.Lock()
	list := s.ps.subs[s.topic]
	for i, x := range list {
		if x == s {
			s.ps.subs[s.topic] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(s.ps.subs[s.topic]) == 0 {
		delete(s.ps.subs, s.topic)
	}
	s.ps.mu.Unlock()
	s.cancel()
	<-s.done
	s.retries.Wait()
	return nil
}
