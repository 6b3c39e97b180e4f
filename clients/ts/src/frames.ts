// The frames of parley's public protocol, version 1, as they travel in JSON
// text frames. They mirror proto/parley/v1/frame.proto: one flat Frame
// envelope whose `type` says which fields matter. JSON omits zero values, so
// every field of a frame read from the wire may be absent.

/** Content type of a message body. */
export type ContentType = 'text' | 'json';

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
  ctype: ContentType;
  body: string;
  /** Server time in milliseconds since the Unix epoch. */
  ts: number;
}

/** One entry of a user's conversation list (`parley.v1.Conversation`). */
export interface Conversation {
  id: string;
  kind: 'direct' | 'group';
  members: string[];
  /** Newest seq of the conversation. */
  last_seq: number;
  /** The reader's read cursor. */
  read_seq: number;
  unread: number;
  last?: Message;
}

/** Every value of Frame.type. */
export type FrameType =
  | 'send' | 'recv' | 'sync' | 'read' | 'convs' | 'ping'
  | 'hello' | 'ack' | 'msg' | 'delivered' | 'sync_result' | 'conversations' | 'pong' | 'error';

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
}

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
export type ClientFrame = SendFrame | RecvFrame | SyncFrame | ReadFrame | ConvsFrame | PingFrame;

// ---- frames from the server (fields as they may arrive: zero values absent) ----

/** First frame of every connection. */
export interface HelloFrame { type: 'hello'; user?: string; conn?: string; node?: string }
/** Your send is durable. */
export interface AckFrame { type: 'ack'; id?: string; msg?: Partial<Message> }
/** A message for this device; answer `recv`. */
export interface MsgFrame { type: 'msg'; msg?: Partial<Message> }
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
export interface ErrorFrame { type: 'error'; id?: string; code?: string; message?: string; retryable?: boolean }

/** Any frame the server may send. */
export type ServerFrame =
  | HelloFrame | AckFrame | MsgFrame | DeliveredFrame | SyncResultFrame
  | ReadReplyFrame | ConversationsFrame | PongFrame | ErrorFrame;

/** Error codes the server documents; other strings may appear in later versions. */
export type ServerErrorCode =
  | 'bad_frame' | 'unknown_type' | 'unauthorized' | 'invalid_user' | 'invalid_conversation'
  | 'invalid_cmid' | 'empty_body' | 'body_too_large' | 'unknown_content_type' | 'invalid_json_body'
  | 'invalid_utf8' | 'send_to_self' | 'not_member' | 'rejected' | 'invalid_limit' | 'rate_limited'
  | 'unavailable' | 'not_found' | 'request_too_large' | 'internal';

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
} as const;

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
  };
  if (c.last) out.last = normalizeMessage(c.last);
  return out;
}
