package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
)

// wsDevice is one device on a raw WebSocket, speaking JSON frames, so that
// the tests check the protocol exactly as a client sees it.
type wsDevice struct {
	t    *testing.T
	ws   *websocket.Conn
	user string
	ids  atomic.Int64
}

// jsonFrame is a decoded JSON frame.
type jsonFrame map[string]any

func (f jsonFrame) str(k string) string { s, _ := f[k].(string); return s }
func (f jsonFrame) num(k string) uint64 { n, _ := f[k].(float64); return uint64(n) }
func (f jsonFrame) obj(k string) jsonFrame {
	m, _ := f[k].(map[string]any)
	return jsonFrame(m)
}
func (f jsonFrame) list(k string) []jsonFrame {
	var out []jsonFrame
	xs, _ := f[k].([]any)
	for _, x := range xs {
		m, _ := x.(map[string]any)
		out = append(out, jsonFrame(m))
	}
	return out
}

// wsConnect connects user to n and reads the hello frame.
func wsConnect(t *testing.T, n *node, user string) *wsDevice {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.base, "http")+"/v1/ws?token="+token(t, n, user), nil)
	if err != nil {
		t.Fatalf("connect %s: %v", user, err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	d := &wsDevice{t: t, ws: ws, user: user}
	if f := d.read(); f.str("type") != "hello" {
		t.Fatalf("first frame %v, want hello", f)
	}
	return d
}

func (d *wsDevice) write(v map[string]any) {
	d.t.Helper()
	data, _ := json.Marshal(v)
	if err := d.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		d.t.Fatalf("%s write: %v", d.user, err)
	}
}

// read returns the next frame, acknowledging a pushed message.
func (d *wsDevice) read() jsonFrame {
	d.t.Helper()
	_ = d.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, data, err := d.ws.ReadMessage()
	if err != nil {
		d.t.Fatalf("%s read: %v", d.user, err)
	}
	var f jsonFrame
	if err := json.Unmarshal(data, &f); err != nil {
		d.t.Fatal(err)
	}
	if f.str("type") == "msg" {
		m := f.obj("msg")
		d.write(map[string]any{"type": "recv", "conv": m.str("conv"), "seq": m.num("seq")})
	}
	return f
}

// call sends a request and returns the frame answering it.
func (d *wsDevice) call(v map[string]any) jsonFrame {
	d.t.Helper()
	id := d.user + "-" + strconv.FormatInt(d.ids.Add(1), 10)
	v["id"] = id
	d.write(v)
	for {
		if f := d.read(); f.str("id") == id {
			return f
		}
	}
}

// ok is call that fails the test on an error frame.
func (d *wsDevice) ok(v map[string]any) jsonFrame {
	d.t.Helper()
	f := d.call(v)
	if f.str("type") == "error" {
		d.t.Fatalf("%s %v answered %v", d.user, v["type"], f)
	}
	return f
}

// until reads frames until one of type typ that pred accepts.
func (d *wsDevice) until(typ string, pred func(jsonFrame) bool) jsonFrame {
	d.t.Helper()
	for {
		f := d.read()
		if f.str("type") == typ && (pred == nil || pred(f)) {
			return f
		}
	}
}

// untilEvent reads until a system message whose event is typ.
func (d *wsDevice) untilEvent(typ string) jsonFrame {
	d.t.Helper()
	var ev jsonFrame
	d.until("msg", func(f jsonFrame) bool {
		m := f.obj("msg")
		if m.str("ctype") != "system" {
			return false
		}
		ev = nil
		_ = json.Unmarshal([]byte(m.str("body")), &ev)
		return ev.str("type") == typ
	})
	return ev
}

func sysEvent(t *testing.T, m jsonFrame) jsonFrame {
	t.Helper()
	var ev jsonFrame
	if m.str("ctype") != "system" || json.Unmarshal([]byte(m.str("body")), &ev) != nil {
		t.Fatalf("want a system event, got %v", m)
	}
	return ev
}

func wantErrCode(t *testing.T, f jsonFrame, code string) {
	t.Helper()
	if f.str("type") != "error" || f.str("code") != code {
		t.Fatalf("want error %s, got %v", code, f)
	}
}

// TestGroupsEndToEnd: a group's whole life through a real node: create,
// invite, join by request, send, mention, reply, edit, recall, typing,
// read_by, leave, kick and dissolve; a new member reads from the event
// that let them in, one who left up to the event of their leaving. It runs
// on the memory backend and through a real daprd on every profile, one
// after the other: each starts its own daprd.
func TestGroupsEndToEnd(t *testing.T) {
	var profiles []string
	for _, p := range daprdtest.Profiles() {
		profiles = append(profiles, p.Name)
	}
	for _, m := range modes(profiles...) {
		t.Run(m.name, func(t *testing.T) {
			n := startNode(t, m)
			alice, bob, carol, dave := wsConnect(t, n, "alice"), wsConnect(t, n, "bob"), wsConnect(t, n, "carol"), wsConnect(t, n, "dave")

			res := alice.ok(map[string]any{"type": "group_create", "name": "launch", "users": []string{"bob"}, "policy": "approval", "cmid": "create-1"})
			conv := res.str("conv")
			if res.str("type") != "group_result" || res.obj("group").str("owner") != "alice" || res.obj("msg").num("seq") != 1 {
				t.Fatalf("group_create answered %v", res)
			}
			bob.untilEvent("group.created")

			// Messages before Carol and Dave arrive.
			early := alice.ok(map[string]any{"type": "send", "conv": conv, "cmid": "a-early", "body": "before you came"}).obj("msg").num("seq")

			// Invite Dave; Carol asks and is approved.
			inv := alice.ok(map[string]any{"type": "group", "conv": conv, "op": "invite", "users": []string{"dave"}})
			if sysEvent(t, inv.obj("msg")).str("type") != "member.joined" {
				t.Fatalf("invite answered %v", inv)
			}
			dave.untilEvent("member.joined")
			if jr := carol.ok(map[string]any{"type": "group", "conv": conv, "op": "join", "note": "hi"}); jr["msg"] != nil {
				t.Fatalf("a join request stored an event: %v", jr)
			}
			alice.until("join_requested", func(f jsonFrame) bool { return f.str("user") == "carol" && f.str("note") == "hi" })
			ap := alice.ok(map[string]any{"type": "group", "conv": conv, "op": "approve", "users": []string{"carol"}})
			carolFloor := ap.obj("msg").num("seq")
			carol.untilEvent("member.joined")
			hist := carol.ok(map[string]any{"type": "sync", "conv": conv}).list("messages")
			if len(hist) == 0 || hist[0].num("seq") != carolFloor {
				t.Fatalf("carol's history %v, want it to start at her join %d (history hidden)", hist, carolFloor)
			}
			if hist[0].num("seq") <= early {
				t.Fatalf("carol reads %d, from before she joined", early)
			}

			// Bob replies to the early message, mentioning Alice.
			bs := bob.ok(map[string]any{"type": "send", "conv": conv, "cmid": "b-1", "body": "hello @alice", "reply_to": early, "mentions": []string{"alice"}})
			bobSeq := bs.obj("msg").num("seq")
			got := alice.until("msg", func(f jsonFrame) bool { return f.obj("msg").num("seq") == bobSeq }).obj("msg")
			if ms, _ := got["mentions"].([]any); got.num("reply_to") != early || len(ms) != 1 || ms[0] != "alice" {
				t.Fatalf("alice got %v, want a reply to %d mentioning her", got, early)
			}
			wantErrCode(t, bob.call(map[string]any{"type": "send", "conv": conv, "cmid": "b-all", "body": "all", "mentions": []string{"@all"}}), "forbidden")

			// Bob edits, then recalls it; the others see both, and history
			// shows the tombstone.
			bob.ok(map[string]any{"type": "edit", "conv": conv, "seq": bobSeq, "body": "hello @alice!"})
			if ev := carol.untilEvent("message.edited"); uint64(ev["target"].(float64)) != bobSeq {
				t.Fatalf("carol saw %v", ev)
			}
			bob.ok(map[string]any{"type": "recall", "conv": conv, "seq": bobSeq})
			dave.untilEvent("message.recalled")
			for _, msg := range alice.ok(map[string]any{"type": "sync", "conv": conv}).list("messages") {
				if msg.num("seq") == bobSeq && (msg["recalled"] != true || msg.str("body") != "") {
					t.Fatalf("history shows %v, want a tombstone", msg)
				}
			}

			// Typing reaches the other members.
			carol.write(map[string]any{"type": "typing", "conv": conv, "on": true})
			bob.until("typing", func(f jsonFrame) bool { return f.str("user") == "carol" && f["on"] == true && f.str("conv") == conv })

			// Bob reads Alice's message: Alice is told how many read it.
			x := alice.ok(map[string]any{"type": "send", "conv": conv, "cmid": "a-x", "body": "read me"}).obj("msg").num("seq")
			bob.ok(map[string]any{"type": "read", "conv": conv, "seq": x})
			alice.until("read_by", func(f jsonFrame) bool { return f.str("conv") == conv && f.num("seq") == x && f.num("count") >= 1 })

			// Dave leaves: he keeps what he had, and nothing after.
			dave.ok(map[string]any{"type": "group", "conv": conv, "op": "leave"})
			after := alice.ok(map[string]any{"type": "send", "conv": conv, "cmid": "a-after", "body": "after dave"}).obj("msg").num("seq")
			daveHist := dave.ok(map[string]any{"type": "sync", "conv": conv}).list("messages")
			if len(daveHist) == 0 {
				t.Fatal("dave lost his history on leaving")
			}
			for _, msg := range daveHist {
				if msg.num("seq") >= after {
					t.Fatalf("dave reads %d, past his leaving", msg.num("seq"))
				}
			}
			wantErrCode(t, dave.call(map[string]any{"type": "send", "conv": conv, "cmid": "d-1", "body": "x"}), "not_member")

			// Bob is kicked; then the group is dissolved.
			alice.ok(map[string]any{"type": "group", "conv": conv, "op": "kick", "users": []string{"bob"}})
			bob.untilEvent("member.kicked")
			alice.ok(map[string]any{"type": "group", "conv": conv, "op": "dissolve"})
			carol.untilEvent("group.dissolved")
			wantErrCode(t, carol.call(map[string]any{"type": "send", "conv": conv, "cmid": "c-1", "body": "x"}), "group_dissolved")

			// The listing carries the profile.
			for _, c := range carol.ok(map[string]any{"type": "convs"}).list("conversations") {
				if c.str("id") == conv && (c.str("kind") != "group" || c.obj("group")["dissolved"] != true) {
					t.Fatalf("carol's listing shows %v", c)
				}
			}
		})
	}
}
