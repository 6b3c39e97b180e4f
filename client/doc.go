// Package client is the Go SDK of parley's public protocol, the same
// protocol the chat page and mobile apps speak: sign in over HTTP, connect
// over WebSocket (JSON or protobuf frames), send with idempotent retries,
// receive with delivery ACKs, and sync a conversation from a seq.
//
// Import it as github.com/parley-im/parley/client. It depends on no part of
// the server, so a Go service, a bot or a test can use it on its own.
//
// A session looks like this:
//
//	tok, err := client.DevToken(ctx, "http://localhost:8080", "alice") // or a token from your identity provider
//	c, err := client.Dial(ctx, "http://localhost:8080", tok, client.Options{Device: "bot"})
//	defer c.Close()
//	ack, err := c.Send(ctx, "bob", "", "cmid-1", "hello") // ack.Seq is the message's place in the conversation
//	for m := range c.Messages { ... }                       // each push is ACKed to the server for you
//
// Delivery is at least once: after a reconnect the same message may come
// again, live or by sync. Keep what a device holds in an Inbox, which drops
// duplicates by message id and tells, per conversation, the highest seq
// with no gap below it; after Dial again, Sync from there:
//
//	in := client.NewInbox()
//	for m := range c.Messages { in.Add(m) }
//	// connection lost: dial again, then
//	msgs, err := c.Sync(ctx, conv, in.Contiguous(conv))
//	for _, m := range msgs { in.Add(m) }
//
// Send with the same client message id (cmid) after a timeout or a lost
// connection: the server answers the retry with the first ACK instead of
// storing the message twice. Errors from the server are *Error, with a
// code from the protocol, whether a retry may succeed, and, for muted and
// banned, until when.
//
// Groups, replies, mentions, recalls and edits:
//
//	g, err := c.CreateGroup(ctx, client.NewGroup{Name: "Launch", Users: []string{"bob"}})
//	_, err = c.Invite(ctx, g.Conv, "carol")
//	m, err := c.Send(ctx, "", g.Conv, "cmid-2", "hi", client.ReplyTo(1), client.Mention("bob"))
//	_, err = c.Recall(ctx, g.Conv, m.Seq, "")
//	err = c.Typing(g.Conv, true) // no answer; other members get a typing notice
//
// Changes to a conversation arrive as messages of ctype "system" at their
// own seq; ParseSystemEvent decodes them. An Inbox applies message.recalled
// and message.edited to the message they target. Notices (delivered, seen,
// read_by, typing, join requests) come on Client.Events and Session.Events.
// A Session does not reconnect while the user is suspended (close 4012).
package client
