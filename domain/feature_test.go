package domain_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/domain"
)

func TestRecall(t *testing.T) {
	t.Parallel()
	const sentAt = 10_000
	window := domain.DefaultRecallWindow.Milliseconds()
	msg := domain.Message{ID: "m1", Seq: 7, Sender: "mia", ContentType: domain.Text, Body: "oops", ServerMs: sentAt}
	recalled := msg
	recalled.Recalled = true
	system := msg
	system.ContentType = domain.ContentSystem
	cases := []struct {
		name                  string
		target                domain.Message
		actor                 domain.UserID
		actorRole, senderRole domain.Role
		now                   int64
		want                  error
	}{
		{"direct_sender_in_window", msg, "mia", "", "", sentAt + window, nil},
		{"direct_sender_late", msg, "mia", "", "", sentAt + window + 1, domain.ErrRecallWindow},
		{"direct_peer", msg, "bob", "", "", sentAt, domain.ErrForbidden},
		{"group_member_own_in_window", msg, "mia", domain.RoleMember, domain.RoleMember, sentAt + window, nil},
		{"group_member_own_late", msg, "mia", domain.RoleMember, domain.RoleMember, sentAt + window + 1, domain.ErrRecallWindow},
		{"group_admin_own_late", msg, "mia", domain.RoleAdmin, domain.RoleAdmin, sentAt + 100*window, nil},
		{"group_owner_own_late", msg, "mia", domain.RoleOwner, domain.RoleOwner, sentAt + 100*window, nil},
		{"admin_recalls_member_late", msg, "adam", domain.RoleAdmin, domain.RoleMember, sentAt + 100*window, nil},
		{"admin_recalls_sender_who_left", msg, "adam", domain.RoleAdmin, "", sentAt + 100*window, nil},
		{"admin_recalls_admin", msg, "adam", domain.RoleAdmin, domain.RoleAdmin, sentAt, domain.ErrForbidden},
		{"owner_recalls_admin", msg, "olga", domain.RoleOwner, domain.RoleAdmin, sentAt + 100*window, nil},
		{"member_recalls_member", msg, "otto", domain.RoleMember, domain.RoleMember, sentAt, domain.ErrForbidden},
		{"twice", recalled, "mia", "", "", sentAt, domain.ErrRecalled},
		{"system_event", system, "mia", domain.RoleOwner, domain.RoleMember, sentAt, domain.ErrNotRecallable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ev, err := domain.Recall(c.target, c.actor, c.actorRole, c.senderRole, c.now, 0)
			if c.want != nil {
				if !errors.Is(err, c.want) || ev.Type != "" {
					t.Fatalf("Recall = %+v, %v; want %v", ev, err, c.want)
				}
				return
			}
			want := domain.SystemEvent{Type: domain.EventRecalled, Actor: c.actor, Target: 7}
			if err != nil || !reflect.DeepEqual(ev, want) {
				t.Fatalf("Recall = %+v, %v; want %+v", ev, err, want)
			}
		})
	}
	var we *domain.WindowError
	if _, err := domain.Recall(msg, "mia", "", "", sentAt+60_001, time.Minute); !errors.As(err, &we) || we.Window != time.Minute {
		t.Fatalf("late recall: %v does not carry the window", err)
	}
}

func TestEdit(t *testing.T) {
	t.Parallel()
	const sentAt = 10_000
	window := domain.DefaultEditWindow.Milliseconds()
	msg := domain.Message{ID: "m1", Seq: 7, Sender: "mia", ContentType: domain.Text, Body: "helo", ServerMs: sentAt}
	recalled := msg
	recalled.Recalled = true
	cases := []struct {
		name   string
		target domain.Message
		actor  domain.UserID
		ctype  domain.ContentType
		body   string
		now    int64
		want   error
	}{
		{"sender_in_window", msg, "mia", domain.Text, "hello", sentAt + window, nil},
		{"to_json", msg, "mia", domain.JSON, `{"t":"hello"}`, sentAt, nil},
		{"late", msg, "mia", domain.Text, "hello", sentAt + window + 1, domain.ErrEditWindow},
		{"someone_else", msg, "olga", domain.Text, "hello", sentAt, domain.ErrNotEditable},
		{"recalled", recalled, "mia", domain.Text, "hello", sentAt, domain.ErrRecalled},
		{"empty_body", msg, "mia", domain.Text, "", sentAt, domain.ErrEmptyBody},
		{"body_too_large", msg, "mia", domain.Text, strings.Repeat("x", 101), sentAt, domain.ErrBodyTooLarge},
		{"bad_json", msg, "mia", domain.JSON, "{", sentAt, domain.ErrInvalidJSONBody},
		{"to_system", msg, "mia", domain.ContentSystem, "{}", sentAt, domain.ErrUnknownContentType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ev, err := domain.Edit(c.target, c.actor, c.ctype, c.body, 100, c.now, 0)
			if c.want != nil {
				if !errors.Is(err, c.want) || ev.Type != "" {
					t.Fatalf("Edit = %+v, %v; want %v", ev, err, c.want)
				}
				return
			}
			want := domain.SystemEvent{Type: domain.EventEdited, Actor: "mia", Target: 7, ContentType: c.ctype, Body: c.body}
			if err != nil || !reflect.DeepEqual(ev, want) {
				t.Fatalf("Edit = %+v, %v; want %+v", ev, err, want)
			}
		})
	}
}

// TestHistoryAfterRecallAndEdit: what a client reads in history once the
// events are applied to the stored message.
func TestHistoryAfterRecallAndEdit(t *testing.T) {
	t.Parallel()
	msg := domain.Message{Seq: 7, Sender: "mia", ContentType: domain.Text, Body: "hi @bob", Mentions: []domain.UserID{"bob"}, ReplyTo: 3}
	edit := domain.SystemEvent{Type: domain.EventEdited, Actor: "mia", Target: 7, ContentType: domain.Text, Body: "hi @bob!"}
	recall := domain.SystemEvent{Type: domain.EventRecalled, Actor: "mia", Target: 7}

	edited := msg.Apply(edit)
	if edited.Body != "hi @bob!" || !edited.Edited || edited.Recalled || msg.Body != "hi @bob" {
		t.Fatalf("edited = %+v (original %+v)", edited, msg)
	}
	if other := msg.Apply(domain.SystemEvent{Type: domain.EventEdited, Target: 8, Body: "x"}); !reflect.DeepEqual(other, msg) {
		t.Fatalf("an edit of seq 8 changed seq 7: %+v", other)
	}
	gone := edited.Apply(recall)
	if gone.Body != "" || gone.Mentions != nil || !gone.Recalled || gone.Seq != 7 || gone.Sender != "mia" || gone.ReplyTo != 3 {
		t.Fatalf("tombstone = %+v", gone)
	}
	if late := gone.Apply(edit); !reflect.DeepEqual(late, gone) {
		t.Fatalf("an edit after the recall revived the message: %+v", late)
	}
	b, err := json.Marshal(gone)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"","conv":"","seq":7,"from":"mia","cmid":"","ctype":"text","body":"","ts":0,"reply_to":3,"edited":true,"recalled":true}`; string(b) != want {
		t.Fatalf("tombstone JSON\n got %s\nwant %s", b, want)
	}
}

func TestMessageJSONCompatibility(t *testing.T) {
	t.Parallel()
	// A message stored before replies, mentions, edits and recalls.
	old := `{"id":"m1","conv":"d:a~b","seq":3,"from":"a","cmid":"c1","ctype":"text","body":"hi","ts":5}`
	var m domain.Message
	if err := json.Unmarshal([]byte(old), &m); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(m)
	if err != nil || string(b) != old {
		t.Fatalf("old message re-encodes as %s, %v", b, err)
	}
}

func TestDraftFeatures(t *testing.T) {
	t.Parallel()
	ok := domain.Draft{Conv: "g:team", Sender: "a", ClientMsgID: "c1", ContentType: domain.Text, Body: "hi"}
	fifty := make([]domain.UserID, domain.MaxMentions)
	for i := range fifty {
		fifty[i] = domain.UserID("u" + strings.Repeat("x", i))
	}
	cases := []struct {
		name string
		edit func(*domain.Draft)
		want error
	}{
		{"mentions", func(d *domain.Draft) { d.Mentions = []domain.UserID{"bob", "carol"} }, nil},
		{"mentions_at_limit", func(d *domain.Draft) { d.Mentions = fifty }, nil},
		{"mentions_over_limit", func(d *domain.Draft) { d.Mentions = append(slices.Clone(fifty), "z") }, domain.ErrInvalidMention},
		{"mention_bad_id", func(d *domain.Draft) { d.Mentions = []domain.UserID{"b b"} }, domain.ErrInvalidMention},
		{"mention_twice", func(d *domain.Draft) { d.Mentions = []domain.UserID{"bob", "bob"} }, domain.ErrInvalidMention},
		{"system_content", func(d *domain.Draft) { d.ContentType, d.Body = domain.ContentSystem, `{"type":"group.dissolved"}` }, domain.ErrUnknownContentType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := ok
			c.edit(&d)
			if err := d.Validate(100); c.want == nil && err != nil || !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
		})
	}
	if _, err := domain.ParseContentType("system"); !errors.Is(err, domain.ErrUnknownContentType) {
		t.Fatalf("a client may send system content: %v", err)
	}

	d := ok
	d.ReplyTo = 9
	if err := d.ValidateReply(9); err != nil {
		t.Fatalf("reply to the newest message: %v", err)
	}
	if err := d.ValidateReply(8); !errors.Is(err, domain.ErrInvalidReply) {
		t.Fatalf("reply to a seq not written yet: %v", err)
	}
	d.Mentions, d.MentionAll = []domain.UserID{"bob"}, true
	m := d.Accept(10, 1)
	if m.ReplyTo != 9 || !slices.Equal(m.Mentions, []domain.UserID{"bob"}) || !m.MentionAll || m.Edited || m.Recalled {
		t.Fatalf("accepted %+v", m)
	}
}

func TestParseMentions(t *testing.T) {
	t.Parallel()
	users, all, err := domain.ParseMentions([]string{"bob", "@all", "carol", "bob"})
	if err != nil || !all || !slices.Equal(users, []domain.UserID{"bob", "carol"}) {
		t.Fatalf("ParseMentions = %v, %v, %v", users, all, err)
	}
	if users, all, err := domain.ParseMentions(nil); err != nil || all || users != nil {
		t.Fatalf("no mentions = %v, %v, %v", users, all, err)
	}
	for _, in := range [][]string{{"b b"}, {""}, slices.Repeat([]string{"x"}, domain.MaxMentions+1)} {
		if _, _, err := domain.ParseMentions(in); !errors.Is(err, domain.ErrInvalidMention) {
			t.Errorf("ParseMentions(%q) = %v, want ErrInvalidMention", in, err)
		}
	}
}

func TestTyping(t *testing.T) {
	t.Parallel()
	if err := (domain.Typing{Conv: "g:team", User: "mia", Active: true}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, ty := range []domain.Typing{{Conv: "team", User: "mia"}, {Conv: "g:team", User: ""}} {
		if err := ty.Validate(); !errors.Is(err, domain.ErrInvalidTyping) {
			t.Errorf("%+v: %v, want ErrInvalidTyping", ty, err)
		}
	}
}
