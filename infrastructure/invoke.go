package infrastructure

import "context"

// InvocationHandler serves one method that other apps call. Returning an
// error wrapping ErrInvalidArgument or ErrNotFound tells the caller the
// request was wrong; any other error is reported as unavailable.
type InvocationHandler func(ctx context.Context, data []byte) ([]byte, error)

// Invoker calls methods of other apps by app-id, and serves methods that other
// apps call on this one. Safe for concurrent use.
type Invoker interface {
	// Invoke calls method on the app appID with data as the body and returns
	// the reply. An unknown app or method gives ErrNotFound (or ErrUnavailable
	// when the sidecar cannot tell the difference).
	Invoke(ctx context.Context, appID, method string, data []byte) ([]byte, error)
	// Serve registers h for method on this app. Register before traffic starts.
	Serve(method string, h InvocationHandler) error
}
