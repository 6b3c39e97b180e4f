package gateway

import (
	"io"
	"io/fs"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// get fetches path from e's server with the given request headers.
func get(t *testing.T, e *testEnv, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.hs.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := e.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

var (
	// pageImport is the page's import of the client.
	pageImport = regexp.MustCompile(`import\s*\{([^}]*)\}\s*from\s*'\./sdk/index\.js'`)
	// moduleImport is a relative import or re-export between the client's modules.
	moduleImport = regexp.MustCompile(`(?m)^(?:import|export)\b[^;]*?from\s*'\./([^']+)'`)
)

// TestPageRunsOnTheBrowserClient: the page imports the client as a module
// from /sdk/index.js; that module and every module it imports are served as
// JavaScript, byte for byte the committed build, and export what the page
// imports. A repeat load is a 304.
func TestPageRunsOnTheBrowserClient(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)

	res, page := get(t, e, "/")
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !strings.Contains(page, `<script type="module">`) {
		t.Fatal("the page has no module script")
	}
	m := pageImport.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the page does not import ./sdk/index.js")
	}
	if strings.Contains(page, "new WebSocket(") {
		t.Error("the page opens a WebSocket of its own")
	}

	// Walk the import graph from index.js, as a browser would.
	served := map[string]string{}
	queue := []string{"index.js"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if _, ok := served[name]; ok {
			continue
		}
		res, body := get(t, e, "/sdk/"+name)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /sdk/%s = %d: %s", name, res.StatusCode, body)
		}
		if ct := res.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
			t.Errorf("GET /sdk/%s: Content-Type %q", name, ct)
		}
		want, err := fs.ReadFile(webFS, "web/sdk/"+name)
		if err != nil || body != string(want) {
			t.Errorf("GET /sdk/%s is not the committed web/sdk/%s (%v)", name, name, err)
		}
		served[name] = body
		for _, im := range moduleImport.FindAllStringSubmatch(body, -1) {
			queue = append(queue, im[1])
		}
	}
	for _, want := range []string{"index.js", "client.js", "errors.js", "frames.js", "emitter.js"} {
		if _, ok := served[want]; !ok {
			t.Errorf("%s is not reached from index.js; reached %v", want, served)
		}
	}

	for name := range strings.SplitSeq(m[1], ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		decl := regexp.MustCompile(`export (?:class|function|const) ` + name + `\b|export \{[^}]*\b` + name + `\b`)
		if !slices.ContainsFunc(slices.Collect(maps.Values(served)), decl.MatchString) {
			t.Errorf("the page imports %s, which no served module exports", name)
		}
	}

	first, _ := get(t, e, "/sdk/client.js")
	etag := first.Header.Get("ETag")
	if etag == "" || first.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("GET /sdk/client.js: ETag %q, Cache-Control %q", etag, first.Header.Get("Cache-Control"))
	}
	again, body := get(t, e, "/sdk/client.js", "If-None-Match", etag)
	if again.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("a repeat load with its ETag = %d with %d bytes, want 304 and none", again.StatusCode, len(body))
	}
}

// TestSDKRouteServesOnlyTheBuild: anything but a module of the build is a
// 404 with the API's error body.
func TestSDKRouteServesOnlyTheBuild(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, tc := range []struct{ name, path string }{
		{"unknown_module", "/sdk/nope.js"},
		{"typescript_source", "/sdk/client.ts"},
		{"the_folder", "/sdk/"},
		{"a_nested_path", "/sdk/x/index.js"},
		{"the_page_by_name", "/sdk/index.html"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, body := get(t, e, tc.path)
			var reply errorBody
			if res.StatusCode != http.StatusNotFound || json.Unmarshal([]byte(body), &reply) != nil || reply.Error.Code != CodeNotFound {
				t.Errorf("GET %s = %d %s, want 404 %s", tc.path, res.StatusCode, body, CodeNotFound)
			}
		})
	}
}
