// The frames of parley's public protocol, version 1, as they travel in JSON
// text frames. They mirror proto/parley/v1/frame.proto: one flat Frame
// envelope whose `type` says which fields matter. JSON omits zero values, so
// every field of a frame read from the wire may be absent.
/** WebSocket close codes the server uses. */
export const CloseCode = {
    /** The node is shutting down: reconnect, then sync. */
    GoingAway: 1001,
    /** A frame the protocol forbids. */
    ProtocolError: 1002,
    /** A frame over 64 KiB. */
    TooBig: 1009,
    /** The node cannot take one more connection right now. */
    TryAgainLater: 1013,
    /** Slow consumer: reconnect and sync. */
    SlowConsumer: 4008,
    /** A message went unacknowledged through every try: reconnect and sync. */
    Unacknowledged: 4009,
    /** No answer to a ping within one heartbeat period: reconnect. */
    PingTimeout: 4010,
    /** Frame flood: the client sent too many frames; it reconnects after the longest delay. */
    Flooding: 4011,
    /** The user or address is suspended: no reconnect before the time in the close reason. */
    Banned: 4012,
};
/** parseSystemEvent reads the event a `system` message carries, or returns undefined for any other message. */
export function parseSystemEvent(m) {
    if (m.ctype !== 'system')
        return undefined;
    try {
        const e = JSON.parse(m.body);
        return e && typeof e === 'object' && typeof e.type === 'string' ? e : undefined;
    }
    catch {
        return undefined;
    }
}
/**
 * applyChange returns the message `m` as a `message.recalled` or
 * `message.edited` event leaves it (what history shows), or `m` itself when
 * the event is not about it.
 */
export function applyChange(m, event, eventConv) {
    if (eventConv !== m.conv || event.target !== m.seq || m.recalled)
        return m;
    if (event.type === 'message.recalled')
        return { ...m, body: '', recalled: true, edited: false };
    if (event.type === 'message.edited')
        return { ...m, body: event.body ?? '', ctype: event.ctype ?? m.ctype, edited: true };
    return m;
}
/** normalizeMessage fills in the zero values JSON leaves out. */
export function normalizeMessage(m) {
    return {
        id: m.id ?? '',
        conv: m.conv ?? '',
        seq: m.seq ?? 0,
        from: m.from ?? '',
        cmid: m.cmid ?? '',
        ctype: m.ctype ?? 'text',
        body: m.body ?? '',
        ts: m.ts ?? 0,
        reply_to: m.reply_to ?? 0,
        mentions: m.mentions ?? [],
        mention_all: m.mention_all ?? false,
        edited: m.edited ?? false,
        recalled: m.recalled ?? false,
    };
}
/** normalizeGroup fills in the zero values JSON leaves out. */
export function normalizeGroup(g) {
    return {
        id: g.id ?? '',
        name: g.name ?? '',
        notice: g.notice ?? '',
        ext: g.ext ?? '',
        owner: g.owner ?? '',
        policy: g.policy ?? 'invite_only',
        history: g.history ?? false,
        muted_all: g.muted_all ?? false,
        dissolved: g.dissolved ?? false,
        count: g.count ?? 0,
        created: g.created ?? 0,
    };
}
/** normalizeConversation fills in the zero values JSON leaves out. */
export function normalizeConversation(c) {
    const out = {
        id: c.id ?? '',
        kind: c.kind ?? 'direct',
        members: c.members ?? [],
        last_seq: c.last_seq ?? 0,
        read_seq: c.read_seq ?? 0,
        unread: c.unread ?? 0,
        peer_read_seq: c.peer_read_seq ?? 0,
        mentioned: c.mentioned ?? false,
    };
    if (c.last)
        out.last = normalizeMessage(c.last);
    if (c.group)
        out.group = normalizeGroup(c.group);
    return out;
}
