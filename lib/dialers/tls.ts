import { connect, createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import { isIP } from 'node:net';
import { parseAddress } from '../address.js';
import { connectTarget, whenReady, type Dialer } from './net.js';

/** Options of {@link tlsDialer}: `tls.connect()`'s options plus a timeout and a pool key. */
export interface TlsDialerOptions extends Omit<ConnectionOptions, 'host' | 'port' | 'path' | 'socket' | 'timeout'> {
  /** Gives up a connect and handshake not done after this many ms, with `ETIMEDOUT`; 0 or less: no limit. @default 0 */
  timeout?: number;
  /**
   * The dialer's {@link Dialer.key}: dialers with the same `poolKey` share idle
   * connections, so give it only to dialers with the same TLS settings.
   * (Named `poolKey` because `key` is TLS's private key option.)
   * @default a key unique to this dialer
   */
  poolKey?: string;
}

let dialers = 0;

/**
 * The built-in TLS dialer. Each dialer gets its own pool key unless
 * `poolKey` is given, so its connections are never handed to callers of
 * another dialer (or of plain TCP). The TLS settings are turned into one
 * `SecureContext`, built once; `servername` defaults to the host name.
 *
 * @example
 * ```ts
 * const dialer = tlsDialer({ ca: readFileSync('ca.pem'), timeout: 5_000 });
 * await using conn = await res.get(signal, dialer);
 * ```
 */
export function tlsDialer(options: TlsDialerOptions = {}): Dialer {
  const { timeout = 0, poolKey, secureContext, ...tlsOptions } = options;
  const context: SecureContext = secureContext ?? createSecureContext(tlsOptions);
  return {
    key: poolKey ?? `tls#${++dialers}`,
    dial(network, address, signal) {
      const endpoint = parseAddress(network, address);
      const servername = tlsOptions.servername ?? ('host' in endpoint && isIP(endpoint.host) === 0 ? endpoint.host : undefined);
      const socket = connect({ ...tlsOptions, ...connectTarget(endpoint), servername, secureContext: context });
      return whenReady(socket, 'secureConnect', timeout, address, signal);
    },
  };
}
