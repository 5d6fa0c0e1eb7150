import type net from 'node:net';
import { New, ResourcePool } from '../lib/index.js';
import { drainPool } from './helpers/pool.js';
import { roundTrip, startServer, until, type TestServer } from './helpers/servers.js';

let server: TestServer;
let pool: ResourcePool;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());
beforeEach(() => {
  pool = new ResourcePool({ max: 4 });
});
afterEach(async () => {
  expect(pool.stats()).toMatchObject({ inUse: 0, releasing: 0, waiting: 0 });
  await drainPool(pool);
});

/** The server side of the one connection the server has open. */
function onlyServerSocket(): net.Socket {
  expect(server.sockets.size).toBe(1);
  return [...server.sockets][0]!;
}

describe('E1: an idle socket is dropped, never handed out, when the peer', () => {
  const faults: Array<[string, (socket: net.Socket) => void]> = [
    ['closes it', (socket) => socket.end()],
    ['resets it', (socket) => socket.resetAndDestroy()],
    ['sends unsolicited bytes on it', (socket) => socket.write('surprise')],
  ];
  test.each(faults)('%s', async (_, fault) => {
    await until(() => server.sockets.size === 0, 'earlier connections to close');
    const res = New('tcp', server.address, { pool });
    const conn = await res.get();
    const port = conn.localPort;
    expect(await roundTrip(conn, 'hi')).toBe('hi');
    conn.put();
    expect(pool.stats()).toMatchObject({ idle: 1 });
    fault(onlyServerSocket());
    await until(() => pool.stats().idle === 0 && pool.stats().releasing === 0, 'the idle socket to be dropped');
    const next = await res.get();
    expect(next.localPort).not.toBe(port);
    expect(await roundTrip(next, 'fresh')).toBe('fresh');
    next.put();
  });
});

test('each get() hands out a fresh PooledConn: no listener of the previous user carries over', async () => {
  const res = New('tcp', server.address, { pool });
  const conn = await res.get();
  conn.on('data', () => {});
  conn.put();
  expect(conn.listenerCount('data')).toBe(1);
  const again = await res.get();
  expect(again.listenerCount('data')).toBe(0);
  expect(await roundTrip(again, 'ok')).toBe('ok');
  again.put();
});

test('E4: a handle prefers its own idle socket, then the most recently used one of its key', async () => {
  const [a, b, c, d, e] = Array.from({ length: 5 }, () => New('tcp', server.address, { pool }));
  const [connA, connB, connC] = await Promise.all([a!.get(), b!.get(), c!.get()]);
  const ports = { a: connA.localPort, b: connB.localPort, c: connC.localPort };
  connA.put();
  connC.put();
  connB.put(); // most recently used
  const again = await a!.get();
  expect(again.localPort).toBe(ports.a);
  const warm = await d!.get();
  expect(warm.localPort).toBe(ports.b);
  const next = await e!.get();
  expect(next.localPort).toBe(ports.c);
  expect(pool.stats()).toMatchObject({ inUse: 3, idle: 0 });
  for (const conn of [again, warm, next]) conn.put();
});
