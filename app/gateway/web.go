package gateway

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"sync"
	"time"
)

// The chat page (web/index.html) and the browser build of the TypeScript
// client it imports (web/sdk: clients/ts compiled by `make web`, committed;
// clients/ts/test.sh fails while it differs from the build of the source).
//
//go:embed web
var webFS embed.FS

// sdkModule is one ES module of web/sdk, with the ETag of its content.
type sdkModule struct {
	data []byte
	etag string
}

// sdkModules reads web/sdk once: module file name to module.
var sdkModules = sync.OnceValue(func() map[string]sdkModule {
	out := make(map[string]sdkModule)
	entries, err := fs.ReadDir(webFS, "web/sdk")
	if err != nil {
		return out
	}
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".js" {
			continue
		}
		data, err := fs.ReadFile(webFS, "web/sdk/"+e.Name())
		if err != nil {
			continue
		}
		sum := sha256.Sum256(data)
		out[e.Name()] = sdkModule{data: data, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
})

// getPage serves the chat page.
func (s *Server) getPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, webFS, "web/index.html")
}

// getSDK serves one module of the client's browser build, which the page
// imports as /sdk/index.js.
func (s *Server) getSDK(w http.ResponseWriter, r *http.Request) {
	m, ok := sdkModules()[r.PathValue("file")]
	if !ok {
		s.writeError(w, apiError{http.StatusNotFound, CodeNotFound, "no such module of the browser client", false, 0})
		return
	}
	h := w.Header()
	// Browsers run a module script only when served as JavaScript.
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	// Revalidated on every load, as the page is, so that a page never runs
	// with modules of another version; the ETag makes that a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", m.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(m.data))
}
