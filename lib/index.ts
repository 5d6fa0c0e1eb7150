export { New, ConnResource, type ConnResourceOptions } from './conn-resource.js';
export { PooledConn } from './conn.js';
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
