package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.Invoker = (*Invoker)(nil)

// Network connects in-process apps by app-id, standing in for Dapr service
// invocation. Safe for concurrent use; the zero value is ready.
type Network struct {
	mu   sync.RWMutex
	apps map[string]map[string]infrastructure.InvocationHandler
}

// Invoker is one app's view of a Network. Safe for concurrent use.
type Invoker struct {
	net   *Network
	appID string
}

// NewInvoker returns the Invoker of app appID on net.
func NewInvoker(net *Network, appID string) *Invoker {
	return &Invoker{net: net, appID: appID}
}

func (i *Invoker) Invoke(ctx context.Context, appID, method string, data []byte) ([]byte, error) {
	key := appID + "/" + method
	if err := ctx.Err(); err != nil {
		return nil, &infrastructure.OpError{Op: "invoke", Key: key, Kind: infrastructure.ErrUnavailable, Err: err}
	}
	i.net.mu.RLock()
	h := i.net.apps[appID][method]
	i.net.mu.RUnlock()
	if h == nil {
		return nil, &infrastructure.OpError{Op: "invoke", Key: key, Kind: infrastructure.ErrNotFound, Err: fmt.Errorf("no app %q serving method %q", appID, method)}
	}
	out, err := h(ctx, append([]byte(nil), data...))
	if err != nil {
		return nil, &infrastructure.OpError{Op: "invoke", Key: key, Kind: invocationKind(err), Err: err}
	}
	return out, nil
}

// invocationKind keeps the caller-facing kinds a handler chose and reports
// anything else as unavailable, as a sidecar would report an app's 500.
func invocationKind(err error) error {
	for _, k := range []error{infrastructure.ErrInvalidArgument, infrastructure.ErrNotFound, infrastructure.ErrConflict} {
		if errors.Is(err, k) {
			return k
		}
	}
	return infrastructure.ErrUnavailable
}

func (i *Invoker) Serve(method string, h infrastructure.InvocationHandler) error {
	if method == "" || h == nil {
		return &infrastructure.OpError{Op: "serve", Key: i.appID + "/" + method, Kind: infrastructure.ErrInvalidArgument, Err: errEmptyKey}
	}
	i.net.mu.Lock()
	defer i.net.mu.Unlock()
	if i.net.apps == nil {
		i.net.apps = make(map[string]map[string]infrastructure.InvocationHandler)
	}
	if i.net.apps[i.appID] == nil {
		i.net.apps[i.appID] = make(map[string]infrastructure.InvocationHandler)
	}
	i.net.apps[i.appID][method] = h
	return nil
}
