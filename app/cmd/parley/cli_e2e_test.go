package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parley-im/parley/tools/testkit"
)

// tmuxServer is a private tmux server, on a socket of its own, whose panes
// are real terminals for the terminal client.
type tmuxServer struct {
	t    *testing.T
	sock string
}

func newTmux(t *testing.T) *tmuxServer {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		testkit.Unavailable(t, "tmux is not installed: %v", err)
	}
	x := &tmuxServer{t: t, sock: filepath.Join(t.TempDir(), "tmux.sock")}
	// A placeholder session starts the server, so that remain-on-exit is
	// set before any client runs: a pane whose program exited stays, with
	// its exit status, for the test to read.
	x.run("new-session", "-d", "-s", "keep", "-x", "160", "-y", "50", "sleep 600")
	x.run("set-option", "-g", "remain-on-exit", "on")
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", x.sock, "kill-server").Run() })
	return x
}

func (x *tmuxServer) run(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", x.sock}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs command in a new 160x50 session named name.
func (x *tmuxServer) start(name string, command ...string) {
	x.t.Helper()
	quoted := make([]string, len(command))
	for i, a := range command {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	x.run("new-session", "-d", "-s", name, "-x", "160", "-y", "50", strings.Join(quoted, " "))
}

// withStatus runs command through sh, which prints its exit status when it
// ends: tmux's own record of it (pane_dead_status) is sometimes never set.
func withStatus(command ...string) []string {
	return append([]string{"sh", "-c", `"$@"; echo "exited with status $?"`, "sh"}, command...)
}

// typeLine types text into the pane, then Enter.
func (x *tmuxServer) typeLine(name, text string) {
	x.t.Helper()
	x.run("send-keys", "-t", name, "-l", text)
	x.run("send-keys", "-t", name, "Enter")
}

// screen is the pane's visible text and scroll-back.
func (x *tmuxServer) screen(name string) string {
	x.t.Helper()
	return x.run("capture-pane", "-p", "-t", name, "-S", "-500")
}

// lastLine is the pane's last non-empty line.
func (x *tmuxServer) lastLine(name string) string {
	lines := strings.Split(strings.TrimRight(x.screen(name), "\n "), "\n")
	return strings.TrimRight(lines[len(lines)-1], " ")
}

// waitScreen waits until the pane shows every one of want.
func (x *tmuxServer) waitScreen(name string, want ...string) {
	x.t.Helper()
	ctx := ctxT(x.t, 20*time.Second)
	if err := testkit.Until(ctx, func() bool {
		s := x.screen(name)
		for _, w := range want {
			if !strings.Contains(s, w) {
				return false
			}
		}
		return true
	}); err != nil {
		x.t.Fatalf("pane %s never showed %q; it shows:\n%s", name, want, x.screen(name))
	}
}

// TestTerminalClient drives two terminal clients, alice and bob, through
// real terminals (tmux panes) against a running parley: each sees the
// other online, they write both ways, each message shows on the other's
// screen with time, sender and conversation while the prompt stays, the
// history shows both, they go through a group's life (see
// terminalGroupExchange), and :q ends each client with status 0.
func TestTerminalClient(t *testing.T) {
	requireMode(t, modes()[0])
	x := newTmux(t)
	cli := testkit.Binary(t, "./app/cmd/parley-cli")
	n := startNode(t, modes()[0])

	x.start("alice", withStatus(cli, "-server", n.base, "-user", "alice")...)
	x.waitScreen("alice", "signed in as alice")
	x.start("bob", withStatus(cli, "-server", n.base, "-user", "bob")...)
	x.waitScreen("bob", "signed in as bob")

	x.typeLine("alice", ":olu")
	x.waitScreen("alice", "online (2): alice, bob")

	x.typeLine("alice", "bob;;hello bob, from the terminal")
	x.waitScreen("bob", "alice @ d:alice~bob: hello bob, from the terminal")
	// The message was printed above the prompt, which was drawn again.
	testkit.Eventually(t, 5*time.Second, func() bool { return x.lastLine("bob") == ">" },
		"bob's prompt is not the last line after an incoming message:\n%s", x.screen("bob"))

	x.typeLine("bob", "alice;;hi alice")
	x.waitScreen("alice", "bob @ d:alice~bob: hi alice")
	line := ""
	for _, l := range strings.Split(x.screen("alice"), "\n") {
		if strings.Contains(l, "bob @ d:alice~bob: hi alice") {
			line = l
		}
	}
	// "[15:04:05] bob @ d:alice~bob: hi alice": the time comes first.
	if _, err := time.Parse("[15:04:05]", strings.SplitN(strings.TrimPrefix(line, "> "), " ", 2)[0]); err != nil {
		t.Errorf("incoming line %q does not start with [hh:mm:ss]: %v", line, err)
	}

	x.typeLine("bob", ":h alice")
	x.waitScreen("bob", "alice @ d:alice~bob: hello bob, from the terminal", "bob @ d:alice~bob: hi alice")

	x.typeLine("bob", ":help")
	x.waitScreen("bob", ":olu", ":q", ";;text", ":g create")

	terminalGroupExchange(t, x, n)

	for _, who := range []string{"alice", "bob"} {
		x.typeLine(who, ":q")
		x.waitScreen(who, "bye", "exited with status 0")
	}
}

// terminalGroupExchange continues TestTerminalClient with a group: alice
// creates it with bob and adds dave, they write in it, a message of
// alice's is recalled from her other device, and bob leaves. Each change
// shows on the other's screen as a sentence, and the recalled message as
// "(recalled)" in the history.
func terminalGroupExchange(t *testing.T, x *tmuxServer, n *node) {
	t.Helper()
	x.typeLine("alice", ":g create Launch bob")
	x.waitScreen("alice", "created g:", "Launch")
	m := regexp.MustCompile(`created (g:[a-z2-7]{26})`).FindStringSubmatch(x.screen("alice"))
	if m == nil {
		t.Fatalf("alice's screen names no group id:\n%s", x.screen("alice"))
	}
	conv := m[1]
	x.waitScreen("bob", "alice created Launch with bob ("+conv+")")

	x.typeLine("alice", ":g invite "+conv+" dave")
	x.waitScreen("bob", "alice added dave to Launch")
	x.waitScreen("alice", "alice added dave to Launch")

	x.typeLine("alice", conv+";;hello launch")
	x.waitScreen("bob", "alice @ "+conv+": hello launch")
	x.typeLine("bob", conv+";;hi all")
	x.waitScreen("alice", "bob @ "+conv+": hi all")

	// alice's phone sends a message and takes it back.
	phone := dial(t, n, "alice", "phone")
	// Its pushes are drained until the test's cleanup closes it.
	go func() {
		for range phone.Messages {
		}
	}()
	ctx := ctxT(t, 10*time.Second)
	oops, err := phone.Send(ctx, "", conv, "oops-1", "wrong chat")
	if err != nil {
		t.Fatal(err)
	}
	x.waitScreen("bob", "alice @ "+conv+": wrong chat")
	if _, err := phone.Recall(ctx, conv, oops.Seq, ""); err != nil {
		t.Fatal(err)
	}
	x.waitScreen("bob", fmt.Sprintf("alice recalled message #%d @ %s", oops.Seq, conv))
	x.typeLine("bob", ":h "+conv)
	x.waitScreen("bob", "alice @ "+conv+": (recalled)")

	x.typeLine("bob", ":g leave "+conv)
	x.waitScreen("alice", "bob left Launch")
	x.typeLine("bob", conv+";;still here?")
	x.waitScreen("bob", "not sent: not_member")
	// Each change shows once, although the server pushes it to the device
	// that made it as well as answering it.
	for who, line := range map[string]string{"bob": "bob left Launch", "alice": "alice added dave to Launch"} {
		if n := strings.Count(x.screen(who), line); n != 1 {
			t.Errorf("%s's screen shows %q %d times, want once:\n%s", who, line, n, x.screen(who))
		}
	}

	x.typeLine("alice", ":g invite g:nope")
	x.waitScreen("alice", "usage: :g create")
}
