/**
 * ParleyError is an `error` frame from the server (code, message, retryable
 * as the server sent them) or one of the SDK's own failures (ClientErrorCode).
 * A retryable send may be sent again with the same `cmid`: the server stores
 * it at most once.
 */
export class ParleyError extends Error {
    /** The protocol's error code (README, "Error codes") or a ClientErrorCode. */
    code;
    /** True when the same request may succeed later unchanged. */
    retryable;
    /** For `muted` and `banned`: when it ends, in Unix milliseconds (absent: no end given). */
    until;
    /**
     * The type of the frame the server refused (`send`, `sync`, `typing`, ...),
     * when the error answers one of this client's frames; absent for an error
     * frame that names none, and for the SDK's own codes.
     */
    request;
    constructor(code, message, retryable, until, request) {
        super(message ? `${code}: ${message}` : code);
        this.name = 'ParleyError';
        this.code = code;
        this.retryable = retryable;
        this.until = until || undefined;
        this.request = request;
    }
}
