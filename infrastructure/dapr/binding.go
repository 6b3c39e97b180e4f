package dapr

import (
	"context"
	"fmt"
	"strings"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.OutputBinding = (*OutputBinding)(nil)

// OutputBinding invokes daprd's output bindings: components of type
// bindings.* in the profile's folder, such as bindings.http to a push
// gateway. Get one from Client.OutputBinding. Safe for concurrent use.
type OutputBinding struct{ c *Client }

// OutputBinding returns the client's output bindings, for Backend.Bindings.
func (c *Client) OutputBinding() *OutputBinding { return &OutputBinding{c: c} }

// Invoke runs operation on the binding name. daprd answers every failure
// with Internal: a binding it did not load and a far end that failed
// (bindings.http: a status other than 2xx) alike, so both are
// ErrUnavailable here. Loaded tells the first apart, once, at start.
func (b *OutputBinding) Invoke(ctx context.Context, name, operation string, data []byte, metadata map[string]string) error {
	if name == "" || operation == "" {
		return invalid("invoke binding", name, "binding name and operation are required")
	}
	err := b.c.sdk.InvokeOutputBinding(ctx, &dapr.InvokeBindingRequest{Name: name, Operation: operation, Data: data, Metadata: metadata})
	if err != nil {
		return opError(ctx, "invoke binding", name, err, false)
	}
	return nil
}

// Loaded reports whether daprd loaded a binding component named name, and
// its type (e.g. "bindings.http").
func (b *OutputBinding) Loaded(ctx context.Context, name string) (typ string, ok bool, err error) {
	md, err := b.c.sdk.GetMetadata(ctx)
	if err != nil {
		return "", false, opError(ctx, "read sidecar metadata", name, fmt.Errorf("list components: %w", err), false)
	}
	for _, comp := range md.RegisteredComponents {
		if comp.Name == name && strings.HasPrefix(comp.Type, "bindings.") {
			return comp.Type, true, nil
		}
	}
	return "", false, nil
}
