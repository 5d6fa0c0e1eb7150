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

  const waits = new Waits();
  const connect = (
    opts: { protocol: string; hostname: string; port: string },
    callback: (error: Error | null, socket: PooledConn | null) => void,
    client: Client,
  ): void => {
    const isSecure = opts.protocol === 'https:';
    const wait = waits.connecting(`${opts.protocol}//${opts.hostname}${opts.port ? `:${opts.port}` : ''}`, waitLimit);
    const host = opts.hostname.startsWith('[') ? opts.hostname.slice(1, -1) : opts.hostname;
    const port = opts.port || (isSecure ? '443' : '80');
    const address = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
    const name = `${opts.protocol}//${address}`;
    const handle = handles.get(name)?.pop() ?? New('tcp', address, { pool });
    handle.get(wait.signal, isSecure ? secure : plain).then(
      (conn) => {
        wait.done();
        handOffWhenIdle(conn, client, () => release(name, handle));
        callback(null, conn);
      },
      (error: Error) => {
        wait.done();
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
  return new PoolDispatcher(waits, {
    factory: (origin, poolOptions) => new Pool(origin, { ...poolOptions, factory: clientFactory }),
    connections: maxSockets ?? null,
    keepAliveTimeout: idleHandoff,
    keepAliveMaxTimeout: idleHandoff,
    keepAliveTimeoutThreshold: KEEP_ALIVE_HINT_THRESHOLD_MS,
    allowH2: false,
  });
}

/**
 * Connect controllers never aborted, for later connects: making an
 * AbortSignal costs Node 20 an `Object.setPrototypeOf()`, which also makes V8
 * throw away inline caches of code that has nothing to do with it (some
 * 50,000 instructions per connect in all, measured).
 */
const spareControllers: AbortController[] = [];
const MAX_SPARE_CONTROLLERS = 64;
const KEEP_ALIVE_INTERVAL_MS = 2 ** 30;
const noop = (): void => {};

/** The reason a connect's wait for a slot ends with after `acquireTimeout`, as `AbortSignal.timeout()`'s. */
function timedOut(): DOMException {
  return new DOMException('The operation was aborted due to timeout', 'TimeoutError');
}

type LegacyHandler = Dispatcher.DispatchHandler & {
  onConnect?(abort: (reason?: unknown) => void, context?: object): void;
  onError?(error: Error): void;
  onUpgrade?(...args: unknown[]): void;
  onResponseStarted?(): void;
  onHeaders?(...args: unknown[]): boolean;
  onData?(chunk: Buffer): boolean;
  onComplete?(trailers: unknown): void;
  onBodySent?(chunk: unknown): void;
  onRequestSent?(): void;
};

/**
 * The requests of each origin that wait for a connection, and the connects
 * (each a wait for a pool slot, then a dial) made for them. undici tells its
 * connector nothing of a request aborted before it has a connection: when the
 * last of an origin's waiting requests is aborted, its connects are aborted
 * too, so their waits leave the pool's queue at once.
 */
class Waits {
  readonly #origins = new Map<string, { waiting: number; connects: Set<AbortController> }>();
  /** Connects under way (waiting for a slot, or dialing). */
  #pending = 0;
  /**
   * Keeps the event loop alive while a connect is under way, as a connecting
   * socket would: undici unrefs the sockets it has no request for, and a wait
   * for a slot holds no handle, so a program whose requests all wait for
   * slots that undici's idle sockets hold would otherwise exit.
   */
  #keepAlive: NodeJS.Timeout | undefined = undefined;

  #origin(key: string): { waiting: number; connects: Set<AbortController> } {
    let origin = this.#origins.get(key);
    if (origin === undefined) this.#origins.set(key, (origin = { waiting: 0, connects: new Set() }));
    return origin;
  }

  /**
   * A connect for `key` starts; its signal aborts if nobody waits for it any
   * more, or after `timeout` ms (`acquireTimeout`) with a `TimeoutError`.
   * Call `done()` once its `get()` has settled.
   */
  connecting(key: string, timeout: number): { signal: AbortSignal; done(): void } {
    const origin = this.#origin(key);
    const controller = spareControllers.pop() ?? new AbortController();
    origin.connects.add(controller);
    const timer = timeout === Number.POSITIVE_INFINITY ? undefined : setTimeout(() => controller.abort(timedOut()), timeout).unref();
    if (this.#pending++ === 0) this.#keepAlive = setInterval(noop, KEEP_ALIVE_INTERVAL_MS);
    let isDone = false;
    const done = (): void => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      origin.connects.delete(controller);
      if (--this.#pending === 0) {
        clearInterval(this.#keepAlive);
        this.#keepAlive = undefined;
      }
      // The pool has let go of the signal once get() settled: a later connect may use it.
      if (!controller.signal.aborted && spareControllers.length < MAX_SPARE_CONTROLLERS) spareControllers.push(controller);
    };
    return { signal: controller.signal, done };
  }

  /** A request for `key` waits for a connection; call what it returns once it has one, or is over. */
  waiting(key: string): () => void {
    const origin = this.#origin(key);
    origin.waiting++;
    return () => void origin.waiting--;
  }

  /** A waiting request of `key` was aborted with `reason`. */
  aborted(key: string, reason: unknown): void {
    const origin = this.#origin(key);
    if (origin.waiting > 0) return;
    for (const controller of origin.connects) controller.abort(reason);
    origin.connects.clear();
  }
}

/**
 * undici's Agent, told of each request (legacy handlers, which undici's own
 * `request()`, `stream()` and `fetch()` use) that waits for a connection, so
 * that a request whose `signal` aborts then fails at once and stops the
 * connect's wait for a slot (see {@link Waits}).
 */
class PoolDispatcher extends Agent {
  readonly #waits: Waits;
  readonly #keys = new Map<string, string>();

  constructor(waits: Waits, options: Agent.Options) {
    super(options);
    this.#waits = waits;
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const legacy = handler as LegacyHandler;
    if (typeof legacy.onConnect !== 'function' || typeof legacy.onError !== 'function') return super.dispatch(options, handler);
    const key = this.#key(options.origin);
    if (key === undefined) return super.dispatch(options, handler);
    return super.dispatch(options, new WaitingRequest(legacy, key, this.#waits, (options as { signal?: AbortSignal }).signal) as never);
  }

  #key(origin: string | URL | undefined): string | undefined {
    if (origin === undefined) return undefined;
    if (typeof origin !== 'string') return origin.origin;
    let key = this.#keys.get(origin);
    if (key === undefined) {
      try {
        key = new URL(origin).origin;
      } catch {
        return undefined;
      }
      if (this.#keys.size < 10_000) this.#keys.set(origin, key);
    }
    return key;
  }
}

/** A legacy undici handler, forwarded, that counts as waiting for a connection until it has one. */
class WaitingRequest {
  #connected: (() => void) | undefined;
  #abortedWith: { reason: unknown } | undefined = undefined;
  readonly #stopListening: (() => void) | undefined;

  constructor(
    readonly handler: LegacyHandler,
    readonly key: string,
    readonly waits: Waits,
    signal: AbortSignal | undefined,
  ) {
    this.#connected = waits.waiting(key);
    if (signal === undefined || typeof signal.addEventListener !== 'function') return;
    const onAbort = (): void => this.#abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    this.#stopListening = () => signal.removeEventListener('abort', onAbort);
  }

  /** Aborted before it had a connection: it fails now, and its origin's connects stop waiting if nobody else needs them. */
  #abort(reason: unknown): void {
    if (this.#connected === undefined) return;
    this.#settle();
    this.#abortedWith = { reason };
    this.handler.onError!(reason as Error);
    this.waits.aborted(this.key, reason);
  }

  #settle(): void {
    this.#connected?.();
    this.#connected = undefined;
    this.#stopListening?.();
  }

  onConnect(abort: (reason?: unknown) => void, context?: object): void {
    if (this.#abortedWith !== undefined) return abort(this.#abortedWith.reason);
    this.#settle();
    this.handler.onConnect!(abort, context);
  }

  onError(error: Error): void {
    if (this.#abortedWith !== undefined) return;
    this.#settle();
    this.handler.onError!(error);
  }

  onUpgrade(...args: unknown[]): void {
    this.handler.onUpgrade?.(...args);
  }

  onResponseStarted(): void {
    this.handler.onResponseStarted?.();
  }

  onHeaders(...args: unknown[]): boolean {
    return this.handler.onHeaders?.(...args) ?? true;
  }

  onData(chunk: Buffer): boolean {
    return this.handler.onData?.(chunk) ?? true;
  }

  onComplete(trailers: unknown): void {
    this.handler.onComplete?.(trailers);
  }

  onBodySent(chunk: unknown): void {
    this.handler.onBodySent?.(chunk);
  }

  onRequestSent(): void {
    this.handler.onRequestSent?.();
  }
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
