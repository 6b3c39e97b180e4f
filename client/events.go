package client

import (
	stdjson "encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	pb "github.com/parley-im/parley/proto/parley/v1"
)

// Notice frame types: what the server pushes on Client.Events. Notices are
// not stored and not acknowledged; a device that is offline misses them.
const (
	// NoticeDelivered: a device of User acknowledged your messages of Conv
	// up to Seq.
	NoticeDelivered = "delivered"
	// NoticeSeen: the peer User of the direct conversation Conv read up to Seq.
	NoticeSeen = "seen"
	// NoticeReadBy: Count members of the group Conv have read your message Seq.
	NoticeReadBy = "read_by"
	// NoticeTyping: User started (On) or stopped typing in Conv.
	NoticeTyping = "typing"
	// NoticeJoinRequested: to a group's owner and admins, User asks to join
	// Conv with Note.
	NoticeJoinRequested = "join_requested"
	// NoticeJoinRejected: to the requester, User (an admin) refused the
	// request to join Conv.
	NoticeJoinRejected = "join_rejected"
	// NoticeUnassigned: customer service; no agent of shop User yet for
	// your message Seq of Conv. The server keeps asking.
	NoticeUnassigned = "unassigned"
)

// ContentSystem is the ctype of a message whose body is a system event.
const ContentSystem = "system"

// System event types, SystemEvent.Type. The strings are part of the
// protocol and never change.
const (
	EventGroupCreated  = "group.created"
	EventMemberJoined  = "member.joined"
	EventMemberLeft    = "member.left"
	EventMemberKicked  = "member.kicked"
	EventRoleChanged   = "member.role"
	EventMemberMuted   = "member.muted"
	EventMemberUnmuted = "member.unmuted"
	EventGroupMuted    = "group.muted"
	EventGroupUnmuted  = "group.unmuted"
	EventRenamed       = "group.renamed"
	EventNoticeChanged = "group.notice"
	EventExtChanged    = "group.ext"
	EventPolicyChanged = "group.policy"
	EventHistoryOpened = "group.history_opened"
	EventHistoryClosed = "group.history_closed"
	EventOwnerChanged  = "group.owner"
	EventDissolved     = "group.dissolved"
	EventRecalled      = "message.recalled"
	EventEdited        = "message.edited"
	EventAgentAssigned = "service.agent"
)

// SystemEvent is the body of a system message: one change to a
// conversation, at its own seq. Fields that do not apply to Type are zero.
type SystemEvent struct {
	Type string `json:"type"`
	// Actor made the change.
	Actor string `json:"actor,omitempty"`
	// Users are the members the change is about, when not the actor.
	Users []string `json:"users,omitempty"`
	// Role is the new role of EventRoleChanged.
	Role string `json:"role,omitempty"`
	// Name is the group's name, for EventGroupCreated and EventRenamed.
	Name string `json:"name,omitempty"`
	// Notice is the new notice of EventNoticeChanged.
	Notice string `json:"notice,omitempty"`
	// Ext is the new JSON object of EventExtChanged.
	Ext stdjson.RawMessage `json:"ext,omitempty"`
	// Policy is the join policy of EventGroupCreated and EventPolicyChanged.
	Policy string `json:"policy,omitempty"`
	// Until ends the mute of EventMemberMuted, in Unix milliseconds.
	Until int64 `json:"until,omitempty"`
	// Target is the seq of the message EventRecalled or EventEdited changes.
	Target uint64 `json:"target,omitempty"`
	// Ctype and Body are the new content of EventEdited.
	Ctype string `json:"ctype,omitempty"`
	Body  string `json:"body,omitempty"`
	// Note is a join request's message.
	Note string `json:"note,omitempty"`
}

// IsSystem reports whether m is a system event rather than a user's message.
func IsSystem(m *pb.Message) bool { return m != nil && m.Ctype == ContentSystem }

// ParseSystemEvent decodes the event that the system message m carries. It
// fails when m is not a system message or its body is not an event.
func ParseSystemEvent(m *pb.Message) (*SystemEvent, error) {
	if !IsSystem(m) {
		return nil, errors.New("client: not a system message")
	}
	var e SystemEvent
	if err := json.Unmarshal([]byte(m.Body), &e); err != nil {
		return nil, fmt.Errorf("client: system event of %s#%d: %w", m.Conv, m.Seq, err)
	}
	if e.Type == "" {
		return nil, fmt.Errorf("client: system event of %s#%d has no type", m.Conv, m.Seq)
	}
	return &e, nil
}

// Close codes of the server that change what a client should do next.
const (
	// CloseFlooding: the client sent too many frames; reconnect later.
	CloseFlooding = 4011
	// CloseBanned: the user or address is suspended; do not reconnect
	// before the time the close reason gives.
	CloseBanned = 4012
)

// bannedPrefix starts the reason of a CloseBanned close, before an RFC 3339 time.
const bannedPrefix = "suspended until "

// BannedUntil reports whether err says the user or their address is
// suspended, and until when: a Dial refused with the code banned, or a
// connection closed with CloseBanned. A suspension whose end cannot be read
// reports the zero time with true.
func BannedUntil(err error) (time.Time, bool) {
	var apiErr *Error
	if errors.As(err, &apiErr) && apiErr.Code == "banned" {
		if apiErr.Until == 0 {
			return time.Time{}, true
		}
		return time.UnixMilli(apiErr.Until), true
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code == CloseBanned {
		_, at, _ := strings.Cut(ce.Text, bannedPrefix)
		t, perr := time.Parse(time.RFC3339, strings.TrimSpace(at))
		if perr != nil {
			return time.Time{}, true
		}
		return t, true
	}
	return time.Time{}, false
}

// CloseCode is the WebSocket close code in err (the Err of a Client that
// the server closed), or 0 when the connection ended another way.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
