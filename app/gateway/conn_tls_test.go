package gateway

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/parley-im/parley/app/delivery"
	"github.com/parley-im/parley/app/settings"
)

// A connection the poller cannot watch (TLS here; every connection off
// Linux) sits in a blocking read with reading=true: Shutdown never drains
// it and waits for the whole deadline.
func TestShutdownDrainsConnectionsThePollerDoesNotWatch(t *testing.T) {
	auth, _ := NewAuthenticator([]byte("reader-test-secret-reader-test-secret"))
	hub := delivery.NewHub()
	srv := New(Config{NodeID: "t"}, zap.NewNop(), auth, settings.NewLive(settings.Defaults()), hub, UseCases{}, nil, nil)
	hs := httptest.NewTLSServer(srv.Handler())
	defer hs.Close()
	tok, _ := auth.Issue("alice", time.Hour)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(hs.URL, "https")+"/v1/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, _, _ = ws.ReadMessage() // hello
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	err = srv.Shutdown(ctx)
	t.Logf("Shutdown took %v, err %v", time.Since(start), err)
	if time.Since(start) > time.Second {
		t.Errorf("Shutdown waited for its deadline on an idle connection")
	}
	_ = ws.SetReadDeadline(time.Now().Add(time.Second))
	_, _, err = ws.ReadMessage()
	t.Logf("client read: %v", err)
}
