import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket, type DetailedPeerCertificate, type PeerCertificate } from 'node:tls';
import { ConnReleasedError } from './errors.js';
import type { PooledSocket } from './idle.js';

type WriteCallback = (error?: Error | null) => void;

const DUPLEX_OPTIONS = { readableHighWaterMark: 0 };

const OUT = 0;
const PUT = 1;
const CLOSED = 2;
/** Destroyed, but not by close(): by a socket error, destroy() or autoDestroy. */
const DESTROYED = 3;

/**
 * A pooled network connection: a `Duplex` over a socket the pool owns, which
 * also offers what Go's `net.Conn` does (addresses, timeouts) and, over TLS,
 * the peer's certificate and ALPN protocol.
 *
 * Reads and writes go straight to the socket, with backpressure. When done,
 * `put()` it (the socket goes back to the idle list if it is clean) or
 * `close()` it (after a protocol error, so a connection in an unknown state is
 * never reused). Leaving an `await using` block puts it; disposing after
 * `put()` or `close()` does nothing. Breaking out of `for await` over it does
 * not close the socket: `put()` decides.
 *
 * @example
 * ```ts
 * await using conn = await res.get(AbortSignal.timeout(2_000));
 * try {
 *   conn.write(request);
 *   for await (const chunk of conn) { if (done(chunk)) break; }
 * } catch (error) {
 *   await conn.close();
 *   throw error;
 * }
 * ```
 */
export class PooledConn extends Duplex {
  readonly #pooled: PooledSocket;
  readonly #socket: Socket;
  /** Whether the user has let go: put(), close(), or neither yet. */
  #state: typeof OUT | typeof PUT | typeof CLOSED | typeof DESTROYED = OUT;
  /** Still owns the socket's slot: until put(), close(), destroy() or a socket error. */
  #isHolding = true;
  #hasTimeout = false;
  #isPiped = false;
  #pendingWrite: WriteCallback | undefined = undefined;
  #closing: Promise<void> | undefined = undefined;

  /** @internal Connections come from `ConnResource#get()`. */
  constructor(pooled: PooledSocket, owner: object, trace?: Error) {
    // No read-ahead: _read() is called only for a consumer, and a pending
    // read is what holds the connection from its socket (E9): bytes nobody
    // asked for stay in the socket's buffer.
    super(DUPLEX_OPTIONS);
    this.#pooled = pooled;
    this.#socket = pooled.socket;
    this.reused = pooled.lend(this, owner, trace);
  }

  /**
   * Whether the socket served earlier exchanges (it came from the idle list)
   * rather than being dialed for this `get()`: a request that fails on a
   * reused connection the server had just closed is worth retrying.
   */
  readonly reused: boolean;


  /** True until `put()` or `close()`: the connection still belongs to its caller. */
  get isOut(): boolean {
    return this.#state === OUT;
  }

  /**
   * Releases the connection: the socket goes back to the idle list if it is
   * clean (nothing unread or unsent, not ended, no error), else it is closed.
   * Does nothing after `close()`.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` if already put.
   */
  put(): void {
    if (this.#state !== OUT) {
      if (this.#state === PUT) throw new ConnReleasedError('put() called twice on the same connection');
      if (this.#state === DESTROYED) this.#state = PUT; // its slot is already free
      return;
    }
    this.#release(PUT);
    if (!this.#isHolding) return;
    this.#isHolding = false;
    if (this.#hasTimeout) this.#socket.setTimeout(0);
    this.#pooled.reclaim(this.readableLength === 0 && this.writableLength === 0 && !this.writableEnded && !this.errored);
  }

  /**
   * Closes the socket now. Resolves once its file descriptor is closed and
   * its slot is free. Does nothing after `put()`.
   */
  close(): Promise<void> {
    if (this.#state === OUT) {
      this.#release(CLOSED);
      this.destroy();
    } else if (this.#state === DESTROYED) {
      this.#state = CLOSED;
    }
    return this.#closing ?? Promise.resolve();
  }

  /** Calls `put()` unless the connection was already put or closed. */
  [Symbol.dispose](): void {
    if (this.#state === OUT) this.put();
  }

  /** Calls `put()` unless the connection was already put or closed. */
  override [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === OUT) this.put();
    return Promise.resolve();
  }

  /**
   * Iterates over the chunks read. Leaving the loop early keeps the
   * connection open; `put()` then decides whether it can be reused.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`.
   */
  override [Symbol.asyncIterator](): ReturnType<Duplex['iterator']> {
    this.#assertOut();
    return this.iterator({ destroyOnReturn: false });
  }

  /** @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`. */
  override read(size?: number): ReturnType<Duplex['read']> {
    // Readable's own bookkeeping calls read(0); only a real read is a use.
    if (size !== 0) this.#assertOut();
    return super.read(size);
  }

  /** Pipes the data read to `destination`; unpiped at `put()` or `close()`. */
  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    this.#assertOut();
    this.#isPiped = true;
    return super.pipe(destination, options);
  }

  /**
   * Starts the flow of 'data' events. Does nothing once the connection is
   * put or closed: Node's own pipes call it on a later tick (E10).
   */
  override resume(): this {
    return this.#state === OUT ? super.resume() : this;
  }

  /** @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`. */
  override write(chunk: unknown, encoding?: BufferEncoding | WriteCallback, callback?: WriteCallback): boolean {
    this.#assertOut();
    return super.write(chunk, encoding as BufferEncoding, callback);
  }

  /** @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`. */
  override end(chunk?: unknown, encoding?: BufferEncoding | (() => void), callback?: () => void): this {
    this.#assertOut();
    return super.end(chunk, encoding as BufferEncoding, callback);
  }

  /** The local IP address. @throws {ConnReleasedError} after `put()` or `close()`. */
  get localAddress(): string | undefined {
    return this.#live().localAddress;
  }

  /** The local port. @throws {ConnReleasedError} after `put()` or `close()`. */
  get localPort(): number | undefined {
    return this.#live().localPort;
  }

  /** The peer's IP address. @throws {ConnReleasedError} after `put()` or `close()`. */
  get remoteAddress(): string | undefined {
    return this.#live().remoteAddress;
  }

  /** The peer's port. @throws {ConnReleasedError} after `put()` or `close()`. */
  get remotePort(): number | undefined {
    return this.#live().remotePort;
  }

  /** `'IPv4'` or `'IPv6'`. @throws {ConnReleasedError} after `put()` or `close()`. */
  get remoteFamily(): string | undefined {
    return this.#live().remoteFamily;
  }

  /** Whether the socket is TLS. @throws {ConnReleasedError} after `put()` or `close()`. */
  get encrypted(): boolean {
    return this.#live() instanceof TLSSocket;
  }

  /**
   * Whether the peer's certificate was verified against the trusted CAs;
   * false for plain TCP. @throws {ConnReleasedError} after `put()` or `close()`.
   */
  get authorized(): boolean {
    const socket = this.#live();
    return socket instanceof TLSSocket && socket.authorized;
  }

  /**
   * The protocol chosen by ALPN: a string, `false` if none was, `null` for
   * plain TCP. @throws {ConnReleasedError} after `put()` or `close()`.
   */
  get alpnProtocol(): string | false | null {
    const socket = this.#live();
    return socket instanceof TLSSocket ? socket.alpnProtocol ?? false : null;
  }

  /**
   * The peer's certificate; `undefined` for plain TCP.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`.
   */
  getPeerCertificate(detailed: true): DetailedPeerCertificate | undefined;
  getPeerCertificate(detailed?: false): PeerCertificate | undefined;
  getPeerCertificate(detailed?: boolean): PeerCertificate | DetailedPeerCertificate | undefined;
  getPeerCertificate(detailed?: boolean): PeerCertificate | DetailedPeerCertificate | undefined {
    const socket = this.#live();
    return socket instanceof TLSSocket ? socket.getPeerCertificate(detailed as true) : undefined;
  }

  /**
   * Emits `'timeout'` after `ms` of inactivity, as `net.Socket#setTimeout`
   * does; 0 turns it off (and removes `callback`). The timeout is cleared at
   * `put()`.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`.
   */
  setTimeout(ms: number, callback?: () => void): this {
    this.#live().setTimeout(ms);
    this.#hasTimeout = ms !== 0;
    this.#pooled.listenForTimeout(this.#hasTimeout ? this : undefined);
    if (callback !== undefined) {
      if (this.#hasTimeout) this.once('timeout', callback);
      else this.off('timeout', callback);
    }
    return this;
  }

  /** The inactivity timeout set with {@link setTimeout}, in ms, as `net.Socket#timeout`. @throws {ConnReleasedError} after `put()` or `close()`. */
  get timeout(): number | undefined {
    return this.#live().timeout;
  }

  /** Always false: a connection is handed out connected. */
  get connecting(): boolean {
    return false;
  }

  /** Lets the socket keep the event loop alive (the default while out). @throws {ConnReleasedError} after `put()` or `close()`. */
  ref(): this {
    this.#live().ref();
    return this;
  }

  /** Lets the process exit while the socket is open. @throws {ConnReleasedError} after `put()` or `close()`. */
  unref(): this {
    this.#live().unref();
    return this;
  }

  /** Ends the writable side, then closes the connection once its writes are flushed, as `net.Socket#destroySoon`. */
  destroySoon(): void {
    if (this.#state !== OUT) return;
    if (this.writable) this.end();
    if (this.writableFinished) void this.close();
    else this.once('finish', () => void this.close());
  }

  /** Sets `TCP_NODELAY`. @throws {ConnReleasedError} after `put()` or `close()`. */
  setNoDelay(noDelay = true): this {
    this.#live().setNoDelay(noDelay);
    return this;
  }

  /** Sets `SO_KEEPALIVE`. @throws {ConnReleasedError} after `put()` or `close()`. */
  setKeepAlive(enable = false, initialDelayMs = 0): this {
    this.#live().setKeepAlive(enable, initialDelayMs);
    return this;
  }

  override _read(): void {
    if (this.#isHolding) this.#pooled.pull(this);
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: WriteCallback): void {
    // Never into a socket that may be someone else's by now.
    if (!this.#isHolding) return callback();
    this.#pendingWrite = callback;
    this.#socket.write(chunk, encoding, this.#afterWrite);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: WriteCallback): void {
    if (!this.#isHolding) return callback();
    const socket = this.#socket;
    const last = chunks.length - 1;
    this.#pendingWrite = callback;
    socket.cork();
    for (let i = 0; i < last; i++) socket.write(chunks[i]!.chunk);
    socket.write(chunks[last]!.chunk, this.#afterWrite);
    socket.uncork();
  }

  override _final(callback: WriteCallback): void {
    if (!this.#isHolding) return callback();
    this.#pendingWrite = callback;
    this.#socket.end(this.#afterWrite);
  }

  /**
   * Completes the write (or end) in flight: Writable has one at a time. Once the connection has let go of its
   * socket (put() of an unclean connection closes it), the socket's errors are
   * no longer this stream's: nobody listens to it any more.
   */
  readonly #afterWrite = (error?: Error | null): void => {
    const callback = this.#pendingWrite!;
    this.#pendingWrite = undefined;
    callback(this.#isHolding ? error : null);
  };

  /**
   * Destroying the connection (as `pipeline()` does on error), or a socket
   * error while it is read, frees its slot as `close()` does (E10). It then
   * behaves as any destroyed stream; only put() and close() make its calls
   * throw ConnReleasedError (S8).
   */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.#state === OUT) this.#release(DESTROYED);
    if (this.#isHolding) {
      this.#isHolding = false;
      this.#closing = this.#pooled.retire();
    }
    callback(error);
  }

  /**
   * The user let go: the connection stops flowing and unpiping, so Node's
   * stream machinery never calls read() on it again (E10).
   */
  #release(state: typeof PUT | typeof CLOSED | typeof DESTROYED): void {
    // Unpiping may flow once more at once (a pipe waiting for 'drain' resumes
    // its source as it lets go), so it comes before the pause, and both
    // before the state changes: until then, reads are still the user's.
    if (this.#isPiped) this.unpipe();
    if (this.readableFlowing === true) this.pause();
    this.#state = state;
    this.#pooled.isOut = false;
  }

  #assertOut(): void {
    if (this.#state === PUT || this.#state === CLOSED) throw new ConnReleasedError();
  }

  #live(): Socket {
    this.#assertOut();
    return this.#socket;
  }
}

// Resolving a promise with a connection looks up `then` on it: found at once
// here rather than after six prototypes (a conn is still not a thenable).
Object.defineProperty(PooledConn.prototype, 'then', { value: undefined });
