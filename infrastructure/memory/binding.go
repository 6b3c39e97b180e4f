package memory

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.OutputBinding = (*OutputBindings)(nil)

// BindingCall is one invocation of an output binding, as a sink sees it.
type BindingCall struct {
	Name      string
	Operation string
	Data      []byte
	Metadata  map[string]string
}

// BindingSink receives the invocations of one binding. Its error is the
// caller's, as a push gateway's failure is the caller's through daprd.
type BindingSink func(ctx context.Context, c BindingCall) error

// OutputBindings stands in for Dapr output bindings: each name has a sink
// in this process. Invoking a name with no sink fails with ErrNotFound, as
// daprd fails for a binding it did not load. The zero value is not usable;
// use NewOutputBindings. Safe for concurrent use.
type OutputBindings struct {
	mu    sync.RWMutex
	sinks map[string]BindingSink
}

// NewOutputBindings returns bindings with no sinks.
func NewOutputBindings() *OutputBindings {
	return &OutputBindings{sinks: map[string]BindingSink{}}
}

// Handle makes sink receive the invocations of name, replacing any sink
// it had.
func (b *OutputBindings) Handle(name string, sink BindingSink) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sinks[name] = sink
}

func (b *OutputBindings) Invoke(ctx context.Context, name, operation string, data []byte, metadata map[string]string) error {
	if err := ctx.Err(); err != nil {
		return &infrastructure.OpError{Op: "invoke binding", Key: name, Kind: infrastructure.ErrUnavailable, Err: err}
	}
	if name == "" || operation == "" {
		return &infrastructure.OpError{Op: "invoke binding", Key: name, Kind: infrastructure.ErrInvalidArgument, Err: fmt.Errorf("binding name and operation are required")}
	}
	b.mu.RLock()
	sink := b.sinks[name]
	b.mu.RUnlock()
	if sink == nil {
		return &infrastructure.OpError{Op: "invoke binding", Key: name, Kind: infrastructure.ErrNotFound, Err: fmt.Errorf("no output binding %q", name)}
	}
	// The sink gets copies, as a remote system would: the caller may reuse
	// its buffers once Invoke returns.
	err := sink(ctx, BindingCall{Name: name, Operation: operation, Data: append([]byte(nil), data...), Metadata: maps.Clone(metadata)})
	if err != nil {
		return &infrastructure.OpError{Op: "invoke binding", Key: name, Kind: infrastructure.ErrUnavailable, Err: err}
	}
	return nil
}
