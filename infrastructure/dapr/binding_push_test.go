package dapr_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/dapr/daprd"
	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// sinkCall is one request the push binding's far end received.
type sinkCall struct {
	method, path, contentType, header string
	body                              string
}

// TestOutputBindingPush invokes the push component every profile ships
// (bindings.http, components/<profile>/push.yaml) through a real daprd whose
// PARLEY_PUSH_URL names a sink on loopback: the body and the capitalised
// metadata reach it as a POST and its headers, a 500 from it is
// ErrUnavailable, and Loaded finds the component and no other.
func TestOutputBindingPush(t *testing.T) {
	calls := make(chan sinkCall, 8)
	status := http.StatusNoContent
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		calls <- sinkCall{method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"), header: r.Header.Get("X-Parley-Push"), body: string(body)}
		if r.Header.Get("X-Fail") != "" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(status)
	}))
	defer sink.Close()

	n := startNode(t, daprdtest.Local, func(o *daprd.Options) {
		o.Env = append(o.Env, "PARLEY_PUSH_URL="+sink.URL+"/push")
	})
	b := n.client.OutputBinding()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := b.Invoke(ctx, "push", "post", []byte(`{"user":"bob"}`), map[string]string{"X-Parley-Push": "1"}); err != nil {
		t.Fatalf("invoke push: %v", err)
	}
	select {
	case c := <-calls:
		want := sinkCall{method: http.MethodPost, path: "/push", contentType: "application/json; charset=utf-8", header: "1", body: `{"user":"bob"}`}
		if c != want {
			t.Fatalf("sink got %+v, want %+v", c, want)
		}
	case <-ctx.Done():
		t.Fatal("the sink got nothing")
	}

	err := b.Invoke(ctx, "push", "post", []byte(`{}`), map[string]string{"X-Fail": "1"})
	if !errors.Is(err, infrastructure.ErrUnavailable) {
		t.Fatalf("invoke with a failing sink: err = %v, want ErrUnavailable", err)
	}
	<-calls

	// daprd answers a binding it did not load as it answers an outage.
	err = b.Invoke(ctx, "no-such-binding", "post", []byte(`{}`), nil)
	if !errors.Is(err, infrastructure.ErrUnavailable) {
		t.Fatalf("invoke an unknown binding: err = %v, want ErrUnavailable", err)
	}
	for _, tc := range []struct {
		name, typ string
		ok        bool
	}{{"push", "bindings.http", true}, {"no-such-binding", "", false}, {"statestore", "", false}} {
		typ, ok, err := b.Loaded(ctx, tc.name)
		if err != nil || ok != tc.ok || typ != tc.typ {
			t.Errorf("Loaded(%q) = %q, %v, %v; want %q, %v, nil", tc.name, typ, ok, err, tc.typ, tc.ok)
		}
	}
	if len(calls) != 0 {
		t.Fatalf("the sink got %d calls for an unknown binding", len(calls))
	}
}

// TestPushComponentWithoutURL starts daprd on profiles whose push component
// names no URL (PARLEY_PUSH_URL unset), as every deployment without push
// does: daprd starts, loads the binding, and a push fails as an outage
// rather than reaching anything.
func TestPushComponentWithoutURL(t *testing.T) {
	t.Setenv("PARLEY_PUSH_URL", "")
	for _, p := range []string{daprdtest.Local, daprdtest.Redis} {
		t.Run(p, func(t *testing.T) {
			n := startNode(t, p)
			b := n.client.OutputBinding()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, ok, err := b.Loaded(ctx, "push"); !ok || err != nil {
				t.Fatalf("Loaded(push) = %v, %v; want the component loaded", ok, err)
			}
			if err := b.Invoke(ctx, "push", "post", []byte(`{}`), nil); !errors.Is(err, infrastructure.ErrUnavailable) {
				t.Fatalf("invoke push with no URL: err = %v, want ErrUnavailable", err)
			}
		})
	}
}
