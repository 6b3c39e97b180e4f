package main

// The browser test of the chat page that parley serves at /. It builds the
// parley command, runs it over a real daprd (sidecar/bin/daprd, built by
// `make sidecar`) and drives two signed-in pages in headless Chromium.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley-im/parley/infrastructure/dapr/daprd/daprdtest"
	"github.com/parley-im/parley/tools/testkit"
)

// waitFor bounds each wait for the page to reach a state.
const waitFor = 15 * time.Second

// TestChatPage signs alice and bob in on two separate browser profiles,
// has them exchange a message each way, and checks that each message shows
// live, in order, escaped, and that alice's reaches "delivered". Then alice's
// connection drops: what bob writes meanwhile reaches her after the
// reconnect, and what she writes offline goes out then. A reload keeps her
// signed in with the history; a message to a conversation that is not open
// shows as unread until opened; sign out clears the session.
func TestChatPage(t *testing.T) {
	testkit.SkipShort(t)
	chrome := findChromium(t)
	root := daprdtest.RequireBinary(t)
	base := startPage(t, root)
	t.Logf("parley is serving at %s", base)

	browser := startBrowser(t, chrome)
	alice := openPage(t, browser, "alice")
	bob := openPage(t, browser, "bob")
	alice.signIn(base)
	bob.signIn(base)

	// bob opens the conversation by name before anything was said in it, so
	// alice's message arrives in his open pane.
	bob.do("start a chat with alice",
		chromedp.SendKeys(chromedp.CSS("#new-chat"), "alice"),
		chromedp.Click(chromedp.CSS("#new-chat-btn")),
	)
	bob.wait("bob's pane shows the empty conversation with alice",
		`document.querySelector('#conv-title').textContent === 'alice' &&
		 !!document.querySelector('#messages [data-testid=messages-note]') &&
		 document.querySelector('#messages').textContent.includes('No messages yet')`)

	// alice finds bob in the online list (polled every few seconds).
	alice.wait("bob appears in alice's online list", `!!document.querySelector('#online li[data-user="bob"] button')`)
	alice.do("open the chat with bob", chromedp.Click(chromedp.CSS(`#online li[data-user="bob"] button`)))
	alice.wait("alice's pane shows the conversation with bob",
		`document.querySelector('#conv-title').textContent === 'bob' && document.activeElement === document.querySelector('#composer')`)

	// The body carries markup: the page must show it as text.
	hello := fmt.Sprintf("hello bob %s <i>x</i> &amp; \"q\"", randomHex(t))
	alice.do("type and send with Enter", chromedp.SendKeys(chromedp.CSS("#composer"), hello), pressEnter())
	alice.wait("alice's message is acknowledged as seq 1",
		msgIs(hello, "alice", 1)+` && ['sent', 'delivered'].includes(`+stateOf(hello)+`)`)
	if got := alice.text(`document.querySelector('#composer').value`); got != "" {
		t.Errorf("composer still holds %q after sending", got)
	}

	bob.wait("bob's open pane shows alice's message live", msgIs(hello, "alice", 1))
	bob.wait("bob's conversation list has the conversation", `!!document.querySelector('#conversations li[data-conv="d:alice~bob"]')`)
	for _, p := range []*page{alice, bob} {
		if n := p.text(`String(document.querySelectorAll('#messages i, #conversations i').length)`); n != "0" {
			t.Errorf("%s's page turned message text into markup: %s <i> elements", p.name, n)
		}
	}

	reply := "hi alice, got it " + randomHex(t)
	bob.do("reply", chromedp.SendKeys(chromedp.CSS("#composer"), reply), pressEnter())
	alice.wait("alice sees bob's reply live after her message", msgIs(reply, "bob", 2)+` && `+orderIs(hello, reply))
	alice.wait("alice's message reaches delivered", stateOf(hello)+` === 'delivered' && `+stateTextOf(hello)+` === 'delivered'`)
	bob.wait("bob's reply reaches delivered", stateOf(reply)+` === 'delivered'`)
	alice.wait("alice's conversation entry shows the reply",
		`(document.querySelector('#conversations li[data-conv="d:alice~bob"] .preview') || {}).textContent === `+jsString(reply))

	// alice loses her connection and cannot get it back for a while. What
	// bob says meanwhile and what she writes meanwhile must not be lost.
	alice.text(`window.__blockWS = true; window.__sockets.forEach(s => s.close()); ''`)
	alice.wait("alice's page notices it is offline", `document.querySelector('#conn-status').dataset.state === 'offline'`)
	away := "while you were away " + randomHex(t)
	bob.do("bob writes while alice is away", chromedp.SendKeys(chromedp.CSS("#composer"), away), pressEnter())
	bob.wait("bob's message is stored", msgIs(away, "bob", 3))
	queued := "written offline " + randomHex(t)
	alice.do("alice writes while offline", chromedp.SendKeys(chromedp.CSS("#composer"), queued), pressEnter())
	alice.wait("alice's offline message waits as sending", stateOf(queued)+` === 'sending' && `+stateTextOf(queued)+` === 'sending…'`)
	alice.text(`window.__blockWS = false; ''`)
	alice.wait("alice reconnects", `document.querySelector('#conn-status').dataset.state === 'online'`)
	alice.wait("alice catches up on what she missed and her message goes out",
		msgIs(away, "bob", 3)+` && `+msgIs(queued, "alice", 4)+` && `+orderIs(reply, away)+` && `+orderIs(away, queued))
	bob.wait("bob gets alice's offline message live", msgIs(queued, "alice", 4))
	alice.wait("alice's offline message reaches delivered", stateOf(queued)+` === 'delivered'`)
	if n := alice.text(`String(document.querySelectorAll('#messages li[data-testid=message]').length)`); n != "4" {
		t.Errorf("alice's page shows %s messages after the reconnect, want 4 (a duplicate or a loss)", n)
	}

	shots := filepath.Join(os.TempDir(), "parley-pagetest")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*page{alice, bob} {
		path := filepath.Join(shots, p.name+".png")
		p.screenshot(path)
		t.Logf("screenshot of %s's page: %s", p.name, path)
	}

	// A reload keeps alice signed in and reopens the conversation from history.
	alice.do("reload", chromedp.Reload())
	alice.wait("alice is still signed in after a reload",
		`document.querySelector('#me').textContent === 'alice' && document.querySelector('#conn-status').dataset.state === 'online'`)
	alice.wait("the history comes back in order", msgIs(hello, "alice", 1)+` && `+msgIs(reply, "bob", 2)+` && `+
		msgIs(away, "bob", 3)+` && `+msgIs(queued, "alice", 4)+` && `+orderIs(hello, reply)+` && `+orderIs(away, queued))

	// A message in a conversation that is not open counts as unread until
	// it is opened.
	bob.do("bob switches to a chat with carol", chromedp.SendKeys(chromedp.CSS("#new-chat"), "carol"), chromedp.Click(chromedp.CSS("#new-chat-btn")))
	bob.wait("bob's pane shows carol", `document.querySelector('#conv-title').textContent === 'carol'`)
	more := "one more thing " + randomHex(t)
	alice.do("alice writes again", chromedp.SendKeys(chromedp.CSS("#composer"), more), pressEnter())
	alice.wait("alice's new message is stored", msgIs(more, "alice", 5))
	const badge = `#conversations li[data-conv="d:alice~bob"] [data-testid=unread]`
	bob.wait("bob's list counts one unread message", `(document.querySelector('`+badge+`') || {dataset: {}}).dataset.unread === '1'`)
	bob.do("bob opens the conversation", chromedp.Click(chromedp.CSS(`#conversations li[data-conv="d:alice~bob"] button`)))
	bob.wait("the message shows and the count is gone", msgIs(more, "alice", 5)+` && !document.querySelector('`+badge+`')`)
	alice.wait("alice's new message reaches delivered", stateOf(more)+` === 'delivered'`)

	alice.do("sign out", chromedp.Click(chromedp.CSS("#signout")))
	alice.wait("sign out shows the sign-in form", `!document.querySelector('#login').hidden && sessionStorage.length === 0`)
	path := filepath.Join(shots, "signed-out.png")
	alice.screenshot(path)
	t.Logf("screenshot of the sign-in form: %s", path)
}

// ---- page expressions --------------------------------------------------------

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// msgJS finds the message element whose body is exactly body.
func msgJS(body string) string {
	return `([...document.querySelectorAll('#messages li[data-testid=message]')].find(li => li.querySelector('.body').textContent === ` + jsString(body) + `) || null)`
}

func msgIs(body, from string, seq int) string {
	return fmt.Sprintf(`(m => !!m && m.dataset.from === %s && m.dataset.seq === '%d')(%s)`, jsString(from), seq, msgJS(body))
}

func stateOf(body string) string {
	return `((m => m && m.querySelector('[data-state]') ? m.querySelector('[data-state]').dataset.state : '')(` + msgJS(body) + `))`
}

func stateTextOf(body string) string {
	return `((m => m && m.querySelector('[data-state]') ? m.querySelector('[data-state]').textContent : '')(` + msgJS(body) + `))`
}

func orderIs(first, second string) string {
	return `(() => { const b = [...document.querySelectorAll('#messages li[data-testid=message] .body')].map(e => e.textContent);
		return b.indexOf(` + jsString(first) + `) >= 0 && b.indexOf(` + jsString(first) + `) < b.indexOf(` + jsString(second) + `); })()`
}

// pressEnter presses Enter in the focused element as a keyboard does: one
// keyDown that carries the text, so that the page's preventDefault on keydown
// also stops the newline. (chromedp's SendKeys sends a separate char event
// that types the newline whatever the keydown handler did.)
func pressEnter() chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		down := input.DispatchKeyEventParams{
			Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter", Text: "\r", UnmodifiedText: "\r",
			WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		}
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, down); err != nil {
			return err
		}
		up := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyUp, Key: "Enter", Code: "Enter",
			WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13}
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, up)
		return err
	})
}

// ---- pages -------------------------------------------------------------------

type page struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// openPage opens a tab in a browser context of its own: its own cookies and
// storage, as a second person would have.
func openPage(t *testing.T, browser context.Context, name string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, watchSockets()); err != nil { // creates the tab; no timeout here
		t.Fatalf("open a tab for %s: %v", name, err)
	}
	return &page{t: t, name: name, ctx: ctx}
}

// watchSockets wraps the page's WebSocket constructor before any page
// script runs, so that the test can cut the connection (close every socket in
// window.__sockets) and keep it cut (window.__blockWS sends new sockets to a
// closed port), as a network outage would.
func watchSockets() chromedp.Action[chromedp.Void] {
	const js = `(() => {
		const Native = window.WebSocket;
		window.__sockets = [];
		window.__blockWS = false;
		function Watched(url, protocols) {
			const ws = new Native(window.__blockWS ? 'ws://127.0.0.1:9/' : url, protocols);
			window.__sockets.push(ws);
			return ws;
		}
		Watched.prototype = Native.prototype;
		for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Watched[k] = Native[k];
		window.WebSocket = Watched;
	})();`
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: js})
		return err
	})
}

func (p *page) signIn(base string) {
	p.t.Helper()
	p.do("load the page and sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#login-name")),
		chromedp.SendKeys(chromedp.CSS("#login-name"), p.name),
		chromedp.Click(chromedp.CSS("#login-btn")),
	)
	p.wait("signed in and connected",
		`document.querySelector('#me').textContent === `+jsString(p.name)+
			` && document.querySelector('#conn-status').dataset.state === 'online'`+
			` && sessionStorage.getItem('parley.token') !== null`)
}

func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.fail(what, err)
	}
}

// wait polls a JavaScript expression until it is true.
func (p *page) wait(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor+time.Second)
	defer cancel()
	start := time.Now()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")",
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(waitFor)))
	if err != nil {
		p.fail(what, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		p.t.Logf("%s: %s took %.1fs", p.name, what, d.Seconds())
	}
}

func (p *page) text(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.fail("evaluate "+expr, err)
	}
	return s
}

func (p *page) screenshot(path string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.fail("screenshot", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// fail stops the test with what the page shows, to tell why.
func (p *page) fail(what string, err error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](
		`'status: ' + ((document.querySelector('#conn-status') || {}).textContent || '?') + '\n' + document.body.innerText`))
	p.t.Fatalf("%s: %s: %v\n--- %s's page shows:\n%s", p.name, what, err, p.name, shown)
}

// ---- processes ---------------------------------------------------------------

// findChromium returns the browser to drive. Without one the test skips,
// except in CI, where a skip would hide a broken setup.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testkit.Unavailable(t, "chromium is not installed (Debian package chromium); the page test needs it")
	return ""
}

// startBrowser starts one headless Chromium with a fresh profile; it and its
// helper processes are killed when the test ends.
func startBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.WindowSize(1200, 760),
		// Chromium's singleton socket and other scratch files go to TMPDIR.
		chromedp.Env("TMPDIR=" + t.TempDir()),
		// No UserDataDir: chromedp makes a fresh one, kills every process
		// that still uses it and removes it when the browser stops.
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // cancels and waits for the browser to exit
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// startPage runs the parley binary over a daprd it launches with the
// local profile, on a free port, and returns the base URL. The process (and
// with it daprd) is stopped when the test ends.
func startPage(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	// TMPDIR puts daprd's log in the test's folder; PARLEY_ and DAPR_
	// variables from the caller's shell must not change the setup.
	env := []string{"TMPDIR=" + dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") && !strings.HasPrefix(kv, "DAPR_") && !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	p, err := testkit.Launch(t.Context(), testkit.LaunchOptions{
		Binary: parleyBinary(t),
		Args: []string{"-backend", "dapr", "-sidecar", "launch", "-profile", "local",
			"-addr", "127.0.0.1:0", "-node-id", "pagetest", "-log-format", "json", "-shutdown-timeout", "3s"},
		Dir:          root, // parley finds components/ from its working directory
		Env:          env,
		LogPath:      filepath.Join(dir, "parley.log"),
		ReadyTimeout: 45 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.Stop(10 * time.Second) {
			t.Errorf("parley did not stop within 10s of SIGTERM; killed it")
		}
		if t.Failed() {
			t.Logf("--- parley log (last lines):\n%s", testkit.Tail(p.LogPath, 40))
			t.Logf("--- daprd log (last lines):\n%s", testkit.Tail(filepath.Join(dir, "parley-daprd-pagetest.log"), 20))
		}
	})
	return p.Base
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
