import { Socket } from 'node:net';
import { debuglog } from 'node:util';
import { checkSignal, onAbort } from './abort.js';
import { describe, parseAddress, type Network } from './address.js';
import { PooledConn } from './conn.js';
import { netDialer, NET_DIALER_KEY, type Dialer } from './dialers/net.js';
import { channels } from './diagnostics.js';
import { ConnInUseError, invalidArgType } from './errors.js';
import { IdleIndex, PooledSocket } from './idle.js';
import { getResourcePool, ResourcePool } from './pool.js';
import type { Claim, Claimant } from './seat.js';

/** Options of {@link New}. */
export interface ConnResourceOptions {
  /** The pool whose slots the connection takes. @default getResourcePool() */
  pool?: ResourcePool;
  /**
   * Keeps a connection half-open when its peer ends it: it emits `'end'` and
   * stays writable until you end it (then it closes). By default, as a
   * `net.Socket`, it ends its own side at once and closes.
   * @default false
   */
  allowHalfOpen?: boolean;
}

const defaultDialer = netDialer();
/** NODE_DEBUG=connpool: record where every connection was got, for leak warnings. */
const isDebugging = debuglog('connpool').enabled;
/** Each pool's idle sockets, kept beside the pool so the pool itself knows nothing of sockets. */
const indexes = new WeakMap<ResourcePool, IdleIndex>();

/**
 * A handle for one connection to one address: the Go package's `ConnResource`.
 * Make one with {@link New} for each address you talk to; `get()` a
 * connection from it, use it, `put()` it back.
 */
export class ConnResource {
  /** The network given to {@link New}. */
  readonly network: Network;
  /** The address given to {@link New}. */
  readonly address: string;
  readonly #pool: ResourcePool;
  readonly #index: IdleIndex;
  readonly #claimant: Claimant<PooledConn>;
  readonly #allowHalfOpen: boolean;
  /** The dialer of the current or last get(), and its idle key. */
  #dialer: Dialer = defaultDialer;
  #key: string;
  #timeoutDialer: Dialer | undefined = undefined;
  #timeout = 0;
  /**
   * The socket this handle used last, which it prefers (E4); its connection
   * is out while `isOut` and this handle is its owner. The handle keeps no
   * reference to the connection itself, so a dropped one can be collected (E9).
   */
  #own: PooledSocket | undefined = undefined;
  /** A get() is in progress; its signal and leak trace. */
  #isGetting = false;
  #trace: Error | undefined = undefined;
  #isCloseScheduled = false;

  /** Use {@link New}. */
  constructor(network: Network, address: string, options: ConnResourceOptions = {}) {
    parseAddress(network, address);
    const pool = options.pool ?? getResourcePool();
    if (!(pool instanceof ResourcePool)) throw invalidArgType(`options.pool must be a ResourcePool, received ${describe(pool)}`);
    this.network = network;
    this.address = address;
    this.#pool = pool;
    this.#allowHalfOpen = options.allowHalfOpen === true;
    let index = indexes.get(pool);
    if (index === undefined) indexes.set(pool, (index = new IdleIndex()));
    this.#index = index;
    this.#key = `${network}|${address}|${NET_DIALER_KEY}`;
    this.#claimant = {
      signal: undefined,
      reuse: () => this.#reuse(),
      seated: (claim) => this.#seated(claim),
      abandoned: () => this.#abandoned(),
    };
  }

  /**
   * Gets a connection: waits (in turn) for a slot, then hands out an idle
   * connection to this address, or dials a new one.
   *
   * @param signal gives up the wait when it aborts (`ERR_RESOURCE_LIMIT_EXCEEDED`);
   *   an abort during the dial rejects at once with its reason. No signal: wait
   *   as long as it takes. A signal already aborted when get() is called
   *   (`AbortSignal.abort()`, the Go package's immediate canceler) gets a connection
   *   only if no wait for a slot is needed: an idle one, or one dialed within
   *   the dialer's own timeout.
   * @param dialerOrTimeout a {@link Dialer}, or the connect timeout in ms of the
   *   built-in TCP dialer (0 or less: the OS's own).
   * @throws {ConnInUseError} `ERR_CONN_IN_USE` if this handle's connection is still out.
   * @throws {ResourceLimitExceededError} `ERR_RESOURCE_LIMIT_EXCEEDED` if `signal` aborts while
   *   waiting for a slot (an eviction included).
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` if `signal` is not an `AbortSignal` or the
   *   second argument neither a Dialer nor a number; `ERR_OUT_OF_RANGE` (a RangeError) for NaN.
   * Dial errors (`ECONNREFUSED`, `ETIMEDOUT`, TLS errors, ...) pass through; the slot is freed.
   */
  get(signal?: AbortSignal, dialerOrTimeout?: Dialer | number): Promise<PooledConn> {
    let checked: AbortSignal | undefined;
    try {
      checked = checkSignal(signal);
      if (this.#isGetting || this.#isOut()) throw new ConnInUseError();
      this.#useDialer(dialerOrTimeout);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#isGetting = true;
    // Aborted before the call: the Go package's immediate canceler, which only forbids waiting for a slot.
    this.#claimant.signal = checked?.aborted ? undefined : checked;
    this.#trace = this.#pool.traceLeaks || isDebugging ? new Error('get() called here') : undefined;
    const conn = this.#pool.acquire(checked, this.#claimant);
    // An idle socket taken at once (the hot path) or in turn comes without an async frame.
    return conn instanceof PooledConn ? Promise.resolve(conn) : conn;
  }

  /** Turns the seat the pool gave into a connection: the idle socket it reused, or a dial. */
  #seated(claim: Claim): PooledConn | Promise<PooledConn> {
    if (claim === null) return this.#dialInto();
    if (channels.reuse.hasSubscribers) channels.reuse.publish(this.#message());
    return this.#lend(claim as PooledSocket);
  }

  /** What a diagnostics message says of this handle's connection. */
  #message(): { pool: ResourcePool; network: Network; address: string; key: string } {
    return { pool: this.#pool, network: this.network, address: this.address, key: this.#dialer.key };
  }

  async #dialInto(): Promise<PooledConn> {
    try {
      return this.#lend(await this.#dial(this.#claimant.signal));
    } catch (error) {
      this.#abandoned();
      throw error;
    }
  }

  #lend(pooled: PooledSocket): PooledConn {
    if (this.#isCloseScheduled) {
      this.#isCloseScheduled = false;
      pooled.isDoomed = true;
    }
    this.#own = pooled;
    const trace = this.#trace;
    this.#abandoned();
    return new PooledConn(pooled, this, trace, this.#allowHalfOpen);
  }

  /** The get() in progress is over, whatever came of it; a scheduleClose() meant for it ends with it. */
  #abandoned(): void {
    this.#isGetting = this.#isCloseScheduled = false;
    this.#claimant.signal = this.#trace = undefined;
  }

  /**
   * Gets a connection, runs `fn` with it, and puts it back when `fn`
   * resolves, or closes it when `fn` throws (then rethrows): the Go package's
   * close-on-error pattern in one call, so a connection in an unknown state
   * never goes back to the idle list. `fn` may put or close it itself.
   *
   * @example
   * ```ts
   * const reply = await res.use(async (conn) => {
   *   conn.write('PING\r\n');
   *   return await readLine(conn);
   * }, AbortSignal.timeout(2_000));
   * ```
   */
  async use<T>(fn: (conn: PooledConn) => T | Promise<T>, signal?: AbortSignal, dialerOrTimeout?: Dialer | number): Promise<T> {
    if (typeof fn !== 'function') throw invalidArgType(`use() needs a function, received ${describe(fn)}`);
    const conn = await this.get(signal, dialerOrTimeout);
    let result: T;
    try {
      result = await fn(conn);
    } catch (error) {
      await conn.close();
      throw error;
    }
    if (conn.isOut) conn.put();
    return result;
  }

  /** The Go package's name for {@link get} with a dialer. */
  getWithDialer(signal: AbortSignal | undefined, dialer: Dialer): Promise<PooledConn> {
    return this.get(signal, dialer);
  }

  /**
   * Closes this handle's connection now if it is idle, or when it is next
   * put if it is in use (or being got).
   */
  scheduleClose(): void {
    const own = this.#own;
    if (this.#isGetting) this.#isCloseScheduled = true;
    else if (own === undefined || own.owner !== this) return;
    else if (own.isIdle) void this.#pool.dispose(own);
    else if (own.isOut) own.isDoomed = true;
  }

  #isOut(): boolean {
    return this.#own !== undefined && this.#own.isOut && this.#own.owner === this;
  }

  #useDialer(dialerOrTimeout: Dialer | number | undefined): void {
    let dialer: Dialer;
    if (dialerOrTimeout === undefined) dialer = defaultDialer;
    else if (typeof dialerOrTimeout === 'number') dialer = this.#dialerWithTimeout(dialerOrTimeout);
    else if (typeof dialerOrTimeout?.dial === 'function' && typeof dialerOrTimeout.key === 'string') dialer = dialerOrTimeout;
    else throw invalidArgType(`expected a Dialer or a timeout in ms, received ${describe(dialerOrTimeout)}`);
    if (dialer.key !== this.#dialer.key) this.#key = `${this.network}|${this.address}|${dialer.key}`;
    this.#dialer = dialer;
  }

  #dialerWithTimeout(timeout: number): Dialer {
    if (timeout <= 0 || timeout === Number.POSITIVE_INFINITY) return defaultDialer;
    if (this.#timeoutDialer === undefined || this.#timeout !== timeout) {
      this.#timeoutDialer = netDialer({ timeout });
      this.#timeout = timeout;
    }
    return this.#timeoutDialer;
  }

  #reuse(): PooledSocket | undefined {
    const own = this.#own;
    if (own !== undefined && own.isIdle && own.stack.key === this.#key) return own;
    return this.#index.top(this.#key);
  }

  /**
   * Dials into the fresh slot the pool gave. If the caller's signal aborts
   * first, get() rejects at once; the dial goes on as an orphan that joins the
   * idle list if it is the only one for its key, so that deadlines shorter
   * than a dial still get connections made (pgx#1287), and is aborted
   * otherwise, so a black-holed address costs at most one extra slot (E3).
   * A kept orphan is aborted after the pool's `orphanTimeout`, and
   * `pool.close()` aborts every dial (E11).
   */
  #dial(signal: AbortSignal | undefined): Promise<PooledSocket> {
    const pool = this.#pool;
    const stack = this.#index.stack(this.#key, this.network, this.address, this.#dialer.key);
    const controller = new AbortController();
    stack.hold();
    pool.opening(controller);
    const message = channels.dialStart.hasSubscribers || channels.dialEnd.hasSubscribers || channels.dialError.hasSubscribers ? this.#message() : undefined;
    if (message !== undefined) channels.dialStart.publish(message);
    const dialing = startDial(this.#dialer, this.network, this.address, controller.signal);
    return new Promise<PooledSocket>((resolve, reject) => {
      let fate: 'awaited' | 'orphan' | 'doomed' = 'awaited';
      let listening: Disposable | undefined;
      let orphanTimer: NodeJS.Timeout | undefined;
      const settled = (): void => {
        listening?.[Symbol.dispose]();
        clearTimeout(orphanTimer);
        pool.opened(controller);
        if (fate === 'orphan') stack.orphans--;
      };
      dialing.then(
        (socket) => {
          settled();
          pool.counters.dials++;
          if (message !== undefined) channels.dialEnd.publish({ ...message, socket });
          const pooled = new PooledSocket(socket, stack, pool);
          stack.unhold();
          if (fate === 'awaited') resolve(pooled);
          else pooled.reclaim(fate === 'orphan');
        },
        (error: unknown) => {
          settled();
          stack.unhold();
          pool.vacate();
          if (fate !== 'awaited') return;
          pool.counters.dialErrors++;
          if (message !== undefined) channels.dialError.publish({ ...message, error });
          reject(error);
        },
      );
      if (signal === undefined) return;
      const abandon = (): void => {
        reject(signal.reason);
        if (stack.orphans > 0 || pool.orphanTimeout === 0 || pool.closed) {
          fate = 'doomed';
          controller.abort(signal.reason);
          return;
        }
        fate = 'orphan';
        stack.orphans++;
        if (pool.orphanTimeout !== Number.POSITIVE_INFINITY) {
          orphanTimer = setTimeout(() => controller.abort(orphanTimedOut()), pool.orphanTimeout).unref();
        }
      };
      if (signal.aborted) abandon();
      else listening = onAbort(signal, abandon);
    });
  }
}

/**
 * Makes a handle for a connection to `address` on `network`. Opens nothing:
 * `get()` does.
 *
 * @param network `'tcp'`, `'tcp4'`, `'tcp6'` or `'unix'`.
 * @param address `host:port` (`[v6addr]:port` for IPv6), or a socket path for `'unix'`.
 * @throws {UnknownNetworkError} `ERR_UNKNOWN_NETWORK` for another network.
 * @throws {InvalidAddressError} `ERR_INVALID_ADDRESS` for an address the network cannot dial.
 *
 * @example
 * ```ts
 * const res = New('tcp', 'db.internal:5432');
 * await using conn = await res.get(AbortSignal.timeout(2_000));
 * ```
 */
export function New(network: Network, address: string, options?: ConnResourceOptions): ConnResource {
  return new ConnResource(network, address, options);
}

function orphanTimedOut(): Error {
  return Object.assign(new Error('a dial whose caller gave up did not finish within orphanTimeout'), { code: 'ETIMEDOUT' });
}

/** Calls the dialer, turning a synchronous throw or a non-socket result into a rejection. */
async function startDial(dialer: Dialer, network: string, address: string, signal: AbortSignal): Promise<Socket> {
  const socket: unknown = await dialer.dial(network, address, signal);
  if (!(socket instanceof Socket)) {
    throw Object.assign(new TypeError(`dialer ${JSON.stringify(dialer.key)} resolved ${describe(socket)}, not a net.Socket`), {
      code: 'ERR_INVALID_RETURN_VALUE',
    });
  }
  if (socket.destroyed) {
    throw Object.assign(new Error(`dialer ${JSON.stringify(dialer.key)} resolved a socket that is already closed`), {
      code: 'ERR_SOCKET_CLOSED',
    });
  }
  return socket;
}
