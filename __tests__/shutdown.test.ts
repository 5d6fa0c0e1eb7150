import { execFileSync } from 'node:child_process';
import { New, PoolClosedError, ResourcePool } from '../lib/index.js';
import { distIndex } from './helpers/dist.js';
import { startServer, until, type TestServer } from './helpers/servers.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

test('E7: close() closes idle sockets, rejects waiters, closes in-use ones at put(), then resolves', async () => {
  const pool = new ResourcePool({ max: 2 });
  const [a, b, c] = Array.from({ length: 3 }, () => New('tcp', server.address, { pool }));
  const idle = await a!.get();
  const inUse = await b!.get();
  idle.put();
  const holder = await a!.get(); // the idle one again: now both slots are in use
  const waiting = c!.get();
  await new Promise((resolve) => setImmediate(resolve));
  expect(pool.stats()).toMatchObject({ inUse: 2, waiting: 1 });
  holder.put();
  await waiting.then((conn) => conn.put()); // c got a's socket; it goes back idle
  const third = await c!.get();
  const queued = New('tcp', server.address, { pool }).get();
  await new Promise((resolve) => setImmediate(resolve));
  expect(pool.stats()).toMatchObject({ inUse: 2, idle: 0, waiting: 1 });

  let closed = false;
  const closing = pool.close().then(() => {
    closed = true;
  });
  expect(pool.closed).toBe(true);
  await expect(queued).rejects.toBeInstanceOf(PoolClosedError);
  await expect(queued).rejects.toMatchObject({ code: 'ERR_POOL_CLOSED' });
  await expect(New('tcp', server.address, { pool }).get()).rejects.toMatchObject({ code: 'ERR_POOL_CLOSED' });
  expect(closed).toBe(false);
  inUse.put(); // closed, not idled
  third.put();
  await closing;
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0, waiting: 0 });
  await until(() => server.sockets.size === 0, 'the server to see every socket close');
  await pool.close(); // a second call is harmless
});

test('E7: close() with idle sockets only resolves once they are closed; await using closes a pool', async () => {
  let stats;
  {
    await using pool = new ResourcePool({ max: 3 });
    const handles = Array.from({ length: 3 }, () => New('tcp', server.address, { pool }));
    const conns = await Promise.all(handles.map((res) => res.get()));
    for (const conn of conns) conn.put();
    expect(pool.stats()).toMatchObject({ idle: 3 });
    stats = pool.stats.bind(pool);
  }
  expect(stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
  await until(() => server.sockets.size === 0, 'the server to see every socket close');
});

test('E7: a shared-budget Resource put after close() is released', async () => {
  const pool = new ResourcePool({ max: 1 });
  let releases = 0;
  const resource = pool.create({ allocate: () => {}, release: () => void releases++ });
  await resource.get();
  const closing = pool.close();
  resource.put();
  await closing;
  expect(releases).toBe(1);
  await expect(resource.get()).rejects.toMatchObject({ code: 'ERR_POOL_CLOSED' });
});

test('E7: a script that uses the global pool (and one with lifetimes on) and never closes it exits by itself', () => {
  // The server is unref'd, with its accepted sockets: only the pool's own sockets could keep the child alive.
  const script = `
    import net from 'node:net';
    import { New, ResourcePool, getResourcePool } from ${JSON.stringify(distIndex)};
    const server = net.createServer((s) => { s.unref(); s.on('error', () => {}); s.pipe(s); });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    server.unref();
    const res = New('tcp', '127.0.0.1:' + server.address().port);
    for (let i = 0; i < 3; i++) {
      const conn = await res.get();
      conn.write('x');
      for await (const chunk of conn) break;
      conn.put();
    }
    // A pool with lifetimes on has its sweeper timer armed while a socket idles.
    const timed = new ResourcePool({ max: 2, idleTimeout: 60_000, maxLifetime: 60_000 });
    (await New('tcp', '127.0.0.1:' + server.address().port, { pool: timed }).get()).put();
    console.log(JSON.stringify(getResourcePool().stats()));
  `;
  const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  expect(JSON.parse(output)).toMatchObject({ inUse: 0, idle: 1 });
});
