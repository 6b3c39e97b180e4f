package domain_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/parley-im/parley/domain"
)

func TestParseUserID(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"plain", "alice", true},
		{"email_like", "a.b-c_d@example.com", true},
		{"empty", "", false},
		{"space", "bob smith", false},
		{"tilde_would_break_direct_ids", "a~b", false},
		{"colon", "a:b", false},
		{"max_length", strings.Repeat("a", 64), true},
		{"too_long", strings.Repeat("a", 65), false},
		{"unicode", "zoë", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := domain.ParseUserID(c.in)
			if (err == nil) != c.ok {
				t.Fatalf("ParseUserID(%q) = %v, want ok=%v", c.in, err, c.ok)
			}
			if err != nil && !errors.Is(err, domain.ErrInvalidUserID) {
				t.Fatalf("error %v is not ErrInvalidUserID", err)
			}
		})
	}
}

func TestDirectConversation(t *testing.T) {
	t.Parallel()
	ab, err := domain.NewDirectConversation("bob", "alice", 1)
	if err != nil {
		t.Fatal(err)
	}
	if ab.ID != "d:alice~bob" || domain.DirectConversationID("alice", "bob") != ab.ID {
		t.Fatalf("direct id = %s, want d:alice~bob from either side", ab.ID)
	}
	if !ab.IsMember("alice") || !ab.IsMember("bob") || ab.IsMember("carol") {
		t.Fatalf("members = %v", ab.Members)
	}
	if err := ab.Authorize("carol"); !errors.Is(err, domain.ErrNotMember) {
		t.Fatalf("carol authorised: %v", err)
	}
	if _, err := domain.NewDirectConversation("alice", "alice", 1); !errors.Is(err, domain.ErrSendToSelf) {
		t.Fatalf("conversation with oneself: %v, want ErrSendToSelf", err)
	}
}

func TestParseConversationID(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		ok       bool
	}{
		{"direct", "d:alice~bob", true},
		{"unordered", "d:bob~alice", false},
		{"same_user", "d:alice~alice", false},
		{"no_prefix", "alice~bob", false},
		{"one_user", "d:alice", false},
		{"bad_user", "d:al ice~bob", false},
		{"empty", "", false},
		{"too_long", "d:" + strings.Repeat("a", 200) + "~b", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			id, members, err := domain.ParseConversationID(c.in)
			if (err == nil) != c.ok {
				t.Fatalf("ParseConversationID(%q) = %v, want ok=%v", c.in, err, c.ok)
			}
			if err != nil {
				if !errors.Is(err, domain.ErrInvalidConversationID) {
					t.Fatalf("error %v is not ErrInvalidConversationID", err)
				}
				return
			}
			if string(id) != c.in || len(members) != 2 || domain.DirectConversationID(members[0], members[1]) != id {
				t.Fatalf("parsed %q as %s %v", c.in, id, members)
			}
		})
	}
}

func TestDraftValidate(t *testing.T) {
	t.Parallel()
	ok := domain.Draft{Conv: "d:a~b", Sender: "a", ClientMsgID: "c1", ContentType: domain.Text, Body: "hi"}
	cases := []struct {
		name string
		edit func(*domain.Draft)
		want error
	}{
		{"valid_text", func(*domain.Draft) {}, nil},
		{"valid_json", func(d *domain.Draft) { d.ContentType, d.Body = domain.JSON, `{"card":1}` }, nil},
		{"empty_body", func(d *domain.Draft) { d.Body = "" }, domain.ErrEmptyBody},
		{"body_at_limit", func(d *domain.Draft) { d.Body = strings.Repeat("x", 100) }, nil},
		{"body_over_limit", func(d *domain.Draft) { d.Body = strings.Repeat("x", 101) }, domain.ErrBodyTooLarge},
		{"bad_json", func(d *domain.Draft) { d.ContentType, d.Body = domain.JSON, "{" }, domain.ErrInvalidJSONBody},
		{"unknown_type", func(d *domain.Draft) { d.ContentType = "video" }, domain.ErrUnknownContentType},
		{"bad_utf8", func(d *domain.Draft) { d.Body = "\xff\xfe" }, domain.ErrInvalidUTF8},
		{"no_cmid", func(d *domain.Draft) { d.ClientMsgID = "" }, domain.ErrInvalidClientMsgID},
		{"cmid_with_space", func(d *domain.Draft) { d.ClientMsgID = "a b" }, domain.ErrInvalidClientMsgID},
		{"cmid_too_long", func(d *domain.Draft) { d.ClientMsgID = strings.Repeat("c", 65) }, domain.ErrInvalidClientMsgID},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := ok
			c.edit(&d)
			err := d.Validate(100)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
		})
	}
	var tooLarge *domain.BodyTooLargeError
	d := ok
	d.Body = strings.Repeat("x", 101)
	if err := d.Validate(100); !errors.As(err, &tooLarge) || tooLarge.Size != 101 || tooLarge.Limit != 100 {
		t.Fatalf("oversize error %v does not carry size and limit", err)
	}
}

func TestMessageIDIsStablePerSenderAndCmid(t *testing.T) {
	t.Parallel()
	a := domain.MessageID("alice", "c1")
	if a != domain.MessageID("alice", "c1") {
		t.Fatal("same sender and cmid gave different ids")
	}
	if a == domain.MessageID("alice", "c2") || a == domain.MessageID("bob", "c1") || domain.MessageID("a", "bc") == domain.MessageID("ab", "c") {
		t.Fatal("different sends share an id")
	} // Ids are stored: the derivation must never change.
	for _, c := range []struct{ sender, cmid, id string }{
		{"alice", "c1", "m55O74IB2HLFHD75GVNL7LYZDV"},
		{"bob", "x-123456789", "mI2XFEDJTC55NHW6WKIY5DM4UR"},
		{"", "", "mNY2AXHH7WN5JRHFFITTLW6AKF"},
		{"u\x00", "é", "mY6A2PSUJXWYDSNJYXK5FE7AX5"},
		// Longer than the stack buffer.
		{strings.Repeat("s", 64), strings.Repeat("c", 200), "m5XNIM35GZ5MSFYMVRUZQ5TPJT"},
	} {
		if got := domain.MessageID(domain.UserID(c.sender), c.cmid); got != c.id {
			t.Errorf("MessageID(%q, %q) = %s, want %s", c.sender, c.cmid, got, c.id)
		}
	}
}
