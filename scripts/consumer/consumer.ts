// What a user's project compiles against connpool's published types (see
// scripts/consumer-check.mjs). It imports every export of every entry point:
// the check fails when an export is missing here. Type-checked only, never run.
import http from 'node:http';
import {
  ConnInUseError,
  ConnpoolError,
  ConnReleasedError,
  ConnResource,
  connectionLimit,
  createConnection,
  getResourcePool,
  InvalidAddressError,
  isTimeout,
  netDialer,
  New,
  park,
  PoolClosedError,
  PooledConn,
  QueueFullError,
  Resource,
  ResourceLimitExceededError,
  ResourcePool,
  tlsDialer,
  UnknownNetworkError,
  unpark,
  type AllocateReleaser,
  type ConnResourceOptions,
  type CreateConnectionOptions,
  type CreateTlsConnectionOptions,
  type SocketPoolOptions,
  type Dialer,
  type NetDialerOptions,
  type Network,
  type PoolStats,
  type ResourcePoolOptions,
  type TlsDialerOptions,
} from 'connpool';
import { HttpAgent, HttpsAgent, type HttpAgentOptions, type HttpsAgentOptions, type PoolAgentOptions } from 'connpool/http';
import { createDispatcher, type DispatcherOptions, type FetchDispatcher } from 'connpool/undici';
import { fetch as undiciFetch, request, setGlobalDispatcher, type Dispatcher } from 'undici';

export async function core(): Promise<string> {
  const options: ResourcePoolOptions = { max: 4, name: 'private', idleTimeout: 1_000, maxWaiting: 10 };
  await using pool = new ResourcePool(options);
  const network: Network = 'tcp';
  const resOptions: ConnResourceOptions = { pool };
  const res: ConnResource = New(network, '127.0.0.1:7', resOptions);
  const netOptions: NetDialerOptions = { timeout: 1_000, noDelay: true };
  const tlsOptions: TlsDialerOptions = { timeout: 1_000, poolKey: 'internal', rejectUnauthorized: true };
  const dialers: Dialer[] = [netDialer(netOptions), tlsDialer(tlsOptions)];
  {
    await using conn = await res.get(AbortSignal.timeout(1_000), dialers[0]);
    const isConn: boolean = conn instanceof PooledConn;
    conn.write('PING\n');
    if (!isConn || conn.reused) await conn.close();
  }
  const reply: number = await res.use(async (conn: PooledConn) => conn.remotePort ?? 0, undefined, 500);
  const releaser: AllocateReleaser = { allocate() {}, release() {} };
  const resource: Resource = getResourcePool().create(releaser);
  await resource.get();
  resource.put();
  await resource.release();
  const stats: PoolStats = pool.stats();
  return `${reply} ${stats.inUse}/${stats.max} of ${connectionLimit()}`;
}

export function sockets(pool: ResourcePool): boolean {
  const budget: SocketPoolOptions = { pool, acquireTimeout: 1_000 };
  const plain: CreateConnectionOptions = { ...budget, host: '127.0.0.1', port: 7, connectTimeout: 500 };
  const secure: CreateTlsConnectionOptions = { ...budget, host: '127.0.0.1', port: 443, tls: { rejectUnauthorized: true } };
  const socket = createConnection(plain, () => socket.write('PING\n'));
  const tlsSocket = createConnection(secure);
  const isParked: boolean = park(socket, () => socket.removeAllListeners('data'));
  tlsSocket.destroy();
  return isParked && unpark(socket);
}

export function errors(error: unknown): string {
  if (isTimeout(error)) return 'timeout';
  if (error instanceof ResourceLimitExceededError) return error.code;
  if (error instanceof ConnInUseError || error instanceof ConnReleasedError) return error.code;
  if (error instanceof InvalidAddressError || error instanceof UnknownNetworkError) return error.code;
  if (error instanceof PoolClosedError || error instanceof QueueFullError) return error.code;
  return error instanceof ConnpoolError ? error.code : 'other';
}

export async function adapters(): Promise<void> {
  const poolOptions: PoolAgentOptions = { acquireTimeout: 5_000 };
  const httpOptions: HttpAgentOptions = { ...poolOptions, connectTimeout: 2_000 };
  const httpsOptions: HttpsAgentOptions = { ...poolOptions, rejectUnauthorized: true };
  const agent = new HttpAgent(httpOptions);
  const tlsAgent = new HttpsAgent(httpsOptions);
  http.get('http://127.0.0.1:9/', { agent }, (res) => res.resume());
  agent.destroy();
  tlsAgent.destroy();

  const dispatcherOptions: DispatcherOptions = { acquireTimeout: 5_000 };
  const dispatcher = createDispatcher(dispatcherOptions);
  const asUndici: Dispatcher = dispatcher;
  await request('http://127.0.0.1:9/', { dispatcher: asUndici });
  await undiciFetch('http://127.0.0.1:9/', { dispatcher });
  setGlobalDispatcher(dispatcher);
  // Node's global fetch is typed by @types/node's undici-types, not undici 7: a FetchDispatcher is both.
  const forFetch: FetchDispatcher = dispatcher;
  await fetch('http://127.0.0.1:9/', { dispatcher: forFetch });
  await dispatcher.close();
}

export function internals(): void {
  // Connections come from get(); resources from create(); the global pool's
  // budget is not an argument. None of these may type-check.
  // @ts-expect-error PooledConn has no public constructor
  new PooledConn();
  // @ts-expect-error Resource's constructor is private
  new Resource();
  // @ts-expect-error Resource's constructor is private, whatever the arguments
  new Resource(getResourcePool(), { allocate() {}, release() {} });
  // @ts-expect-error ResourcePool takes its options only
  new ResourcePool({ max: 1 }, {});
  // @ts-expect-error ResourcePool takes its options only
  new ResourcePool({ max: 1 }, undefined);
}
