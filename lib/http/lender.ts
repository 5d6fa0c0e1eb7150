import type { ClientRequest, IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import {
  getResourcePool,
  New,
  ResourceLimitExceededError,
  ResourcePool,
  type ConnResource,
  type Dialer,
  type Network,
  type PooledConn,
} from '../index.js';

/** Options that `HttpAgent` and `HttpsAgent` share. */
export interface PoolAgentOptions {
  /** The pool whose slots the agent's sockets take. @default getResourcePool() */
  pool?: ResourcePool;
  /**
   * Connections in use per origin; requests beyond wait in order, without
   * holding up other origins. @default Infinity
   */
  maxSockets?: number;
  /** Gives up a connect (and TLS handshake) not done after this many ms, with `ETIMEDOUT`. @default none */
  connectTimeout?: number;
  /**
   * How long a request may wait for a socket, in ms (per-origin and pool-wide
   * waits together), before it fails with `ResourceLimitExceededError` whose
   * `cause` is a `TimeoutError`. @default none
   */
  acquireTimeout?: number;
}

/** What a request's options say about where it goes (the parts the agent reads). */
export interface RequestTarget {
  host?: string | null;
  port?: number | string | null;
  family?: number;
  socketPath?: string;
  localAddress?: string;
}

/** The server's keep-alive hint at or below which a socket is not kept: it would expire in the idle list. */
const MIN_KEEP_ALIVE_HINT_S = 1;

/**
 * The requests of one origin (one name of the agent's `getName()`): its
 * handles, the connections it has in use, and the requests waiting for
 * `maxSockets`.
 */
class Origin {
  /** Handles whose connection is back in the pool, most recently used last. */
  readonly handles: ConnResource[] = [];
  readonly waiting = new Set<Lending>();
  active = 0;

  constructor(
    readonly network: Network,
    readonly address: string,
    readonly dialer: Dialer,
  ) {}
}

/** One request on its way to a socket, then on it. */
class Lending {
  /** Made when the request first has to wait: what gives up its wait. */
  controller: AbortController | undefined = undefined;
  timer: NodeJS.Timeout | undefined = undefined;
  /** The reason given when `acquireTimeout` expired. */
  timeout: Error | undefined = undefined;
  handle: ConnResource | undefined = undefined;
  conn: PooledConn | undefined = undefined;
  /** Why the request was given up while its first, signal-less get() ran (`agent.destroy()`). */
  cancelled: Error | undefined = undefined;

  constructor(
    readonly req: ClientRequest,
    readonly origin: Origin,
  ) {}
}

/**
 * An already-aborted signal: the Go package's immediate canceler. A request
 * first asks for a socket with it, which never waits; only a request that
 * must wait pays for an AbortController, a timer and a destroy() watch.
 */
const NOW = AbortSignal.abort();

/** Requests that timed out ('timeout' on the request): their socket is not reused. */
const timedOut = new WeakSet<ClientRequest>();
function markTimedOut(this: ClientRequest): void {
  timedOut.add(this);
}

/**
 * Lends pooled connections to Node's HTTP client on behalf of an agent:
 * the agent keeps no free sockets of its own. A socket goes back to the
 * pool's idle list after a response that leaves it reusable, and is closed
 * otherwise.
 * @internal
 */
export class Lender {
  readonly #pool: ResourcePool;
  readonly #maxSockets: number;
  readonly #acquireTimeout: number;
  /** The agent's `timeout` option: the inactivity timeout of its sockets, as Node's agent sets it. */
  readonly #socketTimeout: number;
  readonly #dialerFor: (target: RequestTarget, name: string) => Dialer;
  readonly #origins = new Map<string, Origin>();
  readonly #lendings = new Set<Lending>();

  constructor(options: PoolAgentOptions & { timeout?: number }, dialerFor: (target: RequestTarget, name: string) => Dialer) {
    const pool = options.pool ?? getResourcePool();
    if (!(pool instanceof ResourcePool)) throw new TypeError('options.pool must be a ResourcePool');
    this.#pool = pool;
    this.#maxSockets = positive('maxSockets', options.maxSockets);
    this.#acquireTimeout = positive('acquireTimeout', options.acquireTimeout);
    this.#socketTimeout = options.timeout ?? 0;
    this.#dialerFor = dialerFor;
  }

  /** Starts `req` on a pooled socket of the origin called `name`. */
  addRequest(req: ClientRequest, target: RequestTarget, name: string): void {
    let origin = this.#origins.get(name);
    if (origin === undefined) {
      origin = new Origin(...where(target), this.#dialerFor(target, name));
      this.#origins.set(name, origin);
    }
    const lending = new Lending(req, origin);
    this.#lendings.add(lending);
    req.once('timeout', markTimedOut);
    if (origin.active < this.#maxSockets) {
      this.#start(lending);
    } else {
      origin.waiting.add(lending);
      this.#watch(lending);
    }
  }

  /** Destroys the connections in use and fails the requests still waiting. */
  destroy(): void {
    for (const lending of this.#lendings) {
      if (lending.conn !== undefined) lending.conn.destroy();
      else this.#giveUp(lending, hangUp());
    }
  }

  #start(lending: Lending): void {
    const origin = lending.origin;
    origin.active++;
    const handle = origin.handles.pop() ?? New(origin.network, origin.address, { pool: this.#pool });
    lending.handle = handle;
    const signal = lending.controller?.signal ?? NOW;
    handle.get(signal, origin.dialer).then(
      (conn) => this.#attach(lending, conn),
      (error: unknown) => {
        if (lending.cancelled !== undefined) return this.#failed(lending, lending.cancelled);
        if (signal === NOW && error instanceof ResourceLimitExceededError && error.cause === NOW.reason) {
          // No socket without waiting: wait in turn, now with a signal of its own.
          this.#watch(lending);
          if (lending.controller!.signal.aborted) return this.#failed(lending, lending.timeout ?? lending.controller!.signal.reason);
          handle.get(lending.controller!.signal, origin.dialer).then(
            (conn) => this.#attach(lending, conn),
            (failure: unknown) => this.#failed(lending, failure),
          );
          return;
        }
        this.#failed(lending, error);
      },
    );
  }

  /** The request has to wait: from now on its destroy() and `acquireTimeout` end the wait. */
  #watch(lending: Lending): void {
    if (lending.controller !== undefined) return;
    lending.controller = spareControllers.pop() ?? new AbortController();
    if (lending.req.destroyed) return void lending.controller.abort(new Error('the request was destroyed'));
    watchDestroy(lending, (error) => this.#giveUp(lending, error));
    if (this.#acquireTimeout !== Number.POSITIVE_INFINITY) {
      lending.timer = setTimeout(() => {
        lending.timeout = timedOutAfter(this.#acquireTimeout);
        this.#giveUp(lending, lending.timeout);
      }, this.#acquireTimeout);
    }
  }

  /** The request's get() failed: it fails with the error (its own, if its user destroyed it). */
  #failed(lending: Lending, error: unknown): void {
    clearTimeout(lending.timer);
    recycle(lending);
    this.#lendings.delete(lending);
    lending.origin.handles.push(lending.handle!);
    this.#next(lending.origin);
    const req = lending.req;
    if (req.destroyed) onSocket(req);
    else onSocket(req, undefined, error === lending.timeout ? new ResourceLimitExceededError({ cause: error }) : (error as Error));
  }

  #attach(lending: Lending, conn: PooledConn): void {
    clearTimeout(lending.timer);
    recycle(lending);
    const { req, origin } = lending;
    if (lending.cancelled !== undefined) {
      // Given up while it was being got: nothing was written on it.
      conn.put();
      return this.#failed(lending, lending.cancelled);
    }
    lending.conn = conn;
    // What Node's agent does when it makes a socket and hands it to a request.
    const timeout = (req as ClientRequest & { timeout?: number }).timeout ?? this.#socketTimeout;
    if (timeout > 0) conn.setTimeout(timeout);
    let isOver = false;
    const end = (isReusable: boolean, isHandleFree = true): void => {
      if (isOver) return;
      isOver = true;
      conn.off('free', onFree).off('close', onClose).off('agentRemove', onRemove);
      this.#lendings.delete(lending);
      if (isHandleFree) {
        if (isReusable) conn.put();
        else void conn.close();
        origin.handles.push(lending.handle!);
      }
      this.#next(origin);
    };
    const onFree = (): void => end(!timedOut.has(req) && isReusable(req));
    const onClose = (): void => end(false);
    // An upgraded connection (WebSocket, CONNECT) is its user's now: it frees its slot when closed.
    const onRemove = (): void => end(false, false);
    conn.on('free', onFree).on('close', onClose).on('agentRemove', onRemove);
    (req as ClientRequest & { reusedSocket: boolean }).reusedSocket = conn.reused;
    onSocket(req, conn);
  }

  /** A request gave up waiting: in the origin's queue it leaves it; in the pool's, its get() rejects. */
  #giveUp(lending: Lending, reason: Error): void {
    const { origin } = lending;
    if (origin.waiting.delete(lending)) {
      clearTimeout(lending.timer);
      this.#lendings.delete(lending);
      const req = lending.req;
      if (req.destroyed) onSocket(req);
      else onSocket(req, undefined, new ResourceLimitExceededError({ cause: reason }));
      return;
    }
    if (lending.controller !== undefined) lending.controller.abort(reason);
    else lending.cancelled ??= reason;
  }

  #next(origin: Origin): void {
    origin.active--;
    const next = origin.waiting.values().next();
    if (next.done === true) return;
    origin.waiting.delete(next.value);
    this.#start(next.value);
  }
}

/**
 * Wait controllers never aborted, for later waits: making an AbortSignal
 * costs Node 20 an `Object.setPrototypeOf()`, which also makes V8 throw away
 * inline caches of unrelated code (tens of thousands of instructions per wait).
 */
const spareControllers: AbortController[] = [];
const MAX_SPARE_CONTROLLERS = 64;

/**
 * The request's get() has settled, so the pool has let go of its signal: an
 * unaborted controller serves a later wait. The request no longer has one, so
 * a destroy() from now on aborts nothing.
 */
function recycle(lending: Lending): void {
  const controller = lending.controller;
  if (controller === undefined || controller.signal.aborted) return;
  lending.controller = undefined;
  if (spareControllers.length < MAX_SPARE_CONTROLLERS) spareControllers.push(controller);
}

/**
 * Node's client says nothing of a request destroyed (`req.destroy()`, its
 * `signal`) before it has a socket: the agent hears of it here, so that the
 * request stops waiting at once.
 */
function watchDestroy(lending: Lending, giveUp: (reason: Error) => void): void {
  const req = lending.req;
  const destroy = req.destroy;
  req.destroy = function (this: ClientRequest, error?: Error) {
    const result = destroy.call(this, error);
    if (lending.conn === undefined) giveUp(error ?? new Error('the request was destroyed'));
    return result;
  };
}

/** Node's `ClientRequest#onSocket(socket, error)`, typed: how an agent hands over a socket, or an error. */
function onSocket(req: ClientRequest, socket?: PooledConn, error?: Error): void {
  (req as ClientRequest & { onSocket(socket?: PooledConn, error?: Error): void }).onSocket(socket, error);
}

/** Whether the socket of a finished exchange may serve another request. */
function isReusable(req: ClientRequest): boolean {
  if (!req.shouldKeepAlive) return false;
  const res = (req as ClientRequest & { res?: IncomingMessage }).res;
  if (res === undefined) return true; // destroyed before it was sent
  if (!res.complete) return false;
  const hint = res.headers['keep-alive'];
  if (typeof hint !== 'string') return true;
  const timeout = /timeout=(\d+)/i.exec(hint);
  return timeout === null || Number(timeout[1]) > MIN_KEEP_ALIVE_HINT_S;
}

/** The network and address of a request's origin, as `New()` takes them. */
function where(target: RequestTarget): [Network, string] {
  if (target.socketPath) return ['unix', target.socketPath];
  const host = target.host || 'localhost';
  const port = target.port ? Number(target.port) : 80;
  const network: Network = target.family === 4 ? 'tcp4' : target.family === 6 ? 'tcp6' : 'tcp';
  return [network, isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`];
}

function positive(name: string, value: number | undefined): number {
  if (value === undefined) return Number.POSITIVE_INFINITY;
  if (typeof value !== 'number' || !(value > 0)) throw new RangeError(`${name} must be a number > 0, received ${String(value)}`);
  return value;
}

/** What a request gets when its agent is destroyed under it: Node's own 'socket hang up'. */
function hangUp(): Error {
  return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
}

function timedOutAfter(ms: number): Error {
  return new DOMException(`no socket within acquireTimeout (${ms} ms)`, 'TimeoutError');
}
