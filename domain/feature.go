package domain

import (
	"fmt"
	"slices"
	"time"
)

// Limits and defaults of message features. The windows are live settings:
// these are their defaults.
const (
	// MaxMentions bounds the users one message mentions.
	MaxMentions = 50
	// MentionAllToken in a client's mention list stands for everyone
	// (Draft.MentionAll). A user whose id is "@all" cannot be mentioned
	// alone.
	MentionAllToken = "@all"
	// DefaultRecallWindow is how long a sender may recall their message.
	DefaultRecallWindow = 2 * time.Minute
	// DefaultEditWindow is how long a sender may edit their message.
	DefaultEditWindow = 15 * time.Minute
	// TypingInterval is the least time between two typing notices of one
	// user in one conversation; the app drops those that come faster.
	TypingInterval = 3 * time.Second
)

// ParseMentions reads a client's mention list: at most MaxMentions user ids,
// duplicates dropped, MentionAllToken turned into all.
func ParseMentions(ss []string) (users []UserID, all bool, err error) {
	if len(ss) > MaxMentions {
		return nil, false, invalid(ErrInvalidMention, ss[0], fmt.Sprintf("%d mentions, the limit is %d", len(ss), MaxMentions))
	}
	for _, s := range ss {
		if s == MentionAllToken {
			all = true
			continue
		}
		u, err := ParseUserID(s)
		if err != nil {
			return nil, false, invalid(ErrInvalidMention, s, "not a user id")
		}
		if !slices.Contains(users, u) {
			users = append(users, u)
		}
	}
	return users, all, nil
}

// Recall checks that actor may take back target at nowMs and returns the
// EventRecalled to store at a seq of its own. The sender may, within window
// (DefaultRecallWindow when window is 0 or less). In a group, the owner and
// admins recall their own messages at any time, and others' when their role
// outranks the sender's (ActionRecall in the permission table); pass the current roles, and RoleMember as the
// senderRole of a sender who has left. In a direct or service conversation
// pass "" for both roles: there only the sender recalls.
//
// The caller has checked that actor may still write to the conversation.
func Recall(target Message, actor UserID, actorRole, senderRole Role, nowMs int64, window time.Duration) (SystemEvent, error) {
	if target.ContentType == ContentSystem {
		return SystemEvent{}, invalid(ErrNotRecallable, target.ID, "a system event cannot be recalled")
	}
	if target.Recalled {
		return SystemEvent{}, ErrRecalled
	}
	if window <= 0 {
		window = DefaultRecallWindow
	}
	ev := SystemEvent{Type: EventRecalled, Actor: actor, Target: target.Seq}
	if actor == target.Sender && nowMs-target.ServerMs <= window.Milliseconds() {
		return ev, nil
	}
	if actorRole == "" {
		if actor == target.Sender {
			return SystemEvent{}, &WindowError{Kind: ErrRecallWindow, Window: window}
		}
		return SystemEvent{}, &ForbiddenError{Action: ActionRecall}
	}
	if senderRole == "" {
		senderRole = RoleMember
	}
	if actor == target.Sender {
		// The owner and admins recall their own messages at any time.
		if Permit(actorRole, ActionRecall, RoleMember) != nil {
			return SystemEvent{}, &WindowError{Kind: ErrRecallWindow, Window: window}
		}
		return ev, nil
	}
	if err := Permit(actorRole, ActionRecall, senderRole); err != nil {
		return SystemEvent{}, err
	}
	return ev, nil
}

// Edit checks that actor may replace the body of target with ctype and body
// at nowMs and returns the EventEdited to store at a seq of its own. Only the
// sender edits, within window (DefaultEditWindow when 0 or less), a text or
// JSON message that was not recalled; the new body obeys the draft rules
// with maxBody.
func Edit(target Message, actor UserID, ctype ContentType, body string, maxBody int, nowMs int64, window time.Duration) (SystemEvent, error) {
	if target.ContentType == ContentSystem {
		return SystemEvent{}, invalid(ErrNotEditable, target.ID, "a system event cannot be edited")
	}
	if target.Recalled {
		return SystemEvent{}, ErrRecalled
	}
	if actor != target.Sender {
		return SystemEvent{}, invalid(ErrNotEditable, target.ID, "only the sender edits a message")
	}
	if window <= 0 {
		window = DefaultEditWindow
	}
	if nowMs-target.ServerMs > window.Milliseconds() {
		return SystemEvent{}, &WindowError{Kind: ErrEditWindow, Window: window}
	}
	if err := validateBody(ctype, body, maxBody); err != nil {
		return SystemEvent{}, err
	}
	return SystemEvent{Type: EventEdited, Actor: actor, Target: target.Seq, ContentType: ctype, Body: body}, nil
}

// Apply returns m as history shows it after the event e: a tombstone without
// body or mentions after EventRecalled, the new content flagged Edited after
// EventEdited. Events about other seqs, and edits that arrive after a
// recall, leave m as it is.
func (m Message) Apply(e SystemEvent) Message {
	if e.Target != m.Seq || m.Recalled || m.ContentType == ContentSystem {
		return m
	}
	switch e.Type {
	case EventRecalled:
		m.Body, m.Mentions, m.MentionAll, m.Recalled = "", nil, false, true
	case EventEdited:
		m.ContentType, m.Body, m.Edited = e.ContentType, e.Body, true
	}
	return m
}

// Typing says that User is (Active) or stopped typing in Conv. It is
// delivered to the members who are online and never stored, so it takes no
// seq; the app drops notices that come faster than TypingInterval.
type Typing struct {
	Conv   ConversationID `json:"conv"`
	User   UserID         `json:"user"`
	Active bool           `json:"active"`
}

// Validate checks the ids of a typing notice; membership is the caller's
// check, as for a send.
func (t Typing) Validate() error {
	if _, _, err := ParseConversationID(string(t.Conv)); err != nil {
		return invalid(ErrInvalidTyping, string(t.Conv), "bad conversation id")
	}
	if _, err := ParseUserID(string(t.User)); err != nil {
		return invalid(ErrInvalidTyping, string(t.User), "bad user id")
	}
	return nil
}
