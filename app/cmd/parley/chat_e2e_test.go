package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

// TestChatEndToEnd: two users with three devices between them exchange
// messages both ways; every device gets every message once, in seq order,
// except that the device a message was sent from has it in its ACK and is
// not pushed a copy;
// history after reconnect equals what was sent; unread falls after
// mark-read.
func TestChatEndToEnd(t *testing.T) {
	for _, m := range modes("local", "jetstream") {
		t.Run(m.name, func(t *testing.T) {
			n := startNode(t, m)
			aliceWeb := dial(t, n, "alice", "web")
			alicePhone := dial(t, n, "alice", "phone", client.Options{Proto: true})
			bobWeb := dial(t, n, "bob", "web")
			ctx := ctxT(t, 60*time.Second)
			const each = 15
			var wg sync.WaitGroup
			var mu sync.Mutex
			acked := map[uint64]string{}
			sendAll := func(c *client.Client, to, who string) {
				defer wg.Done()
				for i := range each {
					body := fmt.Sprintf("%s says %d", who, i)
					ack, err := c.Send(ctx, to, "", fmt.Sprintf("%s-%d", who, i), body)
					if err != nil {
						t.Errorf("%s send %d: %v", who, i, err)
						return
					}
					mu.Lock()
					if prev, dup := acked[ack.Seq]; dup {
						t.Errorf("seq %d given to %q and %q", ack.Seq, prev, body)
					}
					acked[ack.Seq] = body
					mu.Unlock()
				}
			}
			wg.Add(2)
			go sendAll(aliceWeb, "bob", "alice")
			go sendAll(bobWeb, "alice", "bob")
			wg.Wait()
			if t.Failed() {
				return
			}
			const conv = "d:alice~bob"
			var all []string
			for seq := uint64(1); seq <= 2*each; seq++ {
				body, ok := acked[seq]
				if !ok {
					t.Fatalf("seq %d missing from the ACKs: seqs have a gap", seq)
				}
				all = append(all, fmt.Sprintf("%s#%d:%s", conv, seq, body))
			}
			// sentFrom: whose sends a device made itself, and so is not pushed.
			for _, d := range []struct {
				name     string
				c        *client.Client
				sentFrom string
			}{{"alice/web", aliceWeb, "alice"}, {"alice/phone", alicePhone, ""}, {"bob/web", bobWeb, "bob"}} {
				name, c := d.name, d.c
				var want []string
				for _, w := range all {
					if d.sentFrom == "" || !strings.Contains(w, ":"+d.sentFrom+" says") {
						want = append(want, w)
					}
				}
				got := collect(t, c, len(want), 20*time.Second)
				if !slices.Equal(got, want) {
					t.Errorf("%s received\n%v\nwant, once each and in seq order,\n%v", name, got, want)
				}
				select {
				case extra := <-c.Messages:
					t.Errorf("%s got an extra message %s#%d", name, extra.Conv, extra.Seq)
				case <-time.After(200 * time.Millisecond):
				}
			}

			// History after reconnect equals what was sent.
			_ = bobWeb.Close()
			bobAgain := dial(t, n, "bob", "web")
			hist, err := bobAgain.Sync(ctx, conv, 0)
			if err != nil {
				t.Fatalf("sync: %v", err)
			}
			var got []string
			for _, m := range hist {
				got = append(got, fmt.Sprintf("%s#%d:%s", m.Conv, m.Seq, m.Body))
			}
			if !slices.Equal(got, all) {
				t.Errorf("history after reconnect\n%v\nwant\n%v", got, all)
			}
			page, err := bobAgain.Request(ctx, &pb.Frame{Type: "sync", Conv: conv, Seq: 10, Limit: 5})
			if err != nil || len(page.Messages) != 5 || page.Messages[0].Seq != 11 || !page.More {
				t.Errorf("sync after 10 limit 5 = %v, %v; want seqs 11-15 and more", page, err)
			}

			// Unread falls after mark-read. Bob's cursor sits at his own
			// last message; alice's messages after it are unread.
			bobTok := token(t, n, "bob")
			unread := func() uint64 {
				var out struct {
					Conversations []*pb.Conversation `json:"conversations"`
				}
				if err := client.DoJSON(ctx, http.MethodGet, n.base+"/v1/conversations", bobTok, nil, &out); err != nil {
					t.Fatalf("list conversations: %v", err)
				}
				if len(out.Conversations) != 1 || out.Conversations[0].Id != conv || out.Conversations[0].LastSeq != 2*each {
					t.Fatalf("conversations = %+v", out.Conversations)
				}
				if out.Conversations[0].Last == nil || out.Conversations[0].Last.Seq != 2*each {
					t.Fatalf("last message = %+v", out.Conversations[0].Last)
				}
				return out.Conversations[0].Unread
			}
			var lastBob uint64
			for seq, body := range acked {
				if strings.HasPrefix(body, "bob") {
					lastBob = max(lastBob, seq)
				}
			}
			if u := unread(); u != 2*each-lastBob {
				t.Errorf("unread before mark-read = %d, want %d", u, 2*each-lastBob)
			}
			r, err := bobAgain.Request(ctx, &pb.Frame{Type: "read", Conv: conv, Seq: 2 * each})
			if err != nil || r.Seq != 2*each {
				t.Fatalf("mark read = %v, %v", r, err)
			}
			if u := unread(); u != 0 {
				t.Errorf("unread after mark-read = %d, want 0", u)
			}
			if err := client.DoJSON(ctx, http.MethodPost, n.base+"/v1/conversations/"+conv+"/read", bobTok, []byte(`{"seq":1}`), nil); err != nil {
				t.Errorf("mark read over HTTP: %v", err)
			}
			if u := unread(); u != 0 {
				t.Errorf("marking an older seq moved the cursor back: unread = %d", u)
			}

			// Online users.
			var online struct {
				Users []string `json:"users"`
			}
			if err := client.DoJSON(ctx, http.MethodGet, n.base+"/v1/users/online", bobTok, nil, &online); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(online.Users, []string{"alice", "bob"}) {
				t.Errorf("online users = %v, want [alice bob]", online.Users)
			}
		})
	}
}

// TestBadInputGetsDocumentedErrors: each bad request gets its error code,
// and neither the connection nor the data is harmed.
func TestBadInputGetsDocumentedErrors(t *testing.T) {
	for _, m := range modes("local") {
		t.Run(m.name, func(t *testing.T) {
			n := startNode(t, m)
			ctx := ctxT(t, 60*time.Second)
			alice := dial(t, n, "alice", "web")
			first, err := alice.Send(ctx, "bob", "", "keep-1", "before the bad input")
			if err != nil {
				t.Fatal(err)
			}
			expectError := func(name, code string, f *pb.Frame) {
				t.Helper()
				_, err := alice.Request(ctx, f)
				var e *client.Error
				if !errors.As(err, &e) || e.Code != code {
					t.Errorf("%s: got %v, want error code %s", name, err, code)
				}
			}
			expectError("unknown type", "unknown_type", &pb.Frame{Type: "teleport"})
			expectError("oversize body", "body_too_large", &pb.Frame{Type: "send", To: "bob", Cmid: "big", Body: strings.Repeat("x", 17<<10)})
			expectError("empty body", "empty_body", &pb.Frame{Type: "send", To: "bob", Cmid: "empty"})
			expectError("unknown content type", "unknown_content_type", &pb.Frame{Type: "send", To: "bob", Cmid: "ct", Ctype: "video", Body: "x"})
			expectError("bad json payload", "invalid_json_body", &pb.Frame{Type: "send", To: "bob", Cmid: "js", Ctype: "json", Body: "{nope"})
			expectError("send to self", "send_to_self", &pb.Frame{Type: "send", To: "alice", Cmid: "self", Body: "x"})
			expectError("missing cmid", "invalid_cmid", &pb.Frame{Type: "send", To: "bob", Body: "x"})
			expectError("bad user", "invalid_user", &pb.Frame{Type: "send", To: "bob smith", Cmid: "u", Body: "x"})
			expectError("other's conversation", "not_member", &pb.Frame{Type: "sync", Conv: "d:bob~carol"})
			expectError("other's conversation send", "not_member", &pb.Frame{Type: "send", Conv: "d:bob~carol", Cmid: "nm", Body: "x"})
			expectError("bad conversation id", "invalid_conversation", &pb.Frame{Type: "sync", Conv: "group-1"})
			expectError("bad limit", "invalid_limit", &pb.Frame{Type: "sync", Conv: "d:alice~bob", Limit: 5000})

			// Frames that do not parse have no id to answer to: the error
			// frame comes without one.
			for name, raw := range map[string]string{"not json": "{{{", "wrong shape": `{"type":5}`, "no type": `{"id":"x"}`} {
				if err := alice.WriteRaw(websocket.TextMessage, []byte(raw)); err != nil {
					t.Fatalf("%s: write: %v", name, err)
				}
			}
			if err := alice.WriteRaw(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
				t.Fatal(err)
			}
			// The connection still works and nothing was stored by the bad input.
			second, err := alice.Send(ctx, "bob", "", "keep-2", "after the bad input")
			if err != nil {
				t.Fatalf("send after bad input: %v", err)
			}
			if second.Seq != first.Seq+1 {
				t.Errorf("seq after bad input = %d, want %d: something was stored", second.Seq, first.Seq+1)
			}
			hist, err := alice.Sync(ctx, "d:alice~bob", 0)
			if err != nil || len(hist) != 2 || hist[0].Body != "before the bad input" || hist[1].Body != "after the bad input" {
				t.Errorf("history = %v, %v", hist, err)
			}

			// Missing and forged tokens are refused before the upgrade.
			_, err = client.Dial(ctx, n.base, "", client.Options{})
			var e *client.Error
			if !errors.As(err, &e) || e.Code != "unauthorized" || e.Status != http.StatusUnauthorized {
				t.Errorf("dial without a token: %v, want 401 unauthorized", err)
			}
			forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
				Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
			}).SignedString([]byte("not-the-server-secret-not-the-server-secret"))
			_, err = client.Dial(ctx, n.base, forged, client.Options{})
			if !errors.As(err, &e) || e.Code != "unauthorized" {
				t.Errorf("dial with a forged token: %v, want unauthorized", err)
			}
			err = client.DoJSON(ctx, http.MethodGet, n.base+"/v1/conversations", forged, nil, nil)
			if !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
				t.Errorf("HTTP with a forged token: %v, want 401", err)
			}
			bobTok := token(t, n, "bob")
			err = client.DoJSON(ctx, http.MethodGet, n.base+"/v1/conversations/d:alice~carol/messages", bobTok, nil, nil)
			if !errors.As(err, &e) || e.Status != http.StatusForbidden || e.Code != "not_member" {
				t.Errorf("reading another user's conversation over HTTP: %v, want 403 not_member", err)
			}
			err = client.DoJSON(ctx, http.MethodPost, n.base+"/v1/messages", bobTok, []byte(`{"to":"alice","cmid":"h1","body":"`+strings.Repeat("y", 20000)+`"}`), nil)
			if !errors.As(err, &e) || e.Status != http.StatusRequestEntityTooLarge || e.Code != "body_too_large" {
				t.Errorf("oversize body over HTTP: %v, want 413 body_too_large", err)
			}
			err = client.DoJSON(ctx, http.MethodPost, n.base+"/v1/messages", bobTok, []byte(`not json`), nil)
			if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != "bad_frame" {
				t.Errorf("bad JSON over HTTP: %v, want 400 bad_frame", err)
			}
			// And the connection that saw all of it is still open.
			if _, err := alice.Request(ctx, &pb.Frame{Type: "ping"}); err != nil {
				t.Errorf("ping after bad input: %v", err)
			}
		})
	}
}
