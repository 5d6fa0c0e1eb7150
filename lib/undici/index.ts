import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Agent, Client, Pool, type Dispatcher } from 'undici';
import {
  getResourcePool,
  New,
  netDialer,
  ResourceLimitExceededError,
  ResourcePool,
  tlsDialer,
  type ConnResource,
  type Dialer,
  type PooledConn,
} from '../index.js';

/** Options of {@link createDispatcher}. */
export interface DispatcherOptions extends Omit<ConnectionOptions, 'timeout' | 'host' | 'port' | 'path' | 'socket'> {
  /** The pool whose slots the dispatcher's sockets take. @default getResourcePool() */
  pool?: ResourcePool;
  /** Connections in use per origin; requests beyond wait in undici's queue for that origin. @default Infinity */
  maxSockets?: number;
  /** Gives up a connect (and TLS handshake) not done after this many ms, with `ETIMEDOUT`. @default none */
  connectTimeout?: number;
  /**
   * How long a connection may wait for a pool slot, in ms, before its
   * requests fail with `ResourceLimitExceededError` (`cause`: a `TimeoutError`).
   * @default none
   */
  acquireTimeout?: number;
  /**
   * How long undici keeps a connection that has no request before it goes
   * back to the pool's idle list, in ms. Short, so that idle sockets are
   * evictable by anyone, not held by undici. @default 10
   */
  idleHandoff?: number;
}

/**
 * The most a server's keep-alive hint may be and still not be trusted: undici
 * subtracts this from the hint, and a socket whose hint leaves nothing is
 * closed after its response rather than kept.
 */
const KEEP_ALIVE_HINT_THRESHOLD_MS = 1_000;

/** undici's own code for the error it destroys an idle connection with. */
const IDLE_TIMEOUT = 'socket idle timeout';

/**
 * An undici `Dispatcher` whose sockets come from connpool, for
 * `fetch(url, { dispatcher })` (Node's own `fetch` included),
 * `undici.request()` and `setGlobalDispatcher()`.
 *
 * It is an undici `Agent` whose connector takes connections from the pool.
 * When undici has had no request for a connection for `idleHandoff` ms, the
 * socket goes back to connpool's idle list instead of being closed, so idle
 * keep-alive sockets count as idle in the pool (evictable, watched) and never
 * as in use. A socket is only handed back between requests, never in the
 * middle of a response. HTTP/1.1 only.
 *
 * @example
 * ```ts
 * import { createDispatcher } from 'connpool/undici';
 * const dispatcher = createDispatcher({ acquireTimeout: 5_000 });
 * const res = await fetch('http://example.com/', { dispatcher });
 * ```
 */
export function createDispatcher(options: DispatcherOptions = {}): Dispatcher {
  const { pool: poolOption, maxSockets, connectTimeout, acquireTimeout, idleHandoff = 10, ...tlsOptions } = options;
  const pool = poolOption ?? getResourcePool();
  if (!(pool instanceof ResourcePool)) throw new TypeError('options.pool must be a ResourcePool');
  const waitLimit = positive('acquireTimeout', acquireTimeout);
  const plain: Dialer = { key: 'http', dial: netDialer({ timeout: connectTimeout }).dial };
  const secure = tlsDialer({ ...tlsOptions, ALPNProtocols: ['http/1.1'], timeout: connectTimeout });
  /** Handles whose connection is back in the pool, per origin. */
  const handles = new Map<string, ConnResource[]>();
  const release = (name: string, handle: ConnResource): void => {
    let list = handles.get(name);
    if (list === undefined) handles.set(name, (list = []));
    list.push(handle);
  };

  const connect = (
    opts: { protocol: string; hostname: string; port: string },
    callback: (error: Error | null, socket: PooledConn | null) => void,
    client: Client,
  ): void => {
    const isSecure = opts.protocol === 'https:';
    const host = opts.hostname.startsWith('[') ? opts.hostname.slice(1, -1) : opts.hostname;
    const port = opts.port || (isSecure ? '443' : '80');
    const address = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
    const name = `${opts.protocol}//${address}`;
    const handle = handles.get(name)?.pop() ?? New('tcp', address, { pool });
    const signal = waitLimit === Number.POSITIVE_INFINITY ? undefined : AbortSignal.timeout(waitLimit);
    handle.get(signal, isSecure ? secure : plain).then(
      (conn) => {
        handOffWhenIdle(conn, client, () => release(name, handle));
        callback(null, conn);
      },
      (error: Error) => {
        release(name, handle);
        callback(error.name === 'TimeoutError' ? new ResourceLimitExceededError({ cause: error }) : error, null);
      },
    );
  };

  // Each Client gets a connector of its own, which knows whether the client
  // still runs a request when it destroys its socket.
  const clientFactory = (origin: URL | string, clientOptions: object): Client => {
    const client: Client = new Client(origin, {
      ...clientOptions,
      connect: ((opts: never, callback: never) => connect(opts, callback, client)) as never,
    });
    return client;
  };
  return new Agent({
    factory: (origin, poolOptions) => new Pool(origin, { ...poolOptions, factory: clientFactory }),
    connections: maxSockets ?? null,
    keepAliveTimeout: idleHandoff,
    keepAliveMaxTimeout: idleHandoff,
    keepAliveTimeoutThreshold: KEEP_ALIVE_HINT_THRESHOLD_MS,
    allowH2: false,
  });
}

/**
 * undici destroys a connection it has had no request for with an
 * informational 'socket idle timeout' error, and all of an origin's when it
 * closes that origin's pool (gracefully, after the last response, or not).
 * A connection that is between requests then, or never carried one, is put
 * back in the pool (the wrapper is then destroyed, which
 * leaves the socket alone). Any other is closed: it may be mid-exchange.
 * Either way `released` hears that the handle is free again.
 */
function handOffWhenIdle(conn: PooledConn, client: Client, released: () => void): void {
  let isUsed = false;
  const write = conn.write;
  conn.write = function (this: PooledConn, ...args: Parameters<PooledConn['write']>) {
    isUsed = true;
    conn.write = write;
    return write.apply(this, args);
  } as PooledConn['write'];
  const destroy = conn.destroy;
  conn.destroy = function (this: PooledConn, error?: Error) {
    if (this.isOut && (!isUsed || isIdleTimeout(error) || isClosedBetweenRequests(error, client))) this.put();
    return destroy.call(this, error);
  };
  conn.once('close', released);
}

/** undici closed the client (`ClientDestroyedError`) after its last response: the socket is between requests. */
function isClosedBetweenRequests(error: Error | undefined, client: Client): boolean {
  if ((error as { code?: string } | undefined)?.code !== 'UND_ERR_DESTROYED') return false;
  const { running, pending } = client.stats;
  return running === 0 && pending === 0;
}

function isIdleTimeout(error: Error | undefined): boolean {
  return error?.message === IDLE_TIMEOUT && (error as { code?: string }).code === 'UND_ERR_INFO';
}

function positive(name: string, value: number | undefined): number {
  if (value === undefined) return Number.POSITIVE_INFINITY;
  if (typeof value !== 'number' || !(value > 0)) throw new RangeError(`${name} must be a number > 0, received ${String(value)}`);
  return value;
}
