import type { ConnectionOptions } from 'node:tls';
import { Client, Pool, type Agent } from 'undici';
import { ResourcePool } from '../index.js';

/**
 * `tls.connect()` / `net.connect()` options that {@link createDispatcher}
 * also takes at the top level, as it did before it took undici's `connect`:
 * they go into `connect`, for every origin (plain HTTP included).
 */
const CONNECT_OPTIONS = [
  'ca', 'cert', 'key', 'pfx', 'passphrase', 'ciphers', 'ecdhCurve', 'honorCipherOrder', 'minVersion', 'maxVersion',
  'secureOptions', 'secureProtocol', 'sessionIdContext', 'sigalgs', 'privateKeyEngine', 'privateKeyIdentifier', 'crl',
  'dhparam', 'clientCertEngine', 'secureContext', 'enableTrace', 'rejectUnauthorized', 'checkServerIdentity',
  'servername', 'session', 'minDHSize', 'pskCallback', 'requestOCSP', 'lookup', 'family', 'hints', 'localPort',
  'noDelay', 'keepAliveInitialDelay',
] as const;

/** The top-level connect options kept for compatibility (see {@link CONNECT_OPTIONS}). */
export type LegacyConnectOptions = Pick<ConnectionOptions, (typeof CONNECT_OPTIONS)[number] & keyof ConnectionOptions>;

/**
 * undici's `Agent` options {@link createDispatcher} passes on to undici, which
 * checks them and gives them their meaning (`lib/dispatcher/agent.js`,
 * `pool.js`, `client.js`, `lib/core/connect.js`).
 */
const UNDICI_OPTIONS = [
  'maxOrigins', 'connections', 'clientTtl', 'connect', 'connectTimeout', 'maxHeaderSize', 'headersTimeout', 'bodyTimeout',
  'keepAliveTimeout', 'keepAliveMaxTimeout', 'keepAliveTimeoutThreshold', 'socketPath', 'pipelining',
  'strictContentLength', 'maxCachedSessions', 'maxRequestsPerClient', 'localAddress', 'maxResponseSize',
  'autoSelectFamily', 'autoSelectFamilyAttemptTimeout', 'allowH2', 'useH2c', 'maxConcurrentStreams', 'initialWindowSize',
  'connectionWindowSize', 'pingInterval', 'webSocket', 'eventSource',
  // Options undici's Client refuses with its own InvalidArgumentError, naming what to use instead.
  'keepAlive', 'socketTimeout', 'requestTimeout', 'idleTimeout', 'maxKeepAliveTimeout',
] as const;

/** connpool's own options. */
const POOL_OPTIONS = ['pool', 'maxSockets', 'acquireTimeout', 'idleHandoff'] as const;

/** Why an option undici's `Agent` knows is refused. */
const REFUSED: Record<string, string> = {
  factory: 'createDispatcher() makes its own pools and clients, to take their sockets from connpool',
  interceptors: 'undici 7 no longer uses it: wrap the dispatcher with dispatcher.compose(...) instead',
  maxRedirections: 'undici 7 no longer takes it: wrap the dispatcher with dispatcher.compose(interceptors.redirect({ maxRedirections }))',
  tls: 'give TLS options in connect',
};

const KNOWN = new Set<string>([...CONNECT_OPTIONS, ...UNDICI_OPTIONS, ...POOL_OPTIONS]);

/** connpool's options of {@link createDispatcher}. */
export interface PoolOptions {
  /** The pool whose slots the dispatcher's sockets take. @default getResourcePool() */
  pool?: ResourcePool;
  /**
   * Connections per origin, undici's `connections` under connpool's name;
   * requests beyond wait in undici's queue for that origin. Give one of the two.
   * @default Infinity
   */
  maxSockets?: number;
  /**
   * How long a connection may wait for a pool slot, in ms, before its
   * requests fail with `ResourceLimitExceededError` (`cause`: a `TimeoutError`).
   * @default none
   */
  acquireTimeout?: number;
  /**
   * How long undici keeps a connection that has no request before it goes
   * back to the pool's idle list, in ms (at most its keep-alive timeout).
   * Short, so that idle sockets are evictable by anyone, not held by undici.
   * @default 10
   */
  idleHandoff?: number;
}

/** What {@link splitOptions} makes of the options of {@link createDispatcher}. */
export interface SplitOptions {
  pool: ResourcePool;
  /** ms; `Infinity` for none. */
  acquireTimeout: number;
  idleHandoff: number;
  /** ms an idle connection is kept when the server sends no keep-alive hint (undici's `keepAliveTimeout`). */
  keepAliveTimeout: number;
  /** The most a server's keep-alive hint may keep it (undici's `keepAliveMaxTimeout`). */
  keepAliveMaxTimeout: number;
  /** What is taken off a server's hint (undici's `keepAliveTimeoutThreshold`). */
  keepAliveTimeoutThreshold: number;
  /** For undici's `Agent`, `factory` aside. */
  agent: Agent.Options;
  /** Whether the connect options can change where a plain connection goes (so its sockets are not shared). */
  isRouted: boolean;
}

/** undici's default keep-alive timeouts (`lib/dispatcher/client.js`). */
const UNDICI_KEEP_ALIVE_TIMEOUT_MS = 4_000;
const UNDICI_KEEP_ALIVE_MAX_TIMEOUT_MS = 600_000;
const UNDICI_KEEP_ALIVE_TIMEOUT_THRESHOLD_MS = 2_000;
/** Connect options by which a plain connection may reach another peer than the one its address names. */
const ROUTING_OPTIONS = ['lookup', 'localAddress', 'localPort', 'family', 'hints', 'socketPath'];

/**
 * Sorts the options of {@link createDispatcher} into connpool's and undici's,
 * checks connpool's, and has undici check its own (a `Client` is made and
 * dropped: it opens nothing until it has a request).
 *
 * @throws {TypeError} `ERR_INVALID_ARG_VALUE` for an option neither knows;
 *   `ERR_INVALID_ARG_TYPE` for a connpool option of the wrong type.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for a connpool number out of range.
 * @throws undici's `InvalidArgumentError` (`UND_ERR_INVALID_ARG`) for an undici option it refuses.
 */
export function splitOptions(options: object | undefined): SplitOptions {
  if (options === undefined || options === null) options = {};
  if (typeof options !== 'object') throw invalidArgType(`options must be an object, received ${describe(options)}`);
  const all = options as Record<string, unknown>;
  for (const name of Object.keys(all)) {
    if (KNOWN.has(name) || all[name] === undefined) continue;
    const reason = REFUSED[name] ?? 'it is neither an undici Agent option nor one of connpool\'s (pool, maxSockets, acquireTimeout, idleHandoff)';
    throw invalidArgValue(`createDispatcher() does not take the option ${JSON.stringify(name)}: ${reason}`);
  }
  if (all.allowH2 === true || all.useH2c === true) throw invalidArgValue('createDispatcher() speaks HTTP/1.1 only: allowH2 and useH2c must not be true');

  const pool = all.pool ?? undefined;
  if (pool !== undefined && !(pool instanceof ResourcePool)) throw invalidArgType(`options.pool must be a ResourcePool, received ${describe(pool)}`);
  const acquireTimeout = milliseconds('acquireTimeout', all.acquireTimeout, Number.POSITIVE_INFINITY);
  const idleHandoff = milliseconds('idleHandoff', all.idleHandoff, 10);
  if (idleHandoff === Number.POSITIVE_INFINITY) throw outOfRange('options.idleHandoff must be a finite number of milliseconds > 0, received Infinity');
  let connections = all.connections;
  if (all.maxSockets !== undefined) {
    const maxSockets = milliseconds('maxSockets', all.maxSockets, Number.POSITIVE_INFINITY, 'a whole number > 0');
    if (maxSockets !== Number.POSITIVE_INFINITY && !Number.isInteger(maxSockets)) throw outOfRange(`options.maxSockets must be a whole number > 0, received ${maxSockets}`);
    if (connections !== undefined && connections !== null) throw invalidArgValue('give options.maxSockets or options.connections (its undici name), not both');
    connections = maxSockets === Number.POSITIVE_INFINITY ? null : maxSockets;
  }

  const agent: Record<string, unknown> = {};
  let connect = all.connect as Record<string, unknown> | ((...args: never[]) => unknown) | null | undefined;
  const legacy: Record<string, unknown> = {};
  for (const name of Object.keys(all)) {
    if (all[name] === undefined || (POOL_OPTIONS as readonly string[]).includes(name)) continue;
    if ((CONNECT_OPTIONS as readonly string[]).includes(name)) legacy[name] = all[name];
    else if (name !== 'connect') agent[name] = all[name];
  }
  if (Object.keys(legacy).length > 0) {
    if (typeof connect === 'function') throw invalidArgValue(`connect is a function: give ${Object.keys(legacy).join(', ')} to it, not to createDispatcher()`);
    connect = { ...legacy, ...(connect ?? {}) };
  }
  if (connect !== undefined) agent.connect = connect;
  agent.connections = connections ?? null;
  agent.allowH2 = false;

  const userKeepAlive = all.keepAliveTimeout;
  const userKeepAliveMax = all.keepAliveMaxTimeout;
  // undici checks them (its Pool and Client constructors, which open nothing); a value it refuses never gets here.
  new Pool('http://localhost', agent as Pool.Options);
  new Client('http://localhost', agent as Client.Options);
  const keepAliveTimeout = typeof userKeepAlive === 'number' ? userKeepAlive : UNDICI_KEEP_ALIVE_TIMEOUT_MS;
  const keepAliveMaxTimeout = typeof userKeepAliveMax === 'number' ? userKeepAliveMax : UNDICI_KEEP_ALIVE_MAX_TIMEOUT_MS;
  // undici holds an idle connection for idleHandoff at most, then connpool keeps it for the rest.
  agent.keepAliveTimeout = Math.min(keepAliveTimeout, idleHandoff);
  agent.keepAliveMaxTimeout = Math.min(keepAliveMaxTimeout, idleHandoff);

  const isRouted =
    typeof connect === 'function' ||
    all.localAddress != null ||
    all.socketPath != null ||
    (connect != null && ROUTING_OPTIONS.some((name) => (connect as Record<string, unknown>)[name] != null));
  const keepAliveTimeoutThreshold = typeof all.keepAliveTimeoutThreshold === 'number' ? all.keepAliveTimeoutThreshold : UNDICI_KEEP_ALIVE_TIMEOUT_THRESHOLD_MS;
  return {
    pool: pool ?? (undefined as never),
    acquireTimeout,
    idleHandoff,
    keepAliveTimeout,
    keepAliveMaxTimeout,
    keepAliveTimeoutThreshold,
    agent: agent as Agent.Options,
    isRouted,
  };
}

/** A connpool option in ms (or a count): a number > 0, `Infinity` allowed; `fallback` when undefined. */
function milliseconds(name: string, value: unknown, fallback: number, what = 'a number of milliseconds > 0'): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw invalidArgType(`options.${name} must be ${what}, received ${describe(value)}`);
  if (!(value > 0)) throw outOfRange(`options.${name} must be ${what}, received ${describe(value)}`);
  return value;
}

/** A value as an option error shows it: strings quoted, objects by their class (as the core's errors do). */
function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === null || value === undefined) return String(value);
  return typeof value === 'object' ? `an object (${value.constructor?.name ?? 'null prototype'})` : typeof value;
}

function invalidArgType(message: string): TypeError & { code: 'ERR_INVALID_ARG_TYPE' } {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' as const });
}

function invalidArgValue(message: string): TypeError & { code: 'ERR_INVALID_ARG_VALUE' } {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_VALUE' as const });
}

function outOfRange(message: string): RangeError & { code: 'ERR_OUT_OF_RANGE' } {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' as const });
}
