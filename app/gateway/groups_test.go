package gateway

import (
	stdjson "encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// frame is a decoded JSON frame.
type frame map[string]any

func (f frame) str(k string) string {
	s, _ := f[k].(string)
	return s
}

func (f frame) num(k string) uint64 {
	n, _ := f[k].(float64)
	return uint64(n)
}

func (f frame) obj(k string) frame {
	m, _ := f[k].(map[string]any)
	return frame(m)
}

// sendFrame writes v as a JSON text frame.
func sendFrame(t *testing.T, ws *websocket.Conn, v any) {
	t.Helper()
	data, err := stdjson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, data); err != nil {
		t.Fatal(err)
	}
}

// next reads frames until one of type typ, skipping others (a device
// answers recv for each msg it skips), failing after 5 s.
func next(t *testing.T, ws *websocket.Conn, typ string) frame {
	t.Helper()
	for {
		var f frame
		if err := stdjson.Unmarshal([]byte(readFrame(t, ws)), &f); err != nil {
			t.Fatal(err)
		}
		if f.str("type") == "msg" {
			m := f.obj("msg")
			sendFrame(t, ws, map[string]any{"type": "recv", "conv": m.str("conv"), "seq": m.num("seq")})
		}
		if f.str("type") == typ {
			return f
		}
	}
}

// answer reads frames until the one answering id.
func answer(t *testing.T, ws *websocket.Conn, id string) frame {
	t.Helper()
	for {
		var f frame
		if err := stdjson.Unmarshal([]byte(readFrame(t, ws)), &f); err != nil {
			t.Fatal(err)
		}
		if f.str("type") == "msg" {
			m := f.obj("msg")
			sendFrame(t, ws, map[string]any{"type": "recv", "conv": m.str("conv"), "seq": m.num("seq")})
		}
		if f.str("id") == id {
			return f
		}
	}
}

var callIDs atomic.Int64

// call sends a frame with an id and returns its answer.
func call(t *testing.T, ws *websocket.Conn, v map[string]any) frame {
	t.Helper()
	id := "r" + itoa(int(callIDs.Add(1)))
	v["id"] = id
	sendFrame(t, ws, v)
	return answer(t, ws, id)
}

// nextMsg reads until a msg frame and returns its message.
func nextMsg(t *testing.T, ws *websocket.Conn) frame {
	t.Helper()
	return next(t, ws, "msg").obj("msg")
}

// nextEvent reads until a system message of event type typ.
func nextEvent(t *testing.T, ws *websocket.Conn, typ string) frame {
	t.Helper()
	for {
		m := nextMsg(t, ws)
		if m.str("ctype") == "system" && event(t, m).str("type") == typ {
			return event(t, m)
		}
	}
}

// event decodes a system message's body.
func event(t *testing.T, m frame) frame {
	t.Helper()
	if m.str("ctype") != "system" {
		t.Fatalf("want a system message, got %v", m)
	}
	var e frame
	if err := stdjson.Unmarshal([]byte(m.str("body")), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func wantCode(t *testing.T, f frame, code string) {
	t.Helper()
	if f.str("type") != "error" || f.str("code") != code {
		t.Fatalf("want error %s, got %v", code, f)
	}
}

// TestGroupLifecycleOverWebSocket: a group made over WebSocket reaches its
// members as events; replies, mentions, edits and recalls reach them as a
// member sees them; a kicked member keeps what came before and is told no
// more.
func TestGroupLifecycleOverWebSocket(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	alice, bob, carol := e.dial("alice"), e.dial("bob"), e.dial("carol")

	res := call(t, alice, map[string]any{"type": "group_create", "name": "team", "users": []string{"bob"}, "policy": "approval", "cmid": "g1"})
	if res.str("type") != "group_result" || res.obj("group").str("name") != "team" || res.obj("group").num("count") != 2 {
		t.Fatalf("group_create answered %v", res)
	}
	conv := res.str("conv")
	if !strings.HasPrefix(conv, "g:") || res.obj("msg").num("seq") != 1 {
		t.Fatalf("group_create answered %v", res)
	}
	if ev := event(t, nextMsg(t, bob)); ev.str("type") != "group.created" || ev.str("actor") != "alice" {
		t.Fatalf("bob saw %v", ev)
	}
	// A retry with the same cmid finds the same group.
	if again := call(t, alice, map[string]any{"type": "group_create", "name": "team", "users": []string{"bob"}, "cmid": "g1"}); again.str("conv") != conv {
		t.Fatalf("retry made %v, want %s", again, conv)
	}

	// Bob sends, Alice replies mentioning him.
	ack := call(t, bob, map[string]any{"type": "send", "conv": conv, "cmid": "b1", "body": "hello"})
	bobSeq := ack.obj("msg").num("seq")
	if ack.str("type") != "ack" || bobSeq != 2 {
		t.Fatalf("bob's send answered %v", ack)
	}
	if m := nextMsg(t, alice); m.str("body") != "hello" {
		t.Fatalf("alice saw %v", m)
	}
	call(t, alice, map[string]any{"type": "send", "conv": conv, "cmid": "a1", "body": "hi @bob", "reply_to": bobSeq, "mentions": []string{"bob"}})
	m := nextMsg(t, bob)
	if m.num("reply_to") != bobSeq || len(m["mentions"].([]any)) != 1 || m["mentions"].([]any)[0] != "bob" {
		t.Fatalf("bob saw %v, want a reply to %d mentioning him", m, bobSeq)
	}
	wantCode(t, call(t, bob, map[string]any{"type": "send", "conv": conv, "cmid": "b2", "body": "x", "mentions": []string{"@all"}}), CodeForbidden)
	wantCode(t, call(t, bob, map[string]any{"type": "send", "conv": conv, "cmid": "b3", "body": "x", "reply_to": 99}), CodeInvalidReply)

	// Bob edits, then recalls his message.
	ed := call(t, bob, map[string]any{"type": "edit", "conv": conv, "seq": bobSeq, "body": "hello all", "cmid": "e1"})
	if ed.str("type") != "ack" || event(t, ed.obj("msg")).str("type") != "message.edited" {
		t.Fatalf("edit answered %v", ed)
	}
	if ev := event(t, nextMsg(t, alice)); ev.str("type") != "message.edited" || uint64(ev["target"].(float64)) != bobSeq {
		t.Fatalf("alice saw %v", ev)
	}
	rc := call(t, bob, map[string]any{"type": "recall", "conv": conv, "seq": bobSeq})
	if rc.str("type") != "ack" || event(t, rc.obj("msg")).str("type") != "message.recalled" {
		t.Fatalf("recall answered %v", rc)
	}
	if ev := event(t, nextMsg(t, alice)); ev.str("type") != "message.recalled" {
		t.Fatalf("alice saw %v", ev)
	}
	wantCode(t, call(t, bob, map[string]any{"type": "edit", "conv": conv, "seq": bobSeq, "body": "again"}), CodeRecalled)
	page := call(t, alice, map[string]any{"type": "sync", "conv": conv})
	msgs := page["messages"].([]any)
	if got := frame(msgs[bobSeq-1].(map[string]any)); got["recalled"] != true || got.str("body") != "" {
		t.Fatalf("history shows %v, want a tombstone", got)
	}

	// Carol asks to join; Alice is told, lists, approves.
	jr := call(t, carol, map[string]any{"type": "group", "conv": conv, "op": "join", "note": "let me in"})
	if jr.str("type") != "group_result" || jr["msg"] != nil {
		t.Fatalf("join request answered %v", jr)
	}
	if n := next(t, alice, "join_requested"); n.str("user") != "carol" || n.str("note") != "let me in" || n.str("conv") != conv {
		t.Fatalf("alice was told %v", n)
	}
	reqs := call(t, alice, map[string]any{"type": "group", "conv": conv, "op": "requests"})
	if rs, _ := reqs["requests"].([]any); len(rs) != 1 || frame(rs[0].(map[string]any)).str("user") != "carol" {
		t.Fatalf("requests answered %v", reqs)
	}
	wantCode(t, call(t, bob, map[string]any{"type": "group", "conv": conv, "op": "approve", "users": []string{"carol"}}), CodeForbidden)
	ap := call(t, alice, map[string]any{"type": "group", "conv": conv, "op": "approve", "users": []string{"carol"}})
	if event(t, ap.obj("msg")).str("type") != "member.joined" || ap.obj("group").num("count") != 3 {
		t.Fatalf("approve answered %v", ap)
	}
	// History was hidden when she joined: her floor is the join event.
	floor := call(t, carol, map[string]any{"type": "sync", "conv": conv})
	if first := frame(floor["messages"].([]any)[0].(map[string]any)); first.num("seq") != ap.obj("msg").num("seq") {
		t.Fatalf("carol's history starts at %v, want her join", first)
	}

	// Alice kicks Bob; he sees it, and no longer what follows.
	call(t, alice, map[string]any{"type": "group", "conv": conv, "op": "kick", "users": []string{"bob"}})
	nextEvent(t, bob, "member.kicked")
	after := call(t, alice, map[string]any{"type": "send", "conv": conv, "cmid": "a2", "body": "after"})
	wantCode(t, call(t, bob, map[string]any{"type": "send", "conv": conv, "cmid": "b4", "body": "x"}), CodeNotMember)
	ceil := call(t, bob, map[string]any{"type": "sync", "conv": conv})
	for _, x := range ceil["messages"].([]any) {
		if frame(x.(map[string]any)).num("seq") >= after.obj("msg").num("seq") {
			t.Fatalf("bob reads past his ceiling: %v", x)
		}
	}

	// Listings carry the profile.
	convs := call(t, carol, map[string]any{"type": "convs"})
	c0 := frame(convs["conversations"].([]any)[0].(map[string]any))
	if c0.str("kind") != "group" || c0.obj("group").str("name") != "team" {
		t.Fatalf("carol's listing %v", c0)
	}

	// The owner cannot leave; dissolving ends the group.
	wantCode(t, call(t, alice, map[string]any{"type": "group", "conv": conv, "op": "leave"}), CodeOwnerCannotLeave)
	call(t, alice, map[string]any{"type": "group", "conv": conv, "op": "dissolve"})
	wantCode(t, call(t, carol, map[string]any{"type": "send", "conv": conv, "cmid": "c1", "body": "x"}), CodeGroupDissolved)
}

// TestGroupFramesRefuseBadInput: each bound and each domain refusal has
// its code.
func TestGroupFramesRefuseBadInput(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	alice := e.dial("alice")
	conv := call(t, alice, map[string]any{"type": "group_create", "name": "g", "users": []string{"bob"}}).str("conv")
	many := make([]string, 501)
	for i := range many {
		many[i] = "u" + itoa(i)
	}
	mentions := make([]string, 51)
	for i := range mentions {
		mentions[i] = "u" + itoa(i)
	}
	cases := []struct {
		name  string
		frame map[string]any
		code  string
	}{
		{"too_many_members", map[string]any{"type": "group_create", "name": "g", "users": many}, CodeTooManyMembers},
		{"invalid_name", map[string]any{"type": "group_create", "name": ""}, CodeInvalidName},
		{"long_name", map[string]any{"type": "group_create", "name": strings.Repeat("n", 300)}, CodeInvalidName},
		{"invalid_ext", map[string]any{"type": "group_create", "name": "g", "ext": "[1]"}, CodeInvalidExt},
		{"unknown_join_policy", map[string]any{"type": "group_create", "name": "g", "policy": "maybe"}, CodeUnknownJoinPolicy},
		{"unknown_group_op", map[string]any{"type": "group", "conv": conv, "op": "explode"}, CodeUnknownGroupOp},
		{"unknown_role", map[string]any{"type": "group", "conv": conv, "op": "set_role", "users": []string{"bob"}, "role": "king"}, CodeUnknownRole},
		{"already_member", map[string]any{"type": "group", "conv": conv, "op": "invite", "users": []string{"bob"}}, CodeAlreadyMember},
		{"invalid_mute_time", map[string]any{"type": "group", "conv": conv, "op": "mute", "users": []string{"bob"}, "until": 1}, CodeInvalidMuteTime},
		{"no_change", map[string]any{"type": "group", "conv": conv, "op": "mute_all", "on": false}, CodeNoChange},
		{"not_a_group", map[string]any{"type": "group", "conv": "d:alice~bob", "op": "leave"}, CodeInvalidConv},
		{"invalid_mention", map[string]any{"type": "send", "conv": conv, "cmid": "m", "body": "x", "mentions": mentions}, CodeInvalidMention},
		{"invalid_typing", map[string]any{"type": "typing", "conv": "nonsense", "on": true}, CodeInvalidTyping},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, call(t, alice, tc.frame), tc.code)
		})
	}
	// A cmid of one send reused for another body.
	call(t, alice, map[string]any{"type": "send", "conv": conv, "cmid": "same", "body": "one"})
	wantCode(t, call(t, alice, map[string]any{"type": "send", "conv": conv, "cmid": "same", "body": "two"}), CodeCmidReused)
}

// TestMutedMemberIsToldUntilWhen: a muted member's send gets muted with
// the end time in until.
func TestMutedMemberIsToldUntilWhen(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	alice, bob := e.dial("alice"), e.dial("bob")
	conv := call(t, alice, map[string]any{"type": "group_create", "name": "g", "users": []string{"bob"}}).str("conv")
	until := time.Now().Add(time.Hour).UnixMilli()
	call(t, alice, map[string]any{"type": "group", "conv": conv, "op": "mute", "users": []string{"bob"}, "until": until})
	f := call(t, bob, map[string]any{"type": "send", "conv": conv, "cmid": "b", "body": "x"})
	wantCode(t, f, CodeMuted)
	if int64(f["until"].(float64)) != until {
		t.Fatalf("muted error %v, want until %d", f, until)
	}
}

// TestTypingReachesTheOtherMember: a typing notice reaches the peer as
// typing with on; a repeat within the interval is dropped without an
// error; a stop always passes.
func TestTypingReachesTheOtherMember(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	alice, bob := e.dial("alice"), e.dial("bob")
	sendFrame(t, alice, map[string]any{"type": "typing", "conv": "d:alice~bob", "on": true})
	if n := next(t, bob, "typing"); n.str("user") != "alice" || n["on"] != true || n.str("conv") != "d:alice~bob" {
		t.Fatalf("bob was told %v", n)
	}
	sendFrame(t, alice, map[string]any{"type": "typing", "conv": "d:alice~bob", "on": true})
	if p := call(t, alice, map[string]any{"type": "ping"}); p.str("type") != "pong" {
		t.Fatalf("a dropped typing notice was answered: %v", p)
	}
	sendFrame(t, alice, map[string]any{"type": "typing", "conv": "d:alice~bob", "on": false})
	if n := next(t, bob, "typing"); n["on"] != nil {
		t.Fatalf("bob was told %v, want a stop (no on)", n)
	}
}

// TestReadByReachesTheSender: in a group, a member's read makes the
// sender's devices get read_by with the count of readers.
func TestReadByReachesTheSender(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	alice, bob := e.dial("alice"), e.dial("bob")
	conv := call(t, alice, map[string]any{"type": "group_create", "name": "g", "users": []string{"bob", "carol"}}).str("conv")
	seq := call(t, alice, map[string]any{"type": "send", "conv": conv, "cmid": "a", "body": "read me"}).obj("msg").num("seq")
	call(t, bob, map[string]any{"type": "read", "conv": conv, "seq": seq})
	n := next(t, alice, "read_by")
	if n.str("conv") != conv || n.num("seq") != seq || n.num("count") != 1 {
		t.Fatalf("alice was told %v, want 1 reader of %d", n, seq)
	}
}

// TestGroupsOverHTTP: the HTTP routes create, change, list requests,
// edit, recall and type, and errors carry retryable even when false.
func TestGroupsOverHTTP(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	post := func(user, path, body string) (int, frame) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.hs.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.token(user))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var f frame
		if err := stdjson.Unmarshal(data, &f); err != nil {
			t.Fatalf("%s: %s", path, data)
		}
		return resp.StatusCode, f
	}
	st, g := post("alice", "/v1/groups", `{"name":"h","users":["bob"],"policy":"open"}`)
	conv := g.str("conv")
	if st != 200 || g.obj("group").str("policy") != "open" || g.obj("msg").num("seq") != 1 {
		t.Fatalf("create: %d %v", st, g)
	}
	if st, j := post("carol", "/v1/groups/"+conv, `{"op":"join"}`); st != 200 || event(t, j.obj("msg")).str("type") != "member.joined" {
		t.Fatalf("join: %d %v", st, j)
	}
	st, f := post("bob", "/v1/groups/"+conv, `{"op":"kick","users":["carol"]}`)
	if st != http.StatusForbidden || f.obj("error").str("code") != CodeForbidden || f.obj("error")["retryable"] != false {
		t.Fatalf("kick by a member: %d %v", st, f)
	}
	_, m := post("bob", "/v1/messages", `{"conv":"`+conv+`","cmid":"b","body":"hey","mentions":["alice"]}`)
	seq := m.num("seq")
	if st, ed := post("bob", "/v1/messages/edit", `{"conv":"`+conv+`","seq":`+itoa(int(seq))+`,"body":"hey!"}`); st != 200 || event(t, ed.obj("msg")).str("type") != "message.edited" {
		t.Fatalf("edit: %d %v", st, ed)
	}
	if st, rc := post("alice", "/v1/messages/recall", `{"conv":"`+conv+`","seq":`+itoa(int(seq))+`}`); st != 200 || event(t, rc.obj("msg")).str("type") != "message.recalled" {
		t.Fatalf("recall by the owner: %d %v", st, rc)
	}
	if st, ty := post("alice", "/v1/typing", `{"conv":"`+conv+`","on":true}`); st != 200 || ty["passed"] != true {
		t.Fatalf("typing: %d %v", st, ty)
	}
	req, _ := http.NewRequest(http.MethodGet, e.hs.URL+"/v1/groups/"+conv+"/requests", nil)
	req.Header.Set("Authorization", "Bearer "+e.token("alice"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(data), `"requests":[]`) {
		t.Fatalf("requests: %d %s", resp.StatusCode, data)
	}
}

// TestLargeGroupPushesNeedNoAck: pushes of a group above
// parley.group_ack_max say no_ack and are not sent again when the device
// does not answer, while a smaller group's are, as direct ones are.
func TestLargeGroupPushesNeedNoAck(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	e.hub.SetGroupAckMax(2)
	if errs := e.live.Update(map[string]string{"parley.ack_timeout_ms": "150", "parley.ack_tries": "100"}); len(errs) > 0 {
		t.Fatal(errs)
	}
	alice, bob := e.dial("alice"), e.dial("bob")
	e.dial("carol")
	small := call(t, alice, map[string]any{"type": "group_create", "name": "two", "users": []string{"bob"}, "cmid": "g-small"}).str("conv")
	large := call(t, alice, map[string]any{"type": "group_create", "name": "three", "users": []string{"bob", "carol"}, "cmid": "g-large"}).str("conv")

	// Bob's frames, read as they come and never answered.
	frames := make(chan frame, 64)
	go func() {
		defer close(frames)
		for {
			_, data, err := bob.ReadMessage()
			if err != nil {
				return
			}
			var f frame
			if err := stdjson.Unmarshal(data, &f); err == nil {
				frames <- f
			}
		}
	}()
	// rawMsgs returns the msg frames of conv that bob gets, once there are
	// two (a push and its resend) or d has passed.
	rawMsgs := func(conv string, d time.Duration) []frame {
		var out []frame
		timeout := time.After(d)
		for len(out) < 2 {
			select {
			case f, ok := <-frames:
				if !ok {
					t.Fatal("bob's connection ended")
				}
				if f.str("type") == "msg" && f.obj("msg").str("conv") == conv && f.obj("msg").str("ctype") != "system" {
					out = append(out, f)
				}
			case <-timeout:
				return out
			}
		}
		return out
	}

	call(t, alice, map[string]any{"type": "send", "conv": large, "cmid": "l1", "body": "to three"})
	got := rawMsgs(large, time.Second)
	if len(got) != 1 || got[0]["no_ack"] != true || got[0].obj("msg").str("body") != "to three" {
		t.Fatalf("a group of 3 above group_ack_max 2: bob got %v, want one push with no_ack and no resend", got)
	}

	call(t, alice, map[string]any{"type": "send", "conv": small, "cmid": "s1", "body": "to two"})
	got = rawMsgs(small, 5*time.Second)
	if len(got) < 2 || got[0]["no_ack"] != nil || got[1].obj("msg").num("seq") != got[0].obj("msg").num("seq") {
		t.Fatalf("a group of 2: bob got %v, want the push without no_ack, sent again when not acknowledged", got)
	}
}
