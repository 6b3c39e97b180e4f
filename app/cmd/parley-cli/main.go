// Command parley-cli is a terminal client of parley. It signs in with a
// development token (-user, against a server started with -dev-tokens) or a
// given token (-token), keeps one WebSocket that reconnects and catches up
// by itself, and prints each incoming message once, with its time, sender
// and conversation.
//
//	parley-cli -server http://127.0.0.1:8080 -user alice
//
// Type :help for the commands; `bob;;hello` sends "hello" to bob.
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

	t := &terminal{out: out, tty: tty, prompt: "> "}
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
	t.status("signed in as " + me + "; :help lists the commands")
	t.showPrompt()

	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for m := range s.Messages {
			t.message(m)
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
			t.line(format(m))
		}
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

// format renders a message as "[15:04:05] alice @ d:alice~bob: text".
func format(m *pb.Message) string {
	ts := time.UnixMilli(m.Ts).Format("15:04:05")
	body := m.Body
	if m.Recalled {
		body = "(recalled)"
	}
	return fmt.Sprintf("[%s] %s @ %s: %s", ts, m.From, m.Conv, body)
}

// terminal serialises output so that lines from incoming messages and from
// commands never interleave, and redraws the prompt after a message that
// arrived while the user was typing.
type terminal struct {
	mu     sync.Mutex
	out    io.Writer
	tty    bool
	prompt string
}

// line prints text on lines of its own.
func (t *terminal) line(text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintln(t.out, text)
}

// message prints an incoming message above the prompt and redraws it.
func (t *terminal) message(m *pb.Message) { t.above(format(m)) }

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
