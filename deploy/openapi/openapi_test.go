package openapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/parley-im/parley/client"
	"github.com/parley-im/parley/tools/testkit"
)

// operation is one documented method and path.
type operation struct {
	Method, Path string
	Op           map[string]any
}

func (o operation) key() string { return o.Method + " " + o.Path }

// loadSpec reads openapi.yaml and lists its operations, sorted.
func loadSpec(t *testing.T) []operation {
	t.Helper()
	data, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		t.Fatalf("openapi.yaml declares openapi %q, want 3.1.x", v)
	}
	paths, _ := doc["paths"].(map[string]any)
	var ops []operation
	for p, item := range paths {
		for m, op := range item.(map[string]any) {
			switch m {
			case "get", "post", "put", "patch", "delete":
				ops = append(ops, operation{Method: strings.ToUpper(m), Path: p, Op: op.(map[string]any)})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].key() < ops[j].key() })
	return ops
}

// routePattern matches a route registration of the gateway's mux, as
// m.HandleFunc("POST /v1/messages", ...).
var routePattern = regexp.MustCompile(`\.Handle(?:Func)?\("(?:([A-Z]+) )?(/[^"]*)"`)

// servedRoutes lists "METHOD /path" for every route the gateway registers,
// read from its sources; the catch-all "/" that answers 404 is left out.
func servedRoutes(t *testing.T) map[string]string {
	t.Helper()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "app", "gateway", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range routePattern.FindAllStringSubmatch(string(data), -1) {
			method, path := m[1], m[2]
			if method == "" {
				if path != "/" {
					t.Errorf("%s registers %q for every method; give it one so it can be documented", filepath.Base(f), path)
				}
				continue
			}
			out[method+" "+strings.TrimSuffix(path, "{$}")] = filepath.Base(f)
		}
	}
	if len(out) == 0 {
		t.Fatal("found no route in app/gateway: has the mux moved?")
	}
	return out
}

// TestEveryRouteIsDocumented compares the routes app/gateway registers
// with the paths of openapi.yaml, both ways.
func TestEveryRouteIsDocumented(t *testing.T) {
	t.Parallel()
	served := servedRoutes(t)
	documented := map[string]bool{}
	for _, o := range loadSpec(t) {
		documented[o.key()] = true
	}
	for r, file := range served {
		if !documented[r] {
			t.Errorf("route %q (app/gateway/%s) is not documented in deploy/openapi/openapi.yaml", r, file)
		}
	}
	for r := range documented {
		if _, ok := served[r]; !ok {
			t.Errorf("deploy/openapi/openapi.yaml documents %q, which app/gateway does not register", r)
		}
	}
}

// server is a parley in memory mode with development tokens, and alice's
// token.
type server struct {
	base, alice string
}

func startServer(t *testing.T) server {
	t.Helper()
	testkit.SkipShort(t)
	bin := testkit.Binary(t, "./app/cmd/parley")
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	p, err := testkit.Launch(ctx, testkit.LaunchOptions{
		Binary:  bin,
		Args:    []string{"-backend", "memory", "-addr", "127.0.0.1:0", "-dev-tokens", "-log-format", "json"},
		Dir:     root,
		LogPath: filepath.Join(t.TempDir(), "parley.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(10 * time.Second) })
	tok, err := client.DevToken(ctx, p.Base, "alice")
	if err != nil {
		t.Fatal(err)
	}
	return server{base: p.Base, alice: tok}
}

// path fills the operation's path parameters with their examples.
func (o operation) url(base string) string {
	path := o.Path
	q := url.Values{}
	params, _ := o.Op["parameters"].([]any)
	for _, p := range params {
		pm := p.(map[string]any)
		name, _ := pm["name"].(string)
		ex, ok := pm["example"]
		if !ok {
			continue
		}
		v := fmt.Sprint(ex)
		switch pm["in"] {
		case "path":
			path = strings.ReplaceAll(path, "{"+name+"}", url.PathEscape(v))
		case "query":
			q.Set(name, v)
		}
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return base + path
}

// public says whether the operation needs no user token.
func (o operation) public() bool {
	sec, ok := o.Op["security"].([]any)
	return ok && len(sec) == 0
}

func do(t *testing.T, method, u, token string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// TestDocumentedRoutesAndExamplesHoldOnAServer asks a running parley for
// every documented route (none may get the catch-all 404), then replays
// every documented example as alice: the request must get the documented
// status, and the answer must have every field of the documented response
// example, with the same JSON type.
func TestDocumentedRoutesAndExamplesHoldOnAServer(t *testing.T) {
	srv := startServer(t)
	ops := loadSpec(t)

	for _, o := range ops {
		status, body := do(t, o.Method, o.url(srv.base), "", nil)
		if status == http.StatusNotFound && bytes.Contains(body, []byte("no such endpoint")) {
			t.Errorf("documented %s is not served: %d %s", o.key(), status, body)
		}
	}

	// alice is online, as the online-users example shows.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	ws, err := client.Dial(ctx, srv.base, srv.alice, client.Options{Device: "openapi"})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	var replay []operation
	for _, o := range ops {
		if _, ok := o.Op["x-example-order"]; ok {
			replay = append(replay, o)
		}
	}
	slices.SortStableFunc(replay, func(a, b operation) int { return order(a) - order(b) })
	if len(replay) == 0 {
		t.Fatal("openapi.yaml has no example to replay")
	}
	for _, o := range replay {
		var body []byte
		if ex, ok := dig(o.Op, "requestBody", "content", "application/json", "example"); ok {
			if body, err = json.Marshal(ex); err != nil {
				t.Fatal(err)
			}
		}
		code, want := successExample(t, o)
		token := srv.alice
		if o.public() {
			token = ""
		}
		status, got := do(t, o.Method, o.url(srv.base), token, body)
		if fmt.Sprint(status) != code {
			t.Errorf("%s with the documented example: status %d, documented %s; answer %s", o.key(), status, code, got)
			continue
		}
		if want == nil {
			continue
		}
		var gotJSON any
		if err := json.Unmarshal(got, &gotJSON); err != nil {
			t.Errorf("%s: answer is not JSON: %s", o.key(), got)
			continue
		}
		for _, p := range missing("", normalize(want), gotJSON) {
			t.Errorf("%s: the answer lacks %s of the documented example; answer %s", o.key(), p, got)
		}
	}
}

func order(o operation) int {
	n, _ := o.Op["x-example-order"].(int)
	return n
}

// successExample returns the operation's lowest 2xx status and its JSON
// example, if any.
func successExample(t *testing.T, o operation) (string, any) {
	t.Helper()
	resps, _ := o.Op["responses"].(map[string]any)
	var codes []string
	for c := range resps {
		if strings.HasPrefix(c, "2") {
			codes = append(codes, c)
		}
	}
	if len(codes) == 0 {
		t.Fatalf("%s documents no 2xx response", o.key())
	}
	slices.Sort(codes)
	ex, _ := dig(resps[codes[0]].(map[string]any), "content", "application/json", "example")
	return codes[0], ex
}

func dig(m map[string]any, keys ...string) (any, bool) {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// normalize turns YAML's decoded values into what encoding/json decodes,
// so that types compare.
func normalize(v any) any {
	data, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

// missing lists the paths of want that got lacks or has with another JSON
// type; an example array's first element stands for every element.
func missing(at string, want, got any) []string {
	var out []string
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{at + " (an object)"}
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				out = append(out, at+"."+k)
				continue
			}
			out = append(out, missing(at+"."+k, wv, gv)...)
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{at + " (an array)"}
		}
		if len(w) > 0 {
			if len(g) == 0 {
				return []string{at + "[0]"}
			}
			out = append(out, missing(at+"[0]", w[0], g[0])...)
		}
	case string:
		if _, ok := got.(string); !ok {
			out = append(out, at+" (a string)")
		}
	case float64:
		if _, ok := got.(float64); !ok {
			out = append(out, at+" (a number)")
		}
	case bool:
		if _, ok := got.(bool); !ok {
			out = append(out, at+" (a boolean)")
		}
	}
	return out
}
