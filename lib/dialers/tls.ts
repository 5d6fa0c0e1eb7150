import { connect, createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import { isIP } from 'node:net';
import { parseAddress } from '../address.js';
import { connectTarget, dialTimeout, whenReady, type Dialer } from './net.js';

/** Options of {@link tlsDialer}: `tls.connect()`'s options plus a timeout and a pool key. */
export interface TlsDialerOptions extends Omit<ConnectionOptions, 'host' | 'port' | 'path' | 'socket' | 'timeout'> {
  /** Gives up a connect and handshake not done after this many ms, with `ETIMEDOUT`; 0 or less, or `Infinity`: no limit. @default 0 */
  timeout?: number;
  /**
   * The dialer's {@link Dialer.key}: dialers with the same `poolKey` share idle
   * connections, so give it only to dialers with the same TLS settings.
   * (Named `poolKey` because `key` is TLS's private key option.)
   * @default a key unique to this dialer
   */
  poolKey?: string;
  /**
   * Keep each address's last session ticket and offer it on the next dial, so
   * that new connections resume instead of making a full handshake.
   * @default true
   */
  resumeSessions?: boolean;
}

let dialers = 0;

/** Session tickets kept per dialer: one per address, for this many addresses at most. */
const MAX_SESSIONS = 1_000;

/**
 * The built-in TLS dialer. Each dialer gets its own pool key unless
 * `poolKey` is given, so its connections are never handed to callers of
 * another dialer (or of plain TCP). The TLS settings are turned into one
 * `SecureContext`, built once; `servername` defaults to the host name. The
 * dialer keeps the last session ticket of each address, so that a new
 * connection (after an eviction, say) resumes the session instead of making
 * a full handshake.
 *
 * @example
 * ```ts
 * const dialer = tlsDialer({ ca: readFileSync('ca.pem'), timeout: 5_000 });
 * await using conn = await res.get(signal, dialer);
 * ```
 */
export function tlsDialer(options: TlsDialerOptions = {}): Dialer {
  const { timeout: timeoutOption, poolKey, resumeSessions = true, secureContext, ...tlsOptions } = options;
  const timeout = dialTimeout(timeoutOption);
  const context: SecureContext = secureContext ?? createSecureContext(tlsOptions);
  const sessions = new Map<string, Buffer>();
  const keep = (address: string, session: Buffer): void => {
    sessions.delete(address);
    sessions.set(address, session);
    if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
  };
  return {
    key: poolKey ?? `tls#${++dialers}`,
    dial(network, address, signal) {
      const endpoint = parseAddress(network, address);
      const servername = tlsOptions.servername ?? ('host' in endpoint && isIP(endpoint.host) === 0 ? endpoint.host : undefined);
      const socket = connect({
        ...tlsOptions,
        ...connectTarget(endpoint),
        servername,
        secureContext: context,
        session: tlsOptions.session ?? sessions.get(address),
      });
      if (resumeSessions) socket.on('session', (session: Buffer) => keep(address, session));
      return whenReady(socket, 'secureConnect', timeout, address, signal);
    },
  };
}
