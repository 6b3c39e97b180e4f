package main

import (
	"context"
	"flag"
	"fmt"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/presence"
	"github.com/parley-im/parley/app/push"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

// pushOptions are the flags of offline push. The zero value is push off.
type pushOptions struct {
	// binding is the output binding component pushes go to; empty is off.
	binding string
}

// register adds the push flags to fs.
func (p *pushOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&p.binding, "push-binding", envOr("PARLEY_PUSH_BINDING", ""),
		"Dapr output binding that gets a push when a recipient has no device online, e.g. push (components/<profile>/push.yaml, whose daprd reads the gateway's URL from PARLEY_PUSH_URL); empty means no pushes (env PARLEY_PUSH_BINDING)")
}

// bindingChecker is what the dapr adapter's bindings offer besides
// Invoke: daprd reports a binding it did not load as any failure, so the
// name is checked once, at start.
type bindingChecker interface {
	Loaded(ctx context.Context, name string) (typ string, ok bool, err error)
}

// setupPush returns deliver wrapped in a push.Pusher when -push-binding is
// set: members of a conversation with no device online anywhere get a push
// through that binding. stop drains the queued pushes; call it after the
// gateway drained and before presence and the store stop, which the pushes
// read. Without -push-binding it returns deliver unchanged.
func setupPush(ctx context.Context, o pushOptions, log *zap.Logger, b infrastructure.Backend, live *settings.Live,
	st *store.Store, hub *delivery.Hub, reg *presence.Registry, deliver chat.Deliverer) (chat.Deliverer, func(context.Context), error) {
	if o.binding == "" {
		return deliver, func(context.Context) {}, nil
	}
	bindings := b.Bindings
	switch {
	case bindings == nil:
		// The memory backend reaches no gateway: log what would be pushed,
		// so the feature can be tried without a sidecar.
		mem := memory.NewOutputBindings()
		mem.Handle(o.binding, func(_ context.Context, c memory.BindingCall) error {
			log.Info("push (no sidecar: logged, not sent)", zap.Int("bytes", len(c.Data)))
			return nil
		})
		bindings = mem
		log.Warn("this backend has no output bindings: pushes are logged, not sent", zap.String("binding", o.binding))
	default:
		if c, ok := bindings.(bindingChecker); ok {
			typ, found, err := c.Loaded(ctx, o.binding)
			if err != nil {
				return nil, nil, fmt.Errorf("-push-binding %s: %w", o.binding, err)
			}
			if !found {
				return nil, nil, fmt.Errorf("-push-binding %s: the sidecar loaded no binding component of that name (see components/<profile>/push.yaml)", o.binding)
			}
			log = log.With(zap.String("type", typ))
		}
	}
	pres := &push.ClusterPresence{Registry: reg, Local: func(u domain.UserID) bool { return len(hub.Sessions(u)) > 0 }}
	p, err := push.New(push.Config{Binding: o.binding, Logger: log}, deliver, bindings, pres, st, live)
	if err != nil {
		return nil, nil, err
	}
	s := live.Load()
	log.Info("offline push enabled", zap.String("binding", o.binding), zap.Duration("interval", s.PushInterval), zap.Int("preview_chars", s.PushPreview))
	return p, func(ctx context.Context) {
		if err := p.Stop(ctx); err != nil {
			log.Warn("pushes not sent at shutdown", zap.Error(err))
		}
	}, nil
}
