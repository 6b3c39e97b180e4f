import type { FrameType } from './frames.js';

/**
 * Codes the SDK itself gives to failures that no server frame describes.
 * - `timeout`: no reply within `requestTimeoutMs` (retryable).
 * - `disconnected`: the connection ended before the reply (retryable).
 * - `closed`: `close()` was called; the client is done.
 * - `aborted`: the caller's AbortSignal fired.
 * - `frame_too_large`: the frame would exceed the server's 64 KiB limit.
 */
export type ClientErrorCode = 'timeout' | 'disconnected' | 'closed' | 'aborted' | 'frame_too_large';

/**
 * ParleyError is an `error` frame from the server (code, message, retryable
 * as the server sent them) or one of the SDK's own failures (ClientErrorCode).
 * A retryable send may be sent again with the same `cmid`: the server stores
 * it at most once.
 */
export class ParleyError extends Error {
  /** The protocol's error code (README, "Error codes") or a ClientErrorCode. */
  readonly code: string;
  /** True when the same request may succeed later unchanged. */
  readonly retryable: boolean;
  /** For `muted` and `banned`: when it ends, in Unix milliseconds (absent: no end given). */
  readonly until: number | undefined;
  /**
   * The type of the frame the server refused (`send`, `sync`, `typing`, ...),
   * when the error answers one of this client's frames; absent for an error
   * frame that names none, and for the SDK's own codes.
   */
  readonly request: FrameType | undefined;

  constructor(code: string, message: string, retryable: boolean, until?: number, request?: FrameType) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'ParleyError';
    this.code = code;
    this.retryable = retryable;
    this.until = until || undefined;
    this.request = request;
  }
}
