package main

// The browser tests of the chat page that parley serves at /. They build the
// parley command, run it over a real daprd (sidecar/bin/daprd, built by
// `make sidecar`) and drive signed-in pages in headless Chromium: two in a
// direct conversation, three in a group.

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
// live, in order, escaped, and that alice's reaches "delivered" and then
// "seen" once bob's open pane read it. Then alice's connection drops: what
// bob writes meanwhile reaches her after the reconnect, and what she writes
// offline goes out then. A message the server refuses shows failed, with
// the reason and a retry. A reload keeps her signed in with the history and
// the ticks; a message to a conversation that is not open shows as unread
// until opened; sign out clears the session, and a token the server refuses
// signs the page out.
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
	alice.wait("alice's message reaches delivered or seen", `['delivered', 'seen'].includes(`+stateOf(hello)+`) && `+
		stateTextOf(hello)+` === `+stateOf(hello))
	alice.wait("alice's message shows seen: bob's open pane read it", stateOf(hello)+` === 'seen' && `+stateTextOf(hello)+` === 'seen'`)
	bob.wait("bob's reply shows seen: alice's open pane read it", stateOf(reply)+` === 'seen'`)
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
	alice.wait("alice's offline message is seen by bob", stateOf(queued)+` === 'seen'`)
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

	// A message the server refuses shows as failed, with the reason and a
	// retry, and takes no seq (the next message below still gets seq 5).
	alice.text(`document.querySelector('#composer').value = 'x'.repeat(20000); ''`)
	alice.do("alice sends a message over the size limit", pressEnter())
	const refused = `document.querySelector('#messages li.msg.failed')`
	alice.wait("the refused message shows failed with the reason and a retry",
		`(m => !!m && !m.dataset.seq && m.querySelector('[data-state]').dataset.state === 'failed' && !m.querySelector('.retry').hidden)(`+refused+`)`+
			` && !document.querySelector('#send-error').hidden && document.querySelector('#send-error').textContent !== ''`+
			` && `+refused+`.querySelector('[data-state]').textContent === 'failed: ' + document.querySelector('#send-error').textContent`)

	// A reload keeps alice signed in and reopens the conversation from history.
	alice.do("reload", chromedp.Reload())
	alice.wait("alice is still signed in after a reload",
		`document.querySelector('#me').textContent === 'alice' && document.querySelector('#conn-status').dataset.state === 'online'`)
	alice.wait("the history comes back in order", msgIs(hello, "alice", 1)+` && `+msgIs(reply, "bob", 2)+` && `+
		msgIs(away, "bob", 3)+` && `+msgIs(queued, "alice", 4)+` && `+orderIs(hello, reply)+` && `+orderIs(away, queued))
	// History carries no read state: the page kept what it learnt.
	alice.wait("alice's messages still show seen after the reload", stateOf(hello)+` === 'seen' && `+stateOf(queued)+` === 'seen'`)

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
	alice.wait("alice's new message is seen once bob opened the conversation", stateOf(more)+` === 'seen'`)

	alice.do("sign out", chromedp.Click(chromedp.CSS("#signout")))
	alice.wait("sign out shows the sign-in form", `!document.querySelector('#login').hidden && sessionStorage.length === 0`)
	path := filepath.Join(shots, "signed-out.png")
	alice.screenshot(path)
	t.Logf("screenshot of the sign-in form: %s", path)

	// A session whose token the server refuses (as after a restart with
	// another key) ends on the sign-in form, and its client stops dialing.
	alice.text(`sessionStorage.setItem('parley.token', 'not-a-token'); sessionStorage.setItem('parley.user', 'alice'); ''`)
	alice.do("reload with a refused token", chromedp.Reload())
	alice.wait("the page signs out and says why",
		`!document.querySelector('#login').hidden && document.querySelector('#login-error').textContent.includes('no longer valid') && sessionStorage.length === 0`)
	before := alice.text(`String(window.__sockets.length)`)
	time.Sleep(1500 * time.Millisecond) // several reconnect delays of a client left running
	if after := alice.text(`String(window.__sockets.length)`); after != before {
		t.Errorf("the signed-out page still opens WebSockets: %s, then %s", before, after)
	}
}

// TestGroupChatPage drives alice, bob and carol, each in a browser
// profile of their own, through a group: alice creates it with bob and
// carol from the new-group dialog and writes; her message shows "read by 2"
// once bob and carol opened the group. bob replies to it (the reply shows
// the quote on every page), bob sees carol typing, carol mentions alice
// (highlighted on alice's page), alice edits one message and recalls
// another (every page shows the change). A direct message from bob shows as
// unread on alice's list while she is in the group. From the group panel
// alice, the owner, mutes carol; carol leaves; every page shows these events
// as readable lines. A reload of alice's page brings it all back; alice
// invites carol again, then removes her.
func TestGroupChatPage(t *testing.T) {
	testkit.SkipShort(t)
	chrome := findChromium(t)
	root := daprdtest.RequireBinary(t)
	base := startPage(t, root)
	t.Logf("parley is serving at %s", base)

	browser := startBrowser(t, chrome)
	alice := openPage(t, browser, "alice")
	bob := openPage(t, browser, "bob")
	carol := openPage(t, browser, "carol")
	everyone := []*page{alice, bob, carol}
	for _, p := range everyone {
		p.signIn(base)
	}

	name := "launch " + randomHex(t)
	alice.do("create a group with bob and carol",
		chromedp.Click(chromedp.CSS("#new-group-btn")),
		chromedp.WaitVisible(chromedp.CSS("#group-name")),
		chromedp.SendKeys(chromedp.CSS("#group-name"), name),
		chromedp.SendKeys(chromedp.CSS("#group-members"), "bob, carol"),
		chromedp.Click(chromedp.CSS("#group-create")),
	)
	created := "alice created the group “" + name + "” with bob and carol"
	alice.wait("alice's pane shows the new group and its creation",
		`!document.querySelector('#group-dialog').open && document.querySelector('#conv-title').textContent === `+jsString(name)+
			` && `+eventShown(created))
	groupID := alice.text(`sessionStorage.getItem('parley.open') || ''`)
	if !strings.HasPrefix(groupID, "g:") {
		t.Fatalf("alice's open conversation is %q, want a group id", groupID)
	}
	row := `#conversations li[data-conv="` + groupID + `"]`

	hello := "hello team " + randomHex(t)
	alice.do("alice writes to the group", chromedp.SendKeys(chromedp.CSS("#composer"), hello), pressEnter())
	alice.wait("alice's message is stored after the creation event", msgFrom(hello, "alice")+` && `+stateOf(hello)+` !== 'sending'`)
	helloSeq := alice.text(msgJS(hello) + `.dataset.seq`)

	for _, p := range []*page{bob, carol} {
		p.wait("the group shows in the list by name with unread messages",
			`(r => !!r && r.querySelector('.name').textContent === `+jsString(name)+` && !!r.querySelector('[data-testid=unread]'))(document.querySelector('`+row+`'))`)
		p.do("open the group", chromedp.Click(chromedp.CSS(row+" button")))
		p.wait("the pane shows the creation and alice's message with her name",
			`document.querySelector('#conv-title').textContent === `+jsString(name)+` && `+eventShown(created)+` && `+msgFrom(hello, "alice")+
				` && `+msgJS(hello)+`.querySelector('.from').textContent === 'alice' && !document.querySelector('`+row+` [data-testid=unread]')`)
	}
	alice.wait("alice's message shows read by 2 after bob and carol opened the group",
		`(m => !!m && m.querySelector('[data-testid=read-by]').textContent === 'read by 2')(`+msgJS(hello)+`)`)

	// bob replies to alice's message.
	reply := "on it " + randomHex(t)
	bob.do("bob picks reply on alice's message", chromedp.Click(chromedp.CSS(`#messages li[data-seq="`+helloSeq+`"] [data-testid=reply-btn]`)))
	bob.wait("the composer says whom bob replies to",
		`!document.querySelector('#compose-bar').hidden && document.querySelector('#compose-what').textContent === `+jsString("Replying to alice: "+hello))
	bob.do("bob sends the reply", chromedp.SendKeys(chromedp.CSS("#composer"), reply), pressEnter())
	for _, p := range everyone {
		p.wait("bob's reply shows the message it answers", msgFrom(reply, "bob")+` && `+quoteOf(reply)+` === `+jsString("↩ alice: "+hello))
	}
	bob.wait("the reply bar is gone after sending", `document.querySelector('#compose-bar').hidden`)

	// carol types (bob sees it), then sends a message that mentions alice.
	mention := "@alice can you look " + randomHex(t)
	carol.do("carol types", chromedp.SendKeys(chromedp.CSS("#composer"), mention[:12]))
	bob.wait("bob sees carol typing", `document.querySelector('#typing').textContent === 'carol is typing…'`)
	carol.do("carol finishes and sends", chromedp.SendKeys(chromedp.CSS("#composer"), mention[12:]), pressEnter())
	bob.wait("bob gets carol's message and the typing line clears", msgFrom(mention, "carol")+` && document.querySelector('#typing').textContent === ''`)
	alice.wait("alice sees carol's message mention her, highlighted",
		`(m => !!m && m.dataset.mentioned === '1' && (m.querySelector('[data-testid=mention]') || {}).textContent === '@alice')(`+msgJS(mention)+`)`)
	bob.wait("bob sees the mention marked but not as his", `(m => !!m && !m.dataset.mentioned && !!m.querySelector('[data-testid=mention]'))(`+msgJS(mention)+`)`)

	// alice edits her first message.
	edited := "hello team, edited " + randomHex(t)
	alice.do("alice picks edit on her message", chromedp.Click(chromedp.CSS(`#messages li[data-seq="`+helloSeq+`"] [data-testid=edit-btn]`)))
	alice.wait("the composer holds the message to edit",
		`document.querySelector('#composer').value === `+jsString(hello)+` && document.querySelector('#compose-what').textContent === 'Editing your message'`)
	alice.text(`document.querySelector('#composer').value = ''`) // as select-all and delete would
	alice.do("alice types the new text and sends", chromedp.SendKeys(chromedp.CSS("#composer"), edited), pressEnter())
	for _, p := range everyone {
		p.wait("the message shows its new text, flagged edited, at the same place",
			`(m => !!m && m.dataset.seq === `+jsString(helloSeq)+` && !m.querySelector('[data-testid=edited]').hidden)(`+msgJS(edited)+`) && !`+msgJS(hello)+
				` && `+quoteOf(reply)+` === `+jsString("↩ alice: "+edited))
	}

	// alice recalls a message she regrets.
	oops := "wrong chat " + randomHex(t)
	alice.do("alice sends a message by mistake", chromedp.SendKeys(chromedp.CSS("#composer"), oops), pressEnter())
	alice.wait("it is stored", msgFrom(oops, "alice")+` && `+stateOf(oops)+` !== 'sending'`)
	oopsSeq := alice.text(msgJS(oops) + `.dataset.seq`)
	for _, p := range []*page{bob, carol} {
		p.wait("the mistaken message arrives", msgFrom(oops, "alice"))
	}
	alice.do("alice recalls it", chromedp.Click(chromedp.CSS(`#messages li[data-seq="`+oopsSeq+`"] [data-testid=recall-btn]`)))
	for _, p := range everyone {
		p.wait("the message shows as recalled",
			`(m => !!m && m.dataset.recalled === '1' && m.querySelector('.body').textContent === 'message recalled')(document.querySelector('#messages li[data-seq="`+oopsSeq+`"]')) && !`+msgJS(oops))
	}
	if n := alice.text(`String(document.querySelectorAll('#messages li[data-testid=message]').length)`); n != "4" {
		t.Errorf("alice's pane shows %s messages, want 4 (hello, reply, mention, recalled)", n)
	}

	// A direct message from bob while alice is in the group counts as unread.
	psst := "psst " + randomHex(t)
	bob.do("bob starts a direct chat with alice", chromedp.SendKeys(chromedp.CSS("#new-chat"), "alice"), chromedp.Click(chromedp.CSS("#new-chat-btn")))
	bob.wait("bob's pane shows alice", `document.querySelector('#conv-title').textContent === 'alice'`)
	bob.do("bob writes to alice", chromedp.SendKeys(chromedp.CSS("#composer"), psst), pressEnter())
	const direct = `#conversations li[data-conv="d:alice~bob"]`
	alice.wait("alice's list shows one unread direct message while the group stays open",
		`(document.querySelector('`+direct+` [data-testid=unread]') || {dataset: {}}).dataset.unread === '1' && document.querySelector('#conv-title').textContent === `+jsString(name))
	alice.do("alice opens the direct conversation", chromedp.Click(chromedp.CSS(direct+" button")))
	alice.wait("the message shows and the count is gone", msgFrom(psst, "bob")+` && !document.querySelector('`+direct+` [data-testid=unread]')`)
	bob.wait("bob's message shows seen", stateOf(psst)+` === 'seen'`)
	bob.do("bob goes back to the group", chromedp.Click(chromedp.CSS(row+" button")))
	bob.wait("bob's pane shows the group again", `document.querySelector('#conv-title').textContent === `+jsString(name)+` && `+msgFrom(reply, "bob"))

	// Back in the group, alice (the owner) mutes carol from the panel.
	alice.do("alice goes back to the group and opens its panel",
		chromedp.Click(chromedp.CSS(row+" button")), chromedp.Click(chromedp.CSS("#group-toggle")))
	alice.wait("the panel lists the three members with alice as owner",
		`(ms => ms.length === 3 && ms[0] === 'alice' && ms.includes('bob') && ms.includes('carol'))([...document.querySelectorAll('#members li[data-testid=member]')].map(li => li.dataset.user))`+
			` && document.querySelector('#members li[data-user=alice] [data-testid=role]').textContent === 'owner'`)
	alice.do("alice mutes carol", chromedp.Click(chromedp.CSS(`#members li[data-user=carol] [data-testid=mute-btn]`)))
	for _, p := range everyone {
		p.wait("the mute shows as a line", eventStarts("alice muted carol until"))
	}
	alice.wait("carol shows as muted in the panel", `!!document.querySelector('#members li[data-user=carol] [data-testid=unmute-btn]')`)

	// carol leaves from her panel.
	carol.do("carol leaves", chromedp.Click(chromedp.CSS("#group-toggle")), chromedp.Click(chromedp.CSS("#leave-btn")))
	carol.wait("carol's page says she is out and offers no composer",
		eventShown("carol left")+` && !document.querySelector('#closed-note').hidden && document.querySelector('#composer-form').hidden`)
	alice.wait("alice sees carol leave and the panel drops her",
		eventShown("carol left")+` && !document.querySelector('#members li[data-user=carol]') && document.querySelector('#conv-sub').textContent.startsWith('2 members')`)

	// A reload rebuilds the group from history: the changes, the reply, the
	// mention and the events come back.
	alice.do("alice reloads", chromedp.Reload())
	alice.wait("alice's group comes back from history as it was",
		`document.querySelector('#conn-status').dataset.state === 'online' && document.querySelector('#conv-title').textContent === `+jsString(name)+
			` && (m => !!m && m.dataset.seq === `+jsString(helloSeq)+` && !m.querySelector('[data-testid=edited]').hidden)(`+msgJS(edited)+`)`+
			` && (m => !!m && m.dataset.recalled === '1')(document.querySelector('#messages li[data-seq="`+oopsSeq+`"]'))`+
			` && `+quoteOf(reply)+` === `+jsString("↩ alice: "+edited)+
			` && (m => !!m && m.dataset.mentioned === '1')(`+msgJS(mention)+`)`+
			` && `+eventShown(created)+` && `+eventShown("carol left")+` && `+eventStarts("alice muted carol until")+
			// The composer keeps a line's height (it was once measured while hidden).
			` && document.querySelector('#composer').offsetHeight >= 30`)
	alice.do("alice shows the group panel again", chromedp.Click(chromedp.CSS("#group-toggle")))
	alice.wait("the panel lists alice and bob", `[...document.querySelectorAll('#members li[data-testid=member]')].map(li => li.dataset.user).join() === 'alice,bob'`)

	// alice invites carol back, then removes her.
	alice.do("alice invites carol", chromedp.SendKeys(chromedp.CSS("#invite"), "carol"), chromedp.Click(chromedp.CSS("#invite-btn")))
	for _, p := range everyone {
		p.wait("the invitation shows as a line", eventShown("alice added carol"))
	}
	carol.wait("carol may write again", `document.querySelector('#closed-note').hidden && !document.querySelector('#composer-form').hidden`)
	alice.wait("the panel lists carol again", `!!document.querySelector('#members li[data-user=carol] [data-testid=kick-btn]') && document.querySelector('#invite').value === ''`)
	alice.do("alice removes carol", chromedp.Click(chromedp.CSS(`#members li[data-user=carol] [data-testid=kick-btn]`)))
	for _, p := range everyone {
		p.wait("the removal shows as a line", eventShown("alice removed carol"))
	}
	carol.wait("carol's page says she is out", `!document.querySelector('#closed-note').hidden && document.querySelector('#composer-form').hidden`)
	alice.wait("the panel drops carol", `!document.querySelector('#members li[data-user=carol]')`)

	shots := filepath.Join(os.TempDir(), "parley-pagetest")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range everyone {
		path := filepath.Join(shots, "group-"+p.name+".png")
		p.screenshot(path)
		t.Logf("screenshot of %s's page: %s", p.name, path)
	}
	for _, p := range everyone {
		if n := p.text(`String(document.querySelectorAll('#messages i, #conversations i, #members i').length)`); n != "0" {
			t.Errorf("%s's page turned text into markup: %s <i> elements", p.name, n)
		}
	}
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

// msgFrom says a stored message (it has a seq) with this body from this sender is shown.
func msgFrom(body, from string) string {
	return fmt.Sprintf(`(m => !!m && m.dataset.from === %s && !!m.dataset.seq)(%s)`, jsString(from), msgJS(body))
}

// quoteOf is the quote line shown above the message whose body is body.
func quoteOf(body string) string {
	return `((m => m && !m.querySelector('[data-testid=reply-quote]').hidden ? m.querySelector('[data-testid=reply-quote]').textContent : '')(` + msgJS(body) + `))`
}

// eventShown says a system event line reads exactly text.
func eventShown(text string) string {
	return `[...document.querySelectorAll('#messages li[data-testid=event]')].some(li => li.textContent === ` + jsString(text) + `)`
}

// eventStarts says a system event line starts with text.
func eventStarts(text string) string {
	return `[...document.querySelectorAll('#messages li[data-testid=event]')].some(li => li.textContent.startsWith(` + jsString(text) + `))`
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
	// The page runs on the TypeScript client, which parley serves under /sdk/.
	p.wait("the page loaded the client's modules from parley",
		`(names => ['/sdk/index.js', '/sdk/client.js'].every(n => names.some(u => new URL(u).pathname === n)))`+
			`(performance.getEntriesByType('resource').map(e => e.name))`)
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
