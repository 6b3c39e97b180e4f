export {
  Client,
  newCmid,
  type ClientEvents,
  type ClientOptions,
  type ConnectionState,
  type Delivered,
  type Draft,
  type GroupChange,
  type GroupResult,
  type JoinNotice,
  type MessageChange,
  type NewGroup,
  type ReadBy,
  type ReadCursor,
  type Seen,
  type TypingNotice,
  type Unassigned,
  type SendOptions,
  type StateChange,
  type WebSocketConstructor,
  type WebSocketLike,
} from './client.js';
export { Emitter } from './emitter.js';
export { ParleyError, type ClientErrorCode } from './errors.js';
export * from './frames.js';
export { devToken } from './http.js';
