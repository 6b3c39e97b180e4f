package domain

import (
	"encoding/json"
	"strconv"
)

// ContentSystem is the content type of a message whose body is a
// SystemEvent in JSON. Only the server writes it: ParseContentType and
// Draft.Validate refuse it, so no client can forge an event.
const ContentSystem ContentType = "system"

// EventType names what a SystemEvent records. The strings are part of the
// protocol and of stored history: never change one.
type EventType string

const (
	// EventGroupCreated: Actor created the group named Name with Users as
	// its first members besides Actor, the owner.
	EventGroupCreated EventType = "group.created"
	// EventMemberJoined: Users became members. Actor invited them, approved
	// their request, or is the one user who joined an open group.
	EventMemberJoined EventType = "member.joined"
	// EventMemberLeft: Actor left.
	EventMemberLeft EventType = "member.left"
	// EventMemberKicked: Actor removed Users.
	EventMemberKicked EventType = "member.kicked"
	// EventRoleChanged: Actor gave Users the role Role.
	EventRoleChanged EventType = "member.role"
	// EventMemberMuted: Actor muted Users until UntilMs.
	EventMemberMuted EventType = "member.muted"
	// EventMemberUnmuted: Actor lifted the mute of Users.
	EventMemberUnmuted EventType = "member.unmuted"
	// EventGroupMuted: Actor muted the group: only the owner and admins speak.
	EventGroupMuted EventType = "group.muted"
	// EventGroupUnmuted: Actor lifted the group mute.
	EventGroupUnmuted EventType = "group.unmuted"
	// EventRenamed: Actor renamed the group to Name.
	EventRenamed EventType = "group.renamed"
	// EventNoticeChanged: Actor set the notice to Notice; empty clears it.
	EventNoticeChanged EventType = "group.notice"
	// EventExtChanged: Actor set the free-form Ext; absent clears it.
	EventExtChanged EventType = "group.ext"
	// EventPolicyChanged: Actor set the join policy to Policy.
	EventPolicyChanged EventType = "group.policy"
	// EventHistoryOpened: members who join from now on see the history from
	// before they joined.
	EventHistoryOpened EventType = "group.history_opened"
	// EventHistoryClosed: members who join from now on see only what comes
	// after their join.
	EventHistoryClosed EventType = "group.history_closed"
	// EventOwnerChanged: Actor, the owner, handed the group to Users[0] and
	// became a member.
	EventOwnerChanged EventType = "group.owner"
	// EventDissolved: Actor, the owner, dissolved the group. Nothing follows.
	EventDissolved EventType = "group.dissolved"

	// EventJoinRequested: Actor asked to join, with Note. Not stored in the
	// group's stream (the requester is not a member yet): the app sends it
	// to admins and keeps the request.
	EventJoinRequested EventType = "join.requested"
	// EventJoinRejected: Actor rejected the request of Users[0]. Not stored
	// in the stream; the app tells the requester. An approval is an
	// EventMemberJoined, which is stored.
	EventJoinRejected EventType = "join.rejected"

	// EventRecalled: Actor recalled the message at seq Target. History shows
	// that message as a tombstone with no body.
	EventRecalled EventType = "message.recalled"
	// EventEdited: Actor replaced the body of the message at seq Target with
	// ContentType and Body. History shows the latest body, flagged edited.
	EventEdited EventType = "message.edited"

	// EventAgentAssigned: Actor assigned the service conversation to the
	// agent Users[0], who answers the customer from now on.
	EventAgentAssigned EventType = "service.agent"
)

// Stored reports whether an event of type t is appended to the
// conversation's seq stream. Join requests and rejections concern users who
// are not members, so they are delivered to the people concerned instead.
func (t EventType) Stored() bool { return t != EventJoinRequested && t != EventJoinRejected }

// SystemEvent is one change to a conversation, stored as the body of a
// ContentSystem message at its own seq, so that clients learn of it in the
// same history and sync as messages. Its JSON is stable: fields are only
// ever added, and a field that does not apply to Type is omitted.
type SystemEvent struct {
	Type EventType `json:"type"`
	// Actor is who made the change.
	Actor UserID `json:"actor,omitempty"`
	// Users are the members the change is about, if not Actor.
	Users []UserID `json:"users,omitempty"`
	// Role is the new role of EventRoleChanged.
	Role Role `json:"role,omitempty"`
	// Name is the group name of EventGroupCreated and EventRenamed.
	Name string `json:"name,omitempty"`
	// Notice is the new notice of EventNoticeChanged.
	Notice string `json:"notice,omitempty"`
	// Ext is the new free-form JSON object of EventExtChanged.
	Ext json.RawMessage `json:"ext,omitempty"`
	// Policy is the join policy of EventGroupCreated and EventPolicyChanged.
	Policy JoinPolicy `json:"policy,omitempty"`
	// UntilMs ends the mute of EventMemberMuted, in Unix milliseconds.
	UntilMs int64 `json:"until,omitempty"`
	// Target is the seq of the message that EventRecalled or EventEdited changes.
	Target uint64 `json:"target,omitempty"`
	// ContentType and Body are the new content of EventEdited.
	ContentType ContentType `json:"ctype,omitempty"`
	Body        string      `json:"body,omitempty"`
	// Note is the requester's message of EventJoinRequested.
	Note string `json:"note,omitempty"`
}

// ParseSystemEvent decodes the body of a ContentSystem message.
func ParseSystemEvent(body string) (SystemEvent, error) {
	var e SystemEvent
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return SystemEvent{}, invalid(ErrInvalidEvent, body, err.Error())
	}
	if e.Type == "" {
		return SystemEvent{}, invalid(ErrInvalidEvent, body, "no type")
	}
	return e, nil
}

// Encode returns e in its stable JSON form, the body of its ContentSystem
// message. It fails only when Ext is not valid JSON, which events made by
// this package never have.
func (e SystemEvent) Encode() (string, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return "", invalid(ErrInvalidEvent, string(e.Type), err.Error())
	}
	return string(b), nil
}

// Draft returns the draft that appends e to conv through the ordinary send
// path, with clientMsgID as its idempotency key; its sender is the actor.
// Draft.Validate refuses it, as it refuses any ContentSystem from a client:
// the server appends it without that check.
func (e SystemEvent) Draft(conv ConversationID, clientMsgID string) (Draft, error) {
	body, err := e.Encode()
	if err != nil {
		return Draft{}, err
	}
	return Draft{Conv: conv, Sender: e.Actor, ClientMsgID: clientMsgID, ContentType: ContentSystem, Body: body}, nil
}

// Message returns the message that records e at seq in conv. Its id is
// derived from conv and seq, which no user message can share (user message
// ids hash a non-empty sender), and its sender is the event's actor. It fails
// only when Ext is not valid JSON, which events made by this package never
// have.
func (e SystemEvent) Message(conv ConversationID, seq uint64, nowMs int64) (Message, error) {
	body, err := e.Encode()
	if err != nil {
		return Message{}, err
	}
	return Message{
		ID:          MessageID("", string(conv)+"#"+strconv.FormatUint(seq, 10)),
		Conv:        conv,
		Seq:         seq,
		Sender:      e.Actor,
		ContentType: ContentSystem,
		Body:        body,
		ServerMs:    nowMs,
	}, nil
}
