package parleyv1

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// FuzzAppendJSON: what AppendJSON writes is valid JSON that a standard
// decoder reads back as the same frame.
func FuzzAppendJSON(f *testing.F) {
	f.Add("msg", "d:alice~bob", "hello \"there\"\n\\ \x01 é 🙂", uint64(7), int64(1700000000000), true)
	f.Add("ack", "", "", uint64(0), int64(0), false)
	f.Add("error", "c\u2028", "bad \xff utf-8", uint64(1<<63), int64(-5), true)
	f.Fuzz(func(t *testing.T, typ, conv, body string, seq uint64, ts int64, more bool) {
		in := &Frame{Type: typ, Id: conv + "1", Conv: conv, Body: body, Seq: seq, More: more, Code: body, User: typ,
			Msg: &Message{Id: typ, Conv: conv, Seq: seq, From: conv, Cmid: typ, Ctype: "text", Body: body, Ts: ts,
				ReplyTo: seq, Mentions: []string{conv, body}, MentionAll: more, Edited: more, Recalled: !more},
			Messages: []*Message{{Id: "a", Body: body}, {Seq: seq}},
			ReplyTo:  seq, Mentions: []string{typ}, Op: typ, Users: []string{conv, typ}, Role: typ, Name: body,
			Notice: body, Ext: body, Policy: conv, On: more, Until: ts, Note: body, Count: seq, Unit: conv, Epoch: seq, Pending: more}
		out, ok := in.AppendJSON(nil)
		if !ok {
			t.Fatal("not encoded")
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("invalid JSON: %q", out)
		}
		var got Frame
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		want := proto.Clone(in).(*Frame)
		fix := func(s *string) { *s = strings.ToValidUTF8(*s, "\uFFFD") }
		for _, s := range []*string{&want.Type, &want.Id, &want.Conv, &want.Body, &want.Code, &want.User,
			&want.Msg.Id, &want.Msg.Conv, &want.Msg.From, &want.Msg.Cmid, &want.Msg.Body, &want.Messages[0].Body,
			&want.Msg.Mentions[0], &want.Msg.Mentions[1], &want.Mentions[0], &want.Op, &want.Users[0], &want.Users[1],
			&want.Role, &want.Name, &want.Notice, &want.Ext, &want.Policy, &want.Note, &want.Unit} {
			fix(s)
		}
		if !proto.Equal(&got, want) {
			t.Fatalf("round trip of %q:\n got %v\nwant %v", out, &got, want)
		}
	})
}
