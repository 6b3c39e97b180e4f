import { Emitter } from './emitter.js';
import { ParleyError } from './errors.js';
import {
  normalizeConversation,
  normalizeMessage,
  type ClientFrame,
  type ContentType,
  type Conversation,
  type Frame,
  type Message,
} from './frames.js';

/**
 * The part of the WebSocket API the client uses. The browser's `WebSocket`
 * and the `ws` package's class both fit. Handlers take `any` events because
 * each implementation has its own event classes; the client reads only
 * `data`, `code` and `reason`.
 */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: the browser's global `WebSocket`, or `ws` in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Where the client stands: dialing (or waiting to), open, or closed for good. */
export type ConnectionState = 'connecting' | 'open' | 'closed';

/** The payload of a `state` event. */
export interface StateChange {
  state: ConnectionState;
  /** Reconnect attempts since the last open connection; 0 before the first retry. */
  attempt: number;
  /** Close code of the connection that just ended, if one did (1006 when it was lost). */
  code?: number;
  /** Close reason or what went wrong. */
  reason?: string;
  /** With `connecting` after a drop: how long until the next try. */
  retryInMs?: number;
  /** With `open`: the user, connection and node of the server's hello. */
  user?: string;
  conn?: string;
  node?: string;
}

/** The payload of a `delivered` event. */
export interface Delivered {
  conv: string;
  /** Every message of yours in `conv` up to this seq reached a device of `user`. */
  seq: number;
  user: string;
}

/** The payload of a `read` event: the read cursor now in force. */
export interface ReadCursor {
  conv: string;
  seq: number;
}

/** Events of a Client, with their listeners' signatures. */
export interface ClientEvents {
  /**
   * A message from someone else, or from this user's other devices: live,
   * or brought by the sync after a reconnect. Each message id is emitted
   * once. Messages this client sent are not emitted: `send` resolves with them.
   */
  message: (m: Message) => void;
  /** A device of another user acknowledged a message of yours. */
  delivered: (d: Delivered) => void;
  /** `markRead` moved the read cursor. */
  read: (r: ReadCursor) => void;
  /** The connection state changed, or a new reconnect attempt was planned. */
  state: (s: StateChange) => void;
  /** After each open, every known conversation was synced up to its newest message. */
  synced: () => void;
  /** An error no promise could carry: an error frame without an id, a failed catch-up. */
  error: (e: ParleyError) => void;
}

/** Options of a Client. Only `url` and `token` are required. */
export interface ClientOptions {
  /** The server: `http(s)://host:port` (the path `/v1/ws` is added) or a full `ws(s)://` URL. */
  url: string;
  /** The JWT, or a function that returns a fresh one before each connection attempt. */
  token: string | (() => string | Promise<string>);
  /** The WebSocket class. Absent means `globalThis.WebSocket` (browsers, Node 22+); Node 20 needs `ws`. */
  WebSocket?: WebSocketConstructor;
  /** Names this device in the server's logs (up to 32 characters). */
  device?: string;
  /** How long a request waits for its reply. Zero means 10 000 ms. */
  requestTimeoutMs?: number;
  /** First reconnect delay; each further attempt doubles it, with jitter. Zero means 250 ms. */
  reconnectDelayMs?: number;
  /** Cap of the reconnect delay. Zero means 15 000 ms. */
  maxReconnectDelayMs?: number;
  /** A ping is sent after this long without a frame from the server. Zero means 25 000 ms; negative disables. */
  pingIntervalMs?: number;
  /** Messages per sync page, 1-200. Zero means 200. */
  syncPageSize?: number;
  /**
   * Conversations already held, with the last seq held (from `positions()`
   * of an earlier session): the first connection syncs them from there.
   */
  since?: Record<string, number>;
  /** How many message ids are remembered to drop duplicates. Zero means 10 000. */
  maxRememberedIds?: number;
}

/** What to send: to a user (opens the direct conversation) or to a conversation. */
export interface Draft {
  /** The peer's user id. Exactly one of `to` and `conv`. */
  to?: string;
  /** A conversation id. Exactly one of `to` and `conv`. */
  conv?: string;
  body: string;
  /** `text` (default) or `json`. */
  ctype?: ContentType;
  /**
   * The client message id: 1-64 printable ASCII characters without spaces.
   * Absent means a fresh one. Pass the same one to retry a send that failed
   * with a retryable error: the server stores it at most once.
   */
  cmid?: string;
}

/** Per-call options of `send`. */
export interface SendOptions {
  /** Gives up waiting: the promise rejects with `aborted`. A send already written may still be stored. */
  signal?: AbortSignal;
}

/** A frame that expects an answer, before request gives it its id. */
type RequestFrame = Exclude<ClientFrame, { type: 'recv' }> extends infer F
  ? F extends { id: string } ? Omit<F, 'id'> : never
  : never;

/** The largest text frame the server reads. */
const maxFrameBytes = 64 * 1024;

const textEncoder = new TextEncoder();

interface PendingRequest {
  resolve: (f: Frame) => void;
  reject: (err: ParleyError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** The link's write count when the request went out. */
  wseq: number;
}

/** One WebSocket and what rides on it. */
class Link {
  ready = false;
  lastRx = Date.now();
  /** Frames written so far. */
  writes = 0;
  /**
   * Every frame up to this write count was read by the server: it answered
   * a request written after them, and it reads a connection's frames in order.
   */
  confirmed = 0;
  readonly requests = new Map<string, PendingRequest>();
  helloTimer: ReturnType<typeof setTimeout> | undefined;
  pingTimer: ReturnType<typeof setTimeout> | undefined;
  catchUpTimer: ReturnType<typeof setTimeout> | undefined;
  constructor(readonly ws: WebSocketLike) {}
}

/** A send waiting for its ack, across timeouts and reconnects. */
interface Outgoing {
  readonly frame: Omit<Extract<ClientFrame, { type: 'send' }>, 'id'>;
  readonly promise: Promise<Message>;
  resolve: (m: Message) => void;
  reject: (err: ParleyError) => void;
  /** The id of the attempt in flight, if any. */
  reqId: string | undefined;
  done: boolean;
  unlisten: (() => void) | undefined;
}

/** What the client holds of one conversation. */
interface ConvState {
  /** Every seq up to this one is held (or was before this client started). */
  held: number;
  /** Seqs held beyond a gap. */
  above: Set<number>;
  syncing: Promise<void> | undefined;
  again: boolean;
  /** The last recv written for this conversation: where, when, and its seq. */
  recvLink: Link | undefined;
  recvWseq: number;
  recvSeq: number;
}

/**
 * Client is one user's device on parley. It keeps a WebSocket open,
 * reconnecting with jittered, capped backoff; it retries sends with the same
 * `cmid` until they are acknowledged; it acknowledges every message it gets;
 * after each reconnect it syncs every conversation it knows from the last seq
 * it holds; and it drops duplicates by message id.
 *
 * ```ts
 * const c = new Client({ url: 'http://127.0.0.1:8080', token });
 * c.on('message', (m) => console.log(m.from, m.body));
 * await c.connect();
 * const m = await c.send({ to: 'bob', body: 'hi' }); // m.seq, m.id
 * ```
 */
export class Client extends Emitter<ClientEvents> {
  private readonly opts: ClientOptions;
  private readonly WS: WebSocketConstructor;
  private readonly requestTimeoutMs: number;
  private readonly reconnectDelayMs: number;
  private readonly maxReconnectDelayMs: number;
  private readonly pingIntervalMs: number;
  private readonly syncPageSize: number;
  private readonly maxIds: number;

  private link: Link | undefined;
  private current: ConnectionState = 'connecting';
  private started = false;
  private stopped = false;
  private hadOpen = false;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private nextId = 0;
  private me = '';
  private readonly outbox = new Map<string, Outgoing>();
  private readonly convs = new Map<string, ConvState>();
  private readonly seen = new Set<string>();
  private opened: { promise: Promise<void>; resolve: () => void; reject: (e: ParleyError) => void };

  constructor(opts: ClientOptions) {
    super();
    this.opts = opts;
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new TypeError('parley: no WebSocket class: pass one in the WebSocket option (e.g. the ws package in Node 20)');
    }
    this.WS = WS;
    this.requestTimeoutMs = opts.requestTimeoutMs || 10_000;
    this.reconnectDelayMs = opts.reconnectDelayMs || 250;
    this.maxReconnectDelayMs = opts.maxReconnectDelayMs || 15_000;
    this.pingIntervalMs = opts.pingIntervalMs || 25_000;
    this.syncPageSize = Math.min(200, Math.max(1, opts.syncPageSize || 200));
    this.maxIds = opts.maxRememberedIds || 10_000;
    for (const [conv, seq] of Object.entries(opts.since ?? {})) {
      this.convs.set(conv, newConvState(seq));
    }
    let resolve!: () => void;
    let reject!: (e: ParleyError) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A caller that never awaits connect() must not see an unhandled rejection on close().
    promise.catch(() => {});
    this.opened = { promise, resolve, reject };
  }

  /** The user id from the server's hello; empty before the first connection. */
  get user(): string {
    return this.me;
  }

  /** The current connection state. */
  get state(): ConnectionState {
    return this.current;
  }

  /**
   * connect starts the connection (and its reconnects) and resolves once the
   * first connection is open. It keeps trying while the server is away; it
   * rejects only if `close()` comes first. Calling it again is harmless.
   */
  connect(): Promise<void> {
    if (this.stopped) return Promise.reject(closedError());
    if (!this.started) {
      this.started = true;
      this.setState({ state: 'connecting', attempt: 0 });
      void this.dial();
    }
    return this.opened.promise;
  }

  /**
   * send stores a message and resolves with it once the server acknowledged
   * it (id, conv, seq, ts; from, ctype and body filled in). Until then it is
   * retried with the same `cmid`, after a timeout or on the next connection,
   * so it is stored exactly once. It may be called before connect resolves.
   * An error frame rejects it with a ParleyError (code, message, retryable).
   * A send with the `cmid` of one still waiting returns that one's promise.
   */
  send(draft: Draft, options: SendOptions = {}): Promise<Message> {
    if (this.stopped) return Promise.reject(closedError());
    const cmid = draft.cmid ?? newCmid();
    const existing = this.outbox.get(cmid);
    if (existing) return existing.promise;
    const frame: Outgoing['frame'] = { type: 'send', cmid, body: draft.body };
    if (draft.to !== undefined) frame.to = draft.to;
    if (draft.conv !== undefined) frame.conv = draft.conv;
    if (draft.ctype !== undefined) frame.ctype = draft.ctype;
    // The request id adds at most this much to the frame.
    if (textEncoder.encode(JSON.stringify(frame)).length + 32 > maxFrameBytes) {
      return Promise.reject(new ParleyError('frame_too_large', `a send frame must stay under ${maxFrameBytes} bytes`, false));
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortedError());
    let resolve!: (m: Message) => void;
    let reject!: (e: ParleyError) => void;
    const promise = new Promise<Message>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const out: Outgoing = { frame, promise, resolve, reject, reqId: undefined, done: false, unlisten: undefined };
    if (signal) {
      const onAbort = () => this.finishSend(out, abortedError());
      signal.addEventListener('abort', onAbort, { once: true });
      out.unlisten = () => signal.removeEventListener('abort', onAbort);
    }
    this.outbox.set(cmid, out);
    this.transmit(out);
    return promise;
  }

  /** markRead moves the read cursor of conv to seq (never back) and resolves with the cursor in force. */
  async markRead(conv: string, seq: number): Promise<ReadCursor> {
    const f = await this.request(this.openLink(), { type: 'read', conv, seq });
    const cursor = { conv: f.conv ?? conv, seq: f.seq ?? 0 };
    this.emit('read', cursor);
    return cursor;
  }

  /** conversations lists the user's conversations, newest first. */
  async conversations(): Promise<Conversation[]> {
    const f = await this.request(this.openLink(), { type: 'convs' });
    return (f.conversations ?? []).map(normalizeConversation);
  }

  /**
   * history reads one page of conv after seq `after`, for showing older
   * messages. It emits no event and does not change what the client holds.
   */
  async history(conv: string, after = 0, limit = 0): Promise<{ messages: Message[]; more: boolean }> {
    const frame: Extract<RequestFrame, { type: 'sync' }> = { type: 'sync', conv, seq: after };
    if (limit) frame.limit = limit;
    const f = await this.request(this.openLink(), frame);
    return { messages: (f.messages ?? []).map(normalizeMessage), more: f.more ?? false };
  }

  /** ping resolves with the round-trip time in milliseconds. */
  async ping(): Promise<number> {
    const start = Date.now();
    await this.request(this.openLink(), { type: 'ping' });
    return Date.now() - start;
  }

  /**
   * positions returns, per conversation, the last seq this client holds with
   * nothing missing before it: save it and pass it as `since` next time.
   */
  positions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [conv, st] of this.convs) out[conv] = st.held;
    return out;
  }

  /**
   * close ends the connection for good: pending sends and requests reject
   * with `closed`. It resolves once the socket has closed (within a second).
   */
  close(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const link = this.link;
    this.link = undefined;
    let closed = Promise.resolve();
    if (link) {
      this.retire(link, closedError());
      closed = new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        link.ws.onclose = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      try {
        link.ws.close(1000, 'client closed');
      } catch {
        // Already closing.
      }
    }
    for (const out of [...this.outbox.values()]) this.finishSend(out, closedError());
    this.opened.reject(closedError());
    this.setState({ state: 'closed', attempt: this.attempt });
    return closed;
  }

  // ---- connection ----------------------------------------------------------

  private async dial(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.stopped) return;
    let token: string;
    try {
      token = typeof this.opts.token === 'string' ? this.opts.token : await this.opts.token();
    } catch (err) {
      this.scheduleReconnect(undefined, `no token: ${errorText(err)}`);
      return;
    }
    if (this.stopped) return;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.wsURL(token), 'parley.v1.json');
    } catch (err) {
      this.scheduleReconnect(undefined, errorText(err));
      return;
    }
    const link = new Link(ws);
    this.link = link;
    // The hello must come within one request timeout, or the socket is
    // stuck somewhere (a proxy, a half-open TCP connection).
    link.helloTimer = setTimeout(() => this.drop(link, 'no hello from the server'), this.requestTimeoutMs);
    ws.onmessage = (ev: { data: unknown }) => this.onData(link, ev.data);
    ws.onclose = (ev: { code?: number; reason?: string }) => this.onClosed(link, ev.code ?? 1006, ev.reason ?? '');
    // A close event follows every error; only it matters.
    ws.onerror = () => {};
  }

  private wsURL(token: string): string {
    const u = new URL(this.opts.url);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    if (u.pathname === '' || u.pathname === '/') u.pathname = '/v1/ws';
    u.searchParams.set('token', token);
    if (this.opts.device) u.searchParams.set('device', this.opts.device);
    return u.toString();
  }

  /** drop gives up on a socket that misbehaves and plans a reconnect. */
  private drop(link: Link, why: string): void {
    if (this.link !== link) return;
    try {
      link.ws.close(4000, why);
    } catch {
      // Already closing.
    }
    this.onClosed(link, 4000, why);
  }

  private onClosed(link: Link, code: number, reason: string): void {
    if (this.link !== link) return;
    this.link = undefined;
    this.retire(link, new ParleyError('disconnected', `connection closed (${code}${reason ? ' ' + reason : ''})`, true));
    if (this.stopped) return;
    // Every close is worth a reconnect: 1001 (shutdown), 4008 (slow
    // consumer), 4009 (unacknowledged), 4010 (ping timeout), 1006 (lost),
    // 1013 (busy). The sync after the reconnect fetches what was missed.
    this.scheduleReconnect(code, reason);
  }

  /** retire detaches a socket and fails what was waiting on it. */
  private retire(link: Link, err: ParleyError): void {
    clearTimeout(link.helloTimer);
    clearTimeout(link.pingTimer);
    clearTimeout(link.catchUpTimer);
    link.ws.onmessage = null;
    link.ws.onclose = null;
    const requests = [...link.requests.values()];
    link.requests.clear();
    for (const r of requests) {
      clearTimeout(r.timer);
      r.reject(err);
    }
  }

  private scheduleReconnect(code: number | undefined, reason: string): void {
    if (this.stopped || this.reconnectTimer) return;
    const delay = this.backoff(this.attempt);
    this.attempt++;
    const change: StateChange = { state: 'connecting', attempt: this.attempt, reason, retryInMs: delay };
    if (code !== undefined) change.code = code;
    this.setState(change);
    this.reconnectTimer = setTimeout(() => void this.dial(), delay);
  }

  /**
   * backoff is the delay before retry n (from 0): exponential, capped, with
   * equal jitter (half the delay, plus up to as much again at random), so
   * that clients dropped together come back spread out.
   */
  private backoff(n: number): number {
    const cap = Math.min(this.maxReconnectDelayMs, this.reconnectDelayMs * 2 ** Math.min(n, 30));
    return Math.round(cap / 2 + (Math.random() * cap) / 2);
  }

  private setState(change: StateChange): void {
    this.current = change.state;
    this.emit('state', change);
  }

  private onData(link: Link, data: unknown): void {
    if (this.link !== link) return;
    link.lastRx = Date.now();
    let f: Frame;
    try {
      f = JSON.parse(typeof data === 'string' ? data : String(data)) as Frame;
    } catch {
      return;
    }
    if (!f || typeof f !== 'object') return;
    if (!link.ready) {
      if (f.type === 'hello') this.onHello(link, f);
      return;
    }
    switch (f.type) {
      case 'msg':
        if (f.msg) this.onMsg(link, normalizeMessage(f.msg));
        return;
      case 'delivered':
        this.emit('delivered', { conv: f.conv ?? '', seq: f.seq ?? 0, user: f.user ?? '' });
        return;
      case 'ack': {
        const req = f.id ? link.requests.get(f.id) : undefined;
        if (req) break;
        // The ack of an attempt that timed out and was sent again.
        const out = f.msg?.cmid ? this.outbox.get(f.msg.cmid) : undefined;
        if (out && f.msg) this.completeSend(out, normalizeMessage(f.msg));
        return;
      }
      case 'error':
        if (f.id && link.requests.has(f.id)) break;
        this.emit('error', new ParleyError(f.code ?? 'internal', f.message ?? '', f.retryable ?? false));
        return;
      default:
        break;
    }
    if (!f.id) return;
    const req = link.requests.get(f.id);
    if (!req) return;
    link.requests.delete(f.id);
    clearTimeout(req.timer);
    if (req.wseq > link.confirmed) link.confirmed = req.wseq;
    if (f.type === 'error') req.reject(new ParleyError(f.code ?? 'internal', f.message ?? '', f.retryable ?? false));
    else req.resolve(f);
  }

  private onHello(link: Link, f: Frame): void {
    clearTimeout(link.helloTimer);
    link.ready = true;
    this.me = f.user ?? '';
    this.attempt = 0;
    const change: StateChange = { state: 'open', attempt: 0 };
    if (f.user) change.user = f.user;
    if (f.conn) change.conn = f.conn;
    if (f.node) change.node = f.node;
    this.setState(change);
    this.opened.resolve();
    this.armPing(link, this.pingIntervalMs);
    for (const out of this.outbox.values()) this.transmit(out);
    const first = !this.hadOpen;
    this.hadOpen = true;
    void this.catchUp(link, first, 0);
  }

  /**
   * armPing keeps one timer per socket: a ping goes out only after a quiet
   * period, and a ping without a pong drops the socket (see onTimeout).
   */
  private armPing(link: Link, delay: number): void {
    if (this.pingIntervalMs < 0) return;
    link.pingTimer = setTimeout(() => {
      if (this.link !== link) return;
      const idle = Date.now() - link.lastRx;
      if (idle < this.pingIntervalMs) {
        this.armPing(link, this.pingIntervalMs - idle);
        return;
      }
      this.request(link, { type: 'ping' }).catch(() => {});
      this.armPing(link, this.pingIntervalMs);
    }, delay);
  }

  /** write sends frame on link and returns the link's write count. */
  private write(link: Link, frame: ClientFrame): number {
    // 1 is OPEN in every WebSocket implementation.
    if (link.ws.readyState !== 1) return link.writes;
    try {
      link.ws.send(JSON.stringify(frame));
    } catch {
      // The close event follows and fails what is waiting.
    }
    return ++link.writes;
  }

  /**
   * recv acknowledges conv up to seq on link, and remembers it: a recv that
   * the server may not have read before the link died is sent again after
   * the reconnect, or the sender would never learn of the delivery.
   */
  private recv(link: Link, conv: string, seq: number): void {
    const wseq = this.write(link, { type: 'recv', conv, seq });
    const st = this.convs.get(conv);
    if (st && seq >= st.recvSeq) {
      st.recvLink = link;
      st.recvWseq = wseq;
      st.recvSeq = seq;
    }
  }

  private openLink(): Link {
    const link = this.link;
    if (this.stopped) throw closedError();
    if (!link?.ready) throw new ParleyError('disconnected', 'not connected', true);
    return link;
  }

  /**
   * request sends frame with a fresh id on link and resolves with the frame
   * that answers it; an error frame rejects with its ParleyError.
   */
  private request(link: Link, frame: RequestFrame): Promise<Frame> {
    return new Promise<Frame>((resolve, reject) => {
      const id = 'r' + (++this.nextId).toString(36);
      const sentAt = Date.now();
      const timer = setTimeout(() => {
        if (!link.requests.delete(id)) return;
        reject(new ParleyError('timeout', `no reply to ${frame.type} within ${this.requestTimeoutMs} ms`, true));
        this.onTimeout(link, sentAt);
      }, this.requestTimeoutMs);
      link.requests.set(id, { resolve, reject, timer, wseq: link.writes + 1 });
      this.write(link, { ...frame, id } as ClientFrame);
    });
  }

  /**
   * onTimeout drops a socket that has said nothing since the request went
   * out: it is most likely dead without a close (a lost network). A socket
   * that still talks is only slow, and is kept.
   */
  private onTimeout(link: Link, sentAt: number): void {
    if (link.lastRx <= sentAt) this.drop(link, 'no reply from the server');
  }

  // ---- sends ---------------------------------------------------------------

  /** transmit writes one attempt of out on the open socket, if there is one. */
  private transmit(out: Outgoing): void {
    const link = this.link;
    if (out.done || out.reqId !== undefined || !link?.ready) return;
    const id = 'r' + (++this.nextId).toString(36);
    out.reqId = id;
    const sentAt = Date.now();
    const timer = setTimeout(() => {
      if (!link.requests.delete(id)) return;
      out.reqId = undefined;
      // Either the socket is dead (it is dropped, and the send goes out
      // again after the reconnect) or the reply is late: send again now,
      // with the same cmid, so that at most one message is stored.
      this.onTimeout(link, sentAt);
      if (this.link === link) this.transmit(out);
    }, this.requestTimeoutMs);
    link.requests.set(id, {
      resolve: (f) => {
        out.reqId = undefined;
        this.completeSend(out, normalizeMessage(f.msg ?? {}));
      },
      reject: (err) => {
        out.reqId = undefined;
        // A lost connection is not the send's failure: the next connection
        // sends it again.
        if (err.code !== 'disconnected') this.finishSend(out, err);
      },
      timer,
      wseq: link.writes + 1,
    });
    this.write(link, { ...out.frame, id });
  }

  /** completeSend resolves out with the stored message the server returned. */
  private completeSend(out: Outgoing, acked: Message): void {
    if (out.done) return;
    const m: Message = {
      id: acked.id,
      conv: acked.conv || out.frame.conv || '',
      seq: acked.seq,
      from: acked.from || this.me,
      cmid: out.frame.cmid,
      ctype: out.frame.ctype ?? acked.ctype,
      body: out.frame.body,
      ts: acked.ts,
    };
    this.remember(m.id);
    if (m.conv && m.seq) this.noteSeq(m.conv, m.seq);
    this.finishSend(out, undefined, m);
  }

  private finishSend(out: Outgoing, err: ParleyError | undefined, m?: Message): void {
    if (out.done) return;
    out.done = true;
    out.unlisten?.();
    this.outbox.delete(out.frame.cmid);
    if (out.reqId !== undefined) {
      const req = this.link?.requests.get(out.reqId);
      if (req) {
        clearTimeout(req.timer);
        this.link?.requests.delete(out.reqId);
      }
      out.reqId = undefined;
    }
    if (err) out.reject(err);
    else if (m) out.resolve(m);
  }

  // ---- messages and sync ---------------------------------------------------

  private onMsg(link: Link, m: Message): void {
    // Acknowledge every push, duplicates included, or the server sends it
    // again and in the end closes the connection with 4009.
    this.accept(m);
    if (m.conv && m.seq) this.recv(link, m.conv, m.seq);
    const st = this.convs.get(m.conv);
    // A message beyond a gap: fetch what is missing.
    if (st && st.above.size > 0) this.syncConv(link, m.conv).catch(() => {});
  }

  /** accept keeps m unless it was seen, and emits it if it is news. */
  private accept(m: Message): void {
    if (!m.id || !m.conv) return;
    if (m.seq) this.noteSeq(m.conv, m.seq);
    const own = m.from === this.me && m.cmid ? this.outbox.get(m.cmid) : undefined;
    if (own) {
      // Our own pending send, stored before its ack was lost.
      this.completeSend(own, m);
      return;
    }
    if (this.seen.has(m.id)) return;
    this.remember(m.id);
    this.emit('message', m);
  }

  private remember(id: string): void {
    if (!id || this.seen.has(id)) return;
    this.seen.add(id);
    if (this.seen.size > this.maxIds) {
      // Sets iterate in insertion order: the first is the oldest.
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }

  /** noteSeq records that seq of conv is held and moves the contiguous mark. */
  private noteSeq(conv: string, seq: number): void {
    let st = this.convs.get(conv);
    if (!st) {
      // A conversation first met now: what came before is history, not a gap.
      st = newConvState(seq - 1);
      this.convs.set(conv, st);
    }
    if (seq <= st.held) return;
    st.above.add(seq);
    while (st.above.delete(st.held + 1)) st.held++;
  }

  /**
   * catchUp runs after each hello: it learns conversations created while
   * this client was away, then syncs every known conversation from the last
   * seq held, page by page.
   */
  private async catchUp(link: Link, first: boolean, tries: number): Promise<void> {
    try {
      const list = await this.request(link, { type: 'convs' });
      for (const c of list.conversations ?? []) {
        if (!c.id || this.convs.has(c.id)) continue;
        // On the first connection, a conversation's past is history (see
        // `history`); on a reconnect, one we never saw is new since then.
        this.convs.set(c.id, newConvState(first ? (c.last_seq ?? 0) : 0));
      }
      const ids = [...this.convs.keys()];
      const workers = Array.from({ length: Math.min(4, ids.length) }, async () => {
        for (let id = ids.shift(); id !== undefined; id = ids.shift()) await this.syncConv(link, id);
      });
      await Promise.all(workers);
      if (this.link === link) this.emit('synced');
    } catch (err) {
      if (this.link !== link) return; // the next connection catches up
      const e = err instanceof ParleyError ? err : new ParleyError('internal', errorText(err), true);
      this.emit('error', e);
      // The server answers but cannot serve history right now (its sidecar
      // is down, say): try again on this connection, backing off, rather
      // than reconnect in a loop.
      link.catchUpTimer = setTimeout(() => void this.catchUp(link, first, tries + 1), this.backoff(tries));
    }
  }

  /** syncConv pages through conv after the last seq held until the server says there is no more. */
  private syncConv(link: Link, conv: string): Promise<void> {
    const st = this.convs.get(conv);
    if (!st) return Promise.resolve();
    if (st.syncing) {
      st.again = true;
      return st.syncing;
    }
    const run = async () => {
      try {
        do {
          st.again = false;
          let after = st.held;
          for (;;) {
            const r = await this.request(link, { type: 'sync', conv, seq: after, limit: this.syncPageSize });
            const list = (r.messages ?? []).map(normalizeMessage);
            let newest = 0;
            for (const m of list) {
              this.accept(m);
              if (m.from !== this.me && m.seq > newest) newest = m.seq;
            }
            // Tells the senders that what the sync brought is delivered.
            if (newest) this.recv(link, conv, newest);
            const last = list[list.length - 1];
            if (!r.more || !last) break;
            after = last.seq;
          }
        } while (st.again);
        const prev = st.recvLink;
        if (prev && prev !== link && st.recvWseq > prev.confirmed) this.recv(link, conv, st.recvSeq);
      } catch (err) {
        if (err instanceof ParleyError && !err.retryable && isServerCode(err.code)) {
          // not_member and the like: this conversation is not ours to sync.
          this.convs.delete(conv);
          this.emit('error', err);
          return;
        }
        throw err;
      } finally {
        st.syncing = undefined;
      }
    };
    st.syncing = run();
    return st.syncing;
  }
}

function newConvState(held: number): ConvState {
  return { held: Math.max(0, held), above: new Set(), syncing: undefined, again: false, recvLink: undefined, recvWseq: 0, recvSeq: 0 };
}

function isServerCode(code: string): boolean {
  return !['timeout', 'disconnected', 'closed', 'aborted', 'frame_too_large'].includes(code);
}

function closedError(): ParleyError {
  return new ParleyError('closed', 'the client was closed', false);
}

function abortedError(): ParleyError {
  return new ParleyError('aborted', 'the caller gave up', false);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * newCmid returns a fresh client message id: time and 64 random bits, 24
 * printable ASCII characters at most.
 */
export function newCmid(): string {
  const bytes = new Uint8Array(8);
  const c = (globalThis as { crypto?: { getRandomValues(a: Uint8Array): Uint8Array } }).crypto;
  if (c) c.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return Date.now().toString(36) + '-' + hex;
}
