package domain_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/parley-im/parley/domain"
)

// TestSystemEventJSON pins the wire form of events: clients read it in
// history, so it must never change.
func TestSystemEventJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		ev   domain.SystemEvent
		json string
	}{
		{"created", domain.SystemEvent{Type: domain.EventGroupCreated, Actor: "olga", Users: []domain.UserID{"adam"}, Name: "Ops", Policy: domain.PolicyOpen},
			`{"type":"group.created","actor":"olga","users":["adam"],"name":"Ops","policy":"open"}`},
		{"joined", domain.SystemEvent{Type: domain.EventMemberJoined, Actor: "mia", Users: []domain.UserID{"otto", "ute"}},
			`{"type":"member.joined","actor":"mia","users":["otto","ute"]}`},
		{"left", domain.SystemEvent{Type: domain.EventMemberLeft, Actor: "mia"}, `{"type":"member.left","actor":"mia"}`},
		{"kicked", domain.SystemEvent{Type: domain.EventMemberKicked, Actor: "adam", Users: []domain.UserID{"otto"}},
			`{"type":"member.kicked","actor":"adam","users":["otto"]}`},
		{"role", domain.SystemEvent{Type: domain.EventRoleChanged, Actor: "olga", Users: []domain.UserID{"adam"}, Role: domain.RoleAdmin},
			`{"type":"member.role","actor":"olga","users":["adam"],"role":"admin"}`},
		{"muted", domain.SystemEvent{Type: domain.EventMemberMuted, Actor: "adam", Users: []domain.UserID{"mia"}, UntilMs: 1700000000000},
			`{"type":"member.muted","actor":"adam","users":["mia"],"until":1700000000000}`},
		{"renamed", domain.SystemEvent{Type: domain.EventRenamed, Actor: "adam", Name: "Ops ☕"}, `{"type":"group.renamed","actor":"adam","name":"Ops ☕"}`},
		{"notice", domain.SystemEvent{Type: domain.EventNoticeChanged, Actor: "adam", Notice: "a\nb"}, `{"type":"group.notice","actor":"adam","notice":"a\nb"}`},
		{"ext", domain.SystemEvent{Type: domain.EventExtChanged, Actor: "adam", Ext: json.RawMessage(`{"a":1}`)}, `{"type":"group.ext","actor":"adam","ext":{"a":1}}`},
		{"dissolved", domain.SystemEvent{Type: domain.EventDissolved, Actor: "olga"}, `{"type":"group.dissolved","actor":"olga"}`},
		{"recalled", domain.SystemEvent{Type: domain.EventRecalled, Actor: "mia", Target: 41}, `{"type":"message.recalled","actor":"mia","target":41}`},
		{"edited", domain.SystemEvent{Type: domain.EventEdited, Actor: "mia", Target: 41, ContentType: domain.Text, Body: "fixed"},
			`{"type":"message.edited","actor":"mia","target":41,"ctype":"text","body":"fixed"}`},
		{"agent", domain.SystemEvent{Type: domain.EventAgentAssigned, Actor: "shop", Users: []domain.UserID{"agent7"}},
			`{"type":"service.agent","actor":"shop","users":["agent7"]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m, err := c.ev.Message("g:team", 42, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if m.Body != c.json {
				t.Fatalf("body\n got %s\nwant %s", m.Body, c.json)
			}
			if m.ContentType != domain.ContentSystem || m.Seq != 42 || m.Conv != "g:team" || m.Sender != c.ev.Actor || m.ServerMs != 1000 {
				t.Fatalf("message %+v", m)
			}
			back, err := domain.ParseSystemEvent(m.Body)
			if err != nil || !reflect.DeepEqual(back, c.ev) {
				t.Fatalf("ParseSystemEvent = %+v, %v; want %+v", back, err, c.ev)
			}
		})
	}
}

func TestSystemMessageIDs(t *testing.T) {
	t.Parallel()
	ev := domain.SystemEvent{Type: domain.EventMemberLeft, Actor: "mia"}
	a, _ := ev.Message("g:team", 1, 0)
	b, _ := ev.Message("g:team", 2, 0)
	c, _ := ev.Message("g:other", 1, 0)
	again, _ := ev.Message("g:team", 1, 99)
	if a.ID == b.ID || a.ID == c.ID || a.ID != again.ID || !strings.HasPrefix(a.ID, "m") {
		t.Fatalf("ids %s %s %s %s: want one per conversation and seq", a.ID, b.ID, c.ID, again.ID)
	}
	if _, err := (domain.SystemEvent{Type: domain.EventExtChanged, Ext: json.RawMessage("{")}).Message("g:team", 1, 0); !errors.Is(err, domain.ErrInvalidEvent) {
		t.Fatalf("event with broken ext: %v", err)
	}
}

func TestParseSystemEventRefusals(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"", "{}", "[]", `{"type":1}`, "hello", `{"type":""}`} {
		if _, err := domain.ParseSystemEvent(body); !errors.Is(err, domain.ErrInvalidEvent) {
			t.Errorf("ParseSystemEvent(%q) = %v, want ErrInvalidEvent", body, err)
		}
	}
	// A newer server may add fields and types: an older reader keeps going.
	ev, err := domain.ParseSystemEvent(`{"type":"group.future","actor":"a","later":true}`)
	if err != nil || ev.Type != "group.future" || ev.Actor != "a" {
		t.Fatalf("unknown event = %+v, %v", ev, err)
	}
}

func TestEventStored(t *testing.T) {
	t.Parallel()
	for _, typ := range []domain.EventType{domain.EventJoinRequested, domain.EventJoinRejected} {
		if typ.Stored() {
			t.Errorf("%s is stored in the group's stream", typ)
		}
	}
	for _, typ := range []domain.EventType{domain.EventGroupCreated, domain.EventMemberJoined, domain.EventDissolved, domain.EventRecalled} {
		if !typ.Stored() {
			t.Errorf("%s is not stored", typ)
		}
	}
}

func TestSystemEventDraft(t *testing.T) {
	t.Parallel()
	ev := domain.SystemEvent{Type: domain.EventRenamed, Actor: "adam", Name: "Ops"}
	d, err := ev.Draft("g:team", "c1")
	if err != nil {
		t.Fatal(err)
	}
	want := domain.Draft{Conv: "g:team", Sender: "adam", ClientMsgID: "c1", ContentType: domain.ContentSystem, Body: `{"type":"group.renamed","actor":"adam","name":"Ops"}`}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Draft = %+v, want %+v", d, want)
	}
	if err := d.Validate(1 << 10); !errors.Is(err, domain.ErrUnknownContentType) {
		t.Fatalf("a system draft passes client validation: %v", err)
	}
}
