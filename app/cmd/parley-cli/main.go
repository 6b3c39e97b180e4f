// Command parley-cli is a terminal client of parley. It signs in with a
// development token (-user, against a server started with -dev-tokens) or a
// given token (-token), keeps one WebSocket that reconnects and catches up
// by itself, and prints each incoming message once, with its time, sender
// and conversation.
//
//	parley-cli -server http://127.0.0.1:8080 -user alice
//
// Type :help for the commands; `bob;;hello` sends "hello" to bob, and
// `:g create Launch bob,carol` makes a group. Group changes show as lines
// such as "alice added dave to Launch"; a recalled message as "(recalled)".
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/parley-im/parley/client"
	pb "github.com/parley-im/parley/proto/parley/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, isTerminal(os.Stdout)))
}

// isTerminal says whether f is a character device, where the prompt may be
// redrawn with ANSI escapes.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

const helpText = `commands:
  user;;text        send text to user (a 1:1 chat)
  g:<id>;;text      send text to a group (any conversation id works: d:a~b, g:...)
  :olu              list online users
  :c                list your conversations (groups show their ids)
  :h user           show the history with user (or :h <conversation id>)
  :g create name bob,carol   create a group named name with bob and carol
  :g invite g:<id> dave,erin add dave and erin to a group
  :g leave g:<id>            leave a group
  :help             this list
  :q                quit`

// historyLines is how many messages :h shows, the latest ones.
const historyLines = 20

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, in io.Reader, out io.Writer, tty bool) int {
	fs := flag.NewFlagSet("parley-cli", flag.ContinueOnError)
	fs.SetOutput(out)
	server := fs.String("server", envOr("PARLEY_SERVER", "http://127.0.0.1:8080"), "parley's base URL (env PARLEY_SERVER)")
	user := fs.String("user", envOr("PARLEY_USER", ""), "sign in as this user with a development token (server flag -dev-tokens)")
	token := fs.String("token", os.Getenv("PARLEY_TOKEN"), "sign in with this token instead of -user (env PARLEY_TOKEN)")
	device := fs.String("device", "cli", "device name the server sees")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*user == "") == (*token == "") {
		fmt.Fprintln(out, "parley-cli: give -user (development token) or -token")
		return 2
	}
	base := strings.TrimRight(*server, "/")

	t := &terminal{out: out, tty: tty, prompt: "> ", names: map[string]string{}}
	var getToken func(ctx context.Context) (string, error)
	if *token != "" {
		getToken = func(context.Context) (string, error) { return *token, nil }
	} else {
		// A development token lasts a day; asking for one at every dial
		// keeps a long-running client signed in.
		getToken = func(ctx context.Context) (string, error) { return client.DevToken(ctx, base, *user) }
	}
	first := make(chan error, 1)
	var once sync.Once
	s, err := client.NewSession(base, client.SessionOptions{
		Options: client.Options{Device: *device},
		Token:   getToken,
		OnState: func(up bool, err error) {
			once.Do(func() { first <- err })
			switch {
			case up:
				t.status("connected to " + base)
			case err != nil:
				if until, banned := client.BannedUntil(err); banned && !until.IsZero() {
					t.status("suspended until " + until.Local().Format("15:04:05") + "; reconnecting then")
					break
				}
				t.status("connection lost (" + err.Error() + "); reconnecting")
			}
		},
	})
	if err != nil {
		fmt.Fprintln(out, "parley-cli:", err)
		return 1
	}
	defer s.Close()

	// The first connection decides whether the sign-in works at all: a
	// refused token is not worth retrying forever.
	select {
	case err := <-first:
		var apiErr *client.Error
		if errors.As(err, &apiErr) && !apiErr.Retryable {
			fmt.Fprintln(out, "parley-cli: sign in:", err)
			return 1
		}
	case <-ctx.Done():
		return 0
	}
	c, err := s.WaitConnected(ctx)
	if err != nil {
		return 0
	}
	me := c.Hello.User
	// Group names make system events readable; later ones come with
	// their events.
	if convs, err := s.Conversations(ctx); err == nil {
		t.learnNames(convs)
	}
	t.status("signed in as " + me + "; :help lists the commands")
	t.showPrompt()

	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for m := range s.Messages {
			t.message(m)
		}
	}()
	noticed := make(chan struct{})
	go func() {
		defer close(noticed)
		for f := range s.Events {
			if text := t.notice(f); text != "" {
				t.status(text)
			}
		}
	}()

	lines := make(chan string)
	go func() {
		// Stdin has no deadline; this goroutine ends with the process
		// when the user quits without closing it.
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	for {
		select {
		case <-ctx.Done():
			t.line("bye")
			return 0
		case line, ok := <-lines:
			if !ok {
				return 0
			}
			if quit := command(ctx, s, t, me, strings.TrimSpace(line)); quit {
				t.line("bye")
				_ = s.Close()
				<-printed
				<-noticed
				return 0
			}
			t.showPrompt()
		}
	}
}

// command runs one input line; it reports whether the user quit.
func command(ctx context.Context, s *client.Session, t *terminal, me, line string) (quit bool) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch {
	case line == "":
	case line == ":q" || line == ":quit":
		return true
	case line == ":help" || line == ":?":
		t.line(helpText)
	case line == ":olu":
		tok, err := s.Token(ctx)
		if err == nil {
			var users []string
			if users, err = client.OnlineUsers(ctx, s.Base(), tok); err == nil {
				t.line(fmt.Sprintf("online (%d): %s", len(users), strings.Join(users, ", ")))
			}
		}
		if err != nil {
			t.line("online users: " + err.Error())
		}
	case line == ":c":
		convs, err := s.Conversations(ctx)
		if err != nil {
			t.line("conversations: " + err.Error())
			break
		}
		if len(convs) == 0 {
			t.line("no conversations yet")
		}
		t.learnNames(convs)
		for _, cv := range convs {
			name := strings.Join(cv.Members, ", ")
			if cv.Group != nil && cv.Group.Name != "" {
				name = cv.Group.Name
			}
			t.line(fmt.Sprintf("%s  %s  (%d messages, %d unread)", cv.Id, name, cv.LastSeq, cv.Unread))
		}
	case strings.HasPrefix(line, ":h"):
		who := strings.TrimSpace(strings.TrimPrefix(line, ":h"))
		if who == "" {
			t.line("usage: :h user  or  :h <conversation id>")
			break
		}
		conv := who
		if !isConversationID(who) {
			conv = client.DirectConversation(me, who)
		}
		msgs, err := s.History(ctx, conv, 0)
		if err != nil {
			t.line("history: " + err.Error())
			break
		}
		if len(msgs) == 0 {
			t.line("no messages with " + who)
		}
		if len(msgs) > historyLines {
			msgs = msgs[len(msgs)-historyLines:]
		}
		for _, m := range msgs {
			t.line(t.format(m))
		}
	case line == ":g" || strings.HasPrefix(line, ":g "):
		groupCommand(ctx, s, t, strings.Fields(strings.TrimPrefix(line, ":g")))
	case strings.HasPrefix(line, ":"):
		t.line("unknown command " + line + "; :help lists the commands")
	default:
		to, body, ok := strings.Cut(line, ";;")
		to = strings.TrimSpace(to)
		if !ok || to == "" || body == "" {
			t.line("to send, type user;;text (or g:<id>;;text); :help lists the commands")
			break
		}
		var user, conv string
		if isConversationID(to) {
			conv = to
		} else {
			user = to
		}
		// One cmid for every try, so that a retry after a lost
		// connection is not stored twice.
		cmid := newCmid()
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			if _, err = s.Send(ctx, user, conv, cmid, body); !retryable(err) {
				break
			}
			if _, werr := s.WaitConnected(ctx); werr != nil {
				break
			}
		}
		if err != nil {
			t.line("not sent: " + err.Error())
		}
	}
	return false
}

const groupUsage = "usage: :g create name bob,carol  |  :g invite g:<id> dave,erin  |  :g leave g:<id>"

// groupCommand runs :g create, :g invite and :g leave. A create carries a
// cmid so that a retry after a lost connection makes one group, not two.
func groupCommand(ctx context.Context, s *client.Session, t *terminal, args []string) {
	if len(args) == 0 {
		t.line(groupUsage)
		return
	}
	switch {
	case args[0] == "create" && len(args) >= 2:
		// The last word lists the members when there are several words:
		// the name may have spaces, user ids may not.
		name, users := strings.Join(args[1:], " "), []string(nil)
		if len(args) >= 3 {
			name, users = strings.Join(args[1:len(args)-1], " "), splitUsers(args[len(args)-1])
		}
		cmid := newCmid()
		var res *client.GroupResult
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			if res, err = s.CreateGroup(ctx, client.NewGroup{Name: name, Users: users, Cmid: cmid}); !retryable(err) {
				break
			}
			if _, werr := s.WaitConnected(ctx); werr != nil {
				break
			}
		}
		if err != nil {
			t.line("group not created: " + err.Error())
			return
		}
		t.setName(res.Conv, res.Group.GetName())
		t.line(fmt.Sprintf("created %s  %s  (%d members); write to it with %s;;text", res.Conv, res.Group.GetName(), res.Group.GetCount(), res.Conv))
	case args[0] == "invite" && len(args) == 3 && strings.HasPrefix(args[1], "g:"):
		// The event prints when the session delivers it, as for everyone.
		if _, err := s.ChangeGroup(ctx, args[1], client.GroupChange{Op: client.OpInvite, Users: splitUsers(args[2])}); err != nil {
			t.line("not invited: " + err.Error())
		}
	case args[0] == "leave" && len(args) == 2 && strings.HasPrefix(args[1], "g:"):
		if _, err := s.ChangeGroup(ctx, args[1], client.GroupChange{Op: client.OpLeave}); err != nil {
			t.line("not left: " + err.Error())
		}
	default:
		t.line(groupUsage)
	}
}

// splitUsers reads "bob,carol" (or "bob, carol").
func splitUsers(list string) []string {
	var out []string
	for u := range strings.SplitSeq(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// retryable says whether a send may succeed if tried again with the same
// cmid.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		return apiErr.Retryable
	}
	return errors.Is(err, client.ErrNotConnected) || errors.Is(err, client.ErrClosed)
}

// isConversationID tells a conversation id from a user name by its prefix.
func isConversationID(s string) bool {
	return strings.HasPrefix(s, "d:") || strings.HasPrefix(s, "g:") || strings.HasPrefix(s, "s:")
}

func newCmid() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "cli-" + hex.EncodeToString(b[:])
}

// terminal serialises output so that lines from incoming messages and from
// commands never interleave, and redraws the prompt after a message that
// arrived while the user was typing.
type terminal struct {
	mu     sync.Mutex
	out    io.Writer
	tty    bool
	prompt string
	// names are the groups' names by conversation id, for system events.
	names map[string]string
}

// line prints text on lines of its own.
func (t *terminal) line(text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintln(t.out, text)
}

// message prints an incoming message above the prompt and redraws it.
func (t *terminal) message(m *pb.Message) { t.above(t.format(m)) }

// status prints a connection notice above the prompt.
func (t *terminal) status(text string) { t.above("-- " + text) }

func (t *terminal) above(text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tty {
		// Carriage return and erase-line remove the prompt; it is drawn
		// again below the text.
		fmt.Fprintf(t.out, "\r\x1b[K%s\n%s", text, t.prompt)
		return
	}
	fmt.Fprintln(t.out, text)
}

func (t *terminal) showPrompt() {
	if !t.tty {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprint(t.out, t.prompt)
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}

// learnNames keeps the names of the groups among convs.
func (t *terminal) learnNames(convs []*pb.Conversation) {
	for _, cv := range convs {
		if cv.Group != nil && cv.Group.Name != "" {
			t.setName(cv.Id, cv.Group.Name)
		}
	}
}

func (t *terminal) setName(conv, name string) {
	if name == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.names[conv] = name
}

// name is the group's name, or its id when the name is not known.
func (t *terminal) name(conv string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.names[conv]; n != "" {
		return n
	}
	return conv
}

// format renders a message as "[15:04:05] alice @ d:alice~bob: text", and
// a system event as "[15:04:05] alice added dave to Launch".
func (t *terminal) format(m *pb.Message) string {
	ts := time.UnixMilli(m.Ts).Format("15:04:05")
	if client.IsSystem(m) {
		return fmt.Sprintf("[%s] %s", ts, t.describe(m))
	}
	body := m.Body
	switch {
	case m.Recalled:
		body = "(recalled)"
	case m.Edited:
		body += " (edited)"
	}
	if m.ReplyTo != 0 {
		body = fmt.Sprintf("(reply to #%d) %s", m.ReplyTo, body)
	}
	return fmt.Sprintf("[%s] %s @ %s: %s", ts, m.From, m.Conv, body)
}

// describe tells in words what a system event did. It learns group names
// from the events that set them.
func (t *terminal) describe(m *pb.Message) string {
	e, err := client.ParseSystemEvent(m)
	if err != nil {
		return "(an event this client cannot read) @ " + m.Conv
	}
	users := strings.Join(e.Users, ", ")
	group := t.name(m.Conv)
	switch e.Type {
	case client.EventGroupCreated:
		t.setName(m.Conv, e.Name)
		if users == "" {
			return fmt.Sprintf("%s created %s (%s)", e.Actor, e.Name, m.Conv)
		}
		return fmt.Sprintf("%s created %s with %s (%s)", e.Actor, e.Name, users, m.Conv)
	case client.EventMemberJoined:
		if len(e.Users) == 1 && e.Users[0] == e.Actor {
			return fmt.Sprintf("%s joined %s", e.Actor, group)
		}
		return fmt.Sprintf("%s added %s to %s", e.Actor, users, group)
	case client.EventMemberLeft:
		return fmt.Sprintf("%s left %s", e.Actor, group)
	case client.EventMemberKicked:
		return fmt.Sprintf("%s removed %s from %s", e.Actor, users, group)
	case client.EventRoleChanged:
		return fmt.Sprintf("%s made %s %s of %s", e.Actor, users, e.Role, group)
	case client.EventMemberMuted:
		return fmt.Sprintf("%s muted %s in %s until %s", e.Actor, users, group, time.UnixMilli(e.Until).Format("15:04:05"))
	case client.EventMemberUnmuted:
		return fmt.Sprintf("%s unmuted %s in %s", e.Actor, users, group)
	case client.EventGroupMuted:
		return fmt.Sprintf("%s muted %s: only the owner and admins speak", e.Actor, group)
	case client.EventGroupUnmuted:
		return fmt.Sprintf("%s unmuted %s", e.Actor, group)
	case client.EventRenamed:
		t.setName(m.Conv, e.Name)
		return fmt.Sprintf("%s renamed %s to %s", e.Actor, group, e.Name)
	case client.EventNoticeChanged:
		if e.Notice == "" {
			return fmt.Sprintf("%s cleared the notice of %s", e.Actor, group)
		}
		return fmt.Sprintf("%s set the notice of %s: %s", e.Actor, group, e.Notice)
	case client.EventExtChanged:
		return fmt.Sprintf("%s changed the settings of %s", e.Actor, group)
	case client.EventPolicyChanged:
		return fmt.Sprintf("%s made %s %s", e.Actor, group, strings.ReplaceAll(e.Policy, "_", " "))
	case client.EventHistoryOpened:
		return fmt.Sprintf("%s opened the history of %s to new members", e.Actor, group)
	case client.EventHistoryClosed:
		return fmt.Sprintf("%s closed the history of %s to new members", e.Actor, group)
	case client.EventOwnerChanged:
		return fmt.Sprintf("%s handed %s to %s", e.Actor, group, users)
	case client.EventDissolved:
		return fmt.Sprintf("%s dissolved %s", e.Actor, group)
	case client.EventRecalled:
		return fmt.Sprintf("%s recalled message #%d @ %s", e.Actor, e.Target, m.Conv)
	case client.EventEdited:
		return fmt.Sprintf("%s edited message #%d @ %s: %s", e.Actor, e.Target, m.Conv, e.Body)
	case client.EventAgentAssigned:
		return fmt.Sprintf("%s assigned %s to %s", e.Actor, m.Conv, users)
	}
	return fmt.Sprintf("%s: %s @ %s", e.Actor, e.Type, m.Conv)
}

// notice tells in words the notices worth a line: join requests and
// their refusals. Typing and receipts would drown the conversation.
func (t *terminal) notice(f *pb.Frame) string {
	switch f.Type {
	case client.NoticeJoinRequested:
		if f.Note != "" {
			return fmt.Sprintf("%s asks to join %s: %s", f.User, t.name(f.Conv), f.Note)
		}
		return fmt.Sprintf("%s asks to join %s", f.User, t.name(f.Conv))
	case client.NoticeJoinRejected:
		return fmt.Sprintf("%s refused your request to join %s", f.User, t.name(f.Conv))
	case "error":
		return "error: " + f.Code + ": " + f.Message
	}
	return ""
}
