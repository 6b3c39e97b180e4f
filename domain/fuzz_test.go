package domain_test

import (
	"errors"
	"strings"
	"testing"

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
