import { New, ResourcePool, type PooledConn } from '../lib/index.js';
import { roundTrip, startServer, type TestServer } from './helpers/servers.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

test('S5: put() keeps the socket open and the next get() reuses it (same local port)', async () => {
  const pool = new ResourcePool({ max: 2 });
  const res = New('tcp', server.address, { pool });
  const first = await res.get();
  expect(await roundTrip(first, 'ping')).toBe('ping');
  const port = first.localPort;
  first.put();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
  const second = await res.get();
  expect(second.localPort).toBe(port);
  expect(await roundTrip(second, 'pong')).toBe('pong');
  await second.close();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
  expect(server.accepted).toBeGreaterThanOrEqual(1);
});

test('await using: leaving the block puts the connection back and the next get() reuses it', async () => {
  const pool = new ResourcePool({ max: 2 });
  const res = New('tcp', server.address, { pool });
  let port: number | undefined;
  {
    await using conn = await res.get(AbortSignal.timeout(5_000));
    expect(await roundTrip(conn, 'a')).toBe('a');
    port = conn.localPort;
  }
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });
  {
    await using conn = await res.get(AbortSignal.timeout(5_000));
    expect(conn.localPort).toBe(port);
    conn.put();
  }
  {
    await using conn: PooledConn = await res.get();
    await conn.close();
  }
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
});
