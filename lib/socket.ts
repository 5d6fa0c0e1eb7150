import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import net, { isIP, type NetConnectOpts, type Socket } from 'node:net';
import tls, { type ConnectionOptions, type TLSSocket } from 'node:tls';
import { onAbort } from './abort.js';
import { describe } from './address.js';
import { channels } from './diagnostics.js';
import { invalidArgType, outOfRange } from './errors.js';
import { getResourcePool, ResourcePool } from './pool.js';
import { Seat, type Claim, type Claimant } from './seat.js';

/** Options connpool adds to those of `net.connect()` and `tls.connect()`. */
export interface SocketPoolOptions {
  /** The pool whose slot the socket takes. @default getResourcePool() */
  pool?: ResourcePool;
  /**
   * Gives up a connect (and TLS handshake) not done this many ms after it
   * started (once a slot was free), destroying the socket with `ETIMEDOUT`.
   * A connect that completed while the event loop was blocked is not failed.
   * 0 or `Infinity`: none. @default none
   */
  connectTimeout?: number;
  /**
   * Gives up the wait for a slot after this many ms, destroying the socket
   * with `ResourceLimitExceededError` whose `cause` is a `TimeoutError`.
   * 0 or `Infinity`: wait as long as it takes. @default none
   */
  acquireTimeout?: number;
}

/** Options of {@link createConnection} for a plain TCP or unix socket: `net.connect()`'s, plus connpool's. */
export type CreateConnectionOptions = NetConnectOpts & SocketPoolOptions & { tls?: false };

/** Options of {@link createConnection} for a TLS connection: `tls.connect()`'s, plus connpool's. */
export type CreateTlsConnectionOptions = ConnectionOptions & SocketPoolOptions & { tls: true | ConnectionOptions };

type Lookup = NonNullable<NetConnectOpts extends infer O ? (O extends { lookup?: infer L } ? L : never) : never>;
type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** The dialer key diagnostics messages carry for sockets of {@link createConnection}. */
const NET_KEY = 'createConnection';
const TLS_KEY = 'createConnection+tls';

/**
 * Where a socket stands with the pool. `waiting`: in the queue for a slot (or
 * for an eviction to finish); `inUse`: holds a slot (connecting or open);
 * `parked`: open, kept idle by its owner, on the pool's LRU list;
 * `releasing`: destroyed by the pool, its slot counted until it closes;
 * `closed`: holds nothing.
 */
type State = 'waiting' | 'inUse' | 'parked' | 'releasing' | 'closed';

/** The connpool side of every socket {@link createConnection} made. */
const connections = new WeakMap<Socket, Connection>();

/**
 * One socket of {@link createConnection}: the claimant that waits for its
 * slot, then the seat that holds it until the socket closes.
 */
class Connection extends Seat implements Claimant<Connection> {
  state: State = 'waiting';
  signal: AbortSignal | undefined;
  socket: Socket | undefined = undefined;
  /** Starts the connect that waited for the slot; unset once started. */
  deferred: (() => void) | undefined = undefined;
  /** Called when the pool takes the parked socket back, before it is destroyed. */
  onReclaim: ((socket: Socket) => void) | undefined = undefined;
  readonly #controller = new AbortController();
  #isStarted = false;
  #isReady = false;
  #acquireTimer: NodeJS.Timeout | undefined = undefined;
  #connectTimer: NodeJS.Timeout | undefined = undefined;
  #connectCheck: NodeJS.Immediate | undefined = undefined;
  #stopListening: Disposable | undefined = undefined;
  #resolveShut: (() => void) | undefined = undefined;
  #shut: Promise<void> | undefined = undefined;

  constructor(
    readonly pool: ResourcePool,
    readonly network: 'tcp' | 'unix',
    readonly address: string,
    readonly key: string,
    readonly connectTimeout: number,
    readonly acquireTimeout: number,
  ) {
    super();
    this.signal = this.#controller.signal;
  }

  reuse(): undefined {
    return undefined;
  }

  seated(_claim: Claim): Connection {
    this.state = 'inUse';
    clearTimeout(this.#acquireTimer);
    const socket = this.socket;
    if (socket !== undefined) {
      // It waited: from now on destroy() is the socket's own.
      delete (socket as Partial<Socket>)._destroy;
      this.#start();
    }
    return this;
  }

  abandoned(): void {
    if (this.state === 'waiting') this.state = 'closed';
    clearTimeout(this.#acquireTimer);
  }

  /** The slot could not be had (queue full, pool closed, wait given up): the socket fails with why. */
  turnedAway(error: unknown): void {
    this.state = 'closed';
    clearTimeout(this.#acquireTimer);
    const socket = this.socket!;
    delete (socket as Partial<Socket>)._destroy;
    if (!socket.destroyed) socket.destroy(error as Error);
  }

  /** The socket made at once, on a slot taken at once. */
  attach(socket: Socket): void {
    this.socket = socket;
    connections.set(socket, this);
    socket.once('close', this.#onClose);
    this.#start();
  }

  /** The socket made to wait for its slot: `deferred` connects it once it has one. */
  wait(socket: Socket): void {
    this.socket = socket;
    connections.set(socket, this);
    socket.once('close', this.#onClose);
    const own = socket._destroy;
    const leave = this.#leave;
    // A destroy() while it waits leaves the queue at once, not a turn later at 'close'.
    socket._destroy = function (this: Socket, error, callback) {
      leave();
      return own.call(this, error, callback);
    };
    if (this.acquireTimeout > 0) {
      this.#acquireTimer = setTimeout(() => {
        this.#controller.abort(new DOMException(`no slot within acquireTimeout (${this.acquireTimeout} ms)`, 'TimeoutError'));
      }, this.acquireTimeout);
    }
  }

  /** Gives up the wait: the queue drops it at once. */
  cancel(reason: Error): void {
    this.#controller.abort(reason);
  }

  readonly #leave = (): void => {
    if (this.state === 'waiting') this.#controller.abort(new Error('the socket was destroyed while it waited for a slot'));
  };

  /** The slot is held: the connect starts (or started, on the fast path). */
  #start(): void {
    const socket = this.socket!;
    this.#isStarted = true;
    if (channels.dialStart.hasSubscribers) channels.dialStart.publish(this.#message());
    socket.once(this.key === TLS_KEY ? 'secureConnect' : 'connect', this.#onReady);
    this.pool.opening(this.#controller);
    this.#stopListening = onAbort(this.#controller.signal, () => {
      if (!this.#isReady) socket.destroy(this.#controller.signal.reason as Error);
    });
    if (this.connectTimeout > 0) this.#connectTimer = setTimeout(this.#onConnectTimeout, this.connectTimeout).unref();
    const deferred = this.deferred;
    if (deferred === undefined) return;
    this.deferred = undefined;
    try {
      deferred();
    } catch (error) {
      socket.destroy(error as Error);
    }
  }

  /**
   * The timer fired, maybe late, after the event loop was blocked: the
   * connect may have completed meanwhile, its callback still queued. Look
   * again after the I/O of this turn has run (as undici does, issue 3410).
   */
  readonly #onConnectTimeout = (): void => {
    this.#connectTimer = undefined;
    this.#connectCheck = setImmediate(() => {
      this.#connectCheck = undefined;
      const socket = this.socket!;
      if (this.#isReady || socket.destroyed) return;
      socket.destroy(
        Object.assign(new Error(`connect ETIMEDOUT ${this.address}`), { code: 'ETIMEDOUT', syscall: 'connect', address: this.address }),
      );
    }).unref();
  };

  readonly #onReady = (): void => {
    this.#isReady = true;
    this.#stopConnecting();
    this.pool.counters.dials++;
    if (channels.dialEnd.hasSubscribers) channels.dialEnd.publish({ ...this.#message(), socket: this.socket });
  };

  #stopConnecting(): void {
    clearTimeout(this.#connectTimer);
    clearImmediate(this.#connectCheck);
    this.#connectTimer = this.#connectCheck = undefined;
    this.#stopListening?.[Symbol.dispose]();
    this.#stopListening = undefined;
    this.pool.opened(this.#controller);
  }

  readonly #onClose = (): void => {
    if (this.#isStarted) {
      if (!this.#isReady) {
        this.#stopConnecting();
        const error = this.socket!.errored;
        if (error !== null) {
          this.pool.counters.dialErrors++;
          if (channels.dialError.hasSubscribers) channels.dialError.publish({ ...this.#message(), error });
        }
      }
      if (channels.close.hasSubscribers) channels.close.publish(this.#message());
    }
    const state = this.state;
    this.state = 'closed';
    // Closed by its owner or its peer: the pool hears of it now.
    if (state === 'inUse' || state === 'parked') void this.pool.dispose(this);
    else if (state === 'releasing') this.#resolveShut?.();
  };

  park(onReclaim: ((socket: Socket) => void) | undefined): boolean {
    if (this.state === 'parked') return true;
    if (this.state !== 'inUse' || this.socket!.destroyed) return false;
    if (!this.pool.keeps(this)) {
      this.socket!.destroy();
      return false;
    }
    this.onReclaim = onReclaim;
    this.state = 'parked';
    this.pool.checkIn(this);
    return true;
  }

  unpark(): boolean {
    if (this.state === 'inUse') return true;
    if (this.state !== 'parked') return false;
    this.onReclaim = undefined;
    this.state = 'inUse';
    this.pool.checkOut(this);
    if (channels.reuse.hasSubscribers) channels.reuse.publish(this.#message());
    return true;
  }

  /** The pool closes the socket (eviction, lifetimes, its close(), or after 'close'). */
  shut(): Promise<void> {
    if (this.#shut !== undefined) return this.#shut;
    const socket = this.socket!;
    const onReclaim = this.state === 'parked' ? this.onReclaim : undefined;
    this.onReclaim = undefined;
    if (onReclaim !== undefined) {
      try {
        onReclaim(socket);
      } catch (error) {
        process.nextTick(() => {
          throw error;
        });
      }
    }
    // From here the pool counts the slot as releasing: a later 'close' only ends that.
    if (this.state === 'closed' || socket.closed) {
      this.state = 'closed';
      this.#shut = Promise.resolve();
      return this.#shut;
    }
    this.state = 'releasing';
    this.#shut = new Promise<void>((resolve) => {
      this.#resolveShut = resolve;
    });
    socket.destroy();
    // A plain TCP or unix socket's descriptor is closed by the time destroy()
    // returns; a TLS socket's (or one over a stream) counts as open until 'close'.
    if (socket.constructor === net.Socket) {
      this.state = 'closed';
      this.#resolveShut!();
    }
    return this.#shut;
  }

  #message(): { pool: ResourcePool; network: string; address: string; key: string } {
    return { pool: this.pool, network: this.network, address: this.address, key: this.key };
  }
}

/**
 * Opens a connection on the pool's budget, as `net.createConnection()` (or,
 * with `tls`, `tls.connect()`) does: it returns the socket at once, a real
 * `net.Socket` (`tls.TLSSocket`), that connects as soon as a slot of the pool
 * is free and holds that slot until it closes. While it waits it is a
 * connecting socket (`connecting`, `pending`, `readyState 'opening'`):
 * writes are buffered, `setTimeout()` counts the wait, and `destroy()` leaves
 * the queue at once. Failures (a full queue, a closed pool, `acquireTimeout`,
 * the connect's own errors) come as the socket's `'error'` then `'close'`.
 *
 * Its connects count in `stats()` (`dials`, `dialErrors`) and on the
 * `connpool:` diagnostics channels like any dial. It never takes a socket
 * from the shared idle list nor gives one to it; an owner that keeps it idle
 * can {@link park} it.
 *
 * `connectListener` is added as a `'connect'` listener (`'secureConnect'`
 * with `tls`), as `net.createConnection()` and `tls.connect()` do.
 *
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` if `options` is not an object, `pool` not a
 *   `ResourcePool`, or a timeout not a number; `ERR_OUT_OF_RANGE` (a RangeError) for a negative
 *   or NaN timeout. Option errors `net.connect()` / `tls.connect()` throw are thrown as they throw them.
 *
 * @example
 * ```ts
 * import { createConnection } from 'connpool';
 * const socket = createConnection({ host: 'db.internal', port: 5432, connectTimeout: 2_000 });
 * socket.on('error', console.error).write(startupMessage);
 * ```
 */
export function createConnection(options: CreateTlsConnectionOptions, connectListener?: () => void): TLSSocket;
export function createConnection(options: CreateConnectionOptions, connectListener?: () => void): Socket;
export function createConnection(options: CreateConnectionOptions | CreateTlsConnectionOptions, connectListener?: () => void): Socket {
  if (typeof options !== 'object' || options === null) {
    throw invalidArgType(`createConnection() needs an options object, received ${describe(options)}`);
  }
  if (connectListener !== undefined && typeof connectListener !== 'function') {
    throw invalidArgType(`connectListener must be a function, received ${describe(connectListener)}`);
  }
  const { pool: poolOption, tls: tlsOption, connectTimeout: connectOption, acquireTimeout: acquireOption, ...netOptions } =
    options as CreateConnectionOptions & { tls?: boolean | ConnectionOptions };
  const pool = poolOption ?? getResourcePool();
  if (!(pool instanceof ResourcePool)) throw invalidArgType(`options.pool must be a ResourcePool, received ${describe(pool)}`);
  const connectTimeout = milliseconds('connectTimeout', connectOption);
  const acquireTimeout = milliseconds('acquireTimeout', acquireOption);
  if (tlsOption !== undefined && typeof tlsOption !== 'boolean' && (typeof tlsOption !== 'object' || tlsOption === null)) {
    throw invalidArgType(`options.tls must be a boolean or tls.connect() options, received ${describe(tlsOption)}`);
  }
  const tlsOptions: ConnectionOptions | undefined =
    tlsOption === undefined || tlsOption === false
      ? undefined
      : tlsOption === true
        ? (netOptions as ConnectionOptions)
        : { ...(netOptions as ConnectionOptions), ...(tlsOption as ConnectionOptions) };
  const target = tlsOptions ?? (netOptions as NetConnectOpts & { host?: string; port?: number; path?: string });
  const path = (target as { path?: string | null }).path;
  const host = (target as { host?: string | null }).host || 'localhost';
  const conn = new Connection(
    pool,
    path ? 'unix' : 'tcp',
    path ? path : `${isIP(host) === 6 ? `[${host}]` : host}:${String((target as { port?: unknown }).port)}`,
    tlsOptions === undefined ? NET_KEY : TLS_KEY,
    connectTimeout,
    acquireTimeout,
  );
  const claim = pool.acquire(conn.signal, conn);
  if (conn.state === 'inUse') {
    // A slot at once (the common case): the socket is Node's own, made as Node makes it.
    let socket: Socket;
    try {
      socket = tlsOptions === undefined ? net.connect(netOptions as NetConnectOpts, connectListener) : tls.connect(tlsOptions, connectListener);
    } catch (error) {
      conn.state = 'closed';
      pool.vacate();
      throw error;
    }
    conn.attach(socket);
    return socket;
  }
  let socket: Socket;
  try {
    socket = tlsOptions === undefined ? waitingSocket(conn, netOptions as NetConnectOpts, connectListener) : waitingTlsSocket(conn, tlsOptions, connectListener);
  } catch (error) {
    void Promise.resolve(claim).then(noop, noop);
    conn.cancel(error as Error);
    throw error;
  }
  conn.wait(socket);
  void Promise.resolve(claim).then(noop, (error: unknown) => conn.turnedAway(error));
  return socket;
}

const noop = (): void => {};

/**
 * A plain socket that waits for its slot: what `net.connect()` makes, its
 * `connect()` held back. net.js's `connect()` takes a socket already marked
 * connecting; until then it buffers writes and defers reads, `setNoDelay()`,
 * `ref()`... to `'connect'`, as for any socket still connecting.
 */
function waitingSocket(conn: Connection, options: NetConnectOpts, connectListener: (() => void) | undefined): Socket {
  const socket = new net.Socket(options);
  if (options.timeout) socket.setTimeout(options.timeout);
  (socket as { connecting: boolean }).connecting = true;
  if (connectListener !== undefined) socket.once('connect', connectListener);
  conn.deferred = () => socket.connect(options);
  return socket;
}

/**
 * A TLS socket that waits for its slot. To a host name: `tls.connect()`
 * itself, whose lookup waits for the slot before the real one runs. To an IP
 * address (no lookup): `tls.connect()` over a plain socket whose connect is
 * held the same way (its host a name the held lookup resolves to the IP), so
 * that TLS still runs on the native handle. To a unix socket: over a plain
 * socket that waits as {@link waitingSocket}'s do.
 */
function waitingTlsSocket(conn: Connection, options: ConnectionOptions, connectListener: (() => void) | undefined): TLSSocket {
  const host = options.host || 'localhost';
  const realLookup = (options.lookup ?? dnsLookup) as unknown as (host: string, options: object, callback: LookupCallback) => void;
  if (options.path) {
    const raw = new net.Socket({ allowHalfOpen: (options as { allowHalfOpen?: boolean }).allowHalfOpen });
    (raw as { connecting: boolean }).connecting = true;
    conn.deferred = () => raw.connect({ path: options.path! });
    return overRaw(raw, options, connectListener);
  }
  const family = isIP(host);
  if (family === 0) {
    const heldLookup = (name: string, lookupOptions: object, callback: LookupCallback): void => {
      conn.deferred = () => realLookup(name, lookupOptions, callback);
    };
    return tls.connect({ ...options, lookup: heldLookup as unknown as Lookup }, connectListener);
  }
  const heldLookup = (_name: string, lookupOptions: { all?: boolean }, callback: LookupCallback): void => {
    conn.deferred = () => (lookupOptions?.all ? callback(null, [{ address: host, family }]) : callback(null, host, family));
  };
  const raw = new net.Socket({ allowHalfOpen: (options as { allowHalfOpen?: boolean }).allowHalfOpen });
  const { port, localAddress, localPort, family: familyOption } = options as { port?: number; localAddress?: string; localPort?: number; family?: number };
  raw.connect({ host: 'ip.connpool.invalid', port: port as number, localAddress, localPort, family: familyOption, lookup: heldLookup as unknown as Lookup });
  return overRaw(raw, { ...options, host }, connectListener);
}

function overRaw(raw: Socket, options: ConnectionOptions, connectListener: (() => void) | undefined): TLSSocket {
  const socket = tls.connect({ ...options, socket: raw }, connectListener);
  // tls.connect() sets the timeout only of a socket it connects itself.
  const timeout = (options as { timeout?: number }).timeout;
  if (timeout) socket.setTimeout(timeout);
  socket.once('close', () => raw.destroy());
  return socket;
}

/**
 * Parks a socket of {@link createConnection} that its owner keeps idle (a
 * keep-alive connection between requests, a database client between
 * queries): it stays with its owner, counts as idle in its pool, and the
 * pool may reclaim it, least recently used first, when it needs room for
 * anyone on the budget. Reclaiming destroys the socket synchronously
 * (`socket.destroyed` is true at once; its owner hears `'close'`), after
 * calling `onReclaim(socket)` if given, so that the owner can drop it from
 * its books first. A socket past the pool's `maxLifetime`, or of a closed
 * pool, is destroyed instead of parked.
 *
 * @returns whether the socket is parked now: `false` if it is not one of
 *   createConnection()'s, or is closing or closed.
 */
export function park(socket: Socket, onReclaim?: (socket: Socket) => void): boolean {
  if (onReclaim !== undefined && typeof onReclaim !== 'function') {
    throw invalidArgType(`onReclaim must be a function, received ${describe(onReclaim)}`);
  }
  return connections.get(socket)?.park(onReclaim) ?? false;
}

/**
 * Takes a parked socket back into use, synchronously.
 *
 * @returns `true` if the socket is in use again (or was not parked), `false`
 *   if the pool reclaimed it (or it closed, or is not one of createConnection()'s).
 */
export function unpark(socket: Socket): boolean {
  return connections.get(socket)?.unpark() ?? false;
}

/** A timeout option in ms: 0 for none (not given, 0, or `Infinity`). */
function milliseconds(name: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number') throw invalidArgType(`${name} must be a number of milliseconds, received ${describe(value)}`);
  if (!(value >= 0)) throw outOfRange(`${name} must be a number of milliseconds >= 0, received ${describe(value)}`);
  return value === Number.POSITIVE_INFINITY ? 0 : value;
}
