/**
 * The base class of every error connpool raises itself. Errors from dialers
 * (`ECONNREFUSED`, `ETIMEDOUT`, TLS failures, ...) are passed through as Node
 * raised them and are not instances of this class.
 */
export abstract class ConnpoolError extends Error {
  /** A stable, machine-readable code; messages may change, codes do not. */
  abstract readonly code: string;
}

/**
 * No slot became free before the caller's `AbortSignal` aborted.
 * `cause` is the signal's reason.
 */
export class ResourceLimitExceededError extends ConnpoolError {
  override readonly name = 'ResourceLimitExceededError';
  readonly code = 'ERR_RESOURCE_LIMIT_EXCEEDED';
  constructor(options?: ErrorOptions) {
    super('resource limit exceeded: no connection slot became free before the signal aborted', options);
  }
}

/** `get()` was called on a handle whose connection is still out. */
export class ConnInUseError extends ConnpoolError {
  override readonly name = 'ConnInUseError';
  readonly code = 'ERR_CONN_IN_USE';
  constructor(message = 'connection is already in use: put() or close() it before calling get() again') {
    super(message);
  }
}

/** A connection (or resource) was used after `put()` or `close()`, or put twice. */
export class ConnReleasedError extends ConnpoolError {
  override readonly name = 'ConnReleasedError';
  readonly code = 'ERR_CONN_RELEASED';
  constructor(message = 'connection was already released with put() or close()') {
    super(message);
  }
}

/** The address given to `New()` is not valid for its network. */
export class InvalidAddressError extends ConnpoolError {
  override readonly name = 'InvalidAddressError';
  readonly code = 'ERR_INVALID_ADDRESS';
}

/** The network given to `New()` is not one of `tcp`, `tcp4`, `tcp6`, `unix`. */
export class UnknownNetworkError extends ConnpoolError {
  override readonly name = 'UnknownNetworkError';
  readonly code = 'ERR_UNKNOWN_NETWORK';
}

/** The pool was closed: no connection can be had from it any more. */
export class PoolClosedError extends ConnpoolError {
  override readonly name = 'PoolClosedError';
  readonly code = 'ERR_POOL_CLOSED';
  constructor(message = 'the resource pool is closed') {
    super(message);
  }
}

/** The pool's wait queue is full (`maxWaiting`): the caller was shed at once. */
export class QueueFullError extends ConnpoolError {
  override readonly name = 'QueueFullError';
  readonly code = 'ERR_QUEUE_FULL';
  constructor(message = 'too many callers are already waiting for a connection slot') {
    super(message);
  }
}

/** A `TypeError` with Node's `ERR_INVALID_ARG_TYPE` code, for an argument of the wrong kind. @internal */
export function invalidArgType(message: string): TypeError & { code: 'ERR_INVALID_ARG_TYPE' } {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' as const });
}

/** A `RangeError` with Node's `ERR_OUT_OF_RANGE` code, for a number outside what is accepted. @internal */
export function outOfRange(message: string): RangeError & { code: 'ERR_OUT_OF_RANGE' } {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' as const });
}

/** undici's own timeouts: connect, response headers, response body. */
const UNDICI_TIMEOUT_CODES: ReadonlySet<unknown> = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** How far {@link isTimeout} follows `cause`: deeper chains are not timeouts it can vouch for. */
const MAX_CAUSE_DEPTH = 8;

/**
 * Whether `error` means something timed out, whatever its shape: a wait for
 * a slot that gave up because its signal timed out
 * (`ResourceLimitExceededError` whose `cause` is a `TimeoutError`), an
 * `AbortSignal.timeout()` that fired during a dial (`TimeoutError`), a
 * connect timeout (`ETIMEDOUT`), or undici's connect, headers and body
 * timeouts (`UND_ERR_*_TIMEOUT`). An error that wraps one of these as its
 * `cause` is a timeout too, as `fetch()`'s `TypeError('fetch failed')` does:
 * the chain is followed up to 8 levels, cycles included.
 *
 * @example
 * ```ts
 * try { await res.get(AbortSignal.timeout(1_000), 500) }
 * catch (error) { if (isTimeout(error)) retryLater(); else throw error; }
 * ```
 */
export function isTimeout(error: unknown): boolean {
  let current = error;
  for (let depth = 0; depth <= MAX_CAUSE_DEPTH; depth++) {
    if (typeof current !== 'object' || current === null) return false;
    const { name, code, cause } = current as { name?: unknown; code?: unknown; cause?: unknown };
    if (name === 'TimeoutError' || code === 'ETIMEDOUT' || UNDICI_TIMEOUT_CODES.has(code)) return true;
    if (cause === current) return false;
    current = cause;
  }
  return false;
}
