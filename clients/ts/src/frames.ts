// The frames of parley's public protocol, version 1, as they travel in JSON
// text frames. They mirror proto/parley/v1/frame.proto: one flat Frame
// envelope whose `type` says which fields matter. JSON omits zero values, so
// every field of a frame read from the wire may be absent.

/** Content type of a message body a client may send. */
export type ContentType = 'text' | 'json';

/** Content type of a stored message: a client's, or `system` for an event (see parseSystemEvent). */
export type MessageContentType = ContentType | 'system';

/** A stored message (`parley.v1.Message`). */
export interface Message {
  /** Server-assigned id; it derives from (sender, cmid), so a retried send keeps it. */
  id: string;
  /** Conversation id, e.g. `d:alice~bob` for a direct conversation. */
  conv: string;
  /** Position in the conversation: strictly increasing, no gaps. */
  seq: number;
  /** Sender's user id. */
  from: string;
  /** The client message id the sender chose. */
  cmid: string;
  ctype: MessageContentType;
  /** The text or JSON; for `system`, the event's JSON; empty once recalled. */
  body: string;
  /** Server time in milliseconds since the Unix epoch. */
  ts: number;
  /** The seq of the message this one replies to; 0 for none. */
  reply_to: number;
  /** Users it mentions. */
  mentions: string[];
  /** It mentions every member of the group (`@all`). */
  mention_all: boolean;
  /** Its body was replaced by an edit. */
  edited: boolean;
  /** It was recalled: its body is gone. */
  recalled: boolean;
}

/** A group's profile (`parley.v1.Group`). */
export interface Group {
  /** `g:` and 26 base32 characters. */
  id: string;
  name: string;
  notice: string;
  /** A JSON object as text, or empty. */
  ext: string;
  owner: string;
  policy: JoinPolicy;
  /** Members who join see what came before. */
  history: boolean;
  /** Only the owner and admins speak. */
  muted_all: boolean;
  dissolved: boolean;
  /** How many members. */
  count: number;
  /** Creation time in Unix milliseconds. */
  created: number;
}

/** How users join a group. */
export type JoinPolicy = 'open' | 'approval' | 'invite_only';

/** A role in a group. */
export type GroupRole = 'owner' | 'admin' | 'member';

/** A pending request to join a group. */
export interface JoinRequest {
  user: string;
  note: string;
  /** When it was made, Unix milliseconds. */
  at: number;
}

/** One entry of a user's conversation list (`parley.v1.Conversation`). */
export interface Conversation {
  id: string;
  kind: 'direct' | 'group' | 'service';
  members: string[];
  /** Newest seq of the conversation. */
  last_seq: number;
  /** The reader's read cursor. */
  read_seq: number;
  /** For a group, counted within the reader's window. */
  unread: number;
  /** Of a direct conversation: the other member's read cursor. */
  peer_read_seq: number;
  /** A message past the reader's read cursor mentions them (or `@all`). */
  mentioned: boolean;
  last?: Message;
  /** A group's profile. */
  group?: Group;
}

/** Every value of Frame.type. */
export type FrameType =
  | 'send' | 'recv' | 'sync' | 'read' | 'convs' | 'ping' | 'group_create' | 'group' | 'recall' | 'edit' | 'typing'
  | 'hello' | 'ack' | 'msg' | 'delivered' | 'sync_result' | 'conversations' | 'pong' | 'error' | 'group_result'
  | 'seen' | 'read_by' | 'join_requested' | 'join_rejected' | 'unassigned';

/**
 * The flat envelope (`parley.v1.Frame`) with every field optional, as
 * decoded from the wire. The per-type interfaces below narrow it.
 */
export interface Frame {
  type: FrameType;
  id?: string;
  conv?: string;
  to?: string;
  cmid?: string;
  ctype?: ContentType;
  body?: string;
  seq?: number;
  limit?: number;
  msg?: Partial<Message>;
  messages?: Partial<Message>[];
  more?: boolean;
  code?: string;
  message?: string;
  retryable?: boolean;
  user?: string;
  conn?: string;
  node?: string;
  conversations?: Partial<Conversation>[];
  reply_to?: number;
  mentions?: string[];
  op?: GroupOp;
  users?: string[];
  role?: GroupRole;
  name?: string;
  notice?: string;
  ext?: string;
  policy?: JoinPolicy;
  on?: boolean;
  until?: number;
  note?: string;
  group?: Partial<Group>;
  count?: number;
  requests?: Partial<JoinRequest>[];
  unit?: string;
  epoch?: number;
  /** On a `msg` frame: do not answer it with `recv` (a group above `parley.group_ack_max`). */
  no_ack?: boolean;
}

/** The changes a `group` frame makes. */
export type GroupOp =
  | 'invite' | 'join' | 'approve' | 'reject' | 'requests' | 'leave' | 'kick' | 'set_role' | 'mute' | 'unmute'
  | 'mute_all' | 'rename' | 'notice' | 'ext' | 'policy' | 'history' | 'transfer' | 'dissolve';

// ---- frames from the client ----

/** Stores a message; answered by `ack` or `error`. Exactly one of `to` and `conv`. */
export interface SendFrame {
  type: 'send';
  id: string;
  to?: string;
  conv?: string;
  /** 1-64 printable ASCII characters, unique per send; a retry reuses it. */
  cmid: string;
  ctype?: ContentType;
  body: string;
  /** A seq of the same conversation the sender can read. */
  reply_to?: number;
  /** Up to 50 user ids; `@all` in a group, for its owner and admins. */
  mentions?: string[];
}

/** Creates a group; answered by `group_result`. */
export interface GroupCreateFrame {
  type: 'group_create';
  id: string;
  name: string;
  users?: string[];
  notice?: string;
  ext?: string;
  policy?: JoinPolicy;
  /** New members see history from before they joined. */
  on?: boolean;
  cmid?: string;
}

/** Changes a group; answered by `group_result`. Fields as the op needs (README, "Group ops"). */
export interface GroupFrame {
  type: 'group';
  id: string;
  conv: string;
  op: GroupOp;
  users?: string[];
  role?: 'admin' | 'member';
  until?: number;
  on?: boolean;
  name?: string;
  notice?: string;
  ext?: string;
  policy?: JoinPolicy;
  note?: string;
  cmid?: string;
}

/** Recalls the message at `seq`; answered by `ack` with the `message.recalled` event. */
export interface RecallFrame {
  type: 'recall';
  id: string;
  conv: string;
  seq: number;
  cmid?: string;
}

/** Replaces the body of your message at `seq`; answered by `ack` with the `message.edited` event. */
export interface EditFrame {
  type: 'edit';
  id: string;
  conv: string;
  seq: number;
  ctype?: ContentType;
  body: string;
  cmid?: string;
}

/** Says you started (`on`) or stopped typing; no answer. */
export interface TypingFrame {
  type: 'typing';
  /** Echoed by an error frame if the notice is refused; nothing answers otherwise. */
  id?: string;
  conv: string;
  on?: boolean;
}

/** Acknowledges a `msg` frame (or everything up to `seq` after a sync); no answer. */
export interface RecvFrame {
  type: 'recv';
  conv: string;
  seq: number;
}

/** Asks for what follows `seq`; answered by `sync_result`. */
export interface SyncFrame {
  type: 'sync';
  id: string;
  conv: string;
  seq: number;
  /** 1-200; 0 or absent means 200. */
  limit?: number;
}

/** Moves the read cursor; answered by a `read` frame. */
export interface ReadFrame {
  type: 'read';
  id: string;
  conv: string;
  seq: number;
}

/** Lists the user's conversations; answered by `conversations`. */
export interface ConvsFrame {
  type: 'convs';
  id: string;
}

/** Answered by `pong`. */
export interface PingFrame {
  type: 'ping';
  id: string;
}

/** Any frame a client may send. */
export type ClientFrame =
  | SendFrame | RecvFrame | SyncFrame | ReadFrame | ConvsFrame | PingFrame
  | GroupCreateFrame | GroupFrame | RecallFrame | EditFrame | TypingFrame;

// ---- frames from the server (fields as they may arrive: zero values absent) ----

/** First frame of every connection. */
export interface HelloFrame { type: 'hello'; user?: string; conn?: string; node?: string }
/** Your send is durable. */
export interface AckFrame { type: 'ack'; id?: string; msg?: Partial<Message> }
/** A message for this device; answer `recv`. */
export interface MsgFrame { type: 'msg'; msg?: Partial<Message>; no_ack?: boolean }
/** A device of `user` acknowledged your message `seq` of `conv`. */
export interface DeliveredFrame { type: 'delivered'; conv?: string; seq?: number; user?: string }
/** A page of history in seq order. */
export interface SyncResultFrame { type: 'sync_result'; id?: string; conv?: string; messages?: Partial<Message>[]; more?: boolean }
/** Your read cursor now in force. */
export interface ReadReplyFrame { type: 'read'; id?: string; conv?: string; seq?: number }
/** Your conversations, newest first. */
export interface ConversationsFrame { type: 'conversations'; id?: string; conversations?: Partial<Conversation>[] }
export interface PongFrame { type: 'pong'; id?: string }
/** A request failed and nothing was stored; `id` is absent when the frame could not be read. */
export interface ErrorFrame { type: 'error'; id?: string; code?: string; message?: string; retryable?: boolean; until?: number }
/** The answer to `group_create` and `group`: the group after the change and its event. */
export interface GroupResultFrame {
  type: 'group_result'; id?: string; conv?: string; group?: Partial<Group>; msg?: Partial<Message>; requests?: Partial<JoinRequest>[];
}
/** The peer of a direct conversation read up to `seq`. */
export interface SeenFrame { type: 'seen'; conv?: string; seq?: number; user?: string }
/** `count` members of the group have read your message `seq`. */
export interface ReadByFrame { type: 'read_by'; conv?: string; seq?: number; count?: number }
/** `user` started (`on`) or stopped typing. */
export interface TypingNoticeFrame { type: 'typing'; conv?: string; user?: string; on?: boolean }
/** To a group's owner and admins: `user` asks to join. */
export interface JoinRequestedFrame { type: 'join_requested'; conv?: string; user?: string; note?: string }
/** To the requester: `user` refused the request. */
export interface JoinRejectedFrame { type: 'join_rejected'; conv?: string; user?: string }
/** Customer service: no agent of shop `user` yet for your message `seq`. */
export interface UnassignedFrame { type: 'unassigned'; conv?: string; seq?: number; user?: string }

/** Any frame the server may send. */
export type ServerFrame =
  | HelloFrame | AckFrame | MsgFrame | DeliveredFrame | SyncResultFrame
  | ReadReplyFrame | ConversationsFrame | PongFrame | ErrorFrame | GroupResultFrame
  | SeenFrame | ReadByFrame | TypingNoticeFrame | JoinRequestedFrame | JoinRejectedFrame | UnassignedFrame;

/** Error codes the server documents; other strings may appear in later versions. */
export type ServerErrorCode =
  | 'bad_frame' | 'unknown_type' | 'unauthorized' | 'invalid_user' | 'invalid_conversation'
  | 'invalid_cmid' | 'empty_body' | 'body_too_large' | 'unknown_content_type' | 'invalid_json_body'
  | 'invalid_utf8' | 'send_to_self' | 'not_member' | 'rejected' | 'invalid_limit' | 'rate_limited'
  | 'unavailable' | 'not_found' | 'request_too_large' | 'internal'
  | 'banned' | 'origin_not_allowed' | 'cmid_reused' | 'forbidden' | 'muted' | 'group_dissolved' | 'invite_only'
  | 'already_member' | 'owner_cannot_leave' | 'recall_window' | 'edit_window' | 'recalled' | 'not_editable'
  | 'not_recallable' | 'invalid_name' | 'invalid_notice' | 'invalid_ext' | 'too_many_members' | 'unknown_role'
  | 'unknown_join_policy' | 'unknown_group_op' | 'invalid_mute_time' | 'invalid_reply' | 'invalid_mention'
  | 'invalid_typing' | 'no_change';

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
} as const;

/** The types of system events (README, "System events"); other strings may appear in later versions. */
export type SystemEventType =
  | 'group.created' | 'member.joined' | 'member.left' | 'member.kicked' | 'member.role' | 'member.muted'
  | 'member.unmuted' | 'group.muted' | 'group.unmuted' | 'group.renamed' | 'group.notice' | 'group.ext'
  | 'group.policy' | 'group.history_opened' | 'group.history_closed' | 'group.owner' | 'group.dissolved'
  | 'message.recalled' | 'message.edited' | 'service.agent';

/** The body of a `system` message: one change to a conversation. Fields as the type needs. */
export interface SystemEvent {
  type: SystemEventType;
  /** Who made the change. */
  actor?: string;
  /** The members it is about, when not the actor. */
  users?: string[];
  role?: GroupRole;
  name?: string;
  notice?: string;
  /** The new free-form JSON object of `group.ext`. */
  ext?: unknown;
  policy?: JoinPolicy;
  /** End of a mute, Unix milliseconds. */
  until?: number;
  /** The seq of the message a recall or an edit changes. */
  target?: number;
  /** The new content of an edit. */
  ctype?: ContentType;
  body?: string;
  note?: string;
}

/** parseSystemEvent reads the event a `system` message carries, or returns undefined for any other message. */
export function parseSystemEvent(m: Pick<Message, 'ctype' | 'body'>): SystemEvent | undefined {
  if (m.ctype !== 'system') return undefined;
  try {
    const e = JSON.parse(m.body) as SystemEvent;
    return e && typeof e === 'object' && typeof e.type === 'string' ? e : undefined;
  } catch {
    return undefined;
  }
}

/**
 * applyChange returns the message `m` as a `message.recalled` or
 * `message.edited` event leaves it (what history shows), or `m` itself when
 * the event is not about it.
 */
export function applyChange(m: Message, event: SystemEvent, eventConv: string): Message {
  if (eventConv !== m.conv || event.target !== m.seq || m.recalled) return m;
  if (event.type === 'message.recalled') return { ...m, body: '', recalled: true, edited: false };
  if (event.type === 'message.edited') return { ...m, body: event.body ?? '', ctype: event.ctype ?? m.ctype, edited: true };
  return m;
}

/** normalizeMessage fills in the zero values JSON leaves out. */
export function normalizeMessage(m: Partial<Message>): Message {
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
export function normalizeGroup(g: Partial<Group>): Group {
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
export function normalizeConversation(c: Partial<Conversation>): Conversation {
  const out: Conversation = {
    id: c.id ?? '',
    kind: c.kind ?? 'direct',
    members: c.members ?? [],
    last_seq: c.last_seq ?? 0,
    read_seq: c.read_seq ?? 0,
    unread: c.unread ?? 0,
    peer_read_seq: c.peer_read_seq ?? 0,
    mentioned: c.mentioned ?? false,
  };
  if (c.last) out.last = normalizeMessage(c.last);
  if (c.group) out.group = normalizeGroup(c.group);
  return out;
}
