import { connect, type Socket, type TcpSocketConnectOpts } from 'node:net';
import { describe, parseAddress, type Endpoint } from '../address.js';
import { invalidArgType, outOfRange } from '../errors.js';

/**
 * Opens connections for the pool. A dialer is any object of this shape: the
 * built-in {@link netDialer} and {@link tlsDialer}, or your own (a TLS dialer
 * with a private CA, a proxy tunnel, ...).
 *
 * Idle connections are kept per (network, address, `key`): a connection one
 * dialer made is never handed to a caller that asked for another.
 */
export interface Dialer {
  /** Which idle connections this dialer's callers may share. */
  readonly key: string;
  /**
   * Connects to `address` on `network`; resolves once the socket is ready for
   * use (connected, handshake done). Must give up, destroying what it opened,
   * when `signal` aborts.
   */
  dial(network: string, address: string, signal: AbortSignal): Promise<Socket>;
}

/** Options of {@link netDialer}: socket options plus a connect timeout. */
export interface NetDialerOptions
  extends Omit<TcpSocketConnectOpts, 'host' | 'port' | 'family' | 'timeout' | 'signal'> {
  /**
   * Gives up a connect not done after this many ms, with `ETIMEDOUT`; 0 or
   * less, or `Infinity`: the OS's own. @default 0
   */
  timeout?: number;
  /** `TCP_NODELAY`, on by default as in Go. @default true */
  noDelay?: boolean;
  /** `SO_KEEPALIVE`, on by default as in Go. @default true */
  keepAlive?: boolean;
  /** @default 15000 */
  keepAliveInitialDelay?: number;
}

/** The key every plain TCP (and unix socket) dialer shares. @internal */
export const NET_DIALER_KEY = 'net';

/**
 * The built-in plain TCP / unix socket dialer.
 *
 * @example
 * ```ts
 * const conn = await res.get(signal, netDialer({ timeout: 2_000 }));
 * ```
 */
export function netDialer(options: NetDialerOptions = {}): Dialer {
  const { timeout: timeoutOption, noDelay = true, keepAlive = true, keepAliveInitialDelay = 15_000, ...socketOptions } = options;
  const timeout = dialTimeout(timeoutOption);
  return {
    key: NET_DIALER_KEY,
    dial(network, address, signal) {
      const endpoint = parseAddress(network, address);
      const socket = connect({ ...socketOptions, ...connectTarget(endpoint), noDelay, keepAlive, keepAliveInitialDelay });
      return whenReady(socket, 'connect', timeout, address, signal);
    },
  };
}

/**
 * A dialer's `timeout` option in ms; 0 for none (0 or less, or `Infinity`,
 * as in the Go package).
 * @throws {TypeError} `ERR_INVALID_ARG_TYPE` for a non-number.
 * @throws {RangeError} `ERR_OUT_OF_RANGE` for NaN.
 * @internal
 */
export function dialTimeout(value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number') throw invalidArgType(`timeout must be a number of milliseconds, received ${describe(value)}`);
  if (Number.isNaN(value)) throw outOfRange('timeout must be a number of milliseconds, received NaN');
  return value > 0 && value !== Number.POSITIVE_INFINITY ? value : 0;
}

/** What `net.connect()` and `tls.connect()` need to reach `endpoint`. @internal */
export function connectTarget(endpoint: Endpoint): { host: string; port: number; family: number } | { path: string } {
  return 'path' in endpoint ? { path: endpoint.path } : endpoint;
}

/**
 * @internal
 * Resolves with `socket` once it emits `readyEvent`; destroys it and rejects
 * on error, on `ETIMEDOUT` after `timeout` ms (if > 0) unless the connect
 * turns out to be done in that same turn of the event loop, or with the
 * signal's reason when `signal` aborts.
 */
export function whenReady(
  socket: Socket,
  readyEvent: 'connect' | 'secureConnect',
  timeout: number,
  address: string,
  signal: AbortSignal,
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const fail = (error: unknown): void => {
      cleanup();
      socket.destroy();
      reject(error);
    };
    const onError = (error: Error): void => fail(error);
    const onAbort = (): void => fail(signal.reason);
    // The timer may fire late, after an event-loop block during which the
    // connect succeeded: its event is then still to be read, in this same
    // turn. Giving it until setImmediate lets it win, as undici's connect
    // timeout does (nodejs/undici#3410).
    let check: NodeJS.Immediate | undefined;
    const onTimeout = (): void => {
      check ??= setImmediate(() => fail(timedOut(address)));
    };
    const onReady = (): void => {
      cleanup();
      resolve(socket);
    };
    const cleanup = (): void => {
      socket.off('error', onError).off(readyEvent, onReady).off('timeout', onTimeout);
      signal.removeEventListener('abort', onAbort);
      clearImmediate(check);
      if (timeout > 0) socket.setTimeout(0);
    };
    if (signal.aborted) return fail(signal.reason);
    socket.once('error', onError).once(readyEvent, onReady);
    signal.addEventListener('abort', onAbort, { once: true });
    if (timeout > 0) socket.setTimeout(timeout, onTimeout);
  });
}

function timedOut(address: string): Error {
  return Object.assign(new Error(`connect ETIMEDOUT ${address}`), { code: 'ETIMEDOUT', syscall: 'connect', address });
}
