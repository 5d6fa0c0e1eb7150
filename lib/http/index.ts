import http, { type ClientRequest } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { NetConnectOpts, Socket } from 'node:net';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { createConnection, getResourcePool, park, ResourceLimitExceededError, ResourcePool, unpark } from '../index.js';

/** Options that `HttpAgent` and `HttpsAgent` add to those of `http.Agent` / `https.Agent`. */
export interface PoolAgentOptions {
  /** The pool whose slots the agent's sockets take. @default getResourcePool() */
  pool?: ResourcePool;
  /**
   * Gives up a connect (and TLS handshake) not done this many ms after it
   * started, with `ETIMEDOUT`. @default none
   */
  connectTimeout?: number;
  /**
   * How long a new socket may wait for a slot of the pool, in ms, before the
   * request fails with `ResourceLimitExceededError` whose `cause` is a
   * `TimeoutError`. A request queued by the agent's own `maxSockets` fails
   * the same way if it has no socket by then. @default none
   */
  acquireTimeout?: number;
}

/** Options of {@link HttpAgent}: `http.Agent`'s, with Node's defaults, plus connpool's. */
export interface HttpAgentOptions extends PoolAgentOptions, http.AgentOptions {}

/** Options of {@link HttpsAgent}: `https.Agent`'s (TLS options included), with Node's defaults, plus connpool's. */
export interface HttpsAgentOptions extends PoolAgentOptions, https.AgentOptions {}

/** What the agent's connects take from its options. */
interface Budget {
  pool: ResourcePool;
  connectTimeout: number | undefined;
  acquireTimeout: number | undefined;
}

/** Node's own agent members this file reads: not all are typed. */
type Books = http.Agent & {
  freeSockets: NodeJS.ReadOnlyDict<Socket[]>;
  getName(options: object): string;
};

/**
 * An `http.Agent` whose sockets take slots of a connpool pool, so that HTTP
 * shares one descriptor budget with every other connection of the process.
 *
 * It is Node's own agent: Node keeps its books (`sockets`, `requests`,
 * `freeSockets`, `maxSockets`, `maxTotalSockets`, `scheduling`, timeouts,
 * `'socket'` while connecting), with Node's meaning for every option. Only
 * its sockets come from connpool's {@link createConnection}: each waits for
 * a slot, then connects, and holds the slot until it closes. A keep-alive
 * socket that Node puts in `freeSockets` is parked: counted idle in the pool,
 * and closed (least recently used first) when anyone on the budget needs
 * room; Node then forgets it as it forgets any socket that closed. Idle
 * sockets are no longer shared between agents.
 *
 * Defaults are Node's: pass `keepAlive: true` to keep connections for
 * later requests, as Node's global agents do (`keepAlive: false`, the
 * default of `new http.Agent()`, closes each after its response).
 *
 * @example
 * ```ts
 * import { HttpAgent } from 'connpool/http';
 * const agent = new HttpAgent({ keepAlive: true, maxSockets: 16, acquireTimeout: 5_000 });
 * http.get('http://example.com/', { agent }, (res) => res.resume());
 * ```
 */
export class HttpAgent extends http.Agent {
  readonly #budget: Budget;

  /**
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE` if `pool` is not a ResourcePool, or `maxSockets`,
   *   `connectTimeout` or `acquireTimeout` not a number.
   * @throws {RangeError} `ERR_OUT_OF_RANGE` if `maxSockets` is not > 0, or a timeout is negative.
   *   Node's agent validates its other options itself.
   */
  constructor(options: HttpAgentOptions = {}) {
    const { budget, agentOptions } = split(options);
    super(agentOptions);
    this.#budget = budget;
    keepBooks(this);
  }

  /**
   * Makes a socket for a request, as `http.Agent#createConnection` does with
   * `net.createConnection()`: returned at once, connecting once it has a slot.
   * Override it as for `http.Agent` (calling `super.createConnection()` keeps
   * the socket on the budget).
   */
  override createConnection(...args: unknown[]): Duplex {
    const [options, callback] = netArgs(args);
    // As net.createConnection(), which Node's agent calls: the callback is a 'connect' listener.
    return createConnection({ ...options, ...budgetOptions(this.#budget) }, callback);
  }

  /** As `http.Agent#reuseSocket`; also takes the socket back from the pool's idle count. */
  override reuseSocket(socket: Socket, request: ClientRequest): void {
    unpark(socket);
    super.reuseSocket(socket, request);
  }

  /** @internal Node's client calls it for each request: Node's own, plus `acquireTimeout` for a request `maxSockets` queues. */
  addRequest(req: ClientRequest, ...options: unknown[]): void {
    nodeAddRequest.call(this, req, ...options);
    giveUpAfter(this, req, this.#budget.acquireTimeout);
  }
}

/**
 * An `https.Agent` whose sockets take slots of a connpool pool (see
 * {@link HttpAgent}). Everything `https.Agent` does it does: TLS options of
 * the agent and of each request, `servername` from the `Host` header, the
 * TLS session cache, `'keylog'`; sockets are `tls.TLSSocket`s.
 *
 * @example
 * ```ts
 * import { HttpsAgent } from 'connpool/http';
 * const agent = new HttpsAgent({ keepAlive: true, ca: readFileSync('ca.pem'), connectTimeout: 5_000 });
 * https.get('https://internal.example/', { agent }, (res) => res.resume());
 * ```
 */
export class HttpsAgent extends https.Agent {
  readonly #budget: Budget;

  /** @throws as {@link HttpAgent}'s constructor. */
  constructor(options: HttpsAgentOptions = {}) {
    const { budget, agentOptions } = split(options);
    super(agentOptions);
    this.#budget = budget;
    keepBooks(this);
  }

  /**
   * Makes a TLS socket for a request, as `https.Agent#createConnection`
   * does: it resumes the session cached for the request's origin, caches
   * new ones, and forgets it when a connection fails.
   */
  override createConnection(...args: unknown[]): Duplex {
    const options = httpsArgs(args);
    const agent = this as unknown as SessionCache;
    const key = (options as { _agentKey?: string })._agentKey;
    let connectOptions = options;
    if (key) {
      const session = agent._getSession(key);
      if (session) connectOptions = { session, ...options };
    }
    const socket: TLSSocket = createConnection({ ...(connectOptions as ConnectionOptions), ...budgetOptions(this.#budget), tls: true });
    if (key) {
      socket.on('session', (session: Buffer) => agent._cacheSession(key, session));
      socket.once('close', (hadError: boolean) => {
        if (hadError) agent._evictSession(key);
      });
    }
    return socket;
  }

  /** As `https.Agent#reuseSocket`; also takes the socket back from the pool's idle count. */
  override reuseSocket(socket: Socket, request: ClientRequest): void {
    unpark(socket);
    super.reuseSocket(socket, request);
  }

  /** @internal Node's client calls it for each request: Node's own, plus `acquireTimeout` for a request `maxSockets` queues. */
  addRequest(req: ClientRequest, ...options: unknown[]): void {
    nodeAddRequest.call(this, req, ...options);
    giveUpAfter(this, req, this.#budget.acquireTimeout);
  }
}

/**
 * Node's `Agent#addRequest` (untyped): it hands the request a free socket, a
 * new one, or queues it under `maxSockets`. It takes `(req, options)`, or the
 * legacy `(req, host, port, localAddress)`.
 */
const nodeAddRequest = (http.Agent.prototype as unknown as { addRequest(req: ClientRequest, ...options: unknown[]): void }).addRequest;

/**
 * `acquireTimeout` also bounds a request's wait in the agent's own queue
 * (`maxSockets`): without a socket by then, it fails as a wait for a pool
 * slot does. A socket that then waits for a slot has the same bound of its own.
 */
function giveUpAfter(agent: http.Agent, req: ClientRequest, ms: number | undefined): void {
  if (ms === undefined || ms === 0) return;
  const timer = setTimeout(() => {
    // Only a request still in the agent's queue: taken out of it, it fails as Node fails a request it cannot give a socket.
    const requests = agent.requests as NodeJS.Dict<ClientRequest[]>;
    for (const name in requests) {
      const queue = requests[name]!;
      const index = queue.indexOf(req);
      if (index === -1) continue;
      queue.splice(index, 1);
      if (queue.length === 0) delete requests[name];
      const reason = new DOMException(`no socket within acquireTimeout (${ms} ms)`, 'TimeoutError');
      (req as ClientRequest & { onSocket(socket: null, error: Error): void }).onSocket(null, new ResourceLimitExceededError({ cause: reason }));
      return;
    }
  }, ms).unref();
  const clear = (): void => clearTimeout(timer);
  req.once('socket', clear).once('close', clear);
}

/**
 * The arguments of `net.createConnection()`: `(options[, listener])`,
 * `(path[, listener])` or `(port[, host][, listener])`.
 */
function netArgs(args: unknown[]): [NetConnectOpts, (() => void) | undefined] {
  const [first, second] = args;
  const last = args[args.length - 1];
  const listener = typeof last === 'function' ? (last as () => void) : undefined;
  if (first !== null && typeof first === 'object') return [first as NetConnectOpts, listener];
  if (typeof first === 'string' && !/^\s*\d+\s*$/.test(first)) return [{ path: first }, listener];
  return [{ port: first as number, ...(typeof second === 'string' ? { host: second } : {}) }, listener];
}

/** The arguments of `https.Agent#createConnection()`: `(options)`, `(port, options)` or `(port, host, options)`. */
function httpsArgs(args: unknown[]): object {
  const [port, host, third] = args;
  let options: Record<string, unknown>;
  if (port !== null && typeof port === 'object') options = port as Record<string, unknown>;
  else if (host !== null && typeof host === 'object') options = { ...host };
  else if (third !== null && typeof third === 'object') options = { ...third };
  else options = {};
  if (typeof port === 'number') options.port = port;
  if (typeof host === 'string') options.host = host;
  return options;
}

/** https.Agent's session cache (undocumented, and stable since Node 0.12). */
interface SessionCache {
  _getSession(key: string): Buffer | undefined;
  _cacheSession(key: string, session: Buffer): void;
  _evictSession(key: string): void;
}

function budgetOptions(budget: Budget): { pool: ResourcePool; connectTimeout?: number; acquireTimeout?: number } {
  return { pool: budget.pool, connectTimeout: budget.connectTimeout, acquireTimeout: budget.acquireTimeout };
}

/**
 * Parks each socket Node's agent puts in `freeSockets`, and takes it back out
 * when Node reuses it, so that the pool counts it idle only while it is.
 */
function keepBooks(agent: HttpAgent | HttpsAgent): void {
  const books = agent as unknown as Books;
  // Node's own 'free' listener (added by its constructor) runs first: it
  // hands the socket to a queued request, destroys it, or keeps it free.
  agent.on('free', (socket: Socket, options: object) => {
    const name = books.getName(options);
    const free = books.freeSockets[name];
    if (free === undefined || (free[free.length - 1] !== socket && !free.includes(socket))) return;
    park(socket, () => {
      // Reclaimed by the pool: Node must not hand it out in the turn before its 'close'.
      const sockets = books.freeSockets[name];
      const index = sockets === undefined ? -1 : sockets.indexOf(socket);
      if (index === -1) return;
      sockets!.splice(index, 1);
      if (sockets!.length === 0) delete (books.freeSockets as Record<string, Socket[]>)[name];
    });
  });
  // A subclass's reuseSocket() that does not call ours must still take the socket back.
  const reuseSocket = agent.reuseSocket;
  if (reuseSocket !== HttpAgent.prototype.reuseSocket && reuseSocket !== HttpsAgent.prototype.reuseSocket) {
    agent.reuseSocket = function (this: http.Agent, socket: Socket, request: ClientRequest): void {
      unpark(socket);
      reuseSocket.call(this, socket, request);
    };
  }
}

/** connpool's options, validated, and those for Node's agent. */
function split(options: HttpAgentOptions | HttpsAgentOptions): { budget: Budget; agentOptions: http.AgentOptions } {
  if (options === null || typeof options !== 'object') throw invalidArgType(`options must be an object, received ${describe(options)}`);
  const { pool = getResourcePool(), connectTimeout, acquireTimeout, ...agentOptions } = options;
  if (!(pool instanceof ResourcePool)) throw invalidArgType(`pool must be a ResourcePool, received ${describe(pool)}`);
  milliseconds('connectTimeout', connectTimeout);
  milliseconds('acquireTimeout', acquireTimeout);
  const { maxSockets } = agentOptions;
  if (maxSockets !== undefined) {
    if (typeof maxSockets !== 'number') throw invalidArgType(`maxSockets must be a number > 0, received ${describe(maxSockets)}`);
    if (!(maxSockets > 0)) throw outOfRange(`maxSockets must be a number > 0, received ${describe(maxSockets)}`);
  }
  return { budget: { pool, connectTimeout, acquireTimeout }, agentOptions };
}

function milliseconds(name: string, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'number') throw invalidArgType(`${name} must be a number of milliseconds, received ${describe(value)}`);
  if (!(value >= 0)) throw outOfRange(`${name} must be a number of milliseconds >= 0, received ${describe(value)}`);
}

/** A `TypeError` with Node's `ERR_INVALID_ARG_TYPE` code, as the core throws. */
function invalidArgType(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' });
}

/** A `RangeError` with Node's `ERR_OUT_OF_RANGE` code, as the core throws. */
function outOfRange(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' });
}

/** Shows a received value in an error message, as the core does. */
function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === null || value === undefined) return String(value);
  return typeof value === 'object' ? `an object (${value.constructor?.name ?? 'null prototype'})` : typeof value;
}
