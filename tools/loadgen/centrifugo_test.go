package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/tools/testkit"
)

func TestCentrifugoCommandEncoding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cmd  cfCommand
		want string
	}{
		{"connect", cfCommand{ID: 1, Connect: &cfConnect{Token: "tok", Name: "parley-loadgen"}}, `{"id":1,"connect":{"token":"tok","name":"parley-loadgen"}}`},
		{"subscribe", cfCommand{ID: 2, Subscribe: &cfSubscribe{Channel: "chat:p-0"}}, `{"id":2,"subscribe":{"channel":"chat:p-0"}}`},
		// The data is the publication's JSON itself, not a string holding it.
		{"publish", cfCommand{ID: 3, Publish: &cfPublish{Channel: "chat:p-0", Data: []byte(`{"n":1}`)}}, `{"id":3,"publish":{"channel":"chat:p-0","data":{"n":1}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tc.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("encoded %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCentrifugoReplyDecoding(t *testing.T) {
	t.Parallel()
	frame := "{}\n" +
		`{"id":3,"publish":{}}` + "\n" +
		`{"push":{"channel":"chat:p-0","pub":{"data":{"t":5,"u":"a","n":9,"p":"xx"},"offset":7}}}` + "\n" +
		`{"id":4,"error":{"code":103,"message":"permission denied"}}` + "\n"
	var got []cfReply
	if err := eachReply([]byte(frame), func(r *cfReply) { got = append(got, *r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("decoded %d replies, want 4", len(got))
	}
	if !got[0].isPing() {
		t.Errorf("{} not taken for a ping: %+v", got[0])
	}
	if got[1].ID != 3 || got[1].Publish == nil || got[1].isPing() || got[1].Error != nil {
		t.Errorf("publish reply decoded as %+v", got[1])
	}
	var body cfBody
	if p := got[2].Push; p == nil || p.Pub == nil || p.Channel != "chat:p-0" || p.Pub.Offset != 7 {
		t.Fatalf("push decoded as %+v", got[2].Push)
	} else if err := json.Unmarshal(p.Pub.Data, &body); err != nil || body != (cfBody{T: 5, U: "a", N: 9, P: "xx"}) {
		t.Errorf("publication data %s decoded as %+v, %v", p.Pub.Data, body, err)
	}
	var ce *cfError
	if err := error(got[3].Error); !errors.As(err, &ce) || ce.Code != 103 {
		t.Errorf("error reply decoded as %+v", got[3])
	}
	if err := eachReply([]byte("{\"id\":1,"), func(*cfReply) {}); err == nil {
		t.Error("a truncated reply decoded without error")
	}
}

func TestCentrifugoBodySize(t *testing.T) {
	t.Parallel()
	at := time.Unix(1_700_000_000, 123)
	for _, tc := range []struct {
		name    string
		size    int
		wantLen int
	}{
		{"padded_to_size", 64, 64},
		{"larger", 200, 200},
		{"fields_longer_than_size", 24, 54},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := makeCfBody(at, "lgabc-a1", 42, tc.size)
			if len(b) != tc.wantLen {
				t.Errorf("body %s is %d bytes, want %d", b, len(b), tc.wantLen)
			}
			var m cfBody
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("body %s: %v", b, err)
			}
			if m.T != at.UnixNano() || m.U != "lgabc-a1" || m.N != 42 {
				t.Errorf("body %s decoded as %+v", b, m)
			}
		})
	}
}

func TestCentrifugoConfig(t *testing.T) {
	t.Parallel()
	data, err := centrifugoConfig{Engine: "redis", RedisAddr: "127.0.0.1:6379", RedisPrefix: "run1-centrifugo", Port: 9000, Secret: "s"}.json()
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		HTTP struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"http_server"`
		Engine struct {
			Type  string `json:"type"`
			Redis struct {
				Address []string `json:"address"`
				Prefix  string   `json:"prefix"`
			} `json:"redis"`
		} `json:"engine"`
		Client struct {
			Token struct {
				HMAC string `json:"hmac_secret_key"`
			} `json:"token"`
		} `json:"client"`
		Channel struct {
			Namespaces []map[string]any `json:"namespaces"`
		} `json:"channel"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Address != "127.0.0.1" || cfg.HTTP.Port != 9000 {
		t.Errorf("listens on %s:%d, want 127.0.0.1:9000", cfg.HTTP.Address, cfg.HTTP.Port)
	}
	if cfg.Engine.Type != "redis" || strings.Join(cfg.Engine.Redis.Address, ",") != "redis://127.0.0.1:6379" || cfg.Engine.Redis.Prefix != "run1-centrifugo" {
		t.Errorf("engine %+v", cfg.Engine)
	}
	if cfg.Client.Token.HMAC != "" || bytes.Contains(data, []byte(`"s"`)) {
		t.Errorf("the token secret is in the config file, which the results folder keeps:\n%s", data)
	}
	if len(cfg.Channel.Namespaces) != 1 {
		t.Fatalf("namespaces %v", cfg.Channel.Namespaces)
	}
	ns := cfg.Channel.Namespaces[0]
	for k, want := range map[string]any{
		"name": centrifugoNamespace, "history_size": float64(1000), "history_ttl": "10m0s",
		"allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
	} {
		if ns[k] != want {
			t.Errorf("namespace %s = %v, want %v", k, ns[k], want)
		}
	}
	if _, err := (centrifugoConfig{Engine: "nats"}).json(); err == nil {
		t.Error("an unknown engine was accepted")
	}
}

// TestMakefileBuildsWhatTheSuiteRuns: `make centrifugo` must install the
// version into the path the suite looks in by default.
func TestMakefileBuildsWhatTheSuiteRuns(t *testing.T) {
	t.Parallel()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"CENTRIFUGO_VERSION := " + centrifugoVersion + "\n",
		"CENTRIFUGO         := .build/centrifugo-v$(CENTRIFUGO_VERSION)/centrifugo\n",
		"github.com/centrifugal/centrifugo/v6@v$(CENTRIFUGO_VERSION)",
		"bench: $(DAPRD) $(CENTRIFUGO)",
	} {
		if !bytes.Contains(mk, []byte(want)) {
			t.Errorf("Makefile lacks %q", want)
		}
	}
	if want := ".build/centrifugo-v" + centrifugoVersion + "/centrifugo"; centrifugoBinary != want {
		t.Errorf("suite looks for %s, make installs %s", centrifugoBinary, want)
	}
}

func TestReferenceTable(t *testing.T) {
	t.Parallel()
	direct := func(rate, p99 float64) *DirectResult {
		return &DirectResult{Pairs: 50, Inflight: 4, BodyBytes: 64, WindowSeconds: 10, AckedPerSec: rate, DeliveredPerSec: rate,
			DeliverLatency: Summary{P99Ms: p99}}
	}
	res := &SuiteResult{
		Machine: "test", ReferenceVersion: "Centrifugo v6.9.1 (Go version: go1.26.8)",
		Modes: []*ModeResult{
			{Mode: "memory", Direct: direct(20000, 90), DirectRuns: []float64{19000, 20000, 21000}},
			{Mode: "dapr-local", Direct: direct(5000, 150)},
			{Mode: "dapr-redis", Skipped: "redis does not answer"},
		},
		Reference: []*ModeResult{
			{Mode: "centrifugo-memory", Beside: "memory", Direct: direct(50000, 18), DirectRuns: []float64{49000, 50000, 52000}},
			{Mode: "centrifugo-redis", Beside: "dapr-redis", Skipped: "runs beside parley dapr-redis, which was skipped"},
		},
	}
	table := suiteTable(res)
	for _, want := range []string{
		"parley beside Centrifugo v6.9.1, the direct scenario, flat out: 50 pairs, 4 in flight per sender",
		"| metric | parley memory | Centrifugo memory | parley / Centrifugo | parley dapr-redis | Centrifugo redis | parley / Centrifugo |",
		"| ACKed msg/s, each run | 19000 / 20000 / 21000 | 49000 / 50000 / 52000 |  | skipped | skipped |  |",
		"| ACKed msg/s, median run | 20000 | 50000 | 0.40× | skipped | skipped |  |",
		"| send→deliver p99 (ms) | 90.00 | 18.00 | 5.00× |",
		"centrifugo-redis skipped: runs beside parley dapr-redis, which was skipped",
		"gap-free seq", "idempotent", "at most once", "the last 1000 publications of a channel, for 10m0s",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "centrifugo-memory / memory") {
		t.Errorf("the reference leaked into the parley modes' table:\n%s", table)
	}
	if got := referenceTable(&SuiteResult{Modes: res.Modes}); got != "" {
		t.Errorf("no reference asked for, yet a table:\n%s", got)
	}
}

// fakeCentrifugo speaks the part of Centrifugo's JSON protocol the
// scenario uses: it checks the connect token, pings every client once after
// connect and counts the pongs, and pushes every publication to every
// subscriber of its channel, the publisher included.
type fakeCentrifugo struct {
	secret string
	mu     sync.Mutex
	subs   map[string][]*fakeConn
	pongs  int
}

type fakeConn struct {
	mu sync.Mutex
	ws *websocket.Conn
}

func (c *fakeConn) write(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/connection/websocket" {
		http.NotFound(w, r)
		return
	}
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	c := &fakeConn{ws: ws}
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			if string(line) == "{}" {
				f.mu.Lock()
				f.pongs++
				f.mu.Unlock()
				continue
			}
			var cmd cfCommand
			if err := json.Unmarshal(line, &cmd); err != nil {
				return
			}
			var reply []byte
			switch {
			case cmd.Connect != nil:
				_, err := jwt.Parse(cmd.Connect.Token, func(*jwt.Token) (any, error) { return []byte(f.secret), nil },
					jwt.WithValidMethods([]string{"HS256"}))
				if err != nil {
					reply, _ = json.Marshal(cfReply{ID: cmd.ID, Error: &cfError{Code: 109, Message: "token expired"}})
				} else {
					reply, _ = json.Marshal(cfReply{ID: cmd.ID, Connect: &cfConnectResult{Client: "c", Ping: 25, Pong: true}})
					reply = append(reply, "\n{}"...)
				}
			case cmd.Subscribe != nil:
				f.mu.Lock()
				f.subs[cmd.Subscribe.Channel] = append(f.subs[cmd.Subscribe.Channel], c)
				f.mu.Unlock()
				reply, _ = json.Marshal(cfReply{ID: cmd.ID, Subscribe: &cfSubscribeResult{}})
			case cmd.Publish != nil:
				push, _ := json.Marshal(cfReply{Push: &cfPush{Channel: cmd.Publish.Channel, Pub: &cfPub{Data: cmd.Publish.Data}}})
				f.mu.Lock()
				subs := append([]*fakeConn(nil), f.subs[cmd.Publish.Channel]...)
				f.mu.Unlock()
				for _, s := range subs {
					_ = s.write(push)
				}
				reply, _ = json.Marshal(cfReply{ID: cmd.ID, Publish: &struct{}{}})
			}
			if err := c.write(reply); err != nil {
				return
			}
		}
	}
}

// directAgainst runs a short direct scenario against a Centrifugo at p.
func directAgainst(t *testing.T, p *centrifugoProc, pairs int, d time.Duration) *DirectResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	e, err := newEnv(ctx, common{target: p.Base, serverPID: os.Getpid(), debugAddr: p.Base, sourceBase: "127.0.0.2", progress: "off", concurrency: 8}, 2*pairs, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := runDirectCentrifugo(ctx, e, directConfig{pairs: pairs, duration: d, drain: 10 * time.Second, inflight: 4, body: 64}, p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkDirect asserts what a user of the report relies on: every replied
// publication reached the other user once, and came back to its publisher.
func checkDirect(t *testing.T, r *DirectResult) {
	t.Helper()
	if r.Acked == 0 || r.Delivered != r.Acked || r.Lost != 0 || r.Duplicates != 0 || len(r.Errors) != 0 || r.DroppedConnections != 0 {
		t.Errorf("sent %d, acked %d, delivered %d, lost %d, duplicates %d, errors %v, dropped %d: want every acked publication delivered once",
			r.Sent, r.Acked, r.Delivered, r.Lost, r.Duplicates, r.Errors, r.DroppedConnections)
	}
	if r.Echoes != r.Acked {
		t.Errorf("echoes %d, want one per acked publication (%d)", r.Echoes, r.Acked)
	}
	if r.DeliverLatency.Count == 0 || r.AckLatency.Count != uint64(r.Acked) {
		t.Errorf("latencies: %d deliveries, %d ACKs recorded; want %d ACKs", r.DeliverLatency.Count, r.AckLatency.Count, r.Acked)
	}
}

func TestDirectCentrifugoAgainstFake(t *testing.T) {
	t.Parallel()
	f := &fakeCentrifugo{secret: "s3cret", subs: map[string][]*fakeConn{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	p := &centrifugoProc{Base: srv.URL, cfg: centrifugoConfig{Engine: "memory", Secret: f.secret}}
	r := directAgainst(t, p, 3, 300*time.Millisecond)
	checkDirect(t, r)
	if r.Senders != 6 || r.Pairs != 3 || r.Scenario != "direct-centrifugo-memory" {
		t.Errorf("report %+v", r)
	}
	testkit.Eventually(t, 5*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.pongs == 6
	}, "6 connections answered their ping with a pong")
}

func TestDirectCentrifugoBadTokenFails(t *testing.T) {
	t.Parallel()
	f := &fakeCentrifugo{secret: "s3cret", subs: map[string][]*fakeConn{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	p := &centrifugoProc{Base: srv.URL, cfg: centrifugoConfig{Engine: "memory", Secret: "other"}}
	e, err := newEnv(t.Context(), common{target: p.Base, serverPID: os.Getpid(), debugAddr: p.Base, sourceBase: "127.0.0.2", progress: "off", concurrency: 2}, 2, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = runDirectCentrifugo(t.Context(), e, directConfig{pairs: 1, duration: time.Second, inflight: 1}, p)
	var ce *cfError
	if !errors.As(err, &ce) || ce.Code != 109 {
		t.Errorf("run with a wrong secret: %v, want centrifugo error 109", err)
	}
}

// TestDirectCentrifugoReal runs the scenario against the Centrifugo that
// `make centrifugo` caches, with each engine. It skips when that binary is
// not built, also under CI=true: CI does not run `make bench`, so it does
// not build Centrifugo either.
func TestDirectCentrifugoReal(t *testing.T) {
	testkit.SkipShort(t)
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, centrifugoBinary)
	if reason := centrifugoMissing(bin); reason != "" {
		t.Skip(reason + " (CI does not run make bench, so it does not build Centrifugo)")
	}
	for _, engine := range []string{"memory", "redis"} {
		t.Run(engine, func(t *testing.T) {
			cfg := centrifugoConfig{Engine: engine}
			if engine == "redis" {
				cfg.RedisAddr = "127.0.0.1:6379"
				if err := redisPing(cfg.RedisAddr); err != nil {
					testkit.Unavailable(t, "redis at %s does not answer: %v", cfg.RedisAddr, err)
				}
				cfg.RedisPrefix = runPrefix() + "-centrifugo-test"
				t.Cleanup(func() {
					if _, err := redisDeleteMatching(cfg.RedisAddr, cfg.RedisPrefix+"*"); err != nil {
						t.Errorf("delete the test's redis keys: %v", err)
					}
				})
			}
			bin := bin
			if engine == "memory" {
				// The suite is given a path relative to the checkout, and
				// Centrifugo runs in another folder.
				wd, _ := os.Getwd()
				if rel, err := filepath.Rel(wd, bin); err == nil {
					bin = rel
				}
			}
			p, err := startCentrifugo(t.Context(), bin, t.TempDir(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if !p.stop(10 * time.Second) {
					t.Error("centrifugo did not stop on SIGTERM within 10s")
				}
			}()
			checkDirect(t, directAgainst(t, p, 4, time.Second))
		})
	}
}
