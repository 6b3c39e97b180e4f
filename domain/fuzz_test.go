package domain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parley-im/parley/domain"
)

// FuzzParseConversationID: any input either parses into an id that
// round-trips and whose kind its prefix names, with members exactly for a
// direct id, or fails with ErrInvalidConversationID; never a panic.
func FuzzParseConversationID(f *testing.F) {
	for _, s := range []string{
		"d:alice~bob", "d:bob~alice", "d:~", "d:a~a", "", "d:", "x:a~b", "d:a~b~c", "d:\xff~b",
		"g:abc", "g:", "g:a~b", "g:" + strings.Repeat("k", 65), "s:shop~alice", "s:alice~alice", "s:shop", "s:~",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, members, err := domain.ParseConversationID(s)
		if err != nil {
			if !errors.Is(err, domain.ErrInvalidConversationID) {
				t.Fatalf("error %v is not ErrInvalidConversationID", err)
			}
			return
		}
		if string(id) != s {
			t.Fatalf("%q parsed to %s", s, id)
		}
		switch id.Kind() {
		case domain.Direct:
			if len(members) != 2 || domain.DirectConversationID(members[0], members[1]) != id {
				t.Fatalf("%q parsed to %s %v, which does not round-trip", s, id, members)
			}
		case domain.Group:
			if members != nil || len(s) > 2+domain.MaxGroupKeyLen {
				t.Fatalf("group id %q parsed with members %v", s, members)
			}
		case domain.Service:
			shop, customer, ok := id.ServiceParties()
			if members != nil || !ok || shop == customer || domain.ServiceConversationID(shop, customer) != id {
				t.Fatalf("service id %q parsed to %v %q %q", s, members, shop, customer)
			}
		default:
			t.Fatalf("%q accepted with no kind", s)
		}
	})
}

// FuzzDraftValidate: validation never panics, and what it accepts obeys
// the limits.
func FuzzDraftValidate(f *testing.F) {
	f.Add("c1", "text", "hello")
	f.Add("c2", "json", `{"a":[1,2]}`)
	f.Add("", "video", "")
	f.Add("c 3", "json", "{")
	f.Fuzz(func(t *testing.T, cmid, ctype, body string) {
		ct, err := domain.ParseContentType(ctype)
		if err != nil {
			return
		}
		d := domain.Draft{Conv: "d:a~b", Sender: "a", ClientMsgID: cmid, ContentType: ct, Body: body}
		if d.Validate(1024) == nil && (len(body) == 0 || len(body) > 1024 || len(cmid) == 0 || len(cmid) > 64) {
			t.Fatalf("accepted cmid %q body of %d bytes", cmid, len(body))
		}
	})
}

// FuzzParseExt: ext is accepted only as a JSON object within the limit, and
// what is accepted is compact and decodes to the same object.
func FuzzParseExt(f *testing.F) {
	for _, s := range []string{"", "{}", `{"a":1}`, ` { "a" : [1, {"b": null}] } `, "[]", "null", "{", `{"a":1}{}`, "\"\xff\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw, err := domain.ParseExt(s)
		if err != nil {
			if !errors.Is(err, domain.ErrInvalidExt) {
				t.Fatalf("error %v is not ErrInvalidExt", err)
			}
			return
		}
		if s == "" {
			if raw != nil {
				t.Fatalf("empty ext gave %q", raw)
			}
			return
		}
		if len(s) > domain.MaxExtBytes || len(raw) > len(s) {
			t.Fatalf("accepted %d bytes as %d", len(s), len(raw))
		}
		// Numbers as written: JSON allows numbers no float64 holds.
		decode := func(b []byte) (map[string]any, error) {
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			var m map[string]any
			return m, d.Decode(&m)
		}
		in, ierr := decode([]byte(s))
		out, oerr := decode(raw)
		if ierr != nil || oerr != nil || !reflect.DeepEqual(in, out) {
			t.Fatalf("%q compacted to %q, a different object (%v, %v)", s, raw, ierr, oerr)
		}
		again, err := domain.ParseExt(string(raw))
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("compacted ext %q does not parse to itself: %q, %v", raw, again, err)
		}
	})
}

// FuzzParseMentions: a comma-separated list either parses into at most
// MaxMentions distinct valid users or fails with ErrInvalidMention.
func FuzzParseMentions(f *testing.F) {
	for _, s := range []string{"bob", "bob,@all,carol,bob", "", ",", "b b", "@all", strings.Repeat("x,", 51)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		users, all, err := domain.ParseMentions(strings.Split(s, ","))
		if err != nil {
			if !errors.Is(err, domain.ErrInvalidMention) {
				t.Fatalf("error %v is not ErrInvalidMention", err)
			}
			return
		}
		if len(users) > domain.MaxMentions || all != strings.Contains(","+s+",", ",@all,") {
			t.Fatalf("%q parsed to %d users, all=%v", s, len(users), all)
		}
		for i, u := range users {
			if _, err := domain.ParseUserID(string(u)); err != nil || slices.Contains(users[:i], u) {
				t.Fatalf("%q parsed to %v", s, users)
			}
		}
		d := domain.Draft{Conv: "g:x", Sender: "a", ClientMsgID: "c", ContentType: domain.Text, Body: "hi", Mentions: users, MentionAll: all}
		if err := d.Validate(100); err != nil {
			t.Fatalf("parsed mentions %v fail Validate: %v", users, err)
		}
	})
}

// FuzzParseGroupProfile: names and notices are accepted only within their
// limits, as valid UTF-8, and a parsed name parses to itself.
func FuzzParseGroupProfile(f *testing.F) {
	for _, s := range []string{"team", "  team  ", "", "a\nb", "\xff", strings.Repeat("é", 64), strings.Repeat("é", 65), "\u200b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if name, err := domain.ParseGroupName(s); err == nil {
			if n := utf8.RuneCountInString(name); n == 0 || n > domain.MaxGroupNameRunes || !utf8.ValidString(name) {
				t.Fatalf("accepted name %q", name)
			}
			if again, err := domain.ParseGroupName(name); err != nil || again != name {
				t.Fatalf("name %q parses to %q, %v", name, again, err)
			}
		} else if !errors.Is(err, domain.ErrInvalidName) {
			t.Fatalf("error %v is not ErrInvalidName", err)
		}
		if notice, err := domain.ParseNotice(s); err == nil {
			if notice != s || len(s) > domain.MaxNoticeBytes || !utf8.ValidString(s) {
				t.Fatalf("accepted notice %q", s)
			}
		} else if !errors.Is(err, domain.ErrInvalidNotice) {
			t.Fatalf("error %v is not ErrInvalidNotice", err)
		}
	})
}

// FuzzParseSystemEvent: any body either fails with ErrInvalidEvent or
// decodes to an event that encodes and decodes to itself.
func FuzzParseSystemEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"group.created","actor":"olga","users":["adam"],"name":"Ops","policy":"open"}`,
		`{"type":"group.ext","ext":{"a":[1]}}`, `{"type":"message.edited","target":4,"ctype":"text","body":"x"}`,
		"{}", "", "null", `{"type":"x","until":-1}`, `{"type":"x","target":-1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ev, err := domain.ParseSystemEvent(s)
		if err != nil {
			if !errors.Is(err, domain.ErrInvalidEvent) {
				t.Fatalf("error %v is not ErrInvalidEvent", err)
			}
			return
		}
		m, err := ev.Message("g:x", 1, 0)
		if err != nil {
			t.Fatalf("decoded event %+v does not encode: %v", ev, err)
		}
		back, err := domain.ParseSystemEvent(m.Body)
		if err != nil {
			t.Fatalf("%s does not decode again: %v", m.Body, err)
		}
		again, _ := back.Message("g:x", 1, 0)
		if again.Body != m.Body {
			t.Fatalf("event does not round-trip:\n%s\n%s", m.Body, again.Body)
		}
	})
}

// FuzzMemberWindow: for any record, the unread count fits in the visible
// window, and CanRead agrees with VisibleRange.
func FuzzMemberWindow(f *testing.F) {
	f.Add(uint64(5), uint64(0), uint64(7), uint64(6), uint64(9), false, uint64(6))
	f.Add(uint64(5), uint64(8), uint64(0), uint64(0), uint64(20), true, uint64(9))
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), false, uint64(0))
	f.Fuzz(func(t *testing.T, joined, left, read, sent, last uint64, history bool, seq uint64) {
		if left != 0 && left < joined {
			return // the ceiling is an event after the join
		}
		m := domain.Member{User: "u", Role: domain.RoleMember, JoinedSeq: joined, LeftSeq: left, ReadSeq: read, LastSentSeq: sent, SeesHistory: history}
		from, to := m.VisibleRange(last)
		if u := m.Unread(last); u > 0 && (to < from || u > to-from+1) {
			t.Fatalf("%+v at last %d: unread %d outside [%d, %d]", m, last, u, from, to)
		}
		if seq <= last && seq >= 1 && m.CanRead(seq) != (seq >= from && seq <= to) {
			t.Fatalf("%+v at last %d: CanRead(%d) = %v, range [%d, %d]", m, last, seq, m.CanRead(seq), from, to)
		}
	})
}
