import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import { Agent, Client, errors, Pool, type Dispatcher, type buildConnector } from 'undici';
import {
  getResourcePool,
  New,
  ResourceLimitExceededError,
  type ConnResource,
  type Dialer,
  type Network,
  type PooledConn,
} from '../index.js';
import { splitOptions, type LegacyConnectOptions, type PoolOptions } from './options.js';

/**
 * Options of {@link createDispatcher}: undici's `Agent` options, with
 * undici's meaning and undici's checks, and connpool's own.
 *
 * - undici's: `connect` (`timeout`, `lookup`, `servername`, `ca`,
 *   `rejectUnauthorized`, ... or a connector function), `connectTimeout`
 *   (default 10 s, as undici's), `headersTimeout`, `bodyTimeout`,
 *   `keepAliveTimeout`, `keepAliveMaxTimeout`, `keepAliveTimeoutThreshold`,
 *   `pipelining`, `connections`, `maxOrigins`, `clientTtl`, `socketPath`,
 *   `localAddress`, `maxHeaderSize`, `maxResponseSize`, `maxRequestsPerClient`,
 *   `strictContentLength`, `maxCachedSessions`, `autoSelectFamily`, ...
 *   undici refuses a bad value with its `InvalidArgumentError`.
 * - connpool's: `pool`, `maxSockets` (undici's `connections` under
 *   `http.Agent`'s name), `acquireTimeout`, `idleHandoff`.
 * - `tls.connect()` options at the top level (`ca`, `servername`, `lookup`,
 *   ...), as earlier versions took them: they go into `connect`.
 *
 * Refused, with a `TypeError` whose code is `ERR_INVALID_ARG_VALUE`: any other
 * option, `factory` (the dispatcher makes its own pools), `maxRedirections`
 * and `interceptors` (undici 7 uses neither: compose interceptors on the
 * dispatcher), `allowH2: true` and `useH2c: true` (HTTP/1.1 only).
 */
export interface DispatcherOptions extends Omit<Agent.Options, 'factory' | 'interceptors' | 'allowH2' | 'useH2c'>, PoolOptions, LegacyConnectOptions {
  /** HTTP/1.1 only: `true` is refused. */
  allowH2?: false;
  /** HTTP/1.1 only: `true` is refused. */
  useH2c?: false;
}

/** undici's own code for the error it destroys an idle connection with. */
const IDLE_TIMEOUT = 'socket idle timeout';
/** undici's, when a request for another TLS server name needs a new connection. */
const SERVERNAME_CHANGED = 'servername changed';

let dispatchers = 0;

/**
 * An undici `Dispatcher` that Node's global `fetch()` also takes as its
 * `dispatcher` (whose type comes from the undici-types bundled with
 * `@types/node`, not from the installed undici).
 */
export type FetchDispatcher = Dispatcher & (RequestInit extends { dispatcher?: infer D } ? NonNullable<D> : unknown);

/**
 * An undici `Dispatcher` whose sockets come from connpool, for
 * `fetch(url, { dispatcher })` (Node's own `fetch` included),
 * `undici.request()` and `setGlobalDispatcher()`.
 *
 * It is undici's `Agent`, with undici's own option checks, pools, clients and
 * connector (connect timeout, `lookup`, TLS server name from the `Host`
 * header, session resumption): connpool only decides when a connect may start
 * (a pool slot) and where an idle socket waits. When undici has had no
 * request for a connection for `idleHandoff` ms, the socket goes back to
 * connpool's idle list instead of being closed, so idle keep-alive sockets
 * count as idle in the pool (evictable, watched) and never as in use; it is
 * closed there once idle for as long as undici would have kept it (the
 * server's keep-alive hint less `keepAliveTimeoutThreshold`, at most
 * `keepAliveMaxTimeout`, or `keepAliveTimeout`). A socket is
 * only handed back between requests, never in the middle of a response.
 * HTTP/1.1 only.
 *
 * `close()` lets every request finish; `destroy()` fails every request and
 * takes every wait for a slot out of the pool's queue.
 *
 * @throws {TypeError} `ERR_INVALID_ARG_VALUE` for an option it does not take;
 *   `ERR_INVALID_ARG_TYPE` for a connpool option of the wrong type.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a connpool option out of range.
 * @throws undici's `InvalidArgumentError` (`UND_ERR_INVALID_ARG`) for an undici option undici refuses.
 *
 * @example
 * ```ts
 * import { createDispatcher } from 'connpool/undici';
 * const dispatcher = createDispatcher({ acquireTimeout: 5_000, connect: { timeout: 2_000 } });
 * const res = await fetch('http://example.com/', { dispatcher });
 * ```
 */
export function createDispatcher(options: DispatcherOptions = {}): FetchDispatcher {
  const { pool: poolOption, acquireTimeout, idleHandoff, keepAliveTimeout, keepAliveMaxTimeout, keepAliveTimeoutThreshold, agent, isRouted } =
    splitOptions(options);
  const pool = poolOption ?? getResourcePool();
  const id = ++dispatchers;
  const waits = new Waits();
  /**
   * How long a socket handed back for `origin` may stay idle in the pool:
   * what is left of the keep-alive time undici gives it (after the origin's
   * last response: its server's hint, less the threshold and at most
   * keepAliveMaxTimeout, or keepAliveTimeout without one).
   */
  const keptFor = (origin: string): number => {
    const hint = waits.hintOf(origin);
    return (hint === undefined ? keepAliveTimeout : Math.min(hint - keepAliveTimeoutThreshold, keepAliveMaxTimeout)) - idleHandoff;
  };
  /** Handles whose connection is back in the pool, per dialer key and address. */
  const handles = new Map<string, Kept[]>();
  const release = (name: string, handle: ConnResource, isPut: boolean, origin: string): void => {
    let list = handles.get(name);
    if (list === undefined) handles.set(name, (list = []));
    const timer = isPut ? setTimeout(() => handle.scheduleClose(), Math.max(keptFor(origin), 0)).unref() : undefined;
    list.push({ handle, timer });
  };
  const take = (name: string): ConnResource | undefined => {
    const kept = handles.get(name)?.pop();
    if (kept === undefined) return undefined;
    clearTimeout(kept.timer);
    return kept.handle;
  };

  const connect = (
    undiciConnect: buildConnector.connector,
    opts: buildConnector.Options,
    callback: buildConnector.Callback,
    client: Client,
  ): void => {
    // A TLS upgrade of a socket that is already open (and counted) needs no slot.
    if (opts.httpSocket !== undefined) return undiciConnect(opts, callback);
    const isSecure = opts.protocol === 'https:';
    const port = opts.port || (isSecure ? '443' : '80');
    const network: Network = opts.socketPath ? 'unix' : 'tcp';
    const address = opts.socketPath || (isIP(opts.hostname) === 6 ? `[${opts.hostname}]:${port}` : `${opts.hostname}:${port}`);
    // Plain sockets are shared with every user of the pool (HttpAgent's too) unless routed by the connect options.
    const key = isSecure
      ? `https|undici#${id}|${opts.servername ?? ''}`
      : isRouted
        ? `http|undici#${id}`
        : opts.localAddress
          ? `http|${opts.localAddress}`
          : 'http';
    const name = `${key}|${network}|${address}`;
    // Throws for an address connpool cannot dial (undici then fails the requests), before any wait starts.
    const handle = take(name) ?? New(network, address, { pool });
    const dialer: Dialer = { key, dial: (_network, _address, signal) => dial(undiciConnect, opts, signal) };
    const origin = `${opts.protocol}//${opts.host ?? address}`;
    const wait = waits.connecting(origin, acquireTimeout);
    handle.get(wait.signal, dialer).then(
      (conn) => {
        wait.done();
        handOffWhenIdle(conn, client, () => keptFor(origin) > 0, (isPut) => release(name, handle, isPut, origin));
        callback(null, conn as unknown as Socket);
      },
      (error: Error) => {
        wait.done();
        release(name, handle, false, origin);
        callback(error.name === 'TimeoutError' ? new ResourceLimitExceededError({ cause: error }) : error, null);
      },
    );
  };

  // Each Client gets a connector of its own, which knows whether the client
  // still runs a request when it destroys its socket. `clientOptions.connect`
  // is the connector undici's Pool built from the options.
  const clientFactory = (origin: URL | string, clientOptions: object): Client => {
    const undiciConnect = (clientOptions as { connect: buildConnector.connector }).connect;
    const client: Client = new Client(origin, {
      ...clientOptions,
      connect: ((opts: buildConnector.Options, callback: buildConnector.Callback) => connect(undiciConnect, opts, callback, client)) as never,
    });
    return client;
  };
  const dispatcher = new PoolDispatcher(waits, {
    ...agent,
    factory: (origin, poolOptions) => new Pool(origin, { ...poolOptions, factory: clientFactory }),
  });
  // undici 7's Dispatcher and the undici-types one Node's fetch() is typed with differ only in typings.
  return dispatcher as unknown as FetchDispatcher;
}

/** A handle whose connection went back to the pool, and the timer that closes it there after its keep-alive time. */
interface Kept {
  handle: ConnResource;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Opens a connection with undici's connector; destroys it and rejects with
 * the signal's reason if `signal` aborts first (a Dialer's contract).
 */
function dial(undiciConnect: buildConnector.connector, opts: buildConnector.Options, signal: AbortSignal): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    let socket: Socket | undefined;
    const onAbort = (): void => {
      socket?.destroy();
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    let opened: Socket | undefined;
    try {
      opened = (undiciConnect as (...args: Parameters<buildConnector.connector>) => Socket | undefined)(opts, (error, connected) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) connected?.destroy();
        else if (error !== null) reject(error);
        else resolve(connected as Socket);
      });
    } catch (error) {
      signal.removeEventListener('abort', onAbort);
      throw error;
    }
    // undici's connector returns the socket; a custom one may not.
    socket = opened ?? undefined;
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
  /** Each origin's last keep-alive hint, in ms (`Keep-Alive: timeout=N`), or undefined for none. */
  readonly #hints = new Map<string, number | undefined>();
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

  /** A response of `key` came with this keep-alive hint (ms), or none. */
  hinted(key: string, hint: number | undefined): void {
    if (hint !== this.#hints.get(key) && (this.#hints.size < 10_000 || this.#hints.has(key))) this.#hints.set(key, hint);
  }

  hintOf(key: string): number | undefined {
    return this.#hints.get(key);
  }

  /** The dispatcher is destroyed: every connect stops, its wait leaves the pool's queue. */
  abortAll(reason: unknown): void {
    for (const origin of this.#origins.values()) {
      for (const controller of origin.connects) controller.abort(reason);
      origin.connects.clear();
    }
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
    // Anything undici would refuse goes to undici as it is, for its own InvalidArgumentError.
    if (typeof options !== 'object' || options === null || typeof handler !== 'object' || handler === null) return super.dispatch(options, handler);
    if (typeof legacy.onConnect !== 'function' || typeof legacy.onError !== 'function') return super.dispatch(options, handler);
    const key = this.#key(options.origin);
    if (key === undefined || this.destroyed || this.closed) return super.dispatch(options, handler);
    return super.dispatch(options, new WaitingRequest(legacy, key, this.#waits, (options as { signal?: AbortSignal }).signal) as never);
  }

  /** undici's destroy(), which fails every request; then every connect stops waiting for a slot. */
  override destroy(...args: unknown[]): never {
    const result = (super.destroy as (...rest: unknown[]) => unknown).apply(this, args);
    const error = args.find((arg) => arg instanceof Error);
    this.#waits.abortAll(error ?? new errors.ClientDestroyedError());
    return result as never;
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

  onHeaders(statusCode: number, rawHeaders: unknown, ...rest: unknown[]): boolean {
    if (statusCode >= 200) this.waits.hinted(this.key, keepAliveHint(rawHeaders));
    return this.handler.onHeaders?.(statusCode, rawHeaders, ...rest) ?? true;
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
 * informational 'socket idle timeout' error, one whose next request is for
 * another TLS server name with 'servername changed', and all of an origin's
 * when it closes that origin's pool (gracefully, after the last response, or
 * not). A connection that is between requests then, or never carried one, is
 * put back in the pool (the wrapper is then destroyed, which leaves the
 * socket alone), unless `isKept` says its keep-alive time is over. Any other
 * is closed: it may be mid-exchange. Either way `released` hears that the
 * handle is free again, and whether the socket went back to the pool.
 */
function handOffWhenIdle(conn: PooledConn, client: Client, isKept: () => boolean, released: (isPut: boolean) => void): void {
  let isUsed = false;
  let isPut = false;
  const write = conn.write;
  conn.write = function (this: PooledConn, ...args: Parameters<PooledConn['write']>) {
    isUsed = true;
    conn.write = write;
    return write.apply(this, args);
  } as PooledConn['write'];
  const destroy = conn.destroy;
  conn.destroy = function (this: PooledConn, error?: Error) {
    if (this.isOut && (!isUsed || ((isBetweenRequests(error) || isClosedBetweenRequests(error, client)) && isKept()))) {
      this.put();
      isPut = true;
    }
    return destroy.call(this, error);
  };
  conn.once('close', () => released(isPut));
}

/** undici closed the client (`ClientDestroyedError`) after its last response: the socket is between requests. */
function isClosedBetweenRequests(error: Error | undefined, client: Client): boolean {
  if ((error as { code?: string } | undefined)?.code !== 'UND_ERR_DESTROYED') return false;
  const { running, pending } = client.stats;
  return running === 0 && pending === 0;
}

/** The `Keep-Alive: timeout=N` of a response's raw headers, in ms, as undici reads it (`parseKeepAliveTimeout`). */
function keepAliveHint(rawHeaders: unknown): number | undefined {
  if (!Array.isArray(rawHeaders)) return undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as Buffer | string;
    if (name.length !== 10 || String(name).toLowerCase() !== 'keep-alive') continue;
    const match = /timeout=(\d+)/.exec(String(rawHeaders[i + 1]));
    return match === null ? undefined : Number.parseInt(match[1]!, 10) * 1000;
  }
  return undefined;
}

/** undici let go of a connection that has no request: idle too long, or needed for another TLS server name. */
function isBetweenRequests(error: Error | undefined): boolean {
  return (error as { code?: string } | undefined)?.code === 'UND_ERR_INFO' && (error!.message === IDLE_TIMEOUT || error!.message === SERVERNAME_CHANGED);
}
