// Groups, replies, mentions, recalls, edits, typing, receipts and
// suspensions, through the SDK against a real parley (in-memory backend,
// loopback only).
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import WebSocket from 'ws';

import {
  Client,
  ParleyError,
  applyChange,
  parseSystemEvent,
  type ClientOptions,
  type JoinNotice,
  type Message,
  type MessageChange,
  type ReadBy,
  type Seen,
  type StateChange,
  type TypingNotice,
} from '../src/index.js';
import { Server, buildParley, waitFor } from './parley.js';

/** Member is a Client with what it emitted recorded. */
class Member {
  readonly messages: Message[] = [];
  readonly changes: MessageChange[] = [];
  readonly typing: TypingNotice[] = [];
  readonly readBy: ReadBy[] = [];
  readonly seen: Seen[] = [];
  readonly joinRequests: JoinNotice[] = [];
  readonly states: StateChange[] = [];
  readonly errors: ParleyError[] = [];

  constructor(readonly client: Client) {
    client.on('message', (m) => this.messages.push(m));
    client.on('changed', (c) => this.changes.push(c));
    client.on('typing', (t) => this.typing.push(t));
    client.on('read_by', (r) => this.readBy.push(r));
    client.on('seen', (s) => this.seen.push(s));
    client.on('join_requested', (j) => this.joinRequests.push(j));
    client.on('state', (s) => this.states.push(s));
    client.on('error', (e) => this.errors.push(e));
  }

  static async open(t: TestContext, server: Server, user: string, extra: Partial<ClientOptions> = {}): Promise<Member> {
    const token = await server.token(user);
    const m = new Member(new Client({ url: server.url, token, WebSocket, reconnectDelayMs: 20, maxReconnectDelayMs: 200, requestTimeoutMs: 5000, ...extra }));
    t.after(() => m.client.close());
    await m.client.connect();
    return m;
  }

  /** events are the system events it got in conv, by type. */
  events(conv: string): string[] {
    return this.messages.filter((m) => m.conv === conv && m.ctype === 'system').map((m) => parseSystemEvent(m)?.type ?? '?');
  }

  message(id: string): Message | undefined {
    return this.messages.find((m) => m.id === id);
  }
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ParleyError, `a ParleyError, not ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

let shared: Server;

before(async () => {
  await buildParley();
  shared = await Server.start();
}, { timeout: 600_000 });

after(() => shared?.stop('SIGKILL'));

test('a group: create, invite, reply, mention, type, read, recall, edit, leave', { timeout: 60_000 }, async (t) => {
  const alice = await Member.open(t, shared, 'g-alice');
  const bob = await Member.open(t, shared, 'g-bob');
  const carol = await Member.open(t, shared, 'g-carol');

  const created = await alice.client.createGroup({ name: 'Launch', users: ['g-bob'], cmid: 'create-launch' });
  const conv = created.conv;
  assert.match(conv, /^g:[a-z2-7]{26}$/);
  assert.equal(created.group.name, 'Launch');
  assert.equal(created.group.owner, 'g-alice');
  assert.equal(created.group.count, 2);
  assert.equal(created.group.policy, 'invite_only');
  const ev = created.event && parseSystemEvent(created.event);
  assert.equal(ev?.type, 'group.created');
  assert.deepEqual(ev?.users, ['g-bob']);
  await waitFor(() => bob.events(conv).includes('group.created'), 'bob to learn of the group');
  const retried = await alice.client.createGroup({ name: 'Launch', users: ['g-bob'], cmid: 'create-launch' });
  assert.equal(retried.conv, conv, 'a retry with the same cmid makes no second group');

  const invited = await alice.client.invite(conv, ['g-carol']);
  assert.equal(invited.group.count, 3);
  await waitFor(() => carol.events(conv).includes('member.joined'), 'carol to see herself added');
  await waitFor(() => bob.events(conv).includes('member.joined'), 'bob to see carol added');
  // Her own events come once each, although the server pushes them too.
  await waitFor(() => alice.events(conv).length === 2, 'alice to hold her two events');
  assert.deepEqual(alice.events(conv), ['group.created', 'member.joined']);

  const hello = await alice.client.send({ conv, body: 'hello team' });
  const reply = await bob.client.send({ conv, body: 'hi alice', reply_to: hello.seq, mentions: ['g-alice'] });
  assert.equal(reply.reply_to, hello.seq);
  await waitFor(() => alice.message(reply.id) !== undefined, 'alice to get the reply');
  const listed = (await alice.client.conversations()).find((c) => c.id === conv);
  assert.equal(listed?.mentioned, true, 'the listing says a message alice has not read mentions her');
  assert.equal(alice.message(reply.id)?.reply_to, hello.seq);
  assert.deepEqual(alice.message(reply.id)?.mentions, ['g-alice']);

  const all = await alice.client.send({ conv, body: 'standup now', mentions: ['@all'] });
  assert.equal(all.mention_all, true);
  await waitFor(() => carol.message(all.id) !== undefined, 'carol to get the @all');
  assert.equal(carol.message(all.id)?.mention_all, true);
  await rejectsWith(bob.client.send({ conv, body: 'me too', mentions: ['@all'] }), 'forbidden');

  carol.client.typing(conv, true);
  const carolTyping = (m: Member) => m.typing.some((x) => x.conv === conv && x.user === 'g-carol' && x.on);
  await waitFor(() => carolTyping(alice) && carolTyping(bob), 'alice and bob to see carol typing');
  assert.ok(!carolTyping(carol), 'the typist is not told of herself');

  await bob.client.markRead(conv, all.seq);
  await carol.client.markRead(conv, all.seq);
  await waitFor(() => alice.readBy.some((r) => r.conv === conv && r.seq === all.seq && r.count === 2), 'alice to see her @all read by 2');

  const recalled = await bob.client.recall(conv, reply.seq);
  assert.equal(parseSystemEvent(recalled)?.type, 'message.recalled');
  await waitFor(() => alice.changes.some((c) => c.seq === reply.seq), 'alice to learn of the recall');
  const shownReply = alice.changes.filter((c) => c.seq === reply.seq)
    .reduce((m, c) => applyChange(m, c.event, c.conv), alice.message(reply.id)!);
  assert.equal(shownReply.recalled, true);
  assert.equal(shownReply.body, '');
  assert.equal(bob.changes.filter((c) => c.seq === reply.seq).length, 1, 'bob is told of his own recall once');

  await alice.client.edit(conv, hello.seq, 'hello, team!');
  await waitFor(() => bob.changes.some((c) => c.seq === hello.seq), 'bob to learn of the edit');
  const shownHello = applyChange(bob.message(hello.id)!, bob.changes.find((c) => c.seq === hello.seq)!.event, conv);
  assert.equal(shownHello.body, 'hello, team!');
  assert.equal(shownHello.edited, true);
  await rejectsWith(bob.client.edit(conv, hello.seq, 'not mine'), 'not_editable');

  const page = await carol.client.history(conv);
  const bySeq = new Map(page.messages.map((m) => [m.seq, m]));
  assert.equal(bySeq.get(hello.seq)?.body, 'hello, team!');
  assert.equal(bySeq.get(hello.seq)?.edited, true);
  assert.equal(bySeq.get(reply.seq)?.recalled, true);

  await rejectsWith(bob.client.changeGroup(conv, { op: 'kick', users: ['g-alice'] }), 'forbidden');
  await rejectsWith(alice.client.leave(conv), 'owner_cannot_leave');
  await carol.client.leave(conv);
  await waitFor(() => alice.events(conv).includes('member.left'), 'alice to see carol leave');
  await rejectsWith(carol.client.send({ conv, body: 'still here?' }), 'not_member');
  // A typing notice has no answer; its refusal comes as an error event that names it.
  carol.client.typing(conv, false);
  await waitFor(() => carol.errors.some((e) => e.request === 'typing'), 'carol to be told her typing was refused');
  assert.equal(carol.errors.find((e) => e.request === 'typing')?.code, 'not_member');

  const direct = await alice.client.send({ to: 'g-bob', body: 'psst' });
  await bob.client.markRead(direct.conv, direct.seq);
  await waitFor(() => alice.seen.some((s) => s.conv === direct.conv && s.seq === direct.seq && s.user === 'g-bob'), 'alice to see bob read her');
});

test('join requests: the owner is told, approves, and the requester joins', { timeout: 30_000 }, async (t) => {
  const owner = await Member.open(t, shared, 'j-owner');
  const asker = await Member.open(t, shared, 'j-asker');
  const { conv } = await owner.client.createGroup({ name: 'Club', policy: 'approval' });
  const asked = await asker.client.changeGroup(conv, { op: 'join', note: 'let me in' });
  assert.equal(asked.event, undefined, 'a request stores nothing');
  await waitFor(() => owner.joinRequests.some((j) => j.conv === conv && j.user === 'j-asker' && j.note === 'let me in'), 'the owner to be told');
  const pending = await owner.client.changeGroup(conv, { op: 'requests' });
  assert.deepEqual(pending.requests.map((r) => [r.user, r.note]), [['j-asker', 'let me in']]);
  const approved = await owner.client.changeGroup(conv, { op: 'approve', users: ['j-asker'] });
  assert.equal(approved.group.count, 2);
  await waitFor(() => asker.events(conv).includes('member.joined'), 'the requester to see the join');
});

test('a suspended user is closed with 4012 and does not reconnect before the suspension ends', { timeout: 30_000 }, async (t) => {
  const server = await Server.start({ adminToken: 'operator-secret' });
  t.after(() => server.stop('SIGKILL'));
  const dave = await Member.open(t, server, 'dave');
  const until = await server.ban('user:dave', 2);
  await waitFor(() => dave.states.some((s) => s.code === 4012), 'dave to be closed with 4012');
  const closed = dave.states.find((s) => s.code === 4012)!;
  // The close reason has whole seconds.
  assert.ok(closed.bannedUntil !== undefined && closed.bannedUntil <= until && closed.bannedUntil > until - 1000,
    `bannedUntil ${closed.bannedUntil} for a ban until ${until}`);
  assert.ok(closed.retryInMs !== undefined && closed.retryInMs >= closed.bannedUntil - Date.now() - 50,
    `the next try in ${closed.retryInMs} ms comes after the suspension`);
  await waitFor(() => dave.client.state === 'open', 'dave to come back after the suspension', 10_000);
  assert.ok(Date.now() >= closed.bannedUntil, 'reconnected only once the suspension ended');
  assert.equal(dave.states.filter((s) => s.state === 'open').length, 2, 'one reconnection, no attempts while suspended');
});

test('parseSystemEvent and applyChange', () => {
  const base: Message = {
    id: 'm2', conv: 'g:x', seq: 2, from: 'bob', cmid: 'c', ctype: 'text', body: 'teh', ts: 1,
    reply_to: 0, mentions: [], mention_all: false, edited: false, recalled: false,
  };
  const cases: { name: string; body: string; conv: string; want: Partial<Message> }[] = [
    { name: 'edit', body: '{"type":"message.edited","target":2,"ctype":"text","body":"the"}', conv: 'g:x', want: { body: 'the', edited: true } },
    { name: 'recall', body: '{"type":"message.recalled","target":2}', conv: 'g:x', want: { body: '', recalled: true } },
    { name: 'other_target', body: '{"type":"message.recalled","target":3}', conv: 'g:x', want: {} },
    { name: 'other_conversation', body: '{"type":"message.recalled","target":2}', conv: 'g:y', want: {} },
  ];
  for (const c of cases) {
    const ev = parseSystemEvent({ ctype: 'system', body: c.body });
    assert.ok(ev, c.name);
    assert.deepEqual(applyChange(base, ev, c.conv), { ...base, ...c.want }, c.name);
  }
  assert.equal(parseSystemEvent({ ctype: 'text', body: '{"type":"member.joined"}' }), undefined);
  assert.equal(parseSystemEvent({ ctype: 'system', body: 'nope' }), undefined);
});

test('pushes of a group above parley.group_ack_max are not answered, and nothing is lost', { timeout: 60_000 }, async (t) => {
  const server = await Server.start({ settings: { 'parley.group_ack_max': 2, 'parley.ack_timeout_ms': 200, 'parley.ack_tries': 2 } });
  t.after(() => server.stop('SIGKILL'));
  // What bob's client writes, frame by frame.
  const written: { type?: string; conv?: string; seq?: number }[] = [];
  class Recording extends WebSocket {
    override send(data: unknown, ...rest: unknown[]): void {
      if (typeof data === 'string') written.push(JSON.parse(data) as { type?: string });
      (super.send as (...a: unknown[]) => void)(data, ...rest);
    }
  }
  const alice = await Member.open(t, server, 'n-alice');
  const bob = await Member.open(t, server, 'n-bob', { WebSocket: Recording as unknown as typeof WebSocket });
  await Member.open(t, server, 'n-carol');
  const statesAtStart = bob.states.length;
  const big = (await alice.client.createGroup({ name: 'three', users: ['n-bob', 'n-carol'], cmid: 'n-big' })).conv;
  const small = (await alice.client.createGroup({ name: 'two', users: ['n-bob'], cmid: 'n-small' })).conv;
  for (let i = 1; i <= 5; i++) await alice.client.send({ conv: big, body: `big ${i}`, cmid: `n-big-${i}` });
  await alice.client.send({ conv: small, body: 'small', cmid: 'n-small-1' });
  await waitFor(() => bob.messages.some((m) => m.body === 'small'), 'bob to get the small group\'s message');
  await waitFor(() => bob.messages.filter((m) => m.conv === big && m.body.startsWith('big ')).length === 5, 'bob to get the five');
  // Past two ACK timeouts: a push the server waited for would have closed
  // bob's connection with 4009 by now.
  await new Promise((r) => setTimeout(r, 700));
  const recvs = written.filter((f) => f.type === 'recv');
  assert.ok(recvs.some((f) => f.conv === small), 'the small group\'s push is acknowledged');
  assert.deepEqual(recvs.filter((f) => f.conv === big), [], 'no recv for the large group\'s pushes');
  assert.deepEqual(bob.states.slice(statesAtStart), [], 'bob stayed connected');
  assert.deepEqual(bob.messages.filter((m) => m.conv === big && m.body.startsWith('big ')).map((m) => m.body), ['big 1', 'big 2', 'big 3', 'big 4', 'big 5']);
});
