import { isIP } from 'node:net';
import { InvalidAddressError, UnknownNetworkError } from './errors.js';

/** The networks `New()` accepts, as in Go's `net.Dial`. */
export type Network = 'tcp' | 'tcp4' | 'tcp6' | 'unix';

/** Where a dialer connects: a host and port, or a socket path. */
export type Endpoint =
  | { readonly host: string; readonly port: number; readonly family: 0 | 4 | 6 }
  | { readonly path: string };

const FAMILIES: Readonly<Record<string, 0 | 4 | 6>> = { tcp: 0, tcp4: 4, tcp6: 6 };
const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/;
const PORT = /^[0-9]{1,5}$/;
const URL_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/**
 * Validates `network` and `address` and says where to connect.
 * @throws {UnknownNetworkError} `ERR_UNKNOWN_NETWORK` for a network other than tcp, tcp4, tcp6, unix.
 * @throws {InvalidAddressError} `ERR_INVALID_ADDRESS` for an address its network cannot dial.
 */
export function parseAddress(network: string, address: string): Endpoint {
  if (typeof address !== 'string') {
    throw new InvalidAddressError(`address must be a string, received ${describe(address)}`);
  }
  if (network === 'unix') {
    if (address === '' || address.includes('\0')) {
      throw new InvalidAddressError(`invalid unix socket path ${JSON.stringify(address)}`);
    }
    return { path: address };
  }
  if (URL_SCHEME.test(address)) {
    throw invalid(address, 'received a URL, expected host:port (as in "example.com:443")');
  }
  const family = typeof network === 'string' && Object.hasOwn(FAMILIES, network) ? FAMILIES[network] : undefined;
  if (family === undefined) {
    throw new UnknownNetworkError(`unknown network ${describe(network)}: expected tcp, tcp4, tcp6 or unix`);
  }
  const colon = address.lastIndexOf(':');
  if (colon < 0) throw invalid(address, 'missing port');
  let host = address.slice(0, colon);
  const portText = address.slice(colon + 1);
  if (host.startsWith('[') && host.endsWith(']')) {
    host = host.slice(1, -1);
    if (isIP(host) !== 6) throw invalid(address, 'brackets must hold an IPv6 address');
  } else if (host.includes(':')) {
    throw invalid(address, 'an IPv6 address needs brackets, as in [::1]:80');
  } else if (host === '' || (isIP(host) === 0 && !HOSTNAME.test(host))) {
    throw invalid(address, 'missing or malformed host');
  }
  if (!PORT.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw invalid(address, 'port must be a number from 1 to 65535');
  }
  const ipFamily = isIP(host);
  if (family !== 0 && ipFamily !== 0 && ipFamily !== family) {
    throw invalid(address, `not an IPv${family} address (network ${network})`);
  }
  return { host, port: Number(portText), family };
}

function invalid(address: string, why: string): InvalidAddressError {
  return new InvalidAddressError(`invalid address ${JSON.stringify(address)}: ${why}`);
}

/** Shows a received value in an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === null || value === undefined) return String(value);
  return typeof value === 'object' ? `an object (${value.constructor?.name ?? 'null prototype'})` : typeof value;
}
