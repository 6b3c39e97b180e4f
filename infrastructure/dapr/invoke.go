package dapr

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	dapr "github.com/dapr/go-sdk/client"
	"go.uber.org/zap"

	"github.com/parley-im/parley/infrastructure"
)

var _ infrastructure.Invoker = (*invoker)(nil)

// maxBodyBytes is daprd's default request body limit (--max-body-size).
const maxBodyBytes = 4 << 20

// invoker calls other apps through daprd, and serves this app's methods to
// daprd over HTTP (daprd --app-port, --app-protocol http).
type invoker struct {
	c *Client

	mu       sync.RWMutex
	handlers map[string]infrastructure.InvocationHandler
}

func checkMethod(op, method string) error {
	if method == "" || strings.HasPrefix(method, "/") || strings.ContainsAny(method, "?#") {
		return invalid(op, method, "method must be a non-empty path without a leading slash, query or fragment")
	}
	return nil
}

func (i *invoker) Invoke(ctx context.Context, appID, method string, data []byte) ([]byte, error) {
	key := appID + "/" + method
	if appID == "" {
		return nil, invalid("invoke", key, "empty app id")
	}
	if err := checkMethod("invoke", method); err != nil {
		return nil, err
	}
	out, err := i.c.sdk.InvokeMethodWithContent(ctx, appID, method, http.MethodPost,
		&dapr.DataContent{ContentType: binaryContentType, Data: data})
	if err != nil {
		kind := invokeKind(ctx, err)
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = errors.Join(ctxErr, err)
		}
		return nil, &infrastructure.OpError{Op: "invoke", Key: key, Kind: kind, Err: err}
	}
	return out, nil
}

func (i *invoker) Serve(method string, h infrastructure.InvocationHandler) error {
	if err := checkMethod("serve", method); err != nil {
		return err
	}
	if h == nil {
		return invalid("serve", method, "nil handler")
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, dup := i.handlers[method]; dup {
		return invalid("serve", method, "method already registered")
	}
	i.handlers[method] = h
	return nil
}

// InvocationHandler serves the methods registered with Invoker.Serve to
// daprd: POST /<method>, the body in and the reply out. Mount it on the
// listener whose port daprd was given as --app-port (with --app-protocol
// http). A handler's error becomes the status daprd reports to the caller:
// 400 for ErrInvalidArgument, 404 for ErrNotFound, 409 for ErrConflict, and
// 503 for anything else; an unknown method is a 404. With
// Config.AppAPIToken set, a call without that token is a 401.
func (c *Client) InvocationHandler() http.Handler {
	return http.HandlerFunc(c.invoker.serveHTTP)
}

func (i *invoker) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if want := i.c.cfg.AppAPIToken; want != "" &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get(apiTokenHeader)), []byte(want)) != 1 {
		// Only the app's own sidecar knows the token.
		http.Error(w, "missing or wrong dapr-api-token: calls into parley come through its sidecar", http.StatusUnauthorized)
		return
	}
	method := strings.TrimPrefix(r.URL.Path, "/")
	i.mu.RLock()
	h, ok := i.handlers[method]
	i.mu.RUnlock()
	if !ok {
		// daprd also probes /dapr/subscribe and /dapr/config at start;
		// parley declares nothing there.
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	out, err := h(r.Context(), body)
	if err != nil {
		code := statusOf(err)
		if code == http.StatusServiceUnavailable {
			i.c.log.Warn("dapr: invocation handler failed", zap.String("method", method), zap.Error(err))
		}
		http.Error(w, fmt.Sprintf("%s: %v", method, err), code)
		return
	}
	w.Header().Set("Content-Type", binaryContentType)
	_, _ = w.Write(out)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, infrastructure.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, infrastructure.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, infrastructure.ErrConflict):
		return http.StatusConflict
	default:
		return http.StatusServiceUnavailable
	}
}
