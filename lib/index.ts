export { New, ConnResource, type ConnResourceOptions } from './conn-resource.js';
import { PooledConn as Conn } from './conn.js';
/**
 * A pooled network connection, as `ConnResource#get()` hands it out: a
 * `stream.Duplex` over a socket the pool owns, with `put()`, `close()` and
 * what Go's `net.Conn` offers (addresses, timeouts, TLS peer certificate).
 */
export type PooledConn = Conn;
/**
 * The class of pooled connections, for `instanceof`. Connections come from
 * `ConnResource#get()`: the constructor is not part of the public types
 * (`new PooledConn()` is a type error).
 */
export const PooledConn: abstract new (...args: never) => Conn = Conn;
export {
  createConnection,
  park,
  unpark,
  type CreateConnectionOptions,
  type CreateTlsConnectionOptions,
  type SocketPoolOptions,
} from './socket.js';
export { getResourcePool, ResourcePool, type PoolStats, type ResourcePoolOptions } from './pool.js';
export { Resource, type AllocateReleaser } from './resource.js';
export { connectionLimit } from './limits.js';
export type { Network } from './address.js';
export { netDialer, type Dialer, type NetDialerOptions } from './dialers/net.js';
export { tlsDialer, type TlsDialerOptions } from './dialers/tls.js';
export {
  ConnpoolError,
  ConnInUseError,
  ConnReleasedError,
  InvalidAddressError,
  isTimeout,
  PoolClosedError,
  QueueFullError,
  ResourceLimitExceededError,
  UnknownNetworkError,
} from './errors.js';
