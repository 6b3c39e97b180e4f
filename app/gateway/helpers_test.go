package gateway

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/abuse"
	"github.com/parley-im/parley/app/auth"
	"github.com/parley-im/parley/app/chat"
	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/settings"
	"github.com/parley-im/parley/app/store"
	"github.com/parley-im/parley/domain"
	"github.com/parley-im/parley/infrastructure"
	"github.com/parley-im/parley/infrastructure/memory"
)

const testSecret = "gateway-test-secret-gateway-test-secret"

// testEnv is a gateway on a test HTTP server, with the chat use cases on
// the in-memory state store unless a test gives its own.
type testEnv struct {
	t    *testing.T
	srv  *Server
	hub  *delivery.Hub
	auth *auth.Verifier
	hs   *httptest.Server
	live *settings.Live
	// receipts counts group readers; nil when the test gave its use cases.
	receipts *chat.ReadReceipts
}

// hubNotices tells chat notices to this node's devices, as the router
// does in a cluster.
type hubNotices struct{ hub *delivery.Hub }

func (n hubNotices) Notify(_ context.Context, users []domain.UserID, nt chat.Notice) {
	for _, u := range users {
		n.hub.NotifyUser(u, delivery.Event{Type: nt.Type, Conv: nt.Conv, Seq: nt.Seq, User: nt.User, Count: nt.Count, Note: nt.Note})
	}
}

type envOption func(*envSetup)

type envSetup struct {
	cfg   Config
	state infrastructure.StateStore
	uc    *UseCases
	pres  Presence
	tls   bool
	start bool
	guard *abuse.Guard
}

func withConfig(cfg Config) envOption                  { return func(s *envSetup) { s.cfg = cfg } }
func withState(st infrastructure.StateStore) envOption { return func(s *envSetup) { s.state = st } }
func withUseCases(uc UseCases) envOption               { return func(s *envSetup) { s.uc = &uc } }
func withPresence(p Presence) envOption                { return func(s *envSetup) { s.pres = p } }
func withTLS() envOption                               { return func(s *envSetup) { s.tls = true } }
func withGuard(g *abuse.Guard) envOption               { return func(s *envSetup) { s.guard = g } }
func unstarted() envOption                             { return func(s *envSetup) { s.start = false } }

func newTestEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	setup := envSetup{cfg: Config{NodeID: "t"}, start: true}
	for _, o := range opts {
		o(&setup)
	}
	verifier, err := auth.New(context.Background(), auth.Config{HS256Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	hub := delivery.NewHub()
	live := settings.NewLive(settings.Defaults())
	uc := UseCases{}
	var receipts *chat.ReadReceipts
	if setup.uc != nil {
		uc = *setup.uc
	} else {
		st := setup.state
		if st == nil {
			st = memory.NewStateStore()
		}
		s := store.New(st)
		notices := hubNotices{hub}
		receipts = chat.NewReadReceipts(s, live, notices, zap.NewNop(), 20*time.Millisecond)
		receipts.Start()
		t.Cleanup(receipts.Stop)
		uc = UseCases{
			Send:          chat.NewSendMessageHandler(s, live, hub, time.Now),
			History:       chat.NewHistoryHandler(s),
			List:          chat.NewListConversationsHandler(s),
			MarkRead:      chat.NewMarkReadHandler(s).WithReceipts(notices, receipts),
			Groups:        chat.NewGroupsHandler(s, live, hub, notices, time.Now),
			ChangeMessage: chat.NewChangeMessageHandler(s, live, hub, time.Now),
			Typing:        chat.NewTypingHandler(s, notices, time.Now),
		}
	}
	e := &testEnv{t: t, hub: hub, auth: verifier, live: live, receipts: receipts}
	e.srv = New(setup.cfg, zap.NewNop(), verifier, live, hub, uc, setup.pres, nil)
	if setup.guard != nil {
		e.srv.WithGuard(setup.guard)
	}
	e.hs = httptest.NewUnstartedServer(e.srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(ctx)
		e.hs.Close()
	})
	if setup.start {
		if setup.tls {
			e.hs.StartTLS()
		} else {
			e.hs.Start()
		}
	}
	return e
}

func (e *testEnv) token(user string) string {
	e.t.Helper()
	tok, err := e.auth.Issue(domain.UserID(user), time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *testEnv) wsURL() string {
	return "ws" + strings.TrimPrefix(e.hs.URL, "http") + "/v1/ws"
}

// dial connects user and reads the hello frame.
func (e *testEnv) dial(user string) *websocket.Conn {
	e.t.Helper()
	return e.dialWith(websocket.DefaultDialer, user)
}

func (e *testEnv) dialWith(d *websocket.Dialer, user string) *websocket.Conn {
	e.t.Helper()
	ws, _, err := d.Dial(e.wsURL()+"?token="+e.token(user), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ws.Close() })
	if got := readFrame(e.t, ws); !strings.Contains(got, `"hello"`) {
		e.t.Fatalf("first frame %s, want hello", got)
	}
	return ws
}

// readFrame reads the next frame, failing the test after 5 s.
func readFrame(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(data)
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// maskedText is a final, masked text frame as a browser sends it.
func maskedText(payload string) []byte {
	key := [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
	out := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xFFFF:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	out = append(out, key[:]...)
	for i := 0; i < len(payload); i++ {
		out = append(out, payload[i]^key[i&3])
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
