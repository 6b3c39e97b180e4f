package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/gateway"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/app/units"
	"github.com/parley-im/parley/infrastructure"
)

// BindToKey is the live setting of the burst policy: the unit that new
// conversations are bound to. Empty means the unit where they start.
// Conversations already bound keep their home.
const BindToKey = "parley.units.bind_to"

// LocalPendingKey is the live setting of local mode: "true" keeps sends to
// conversations whose home unit cannot be reached, acknowledged as
// pending, and replays them when it is back; anything else refuses them
// with unit_unavailable.
const LocalPendingKey = "parley.units.local_pending"

// unitOptions are the flags of a node that is one unit of several. The
// zero value is a node that is no unit: every conversation is local.
type unitOptions struct {
	// unit is this node's unit, one of units.
	unit string
	// units lists every unit as name=app-id,...
	units string
}

// register adds the unit flags to fs.
func (u *unitOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&u.unit, "unit", envOr("PARLEY_UNIT", ""), "this node's unit, one of -units; empty means parley runs as one deployment (env PARLEY_UNIT)")
	fs.StringVar(&u.units, "units", envOr("PARLEY_UNITS", ""), "every unit as name=dapr-app-id, comma-separated, e.g. onprem=parley-onprem,cloud=parley-cloud; needs a routes state component shared by all (env PARLEY_UNITS)")
}

// setupUnits makes the node one unit of several when -unit is set: the
// send, history, read and listing use cases in uc forward what belongs to
// conversations homed in other units, the units' methods are served on
// b.Invoker, deliver pushes what other units hand over, and the burst
// policy follows the live setting BindToKey (with prefix). stop ends the
// hand-offs to other units and the watch; call it after the gateway
// drained. The operator moves conversations to other units through gw.
// Without -unit it does nothing.
func setupUnits(ctx context.Context, o unitOptions, prefix string, log *zap.Logger, b infrastructure.Backend, uc *gateway.UseCases, deliver chat.Deliverer,
	gw *gateway.Server, st *store.Store, live *settings.Live,
) (stop func(context.Context), err error) {
	if o.unit == "" {
		if o.units != "" {
			return nil, errors.New("-units needs -unit: name this node's unit")
		}
		return func(context.Context) {}, nil
	}
	list, err := units.ParseUnits(o.units)
	if err != nil {
		return nil, fmt.Errorf("-units: %w", err)
	}
	if b.Routes == nil {
		return nil, errors.New("-unit needs a backend with a shared route store (the dapr backend with a routes component, see components/units)")
	}
	u, err := units.New(units.Config{Self: o.unit, Units: list, Routes: b.Routes, Invoker: b.Invoker, Logger: log, Pending: b.State})
	if err != nil {
		return nil, err
	}
	uc.Send.WithHomes(u)
	uc.History.WithHomes(u)
	uc.MarkRead.WithHomes(u)
	uc.List.WithHomes(u)
	if uc.Groups != nil {
		uc.Groups.WithHomes(u)
	}
	if uc.ChangeMessage != nil {
		uc.ChangeMessage.WithHomes(u)
	}
	if uc.Service != nil {
		uc.Service.WithHomes(u)
	}
	if err := u.Serve(b.Invoker, units.Local{Send: uc.Send, History: uc.History, MarkRead: uc.MarkRead, List: uc.List, Deliver: deliver,
		Groups: uc.Groups, Change: uc.ChangeMessage,
		Store: st, IdempotencyTTL: func() time.Duration { return live.Load().IdempotencyTTL }}); err != nil {
		u.Stop(ctx)
		return nil, err
	}
	gw.WithMover(u)
	stopWatch := func() {}
	if b.Config != nil {
		bindKey, pendingKey := prefix+BindToKey, prefix+LocalPendingKey
		kv, err := b.Config.Get(ctx, bindKey, pendingKey)
		if err != nil {
			log.Warn("unit settings not read; new conversations bind to this unit and local mode is off until they are", zap.Error(err))
		}
		u.SetBindTo(kv[bindKey])
		u.SetLocalPending(isOn(kv[pendingKey]))
		stopWatch, err = b.Config.Watch(ctx, []string{bindKey, pendingKey}, func(changed map[string]string) {
			if v, ok := changed[bindKey]; ok {
				u.SetBindTo(v)
				log.Info("burst policy changed: new conversations bind to "+u.BindTo(), zap.String("key", bindKey))
			}
			if v, ok := changed[pendingKey]; ok {
				u.SetLocalPending(isOn(v))
				log.Info("local mode changed", zap.Bool("on", u.LocalPending()), zap.String("key", pendingKey))
			}
		})
		if err != nil {
			log.Warn("unit settings not watched: changes need a restart", zap.Error(err))
			stopWatch = func() {}
		}
	} else {
		log.Info("no configuration store: new conversations bind to the unit where they start, local mode is off", zap.String("key", BindToKey))
	}
	names := make([]string, len(list))
	for i, x := range list {
		names[i] = x.Name + "=" + x.AppID
	}
	log.Info("this node is a unit", zap.String("unit", o.unit), zap.String("units", strings.Join(names, ",")), zap.String("bind_to", u.BindTo()),
		zap.Bool("local_pending", u.LocalPending()))
	return func(ctx context.Context) {
		stopWatch()
		u.Stop(ctx)
	}, nil
}

// isOn reads a switch of the live settings.
func isOn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "on", "1", "yes":
		return true
	}
	return false
}
