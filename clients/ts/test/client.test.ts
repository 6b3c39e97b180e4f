// The SDK against a real parley (in-memory backend, loopback only): what a
// user of the SDK sees when messages flow, fail, and connections or the
// server go away.
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import WebSocket from 'ws';

import { Client, ParleyError, type ClientOptions, type Delivered, type Message, type ReadCursor, type StateChange } from '../src/index.js';
import { Proxy, Server, buildParley, waitFor } from './parley.js';

/** Device is a Client with everything it emitted recorded. */
class Device {
  readonly messages: Message[] = [];
  readonly delivered: Delivered[] = [];
  readonly states: StateChange[] = [];
  readonly errors: ParleyError[] = [];
  readonly reads: ReadCursor[] = [];
  synced = 0;

  constructor(readonly client: Client) {
    client.on('message', (m) => this.messages.push(m));
    client.on('delivered', (d) => this.delivered.push(d));
    client.on('state', (s) => this.states.push(s));
    client.on('error', (e) => this.errors.push(e));
    client.on('synced', () => this.synced++);
    client.on('read', (r) => this.reads.push(r));
  }

  /** open connects user to url and closes the client when the test ends. */
  static async open(t: TestContext, url: string, token: ClientOptions['token'], extra: Partial<ClientOptions> = {}): Promise<Device> {
    const d = new Device(new Client({
      url,
      token,
      WebSocket,
      reconnectDelayMs: 20,
      maxReconnectDelayMs: 200,
      requestTimeoutMs: 5000,
      ...extra,
    }));
    t.after(() => d.client.close());
    await d.client.connect();
    return d;
  }

  bodies(from?: string): string[] {
    return this.messages.filter((m) => from === undefined || m.from === from).map((m) => m.body);
  }

  deliveredUpTo(conv: string): number {
    return Math.max(0, ...this.delivered.filter((d) => d.conv === conv).map((d) => d.seq));
  }
}

function directConv(a: string, b: string): string {
  return 'd:' + [a, b].sort().join('~');
}

function assertNoDuplicates(d: Device): void {
  const ids = d.messages.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, `duplicate message ids in ${JSON.stringify(ids)}`);
}

let shared: Server;

before(async () => {
  await buildParley();
  shared = await Server.start();
}, { timeout: 600_000 });

after(() => shared?.stop('SIGKILL'));

test('send resolves with the stored message; the peer gets it once; the sender sees delivered', { timeout: 30_000 }, async (t) => {
  const alice = await Device.open(t, shared.url, await shared.token('alice1'));
  const bob = await Device.open(t, shared.url, await shared.token('bob1'));
  const conv = directConv('alice1', 'bob1');

  assert.deepEqual(alice.states.map((s) => s.state), ['connecting', 'open']);
  assert.equal(alice.states[1]?.user, 'alice1');
  assert.equal(alice.client.user, 'alice1');

  const m1 = await alice.client.send({ to: 'bob1', body: 'hello bob' });
  assert.equal(m1.conv, conv);
  assert.equal(m1.seq, 1);
  assert.equal(m1.from, 'alice1');
  assert.equal(m1.body, 'hello bob');
  assert.ok(m1.id, 'the ack carries an id');
  assert.ok(m1.ts > 0, 'the ack carries a time');

  const m2 = await alice.client.send({ conv, body: '{"n":2}', ctype: 'json' });
  assert.equal(m2.seq, 2);

  await waitFor(() => alice.deliveredUpTo(conv) >= 2, 'alice to see both messages delivered');
  assert.deepEqual(bob.bodies(), ['hello bob', '{"n":2}']);
  assert.deepEqual(bob.messages[0], { ...m1, ctype: 'text' });
  assert.equal(bob.messages[1]?.ctype, 'json');
  assert.ok(alice.delivered.every((d) => d.user === 'bob1'), 'delivered names the reader');
  // Her own sends resolve their promises; they are not messages to her.
  assert.equal(alice.messages.length, 0);

  const reply = await bob.client.send({ conv, body: 'hi alice' });
  assert.equal(reply.seq, 3);
  await waitFor(() => alice.messages.length === 1, 'alice to get the reply');
  assert.equal(alice.messages[0]?.id, reply.id);

  const read = await bob.client.markRead(conv, 3);
  assert.deepEqual(read, { conv, seq: 3 });
  assert.deepEqual(bob.reads, [read]);
  const [listed] = await bob.client.conversations();
  assert.equal(listed?.id, conv);
  assert.equal(listed?.last_seq, 3);
  assert.equal(listed?.read_seq, 3);
  // alice's listing carries bob's read cursor: her messages up to it were seen.
  const [aliceView] = await alice.client.conversations();
  assert.equal(aliceView?.id, conv);
  assert.equal(aliceView?.peer_read_seq, 3);
  assertNoDuplicates(bob);
});

test('a send retried with the same cmid is stored once', { timeout: 30_000 }, async (t) => {
  const alice = await Device.open(t, shared.url, await shared.token('alice2'));
  const bob = await Device.open(t, shared.url, await shared.token('bob2'));
  const conv = directConv('alice2', 'bob2');

  const first = await alice.client.send({ to: 'bob2', body: 'once', cmid: 'fixed-cmid-1' });
  const again = await alice.client.send({ to: 'bob2', body: 'once', cmid: 'fixed-cmid-1' });
  assert.equal(again.id, first.id);
  assert.equal(again.seq, first.seq);
  const next = await alice.client.send({ to: 'bob2', body: 'twice' });
  assert.equal(next.seq, first.seq + 1, 'the retry took no seq');

  await waitFor(() => alice.deliveredUpTo(conv) >= next.seq, 'alice to see delivered');
  assert.deepEqual(bob.bodies(), ['once', 'twice']);
});

test('an error frame rejects the send with its code; the connection stays usable', { timeout: 30_000 }, async (t) => {
  const alice = await Device.open(t, shared.url, await shared.token('alice3'));

  const cases: { name: string; draft: Parameters<Client['send']>[0]; code: string }[] = [
    { name: 'body_too_large', draft: { to: 'bob3', body: 'x'.repeat(20_000) }, code: 'body_too_large' },
    { name: 'send_to_self', draft: { to: 'alice3', body: 'me' }, code: 'send_to_self' },
    { name: 'invalid_json_body', draft: { to: 'bob3', body: 'not json', ctype: 'json' }, code: 'invalid_json_body' },
    { name: 'not_member', draft: { conv: directConv('bob3', 'carol3'), body: 'hi' }, code: 'not_member' },
    { name: 'frame_too_large', draft: { to: 'bob3', body: 'x'.repeat(70_000) }, code: 'frame_too_large' },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      await assert.rejects(alice.client.send(c.draft), (err: unknown) => {
        assert.ok(err instanceof ParleyError, `a ParleyError, not ${String(err)}`);
        assert.equal(err.code, c.code);
        assert.equal(err.retryable, false);
        // The server's refusals name the frame refused; the SDK's own do not.
        assert.equal(err.request, c.code === 'frame_too_large' ? undefined : 'send');
        return true;
      });
    });
  }

  const ok = await alice.client.send({ to: 'bob3', body: 'fine' });
  assert.equal(ok.seq, 1, 'nothing was stored by the failed sends');
  assert.equal(alice.client.state, 'open');
});

test('a lost connection: the device reconnects and syncs what it missed, page by page, once each', { timeout: 30_000 }, async (t) => {
  const proxy = await Proxy.start(shared.addr);
  t.after(() => proxy.close());
  const alice = await Device.open(t, shared.url, await shared.token('alice4'));
  const bob = await Device.open(t, proxy.url, await shared.token('bob4'), { syncPageSize: 2 });
  const conv = directConv('alice4', 'bob4');

  await alice.client.send({ to: 'bob4', body: 'm1' });
  await waitFor(() => bob.messages.length === 1, 'bob to get m1');
  const syncedBefore = bob.synced;

  proxy.cut();
  await waitFor(() => bob.client.state === 'connecting', 'bob to notice the lost connection');
  for (const body of ['m2', 'm3', 'm4', 'm5', 'm6']) await alice.client.send({ to: 'bob4', body });
  proxy.restore();

  await waitFor(() => bob.client.state === 'open' && bob.synced > syncedBefore, 'bob to reconnect and sync');
  assert.deepEqual(bob.bodies(), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  assert.deepEqual(bob.messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6]);
  assert.equal(bob.client.positions()[conv], 6);
  assert.equal(bob.states.find((s) => s.state === 'connecting' && s.code !== undefined)?.code, 1006);
  // What the sync brought counts as delivered for the sender.
  await waitFor(() => alice.deliveredUpTo(conv) === 6, 'alice to see m6 delivered');
  assertNoDuplicates(bob);
});

test('while no server answers: sends wait; abort and close reject them', { timeout: 30_000 }, async () => {
  // Port 1 on loopback refuses every connection.
  const client = new Client({ url: 'http://127.0.0.1:1', token: 'unused', WebSocket, reconnectDelayMs: 10, maxReconnectDelayMs: 50 });
  const states: StateChange[] = [];
  client.on('state', (s) => states.push(s));
  const connected = client.connect();
  await waitFor(() => states.filter((s) => s.state === 'connecting').length >= 3, 'a few reconnect attempts');
  const retries = states.filter((s) => s.retryInMs !== undefined);
  assert.ok(retries.every((s) => s.retryInMs! >= 5 && s.retryInMs! <= 50), `delays within the cap: ${JSON.stringify(retries.map((s) => s.retryInMs))}`);

  const ctl = new AbortController();
  const aborted = client.send({ to: 'bob', body: 'never' }, { signal: ctl.signal });
  const waiting = client.send({ to: 'bob', body: 'never either' });
  ctl.abort();
  await assert.rejects(aborted, { code: 'aborted' });
  await assert.rejects(client.conversations(), { code: 'disconnected', retryable: true });

  await client.close();
  await assert.rejects(waiting, { code: 'closed', retryable: false });
  await assert.rejects(connected, { code: 'closed' });
  assert.equal(client.state, 'closed');
  await assert.rejects(client.send({ to: 'bob', body: 'late' }), { code: 'closed' });
});

/**
 * lossyWebSocket is the ws class with a switch that drops the device's
 * recv frames, as a device that never acknowledges would, and a count of
 * the msg frames it got.
 */
function lossyWebSocket() {
  const ctl = { dropRecv: false, msgFrames: 0 };
  class Lossy extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      this.on('message', (data) => {
        if (String(data).includes('"type":"msg"')) ctl.msgFrames++;
      });
    }

    override send(data: unknown, ...rest: unknown[]): void {
      if (ctl.dropRecv && String(data).includes('"type":"recv"')) return;
      (super.send as (...a: unknown[]) => void)(data, ...rest);
    }
  }
  return { Lossy, ctl };
}

test('close 4009 after unacknowledged pushes: reconnect, the retransmits dropped, delivered reported', { timeout: 30_000 }, async (t) => {
  const server = await Server.start({ settings: { 'parley.ack_timeout_ms': 200, 'parley.ack_tries': 2 } });
  t.after(() => server.stop('SIGKILL'));
  const { Lossy, ctl } = lossyWebSocket();
  const alice = await Device.open(t, server.url, await server.token('alice5'));
  const bob = await Device.open(t, server.url, await server.token('bob5'), { WebSocket: Lossy });
  const conv = directConv('alice5', 'bob5');
  // Acknowledge again once the server gave up on this connection.
  bob.client.on('state', (s) => {
    if (s.code === 4009) ctl.dropRecv = false;
  });

  ctl.dropRecv = true;
  const m = await alice.client.send({ to: 'bob5', body: 'are you there' });
  await waitFor(() => bob.states.some((s) => s.code === 4009), 'the server to close bob with 4009');
  await waitFor(() => alice.deliveredUpTo(conv) === m.seq, 'alice to see it delivered after bob reconnected');

  assert.ok(ctl.msgFrames >= 2, `the server sent the message again (${ctl.msgFrames} msg frames)`);
  assert.deepEqual(bob.bodies(), ['are you there']);
  assert.equal(bob.client.state, 'open');
});

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  const closeCode = signal === 'SIGTERM' ? 1001 : 1006;
  test(`a server restart (${signal}): reconnect, the pending send stored once, missed messages synced once`, { timeout: 60_000 }, async (t) => {
    const server = await Server.start();
    t.after(() => server.stop('SIGKILL'));
    const [a, b, c] = ['alice', 'bob', 'carol'].map((n) => `${n}-${signal.toLowerCase()}`) as [string, string, string];
    const alice = await Device.open(t, server.url, await server.token(a));
    const carol = await Device.open(t, server.url, await server.token(c));
    // bob asks for a token before each connection: holding it back keeps
    // him away while alice writes to him.
    const bobToken = await server.token(b);
    let gate: Promise<void> = Promise.resolve();
    let openGate = () => {};
    const bob = await Device.open(t, server.url, async () => {
      await gate;
      return bobToken;
    }, { syncPageSize: 2 });

    await carol.client.send({ to: b, body: 'before the restart' });
    await waitFor(() => bob.messages.length === 1, 'bob to get carol\'s message');

    gate = new Promise((resolve) => {
      openGate = resolve;
    });
    await server.stop(signal);
    await waitFor(() => alice.client.state === 'connecting' && bob.client.state === 'connecting', 'both to notice');
    assert.equal(bob.states.find((s) => s.code !== undefined)?.code, closeCode);

    // Sent while the server is down: it goes out once the connection is back.
    const pending = alice.client.send({ to: b, body: 'sent while down' });
    await server.startAgain();
    const first = await pending;
    // The memory backend starts empty: the conversation begins again.
    assert.equal(first.seq, 1);
    for (const body of ['m2', 'm3', 'm4', 'm5']) await alice.client.send({ to: b, body });

    const syncedBefore = bob.synced;
    openGate();
    await waitFor(() => bob.client.state === 'open' && bob.synced > syncedBefore, 'bob to reconnect and sync');
    assert.deepEqual(bob.bodies(a), ['sent while down', 'm2', 'm3', 'm4', 'm5']);

    const live = await alice.client.send({ to: b, body: 'live again' });
    await waitFor(() => alice.deliveredUpTo(directConv(a, b)) === live.seq, 'alice to see the live message delivered');
    assert.deepEqual(bob.bodies(a), ['sent while down', 'm2', 'm3', 'm4', 'm5', 'live again']);
    assert.deepEqual(bob.bodies(c), ['before the restart']);
    assertNoDuplicates(bob);
  });
}

test('history brings what came before this device: it counts as delivered to the sender', { timeout: 30_000 }, async (t) => {
  const alice = await Device.open(t, shared.url, await shared.token('alice6'));
  const conv = directConv('alice6', 'bob6');
  const sent: Message[] = [];
  for (const body of ['one', 'two', 'three']) sent.push(await alice.client.send({ to: 'bob6', body }));

  // bob's first device after the messages: they are history to it, not news.
  const bob = await Device.open(t, shared.url, await shared.token('bob6'));
  await waitFor(() => bob.synced > 0, 'bob to finish his first catch-up');
  assert.equal(bob.messages.length, 0);
  const page = await bob.client.history(conv, 0, 2);
  assert.deepEqual(page.messages.map((m) => m.body), ['one', 'two']);
  assert.equal(page.more, true);
  await waitFor(() => alice.deliveredUpTo(conv) === 2, 'alice to see the first page delivered');
  const rest = await bob.client.history(conv, 2);
  assert.deepEqual(rest.messages.map((m) => m.id), [sent[2]?.id]);
  await waitFor(() => alice.deliveredUpTo(conv) === 3, 'alice to see the last message delivered');
  assert.equal(bob.messages.length, 0, 'history emits nothing');
});

test('reconnect tries at once instead of waiting out the backoff', { timeout: 30_000 }, async (t) => {
  const proxy = await Proxy.start(shared.addr);
  t.after(() => proxy.close());
  const alice = await Device.open(t, shared.url, await shared.token('alice7'));
  // A first delay of 20 s: without reconnect(), bob stays away past the test's waits.
  const bob = await Device.open(t, proxy.url, await shared.token('bob7'), { reconnectDelayMs: 20_000, maxReconnectDelayMs: 20_000 });
  bob.client.reconnect(); // open: nothing to do
  assert.equal(bob.states.filter((s) => s.state === 'open').length, 1);

  proxy.cut();
  await waitFor(() => bob.states.some((s) => s.retryInMs !== undefined), 'bob to plan a reconnect');
  const planned = bob.states.find((s) => s.retryInMs !== undefined)!;
  assert.ok(planned.retryInMs! >= 10_000, `the planned delay is ${planned.retryInMs} ms`);
  const m = await alice.client.send({ to: 'bob7', body: 'while you were away' });
  proxy.restore();

  const asked = Date.now();
  bob.client.reconnect();
  await waitFor(() => bob.client.state === 'open' && bob.messages.length === 1, 'bob to reconnect and sync', 5_000);
  assert.ok(Date.now() - asked < 5_000);
  assert.equal(bob.messages[0]?.id, m.id);
  assert.deepEqual(bob.states.slice(-2).map((s) => [s.state, s.attempt]), [['connecting', 0], ['open', 0]]);
});
