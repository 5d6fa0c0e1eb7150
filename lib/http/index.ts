import http, { type ClientRequest } from 'node:http';
import https from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import { netDialer, tlsDialer, type Dialer } from '../index.js';
import { Lender, type PoolAgentOptions, type RequestTarget } from './lender.js';

export type { PoolAgentOptions } from './lender.js';

/** Options of {@link HttpAgent}: connpool's, plus `http.Agent`'s own (`timeout`, `keepAliveMsecs`, ...). */
export interface HttpAgentOptions
  extends PoolAgentOptions,
    Omit<http.AgentOptions, 'keepAlive' | 'maxSockets' | 'maxTotalSockets' | 'maxFreeSockets' | 'scheduling'> {}

/** Options of {@link HttpsAgent}: those of {@link HttpAgentOptions} plus `tls.connect()`'s (`ca`, `cert`, `servername`, ...). */
export interface HttpsAgentOptions
  extends PoolAgentOptions,
    Omit<https.AgentOptions, 'keepAlive' | 'maxSockets' | 'maxTotalSockets' | 'maxFreeSockets' | 'scheduling' | 'timeout'> {
  timeout?: number;
}

/**
 * An `http.Agent` whose sockets come from connpool: HTTP shares the
 * descriptor budget with every other connection of the pool, and an idle
 * keep-alive socket of one origin is closed to make room for another when
 * the pool is full. After a response that leaves it reusable, a socket goes
 * back to the pool's idle list (watched, evictable); otherwise it is closed.
 *
 * @example
 * ```ts
 * import { HttpAgent } from 'connpool/http';
 * const agent = new HttpAgent({ acquireTimeout: 5_000 });
 * http.get('http://example.com/', { agent }, (res) => res.resume());
 * ```
 */
export class HttpAgent extends http.Agent {
  readonly #lender: Lender;
  /** The agent's own options say where to connect (`localAddress`, `family`, ...). */
  readonly #isTargetSet: boolean;

  /** @throws {RangeError} if `maxSockets`, `connectTimeout` or `acquireTimeout` is not a number > 0. */
  constructor(options: HttpAgentOptions = {}) {
    const { pool, maxSockets, connectTimeout, acquireTimeout, ...agentOptions } = options;
    super({ ...agentOptions, keepAlive: true });
    this.#isTargetSet = TARGET_OPTIONS.some((name) => name in agentOptions);
    const dialer = netDialer({ timeout: connectTimeout });
    const shared: Dialer = { key: 'http', dial: dialer.dial };
    this.#lender = new Lender({ pool, maxSockets, acquireTimeout, timeout: agentOptions.timeout }, (target) =>
      target.localAddress ? { key: `http|${target.localAddress}`, dial: netDialer({ timeout: connectTimeout, localAddress: target.localAddress }).dial } : shared,
    );
  }

  /** @internal Called by Node's HTTP client for each request. */
  addRequest(req: ClientRequest, options: RequestTarget): void {
    // Node lays the agent's options over the request's; only those that say where to connect matter here.
    const target = this.#isTargetSet ? ({ ...options, ...optionsOf(this) } as RequestTarget) : options;
    this.#lender.addRequest(req, target, this.getName(target as http.ClientRequestArgs));
  }

  /** Destroys the connections in use; requests still waiting fail. Idle sockets stay in the pool. */
  override destroy(): void {
    this.#lender.destroy();
  }
}

/** Agent options that say where to connect, which Node lays over a request's own. */
const TARGET_OPTIONS = ['host', 'hostname', 'port', 'localAddress', 'family', 'socketPath'] as const;

/** The `tls.connect()` options an HTTPS origin's sockets are made with, and that tell origins apart. */
const TLS_OPTIONS = [
  'ca', 'cert', 'key', 'pfx', 'passphrase', 'ciphers', 'ecdhCurve', 'honorCipherOrder', 'minVersion', 'maxVersion',
  'secureOptions', 'secureProtocol', 'sessionIdContext', 'crl', 'sigalgs', 'privateKeyEngine', 'privateKeyIdentifier',
  'rejectUnauthorized', 'servername', 'checkServerIdentity', 'localAddress', 'lookup',
] as const;

/**
 * An `https.Agent` whose sockets come from connpool (see {@link HttpAgent}).
 * TLS options given to the agent or to a request (`ca`, `cert`,
 * `servername`, `rejectUnauthorized`, ...) are used for its connections;
 * origins with other TLS options never share idle sockets, nor do plain
 * HTTP and HTTPS. ALPN offers `http/1.1` only.
 *
 * @example
 * ```ts
 * import { HttpsAgent } from 'connpool/http';
 * const agent = new HttpsAgent({ ca: readFileSync('ca.pem'), connectTimeout: 5_000 });
 * https.get('https://internal.example/', { agent }, (res) => res.resume());
 * ```
 */
export class HttpsAgent extends https.Agent {
  readonly #lender: Lender;

  /** @throws {RangeError} if `maxSockets`, `connectTimeout` or `acquireTimeout` is not a number > 0. */
  constructor(options: HttpsAgentOptions = {}) {
    const { pool, maxSockets, connectTimeout, acquireTimeout, ...agentOptions } = options;
    super({ ...agentOptions, keepAlive: true });
    // One dialer (one SecureContext, one idle key) per distinct set of TLS options.
    const dialers = new Map<string, Dialer>();
    this.#lender = new Lender({ pool, maxSockets, acquireTimeout, timeout: agentOptions.timeout }, (requestTarget) => {
      const target = { ...requestTarget, ...optionsOf(this) };
      const tlsOptions: Record<string, unknown> = {};
      let signature = '';
      for (const name of TLS_OPTIONS) {
        const value = (target as Record<string, unknown>)[name];
        if (value === undefined) continue;
        tlsOptions[name] = value;
        signature += `${name}=${identify(value)};`;
      }
      let dialer = dialers.get(signature);
      if (dialer === undefined) {
        dialer = tlsDialer({ ...(tlsOptions as ConnectionOptions), ALPNProtocols: ['http/1.1'], timeout: connectTimeout });
        dialers.set(signature, dialer);
      }
      return dialer;
    });
  }

  /** @internal Called by Node's HTTP client for each request. */
  addRequest(req: ClientRequest, options: RequestTarget): void {
    // The name tells apart the request-level TLS options; the dialer of a new
    // name is made from the agent's options laid over the request's, as Node does.
    this.#lender.addRequest(req, options, this.getName(options as https.RequestOptions));
  }

  /** Destroys the connections in use; requests still waiting fail. Idle sockets stay in the pool. */
  override destroy(): void {
    this.#lender.destroy();
  }
}

/** The options the agent was made with, which Node's agent lays over each request's (its `options`, untyped). */
function optionsOf(agent: http.Agent): object {
  return (agent as http.Agent & { options: object }).options;
}

const identities = new WeakMap<object, number>();
let nextIdentity = 0;

/** A value as part of a signature: primitives by value, objects (buffers, functions) by identity. */
function identify(value: unknown): string {
  if (typeof value !== 'object' && typeof value !== 'function') return JSON.stringify(value) ?? String(value);
  if (value === null) return 'null';
  let id = identities.get(value);
  if (id === undefined) identities.set(value, (id = ++nextIdentity));
  return `#${id}`;
}
