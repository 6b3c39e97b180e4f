import { Emitter } from './emitter.js';
import { ParleyError } from './errors.js';
import { CloseCode, normalizeConversation, normalizeGroup, normalizeMessage, parseSystemEvent, } from './frames.js';
/** The largest text frame the server reads. */
const maxFrameBytes = 64 * 1024;
const textEncoder = new TextEncoder();
/** One WebSocket and what rides on it. */
class Link {
    ws;
    ready = false;
    lastRx = Date.now();
    /** Frames written so far. */
    writes = 0;
    /**
     * Every frame up to this write count was read by the server: it answered
     * a request written after them, and it reads a connection's frames in order.
     */
    confirmed = 0;
    requests = new Map();
    helloTimer;
    pingTimer;
    catchUpTimer;
    constructor(ws) {
        this.ws = ws;
    }
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
export class Client extends Emitter {
    opts;
    WS;
    requestTimeoutMs;
    reconnectDelayMs;
    maxReconnectDelayMs;
    pingIntervalMs;
    syncPageSize;
    maxIds;
    link;
    current = 'connecting';
    started = false;
    stopped = false;
    hadOpen = false;
    attempt = 0;
    reconnectTimer;
    /** No reconnect before this time (Unix ms): the server asked to wait (4011, 4012). */
    holdUntil = 0;
    nextId = 0;
    me = '';
    outbox = new Map();
    convs = new Map();
    seen = new Set();
    opened;
    constructor(opts) {
        super();
        this.opts = opts;
        const WS = opts.WebSocket ?? globalThis.WebSocket;
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
        let resolve;
        let reject;
        const promise = new Promise((res, rej) => {
            resolve = res;
            reject = rej;
        });
        // A caller that never awaits connect() must not see an unhandled rejection on close().
        promise.catch(() => { });
        this.opened = { promise, resolve, reject };
    }
    /** The user id from the server's hello; empty before the first connection. */
    get user() {
        return this.me;
    }
    /** The current connection state. */
    get state() {
        return this.current;
    }
    /**
     * connect starts the connection (and its reconnects) and resolves once the
     * first connection is open. It keeps trying while the server is away; it
     * rejects only if `close()` comes first. Calling it again is harmless.
     */
    connect() {
        if (this.stopped)
            return Promise.reject(closedError());
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
    send(draft, options = {}) {
        if (this.stopped)
            return Promise.reject(closedError());
        const cmid = draft.cmid ?? newCmid();
        const existing = this.outbox.get(cmid);
        if (existing)
            return existing.promise;
        const frame = { type: 'send', cmid, body: draft.body };
        if (draft.to !== undefined)
            frame.to = draft.to;
        if (draft.conv !== undefined)
            frame.conv = draft.conv;
        if (draft.ctype !== undefined)
            frame.ctype = draft.ctype;
        if (draft.reply_to)
            frame.reply_to = draft.reply_to;
        if (draft.mentions?.length)
            frame.mentions = [...draft.mentions];
        // The request id adds at most this much to the frame.
        if (textEncoder.encode(JSON.stringify(frame)).length + 32 > maxFrameBytes) {
            return Promise.reject(new ParleyError('frame_too_large', `a send frame must stay under ${maxFrameBytes} bytes`, false));
        }
        const signal = options.signal;
        if (signal?.aborted)
            return Promise.reject(abortedError());
        let resolve;
        let reject;
        const promise = new Promise((res, rej) => {
            resolve = res;
            reject = rej;
        });
        const out = { frame, promise, resolve, reject, reqId: undefined, done: false, unlisten: undefined };
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
    async markRead(conv, seq) {
        const f = await this.request(this.openLink(), { type: 'read', conv, seq });
        const cursor = { conv: f.conv ?? conv, seq: f.seq ?? 0 };
        this.emit('read', cursor);
        return cursor;
    }
    /** conversations lists the user's conversations, newest first. */
    async conversations() {
        const f = await this.request(this.openLink(), { type: 'convs' });
        return (f.conversations ?? []).map(normalizeConversation);
    }
    /**
     * history reads one page of conv after seq `after`, for showing older
     * messages. It emits no event and does not change what the client holds.
     * What it brings from others is acknowledged, as a sync's is: this device
     * has it now, and the senders see it delivered.
     */
    async history(conv, after = 0, limit = 0) {
        const frame = { type: 'sync', conv, seq: after };
        if (limit)
            frame.limit = limit;
        const link = this.openLink();
        const f = await this.request(link, frame);
        const messages = (f.messages ?? []).map(normalizeMessage);
        let newest = 0;
        for (const m of messages)
            if (m.from !== this.me && m.seq > newest)
                newest = m.seq;
        if (newest && this.link === link)
            this.recv(link, conv, newest);
        return { messages, more: f.more ?? false };
    }
    /**
     * createGroup creates a group you own and resolves with it and its
     * `group.created` event (also emitted as a `message`, once).
     */
    async createGroup(g) {
        const frame = { type: 'group_create', name: g.name };
        if (g.users?.length)
            frame.users = [...g.users];
        if (g.notice)
            frame.notice = g.notice;
        if (g.ext)
            frame.ext = g.ext;
        if (g.policy)
            frame.policy = g.policy;
        if (g.history)
            frame.on = true;
        if (g.cmid)
            frame.cmid = g.cmid;
        return this.groupResult(await this.request(this.openLink(), frame));
    }
    /**
     * changeGroup makes one change to the group conv and resolves with the
     * group after it and its event (also emitted as a `message`, once). A
     * refusal rejects with the server's code: `forbidden`, `not_member`, ...
     */
    async changeGroup(conv, change) {
        const frame = { type: 'group', conv, op: change.op };
        if (change.users?.length)
            frame.users = [...change.users];
        if (change.role)
            frame.role = change.role;
        if (change.until)
            frame.until = change.until;
        if (change.on)
            frame.on = true;
        if (change.name)
            frame.name = change.name;
        if (change.notice)
            frame.notice = change.notice;
        if (change.ext)
            frame.ext = change.ext;
        if (change.policy)
            frame.policy = change.policy;
        if (change.note)
            frame.note = change.note;
        if (change.cmid)
            frame.cmid = change.cmid;
        return this.groupResult(await this.request(this.openLink(), frame));
    }
    /** invite adds users to the group conv at once. */
    invite(conv, users) {
        return this.changeGroup(conv, { op: 'invite', users });
    }
    /** leave takes you out of the group conv; you keep what you could read. */
    leave(conv) {
        return this.changeGroup(conv, { op: 'leave' });
    }
    /**
     * recall takes back the message at seq of conv and resolves with the
     * `message.recalled` event; `changed` is emitted for it.
     */
    async recall(conv, seq, cmid) {
        const frame = { type: 'recall', conv, seq };
        if (cmid)
            frame.cmid = cmid;
        return this.ownEvent(await this.request(this.openLink(), frame));
    }
    /**
     * edit replaces the body of your message at seq of conv and resolves with
     * the `message.edited` event; `changed` is emitted for it.
     */
    async edit(conv, seq, body, ctype, cmid) {
        const frame = { type: 'edit', conv, seq, body };
        if (ctype)
            frame.ctype = ctype;
        if (cmid)
            frame.cmid = cmid;
        return this.ownEvent(await this.request(this.openLink(), frame));
    }
    /**
     * typing tells the other members' online devices that you started (true)
     * or stopped typing. Nothing answers; a notice sooner than 3 s after the
     * last is dropped by the server, and a refusal comes as an `error` event
     * whose `request` is `typing`.
     * Without an open connection it does nothing: a late notice is worthless.
     */
    typing(conv, on) {
        const link = this.link;
        if (this.stopped || !link?.ready)
            return;
        // The id ties a refusal to typing; ids of requests start with r.
        const frame = { type: 'typing', id: typingIdPrefix + (++this.nextId).toString(36), conv };
        if (on)
            frame.on = true;
        this.write(link, frame);
    }
    /** ping resolves with the round-trip time in milliseconds. */
    async ping() {
        const start = Date.now();
        await this.request(this.openLink(), { type: 'ping' });
        return Date.now() - start;
    }
    /**
     * reconnect tries at once, with the backoff started over, when the client
     * is waiting to reconnect: for an app that learns the network is back (a
     * browser's `online` event, a tab in the foreground again). It does
     * nothing while a connection is open or being dialed, before `connect()`,
     * after `close()`, and while the server asked to wait (closes 4011 and
     * 4012).
     */
    reconnect() {
        if (this.stopped || !this.reconnectTimer || Date.now() < this.holdUntil)
            return;
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = undefined;
        this.attempt = 0;
        this.setState({ state: 'connecting', attempt: 0 });
        void this.dial();
    }
    /**
     * positions returns, per conversation, the last seq this client holds with
     * nothing missing before it: save it and pass it as `since` next time.
     */
    positions() {
        const out = {};
        for (const [conv, st] of this.convs)
            out[conv] = st.held;
        return out;
    }
    /**
     * close ends the connection for good: pending sends and requests reject
     * with `closed`. It resolves once the socket has closed (within a second).
     */
    close() {
        if (this.stopped)
            return Promise.resolve();
        this.stopped = true;
        clearTimeout(this.reconnectTimer);
        this.reconnectTimer = undefined;
        const link = this.link;
        this.link = undefined;
        let closed = Promise.resolve();
        if (link) {
            this.retire(link, closedError());
            closed = new Promise((resolve) => {
                const timer = setTimeout(resolve, 1000);
                link.ws.onclose = () => {
                    clearTimeout(timer);
                    resolve();
                };
            });
            try {
                link.ws.close(1000, 'client closed');
            }
            catch {
                // Already closing.
            }
        }
        for (const out of [...this.outbox.values()])
            this.finishSend(out, closedError());
        this.opened.reject(closedError());
        this.setState({ state: 'closed', attempt: this.attempt });
        return closed;
    }
    // ---- connection ----------------------------------------------------------
    async dial() {
        this.reconnectTimer = undefined;
        if (this.stopped)
            return;
        let token;
        try {
            token = typeof this.opts.token === 'string' ? this.opts.token : await this.opts.token();
        }
        catch (err) {
            this.scheduleReconnect(undefined, `no token: ${errorText(err)}`);
            return;
        }
        if (this.stopped)
            return;
        let ws;
        try {
            ws = new this.WS(this.wsURL(token), 'parley.v1.json');
        }
        catch (err) {
            this.scheduleReconnect(undefined, errorText(err));
            return;
        }
        const link = new Link(ws);
        this.link = link;
        // The hello must come within one request timeout, or the socket is
        // stuck somewhere (a proxy, a half-open TCP connection).
        link.helloTimer = setTimeout(() => this.drop(link, 'no hello from the server'), this.requestTimeoutMs);
        ws.onmessage = (ev) => this.onData(link, ev.data);
        ws.onclose = (ev) => this.onClosed(link, ev.code ?? 1006, ev.reason ?? '');
        // A close event follows every error; only it matters.
        ws.onerror = () => { };
    }
    wsURL(token) {
        const u = new URL(this.opts.url);
        if (u.protocol === 'http:')
            u.protocol = 'ws:';
        else if (u.protocol === 'https:')
            u.protocol = 'wss:';
        if (u.pathname === '' || u.pathname === '/')
            u.pathname = '/v1/ws';
        u.searchParams.set('token', token);
        if (this.opts.device)
            u.searchParams.set('device', this.opts.device);
        return u.toString();
    }
    /** drop gives up on a socket that misbehaves and plans a reconnect. */
    drop(link, why) {
        if (this.link !== link)
            return;
        try {
            link.ws.close(4000, why);
        }
        catch {
            // Already closing.
        }
        this.onClosed(link, 4000, why);
    }
    onClosed(link, code, reason) {
        if (this.link !== link)
            return;
        this.link = undefined;
        this.retire(link, new ParleyError('disconnected', `connection closed (${code}${reason ? ' ' + reason : ''})`, true));
        if (this.stopped)
            return;
        // Every close is worth a reconnect: 1001 (shutdown), 4008 (slow
        // consumer), 4009 (unacknowledged), 4010 (ping timeout), 1006 (lost),
        // 1013 (busy). The sync after the reconnect fetches what was missed.
        this.scheduleReconnect(code, reason);
    }
    /** retire detaches a socket and fails what was waiting on it. */
    retire(link, err) {
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
    scheduleReconnect(code, reason) {
        if (this.stopped || this.reconnectTimer)
            return;
        let delay = this.backoff(this.attempt);
        this.attempt++;
        const change = { state: 'connecting', attempt: this.attempt, reason, retryInMs: delay };
        if (code === CloseCode.Flooding) {
            // The server asks for fewer frames: come back slowly.
            delay = this.maxReconnectDelayMs;
            this.holdUntil = Date.now() + delay;
        }
        else if (code === CloseCode.Banned) {
            // Connecting while suspended is refused, and attempts lengthen an
            // automatic suspension: wait until it ends. An end that cannot be
            // read is waited for as long as the longest delay.
            const until = bannedUntil(reason);
            if (until !== undefined)
                change.bannedUntil = until;
            delay = Math.max(this.maxReconnectDelayMs, (until ?? 0) - Date.now() + delay);
            this.holdUntil = Date.now() + delay;
        }
        change.retryInMs = delay;
        if (code !== undefined)
            change.code = code;
        this.setState(change);
        this.reconnectTimer = setTimeout(() => void this.dial(), delay);
    }
    /**
     * backoff is the delay before retry n (from 0): exponential, capped, with
     * equal jitter (half the delay, plus up to as much again at random), so
     * that clients dropped together come back spread out.
     */
    backoff(n) {
        const cap = Math.min(this.maxReconnectDelayMs, this.reconnectDelayMs * 2 ** Math.min(n, 30));
        return Math.round(cap / 2 + (Math.random() * cap) / 2);
    }
    setState(change) {
        this.current = change.state;
        this.emit('state', change);
    }
    onData(link, data) {
        if (this.link !== link)
            return;
        link.lastRx = Date.now();
        let f;
        try {
            f = JSON.parse(typeof data === 'string' ? data : String(data));
        }
        catch {
            return;
        }
        if (!f || typeof f !== 'object')
            return;
        if (!link.ready) {
            if (f.type === 'hello')
                this.onHello(link, f);
            return;
        }
        switch (f.type) {
            case 'msg':
                if (f.msg)
                    this.onMsg(link, normalizeMessage(f.msg), f.no_ack === true);
                return;
            case 'delivered':
                this.emit('delivered', { conv: f.conv ?? '', seq: f.seq ?? 0, user: f.user ?? '' });
                return;
            case 'seen':
                this.emit('seen', { conv: f.conv ?? '', seq: f.seq ?? 0, user: f.user ?? '' });
                return;
            case 'read_by':
                this.emit('read_by', { conv: f.conv ?? '', seq: f.seq ?? 0, count: f.count ?? 0 });
                return;
            case 'typing':
                this.emit('typing', { conv: f.conv ?? '', user: f.user ?? '', on: f.on ?? false });
                return;
            case 'join_requested':
            case 'join_rejected':
                this.emit(f.type, { conv: f.conv ?? '', user: f.user ?? '', note: f.note ?? '' });
                return;
            case 'unassigned':
                this.emit('unassigned', { conv: f.conv ?? '', seq: f.seq ?? 0, user: f.user ?? '' });
                return;
            case 'ack': {
                const req = f.id ? link.requests.get(f.id) : undefined;
                if (req)
                    break;
                // The ack of an attempt that timed out and was sent again.
                const out = f.msg?.cmid ? this.outbox.get(f.msg.cmid) : undefined;
                if (out && f.msg)
                    this.completeSend(out, normalizeMessage(f.msg));
                return;
            }
            case 'error':
                if (f.id && link.requests.has(f.id))
                    break;
                this.emit('error', frameError(f, f.id?.startsWith(typingIdPrefix) ? 'typing' : undefined));
                return;
            default:
                break;
        }
        if (!f.id)
            return;
        const req = link.requests.get(f.id);
        if (!req)
            return;
        link.requests.delete(f.id);
        clearTimeout(req.timer);
        if (req.wseq > link.confirmed)
            link.confirmed = req.wseq;
        if (f.type === 'error')
            req.reject(frameError(f, req.type));
        else
            req.resolve(f);
    }
    onHello(link, f) {
        clearTimeout(link.helloTimer);
        link.ready = true;
        this.me = f.user ?? '';
        this.attempt = 0;
        const change = { state: 'open', attempt: 0 };
        if (f.user)
            change.user = f.user;
        if (f.conn)
            change.conn = f.conn;
        if (f.node)
            change.node = f.node;
        this.setState(change);
        this.opened.resolve();
        this.armPing(link, this.pingIntervalMs);
        for (const out of this.outbox.values())
            this.transmit(out);
        const first = !this.hadOpen;
        this.hadOpen = true;
        void this.catchUp(link, first, 0);
    }
    /**
     * armPing keeps one timer per socket: a ping goes out only after a quiet
     * period, and a ping without a pong drops the socket (see onTimeout).
     */
    armPing(link, delay) {
        if (this.pingIntervalMs < 0)
            return;
        link.pingTimer = setTimeout(() => {
            if (this.link !== link)
                return;
            const idle = Date.now() - link.lastRx;
            if (idle < this.pingIntervalMs) {
                this.armPing(link, this.pingIntervalMs - idle);
                return;
            }
            this.request(link, { type: 'ping' }).catch(() => { });
            this.armPing(link, this.pingIntervalMs);
        }, delay);
    }
    /** write sends frame on link and returns the link's write count. */
    write(link, frame) {
        // 1 is OPEN in every WebSocket implementation.
        if (link.ws.readyState !== 1)
            return link.writes;
        try {
            link.ws.send(JSON.stringify(frame));
        }
        catch {
            // The close event follows and fails what is waiting.
        }
        return ++link.writes;
    }
    /**
     * recv acknowledges conv up to seq on link, and remembers it: a recv that
     * the server may not have read before the link died is sent again after
     * the reconnect, or the sender would never learn of the delivery.
     */
    recv(link, conv, seq) {
        const wseq = this.write(link, { type: 'recv', conv, seq });
        const st = this.convs.get(conv);
        if (st && seq >= st.recvSeq) {
            st.recvLink = link;
            st.recvWseq = wseq;
            st.recvSeq = seq;
        }
    }
    openLink() {
        const link = this.link;
        if (this.stopped)
            throw closedError();
        if (!link?.ready)
            throw new ParleyError('disconnected', 'not connected', true);
        return link;
    }
    /**
     * request sends frame with a fresh id on link and resolves with the frame
     * that answers it; an error frame rejects with its ParleyError.
     */
    request(link, frame) {
        return new Promise((resolve, reject) => {
            const id = 'r' + (++this.nextId).toString(36);
            const sentAt = Date.now();
            const timer = setTimeout(() => {
                if (!link.requests.delete(id))
                    return;
                reject(new ParleyError('timeout', `no reply to ${frame.type} within ${this.requestTimeoutMs} ms`, true));
                this.onTimeout(link, sentAt);
            }, this.requestTimeoutMs);
            link.requests.set(id, { type: frame.type, resolve, reject, timer, wseq: link.writes + 1 });
            this.write(link, { ...frame, id });
        });
    }
    /**
     * onTimeout drops a socket that has said nothing since the request went
     * out: it is most likely dead without a close (a lost network). A socket
     * that still talks is only slow, and is kept.
     */
    onTimeout(link, sentAt) {
        if (link.lastRx <= sentAt)
            this.drop(link, 'no reply from the server');
    }
    // ---- sends ---------------------------------------------------------------
    /** transmit writes one attempt of out on the open socket, if there is one. */
    transmit(out) {
        const link = this.link;
        if (out.done || out.reqId !== undefined || !link?.ready)
            return;
        const id = 'r' + (++this.nextId).toString(36);
        out.reqId = id;
        const sentAt = Date.now();
        const timer = setTimeout(() => {
            if (!link.requests.delete(id))
                return;
            out.reqId = undefined;
            // Either the socket is dead (it is dropped, and the send goes out
            // again after the reconnect) or the reply is late: send again now,
            // with the same cmid, so that at most one message is stored.
            this.onTimeout(link, sentAt);
            if (this.link === link)
                this.transmit(out);
        }, this.requestTimeoutMs);
        link.requests.set(id, {
            type: 'send',
            resolve: (f) => {
                out.reqId = undefined;
                this.completeSend(out, normalizeMessage(f.msg ?? {}));
            },
            reject: (err) => {
                out.reqId = undefined;
                // A lost connection is not the send's failure: the next connection
                // sends it again.
                if (err.code !== 'disconnected')
                    this.finishSend(out, err);
            },
            timer,
            wseq: link.writes + 1,
        });
        this.write(link, { ...out.frame, id });
    }
    /** completeSend resolves out with the stored message the server returned. */
    completeSend(out, acked) {
        if (out.done)
            return;
        const m = {
            id: acked.id,
            conv: acked.conv || out.frame.conv || '',
            seq: acked.seq,
            from: acked.from || this.me,
            cmid: out.frame.cmid,
            ctype: out.frame.ctype ?? acked.ctype,
            body: out.frame.body,
            ts: acked.ts,
            reply_to: out.frame.reply_to ?? 0,
            mentions: (out.frame.mentions ?? []).filter((u) => u !== '@all'),
            mention_all: out.frame.mentions?.includes('@all') ?? false,
            edited: false,
            recalled: false,
        };
        this.remember(m.id);
        if (m.conv && m.seq)
            this.noteSeq(m.conv, m.seq);
        this.finishSend(out, undefined, m);
    }
    finishSend(out, err, m) {
        if (out.done)
            return;
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
        if (err)
            out.reject(err);
        else if (m)
            out.resolve(m);
    }
    // ---- messages and sync ---------------------------------------------------
    onMsg(link, m, noAck) {
        // Acknowledge every push, duplicates included, or the server sends it
        // again and in the end closes the connection with 4009; except pushes
        // that say no_ack (a large group's), which the server does not track:
        // a gap or a reconnect brings what one of them missed.
        this.accept(m);
        if (m.conv && m.seq && !noAck)
            this.recv(link, m.conv, m.seq);
        const st = this.convs.get(m.conv);
        // A message beyond a gap: fetch what is missing.
        if (st && st.above.size > 0)
            this.syncConv(link, m.conv).catch(() => { });
    }
    /** accept keeps m unless it was seen, and emits it if it is news. */
    accept(m) {
        if (!m.id || !m.conv)
            return;
        if (m.seq)
            this.noteSeq(m.conv, m.seq);
        const own = m.from === this.me && m.cmid ? this.outbox.get(m.cmid) : undefined;
        if (own) {
            // Our own pending send, stored before its ack was lost.
            this.completeSend(own, m);
            return;
        }
        if (this.seen.has(m.id))
            return;
        this.remember(m.id);
        this.emit('message', m);
        const event = parseSystemEvent(m);
        if (event?.target && (event.type === 'message.recalled' || event.type === 'message.edited')) {
            this.emit('changed', { conv: m.conv, seq: event.target, event, message: m });
        }
    }
    /** groupResult reads a group_result frame and passes its event on once. */
    groupResult(f) {
        const out = {
            conv: f.conv ?? '',
            group: normalizeGroup(f.group ?? {}),
            requests: (f.requests ?? []).map((r) => ({ user: r.user ?? '', note: r.note ?? '', at: r.at ?? 0 })),
        };
        if (f.msg) {
            out.event = normalizeMessage(f.msg);
            this.accept(out.event);
        }
        return out;
    }
    /**
     * ownEvent passes on the event a recall or an edit of this client made,
     * once, whether or not the server also pushes it to this connection.
     */
    ownEvent(f) {
        const m = normalizeMessage(f.msg ?? {});
        this.accept(m);
        return m;
    }
    remember(id) {
        if (!id || this.seen.has(id))
            return;
        this.seen.add(id);
        if (this.seen.size > this.maxIds) {
            // Sets iterate in insertion order: the first is the oldest.
            const oldest = this.seen.values().next().value;
            if (oldest !== undefined)
                this.seen.delete(oldest);
        }
    }
    /** noteSeq records that seq of conv is held and moves the contiguous mark. */
    noteSeq(conv, seq) {
        let st = this.convs.get(conv);
        if (!st) {
            // A conversation first met now: what came before is history, not a gap.
            st = newConvState(seq - 1);
            this.convs.set(conv, st);
        }
        if (seq <= st.held)
            return;
        st.above.add(seq);
        while (st.above.delete(st.held + 1))
            st.held++;
    }
    /**
     * catchUp runs after each hello: it learns conversations created while
     * this client was away, then syncs every known conversation from the last
     * seq held, page by page.
     */
    async catchUp(link, first, tries) {
        try {
            const list = await this.request(link, { type: 'convs' });
            for (const c of list.conversations ?? []) {
                if (!c.id || this.convs.has(c.id))
                    continue;
                // On the first connection, a conversation's past is history (see
                // `history`); on a reconnect, one we never saw is new since then.
                this.convs.set(c.id, newConvState(first ? (c.last_seq ?? 0) : 0));
            }
            const ids = [...this.convs.keys()];
            const workers = Array.from({ length: Math.min(4, ids.length) }, async () => {
                for (let id = ids.shift(); id !== undefined; id = ids.shift())
                    await this.syncConv(link, id);
            });
            await Promise.all(workers);
            if (this.link === link)
                this.emit('synced');
        }
        catch (err) {
            if (this.link !== link)
                return; // the next connection catches up
            const e = err instanceof ParleyError ? err : new ParleyError('internal', errorText(err), true);
            this.emit('error', e);
            // The server answers but cannot serve history right now (its sidecar
            // is down, say): try again on this connection, backing off, rather
            // than reconnect in a loop.
            link.catchUpTimer = setTimeout(() => void this.catchUp(link, first, tries + 1), this.backoff(tries));
        }
    }
    /** syncConv pages through conv after the last seq held until the server says there is no more. */
    syncConv(link, conv) {
        const st = this.convs.get(conv);
        if (!st)
            return Promise.resolve();
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
                            if (m.from !== this.me && m.seq > newest)
                                newest = m.seq;
                        }
                        // Tells the senders that what the sync brought is delivered.
                        if (newest)
                            this.recv(link, conv, newest);
                        const last = list[list.length - 1];
                        if (!r.more || !last)
                            break;
                        after = last.seq;
                    }
                } while (st.again);
                const prev = st.recvLink;
                if (prev && prev !== link && st.recvWseq > prev.confirmed)
                    this.recv(link, conv, st.recvSeq);
            }
            catch (err) {
                if (err instanceof ParleyError && !err.retryable && isServerCode(err.code)) {
                    // not_member and the like: this conversation is not ours to sync.
                    this.convs.delete(conv);
                    this.emit('error', err);
                    return;
                }
                throw err;
            }
            finally {
                st.syncing = undefined;
            }
        };
        st.syncing = run();
        return st.syncing;
    }
}
function newConvState(held) {
    return { held: Math.max(0, held), above: new Set(), syncing: undefined, again: false, recvLink: undefined, recvWseq: 0, recvSeq: 0 };
}
function isServerCode(code) {
    return !['timeout', 'disconnected', 'closed', 'aborted', 'frame_too_large'].includes(code);
}
function frameError(f, request) {
    return new ParleyError(f.code ?? 'internal', f.message ?? '', f.retryable ?? false, f.until, request);
}
/** Ids of typing frames start with this; those of requests with `r`. */
const typingIdPrefix = 't';
/** bannedUntil reads the end of a suspension from a 4012 close reason: "suspended until <RFC 3339>". */
function bannedUntil(reason) {
    const m = /suspended until (\S+)/.exec(reason);
    const t = m?.[1] ? Date.parse(m[1]) : NaN;
    return Number.isNaN(t) ? undefined : t;
}
function closedError() {
    return new ParleyError('closed', 'the client was closed', false);
}
function abortedError() {
    return new ParleyError('aborted', 'the caller gave up', false);
}
function errorText(err) {
    return err instanceof Error ? err.message : String(err);
}
/**
 * newCmid returns a fresh client message id: time and 64 random bits, 24
 * printable ASCII characters at most.
 */
export function newCmid() {
    const bytes = new Uint8Array(8);
    const c = globalThis.crypto;
    if (c)
        c.getRandomValues(bytes);
    else
        for (let i = 0; i < bytes.length; i++)
            bytes[i] = Math.floor(Math.random() * 256);
    let hex = '';
    for (const b of bytes)
        hex += b.toString(16).padStart(2, '0');
    return Date.now().toString(36) + '-' + hex;
}
