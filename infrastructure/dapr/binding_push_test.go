package dapr_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
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

// TestOutputBindingPush invokes the push component the local profile ships
// (bindings.http, components/local/push.yaml), with its url pointed at a
// sink on loopback, through a real daprd: the body and the capitalised
// metadata reach the sink as a POST and its headers, a 500 from it is
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

	n := startNode(t, daprdtest.Local, withPushURL(t, daprdtest.Local, sink.URL+"/push"))
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

// withPushURL starts daprd on a copy of the profile's components whose push
// component posts to url.
func withPushURL(t *testing.T, profile, url string) daprdtest.Option {
	t.Helper()
	root := daprdtest.RequireBinary(t)
	src := filepath.Join(root, "components", profile)
	dir := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "push.yaml" {
			re := regexp.MustCompile(`(?m)^(\s*value: )"http://127\.0\.0\.1:9797/v1/push"$`)
			if !re.Match(data) {
				t.Fatalf("%s/push.yaml: no url to replace", src)
			}
			data = re.ReplaceAll(data, []byte(`${1}"`+url+`"`))
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return func(o *daprd.Options) { o.ResourcesPath = dir }
}

// TestPushComponentAsShipped starts daprd on each profile that ships a push
// component, whose url names a port where nothing listens: daprd starts and
// loads the binding, since bindings.http connects only when invoked, and a
// push fails as an outage rather than reaching anything.
func TestPushComponentAsShipped(t *testing.T) {
	for _, p := range []string{daprdtest.Local, daprdtest.SQLite, daprdtest.JetStream} {
		t.Run(p, func(t *testing.T) {
			n := startNode(t, p)
			b := n.client.OutputBinding()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if typ, ok, err := b.Loaded(ctx, "push"); !ok || err != nil || typ != "bindings.http" {
				t.Fatalf("Loaded(push) = %q, %v, %v; want bindings.http loaded", typ, ok, err)
			}
			if err := b.Invoke(ctx, "push", "post", []byte(`{}`), nil); !errors.Is(err, infrastructure.ErrUnavailable) {
				t.Fatalf("invoke push with nothing at its url: err = %v, want ErrUnavailable", err)
			}
		})
	}
}
