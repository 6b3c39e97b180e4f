export {
  Client,
  newCmid,
  type ClientEvents,
  type ClientOptions,
  type ConnectionState,
  type Delivered,
  type Draft,
  type ReadCursor,
  type SendOptions,
  type StateChange,
  type WebSocketConstructor,
  type WebSocketLike,
} from './client.js';
export { Emitter } from './emitter.js';
export { ParleyError, type ClientErrorCode } from './errors.js';
export * from './frames.js';
export { devToken } from './http.js';
