package gateway

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/parley-im/parley/app/auth"
	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/infrastructure/memory"
)

// httpBodyRoutes are the routes that read a JSON body, as a signed-in user.
var httpBodyRoutes = []string{
	"/v1/messages", "/v1/groups", "/v1/messages/recall", "/v1/messages/edit", "/v1/typing",
	"/v1/conversations/d:alice~bob/read",
}

// FuzzHTTPBody: any body on any route that reads one gets a JSON answer
// with a documented status, an error code with every refusal, and never a
// panic or a 500.
func FuzzHTTPBody(f *testing.F) {
	seeds := []string{
		`{"to":"bob","cmid":"c1","body":"hi"}`, `{"conv":"d:alice~bob","cmid":"c2","body":"x","reply_to":1,"mentions":["bob"]}`,
		`{"name":"Launch","users":["bob","carol"]}`, `{"conv":"d:alice~bob","seq":1}`, `{"seq":1}`,
		`{"conv":"d:alice~bob","seq":1,"ctype":"text","body":"edited"}`, `{"conv":"d:alice~bob","on":true}`,
		`{"to":5}`, `{{`, `[]`, `null`, `{"body":"\ud800"}`, `{"users":[` + `"x",` + `"y"]}`, "",
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	verifier, err := auth.New(context.Background(), auth.Config{HS256Secret: []byte(testSecret)})
	if err != nil {
		f.Fatal(err)
	}
	defer verifier.Close()
	token, err := verifier.Issue("alice", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	hub := delivery.NewHub()
	live := settings.NewLive(settings.Defaults())
	st := store.New(memory.NewStateStore())
	defer st.Close()
	notices := hubNotices{hub}
	srv := New(Config{NodeID: "fuzz"}, zap.NewNop(), verifier, live, hub, UseCases{
		Send:          chat.NewSendMessageHandler(st, live, hub, time.Now),
		History:       chat.NewHistoryHandler(st),
		List:          chat.NewListConversationsHandler(st),
		MarkRead:      chat.NewMarkReadHandler(st).WithReceipts(notices, nil),
		Groups:        chat.NewGroupsHandler(st, live, hub, notices, time.Now),
		ChangeMessage: chat.NewChangeMessageHandler(st, live, hub, time.Now),
		Typing:        chat.NewTypingHandler(st, notices, time.Now),
	}, nil, nil)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := httpBodyRoutes[int(route)%len(httpBodyRoutes)]
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("POST %s %q: %d %s", path, body, rec.Code, rec.Body.String())
		}
		if !stdjson.Valid(rec.Body.Bytes()) {
			t.Fatalf("POST %s %q: the answer is not JSON: %q", path, body, rec.Body.String())
		}
		if rec.Code >= 400 {
			var e errorBody
			if err := stdjson.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
				t.Fatalf("POST %s %q: %d without an error code: %s", path, body, rec.Code, rec.Body.String())
			}
		}
	})
}
