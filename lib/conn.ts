import type { X509Certificate } from 'node:crypto';
import type { AddressInfo, Socket, SocketReadyState } from 'node:net';
import { Duplex } from 'node:stream';
import {
  TLSSocket,
  type CipherNameAndProtocol,
  type DetailedPeerCertificate,
  type EphemeralKeyInfo,
  type PeerCertificate,
} from 'node:tls';
import { ConnReleasedError } from './errors.js';
import type { PooledSocket } from './idle.js';

type WriteCallback = (error?: Error | null) => void;

// No read-ahead: _read() is called only for a consumer, and a pending read is
// what holds the connection from its socket (E9): bytes nobody asked for stay
// in the socket's buffer. As `net.Socket`, a connection ends its own side when
// its peer ends (allowHalfOpen: false) unless its handle asked otherwise.
const DUPLEX_OPTIONS = { readableHighWaterMark: 0, allowHalfOpen: false };
const HALF_OPEN_OPTIONS = { readableHighWaterMark: 0, allowHalfOpen: true };

const OUT = 0;
const PUT = 1;
const CLOSED = 2;
/** Destroyed, but not by close(): by a socket error, destroy() or autoDestroy. */
const DESTROYED = 3;

/**
 * A pooled network connection: a `Duplex` over a socket the pool owns that
 * behaves as the `net.Socket` (or `tls.TLSSocket`) it stands for (E14): its
 * members (addresses, byte counts, `readyState`, timeouts, `setNoDelay`, ...)
 * and, over TLS, the `TLSSocket` ones pass through to the socket. When the
 * peer ends the connection it emits `'end'` after every byte, ends its own
 * side and emits `'close'`, whether or not anyone reads (unless its handle
 * was made with `allowHalfOpen: true`); a reset emits `'error'` then
 * `'close'`. Either way its slot is free once the socket is closed.
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
  /** Bytes of the write in flight, and of the writes completed, for {@link bytesWritten}. */
  #writing = 0;
  #written = 0;
  #closing: Promise<void> | undefined = undefined;

  /** @internal Connections come from `ConnResource#get()`. */
  constructor(pooled: PooledSocket, owner: object, trace?: Error, allowHalfOpen = false) {
    super(allowHalfOpen ? HALF_OPEN_OPTIONS : DUPLEX_OPTIONS);
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
    if (size !== 0) {
      this.#assertOut();
      // A net.Socket's read() returns all it holds: bytes that reached the
      // socket after this stream's last pull join them first.
      if (this.readableLength > 0 && this.#isHolding && this.#socket.readableLength > 0) this.#pooled.pull(this);
    }
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

  /** The local address, family and port, as `net.Socket#address()`. @throws {ConnReleasedError} after `put()` or `close()`. */
  address(): AddressInfo | Record<string, never> {
    return this.#live().address();
  }

  /** The local IP address. @throws {ConnReleasedError} after `put()` or `close()`. */
  get localAddress(): string | undefined {
    return this.#live().localAddress;
  }

  /** The local port. @throws {ConnReleasedError} after `put()` or `close()`. */
  get localPort(): number | undefined {
    return this.#live().localPort;
  }

  /** `'IPv4'` or `'IPv6'`, of the local address. @throws {ConnReleasedError} after `put()` or `close()`. */
  get localFamily(): string | undefined {
    return this.#live().localFamily;
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

  /**
   * Bytes received on this connection since `get()` (a reused socket's
   * earlier exchanges do not count), as `net.Socket#bytesRead`.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`.
   */
  get bytesRead(): number {
    // Counted here rather than read from the socket, whose count (a native
    // call) would have to be taken at every put() to tell lendings apart.
    return this.#pooled.bytesDelivered + this.#live().readableLength;
  }

  /**
   * Bytes written to this connection, sent or still buffered, as
   * `net.Socket#bytesWritten`.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`.
   */
  get bytesWritten(): number {
    this.#assertOut();
    return this.#written + this.writableLength;
  }

  /**
   * `'open'`, `'readOnly'` (its side ended), `'writeOnly'` (the peer's side
   * ended, half-open) or `'closed'` (also once put or closed), as
   * `net.Socket#readyState`; never `'opening'`: a connection is handed out
   * connected.
   */
  get readyState(): SocketReadyState {
    if (this.#state !== OUT || this.destroyed) return 'closed';
    if (this.readable) return this.writable ? 'open' : 'readOnly';
    return this.writable ? 'writeOnly' : 'closed';
  }

  /** True once the connection has no socket any more (put, closed or destroyed), as `net.Socket#pending`. */
  get pending(): boolean {
    return this.#state !== OUT || this.destroyed;
  }

  /** Always false: a connection is handed out connected. */
  get connecting(): boolean {
    return false;
  }

  /**
   * The connection is connected already: emits `'connect'`, then `'ready'`,
   * on a later tick, and ignores the address given, for a client that calls
   * `connect()` on a stream it was handed (as pg does). `listener` is added
   * for `'connect'`.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`.
   */
  connect(...args: unknown[]): this {
    this.#assertOut();
    const listener = args[args.length - 1];
    if (typeof listener === 'function') this.once('connect', listener as () => void);
    process.nextTick(emitConnect, this);
    return this;
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

  /**
   * Closes the connection with a TCP reset (RST) instead of a FIN, as
   * `net.Socket#resetAndDestroy`; its slot is freed as by `close()`.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`.
   * @throws `ERR_INVALID_HANDLE_TYPE` over TLS (as `tls.TLSSocket`).
   */
  resetAndDestroy(): this {
    const socket = this.#live();
    if (this.#isHolding) socket.resetAndDestroy();
    this.destroy();
    return this;
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

  // The tls.TLSSocket API, passed through to the socket. On plain TCP the
  // getters say so (not encrypted, not authorized) and the methods return
  // undefined. Each throws ConnReleasedError after put() or close() (S8).

  /** Whether the socket is TLS. @throws {ConnReleasedError} after `put()` or `close()`. */
  get encrypted(): boolean {
    return this.#live() instanceof TLSSocket;
  }

  /**
   * Whether the peer's certificate was verified against the trusted CAs;
   * false for plain TCP. @throws {ConnReleasedError} after `put()` or `close()`.
   */
  get authorized(): boolean {
    return this.#tls()?.authorized ?? false;
  }

  /** Why the peer's certificate was not verified, as `tls.TLSSocket#authorizationError`. @throws {ConnReleasedError} after `put()` or `close()`. */
  get authorizationError(): Error | undefined {
    return this.#tls()?.authorizationError;
  }

  /**
   * The protocol chosen by ALPN: a string, `false` if none was, `null` for
   * plain TCP. @throws {ConnReleasedError} after `put()` or `close()`.
   */
  get alpnProtocol(): string | false | null {
    const socket = this.#tls();
    return socket === undefined ? null : (socket.alpnProtocol ?? false);
  }

  /** The server name sent for SNI, as `tls.TLSSocket#servername`. @throws {ConnReleasedError} after `put()` or `close()`. */
  get servername(): string | false | null | undefined {
    return this.#tls()?.servername;
  }

  /**
   * The peer's certificate; `undefined` for plain TCP.
   * @throws {ConnReleasedError} `ERR_CONN_RELEASED` after `put()` or `close()`.
   */
  getPeerCertificate(detailed: true): DetailedPeerCertificate | undefined;
  getPeerCertificate(detailed?: false): PeerCertificate | undefined;
  getPeerCertificate(detailed?: boolean): PeerCertificate | DetailedPeerCertificate | undefined;
  getPeerCertificate(detailed?: boolean): PeerCertificate | DetailedPeerCertificate | undefined {
    return this.#tls()?.getPeerCertificate(detailed as true);
  }

  /** The peer's certificate as an `X509Certificate`. @throws {ConnReleasedError} after `put()` or `close()`. */
  getPeerX509Certificate(): X509Certificate | undefined {
    return this.#tls()?.getPeerX509Certificate();
  }

  /** The local certificate, as `tls.TLSSocket#getCertificate`. @throws {ConnReleasedError} after `put()` or `close()`. */
  getCertificate(): PeerCertificate | object | null | undefined {
    return this.#tls()?.getCertificate();
  }

  /** The local certificate as an `X509Certificate`. @throws {ConnReleasedError} after `put()` or `close()`. */
  getX509Certificate(): X509Certificate | undefined {
    return this.#tls()?.getX509Certificate();
  }

  /** The cipher suite negotiated. @throws {ConnReleasedError} after `put()` or `close()`. */
  getCipher(): CipherNameAndProtocol | undefined {
    return this.#tls()?.getCipher();
  }

  /** The TLS version negotiated (`'TLSv1.3'`, ...). @throws {ConnReleasedError} after `put()` or `close()`. */
  getProtocol(): string | null | undefined {
    return this.#tls()?.getProtocol();
  }

  /** The TLS session, for resumption. @throws {ConnReleasedError} after `put()` or `close()`. */
  getSession(): Buffer | undefined {
    return this.#tls()?.getSession();
  }

  /** Whether the TLS session was resumed. @throws {ConnReleasedError} after `put()` or `close()`. */
  isSessionReused(): boolean | undefined {
    return this.#tls()?.isSessionReused();
  }

  /** The last Finished message sent. @throws {ConnReleasedError} after `put()` or `close()`. */
  getFinished(): Buffer | undefined {
    return this.#tls()?.getFinished();
  }

  /** The last Finished message received. @throws {ConnReleasedError} after `put()` or `close()`. */
  getPeerFinished(): Buffer | undefined {
    return this.#tls()?.getPeerFinished();
  }

  /** Keying material (RFC 5705). @throws {ConnReleasedError} after `put()` or `close()`. */
  exportKeyingMaterial(length: number, label: string, context?: Buffer): Buffer | undefined {
    return this.#tls()?.exportKeyingMaterial(length, label, context as Buffer);
  }

  /** The ephemeral key exchange parameters. @throws {ConnReleasedError} after `put()` or `close()`. */
  getEphemeralKeyInfo(): EphemeralKeyInfo | object | null | undefined {
    return this.#tls()?.getEphemeralKeyInfo();
  }

  /** The signature algorithms shared with the peer. @throws {ConnReleasedError} after `put()` or `close()`. */
  getSharedSigalgs(): string[] | undefined {
    return this.#tls()?.getSharedSigalgs();
  }

  /** The TLS session ticket. @throws {ConnReleasedError} after `put()` or `close()`. */
  getTLSTicket(): Buffer | undefined {
    return this.#tls()?.getTLSTicket();
  }

  /** Sets the largest TLS fragment sent. @throws {ConnReleasedError} after `put()` or `close()`. */
  setMaxSendFragment(size: number): boolean {
    return this.#tls()?.setMaxSendFragment(size) ?? false;
  }

  /** Refuses renegotiation requested by the peer. @throws {ConnReleasedError} after `put()` or `close()`. */
  disableRenegotiation(): void {
    this.#tls()?.disableRenegotiation();
  }

  /** Prints TLS packet traces to stderr. @throws {ConnReleasedError} after `put()` or `close()`. */
  enableTrace(): void {
    this.#tls()?.enableTrace();
  }

  override _read(): void {
    if (this.#isHolding) this.#pooled.pull(this);
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: WriteCallback): void {
    // Never into a socket that may be someone else's by now.
    if (!this.#isHolding) return callback();
    this.#pendingWrite = callback;
    this.#writing = chunk.length;
    this.#socket.write(chunk, encoding, this.#afterWrite);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: WriteCallback): void {
    if (!this.#isHolding) return callback();
    const socket = this.#socket;
    const last = chunks.length - 1;
    this.#pendingWrite = callback;
    let bytes = chunks[last]!.chunk.length;
    socket.cork();
    for (let i = 0; i < last; i++) {
      bytes += chunks[i]!.chunk.length;
      socket.write(chunks[i]!.chunk);
    }
    this.#writing = bytes;
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
    this.#written += this.#writing;
    this.#writing = 0;
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
    // Nor does Duplex end it when an 'end' already on its way is emitted:
    // end() would throw on a later tick once the connection is released.
    if (!this.allowHalfOpen) this.allowHalfOpen = true;
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

  #tls(): TLSSocket | undefined {
    const socket = this.#live();
    return socket instanceof TLSSocket ? socket : undefined;
  }
}

function emitConnect(conn: PooledConn): void {
  if (!conn.isOut || conn.destroyed) return;
  conn.emit('connect');
  conn.emit('ready');
}

// Resolving a promise with a connection looks up `then` on it: found at once
// here rather than after six prototypes (a conn is still not a thenable).
Object.defineProperty(PooledConn.prototype, 'then', { value: undefined });
