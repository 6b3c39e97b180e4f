package dapr

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	commonpb "github.com/dapr/dapr/pkg/proto/common/v1"
	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"go.uber.org/zap"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.ConfigStore = (*configStore)(nil)

// configStore is the ConfigStore over daprd's configuration API.
type configStore struct {
	c     *Client
	store string
}

// requireStore checks the sidecar's metadata for the configuration store.
// daprd's SubscribeConfiguration never answers when the store does not
// exist, and a Get would fail with a generic error, so both ask first.
func (s *configStore) requireStore(ctx context.Context, op string, keys []string) error {
	if s.c.HasConfigStore(ctx) {
		return nil
	}
	return &infrastructure.OpError{Op: op, Key: keysLabel(keys), Kind: infrastructure.ErrNotFound,
		Err: errors.New("the sidecar has no configuration component named " + s.store)}
}

// configKey is the set of characters every profile's configuration store
// accepts in a key: Dapr's PostgreSQL store refuses anything else (a "-"
// included), so parley keeps to it everywhere and a key that works in one
// profile works in all.
var configKey = regexp.MustCompile(`^[a-zA-Z0-9./_]+$`)

func checkConfigKeys(op string, keys []string) error {
	for _, k := range keys {
		if !configKey.MatchString(k) {
			return invalid(op, k, "configuration keys may hold only letters, digits, '.', '/' and '_'")
		}
	}
	return nil
}

func keysLabel(keys []string) string {
	k := slices.Clone(keys)
	slices.Sort(k)
	return strings.Join(k, ",")
}

func (s *configStore) Get(ctx context.Context, keys ...string) (map[string]string, error) {
	if len(keys) == 0 {
		// daprd reads an empty list as "every key"; parley asks for what it needs.
		return map[string]string{}, nil
	}
	if err := checkConfigKeys("config get", keys); err != nil {
		return nil, err
	}
	if err := s.requireStore(ctx, "config get", keys); err != nil {
		return nil, err
	}
	items, err := s.c.sdk.GetConfigurationItems(ctx, s.store, keys)
	if err != nil {
		return nil, opError(ctx, "config get", keysLabel(keys), err, false)
	}
	out := make(map[string]string, len(items))
	for k, it := range items {
		out[k] = it.Value
	}
	return out, nil
}

// Watch subscribes to changes of keys. The first subscription is made before
// Watch returns. When the stream dies (daprd restarted), Watch subscribes
// again with backoff, then reads the keys and reports those whose value
// changed meanwhile, so no change is lost across the restart. A key that
// was removed is reported with the value "".
func (s *configStore) Watch(ctx context.Context, keys []string, fn func(changed map[string]string)) (func(), error) {
	if len(keys) == 0 {
		return nil, invalid("config watch", "", "no keys")
	}
	if fn == nil {
		return nil, invalid("config watch", keysLabel(keys), "nil callback")
	}
	if err := checkConfigKeys("config watch", keys); err != nil {
		return nil, err
	}
	if err := s.requireStore(ctx, "config watch", keys); err != nil {
		return nil, err
	}
	// The snapshot is what the restart catch-up compares against.
	snapshot, err := s.Get(ctx, keys...)
	if err != nil {
		return nil, err
	}

	watchCtx, cancel := context.WithCancel(ctx)
	w := &configWatch{
		s:          s,
		keys:       slices.Clone(keys),
		fn:         fn,
		log:        s.c.log.With(zap.String("store", s.store), zap.Strings("keys", keys)),
		ctx:        watchCtx,
		cancel:     cancel,
		streamBase: context.WithoutCancel(ctx),
		last:       snapshot,
		done:       make(chan struct{}),
	}
	stream, streamCancel, err := w.open()
	if err != nil {
		cancel()
		return nil, opError(ctx, "config watch", keysLabel(keys), err, false)
	}
	if err := s.c.track(w); err != nil {
		streamCancel()
		cancel()
		return nil, &infrastructure.OpError{Op: "config watch", Key: keysLabel(keys), Kind: infrastructure.ErrUnavailable, Err: err}
	}
	go w.run(stream, streamCancel)
	return func() { _ = w.Close() }, nil
}

// configWatch is one Watch: a goroutine that owns the stream and calls fn.
type configWatch struct {
	s          *configStore
	keys       []string
	fn         func(map[string]string)
	log        *zap.Logger
	ctx        context.Context
	cancel     context.CancelFunc
	streamBase context.Context
	last       map[string]string // values last reported; owned by run
	done       chan struct{}
	closeOnce  sync.Once
}

// open subscribes and waits for daprd's first answer, which carries only the
// subscription id and means the store is listening.
func (w *configWatch) open() (pb.Dapr_SubscribeConfigurationClient, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(w.streamBase)
	// Stop the stream with the watch, but only once this attempt is over:
	// a watch that ends while Recv waits must not leave it waiting.
	stopOnDone := context.AfterFunc(w.ctx, cancel)
	stream, err := w.s.c.sdk.GrpcClient().SubscribeConfiguration(ctx, &pb.SubscribeConfigurationRequest{
		StoreName: w.s.store,
		Keys:      w.keys,
	})
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		stopOnDone()
		cancel()
		return nil, nil, err
	}
	return stream, func() { stopOnDone(); cancel() }, nil
}

func (w *configWatch) run(stream pb.Dapr_SubscribeConfigurationClient, cancel context.CancelFunc) {
	defer close(w.done)
	defer w.s.c.untrack(w)
	bo := newBackoff()
	defer bo.stop()
	for {
		resp, err := stream.Recv()
		if err == nil {
			w.report(resp.GetItems())
			continue
		}
		cancel()
		if w.ctx.Err() != nil {
			return
		}
		w.log.Warn("dapr: configuration stream ended, re-subscribing", zap.Error(err))
		for {
			if !bo.wait(w.ctx) {
				return
			}
			stream, cancel, err = w.open()
			if err == nil {
				break
			}
			w.log.Debug("dapr: configuration re-subscribe failed", zap.Error(err))
		}
		bo.reset()
		w.log.Info("dapr: configuration re-subscribed")
		w.catchUp()
	}
}

// report passes one update to fn, keeping only the watched keys.
func (w *configWatch) report(items map[string]*commonpb.ConfigurationItem) {
	changed := make(map[string]string, len(items))
	for k, it := range items {
		if !slices.Contains(w.keys, k) {
			continue
		}
		changed[k] = it.GetValue()
		w.last[k] = it.GetValue()
	}
	if len(changed) > 0 && w.ctx.Err() == nil {
		w.fn(changed)
	}
}

// catchUp reports the changes made while no stream was open.
func (w *configWatch) catchUp() {
	now, err := w.s.Get(w.ctx, w.keys...)
	if err != nil {
		w.log.Warn("dapr: read configuration after re-subscribing", zap.Error(err))
		return
	}
	changed := make(map[string]string)
	for _, k := range w.keys {
		if now[k] != w.last[k] {
			changed[k] = now[k]
		}
	}
	w.last = maps.Clone(now)
	if len(changed) > 0 && w.ctx.Err() == nil {
		w.fn(changed)
	}
}

// Close stops the watch and waits until fn is no longer running. It must
// not be called from fn.
func (w *configWatch) Close() error {
	w.closeOnce.Do(w.cancel)
	<-w.done
	return nil
}
