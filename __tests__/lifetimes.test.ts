import { New, QueueFullError, ResourcePool } from '../lib/index.js';
import { drainPool } from './helpers/pool.js';
import { startServer, until, type TestServer } from './helpers/servers.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

test('E8: lifetimes are off by default: an idle socket stays idle', async () => {
  const pool = new ResourcePool({ max: 1 });
  (await New('tcp', server.address, { pool }).get()).put();
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(pool.stats()).toMatchObject({ idle: 1 });
  await drainPool(pool);
});

test('E8: idleTimeout closes a socket idle longer than that, and only that one', async () => {
  const pool = new ResourcePool({ max: 2, idleTimeout: 40 });
  const [stale, busy] = [New('tcp', server.address, { pool }), New('tcp', server.address, { pool })];
  (await stale.get()).put();
  const conn = await busy.get(); // in use: never closed for idling
  await until(() => pool.stats().idle === 0 && pool.stats().releasing === 0, 'the idle socket to time out');
  expect(pool.stats()).toMatchObject({ inUse: 1 });
  conn.put();
  expect(pool.stats()).toMatchObject({ idle: 1 });
  await until(() => pool.stats().idle === 0, 'the second socket to time out');
  await pool.close();
});

test('E8: a socket reused before its idleTimeout is not closed', async () => {
  const pool = new ResourcePool({ max: 1, idleTimeout: 200 });
  const res = New('tcp', server.address, { pool });
  const first = await res.get();
  const port = first.localPort;
  first.put();
  for (let i = 0; i < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const conn = await res.get();
    expect(conn.localPort).toBe(port);
    conn.put();
  }
  await pool.close();
});

test('E8: maxLifetime closes a connection at its first put() past that age, and an idle one when it reaches it', async () => {
  const pool = new ResourcePool({ max: 2, maxLifetime: 60 });
  const res = New('tcp', server.address, { pool });
  const old = await res.get();
  await new Promise((resolve) => setTimeout(resolve, 80));
  old.put();
  await until(() => pool.stats().releasing === 0);
  expect(pool.stats()).toMatchObject({ idle: 0, inUse: 0 });
  (await res.get()).put(); // young: kept
  expect(pool.stats()).toMatchObject({ idle: 1 });
  await until(() => pool.stats().idle === 0 && pool.stats().releasing === 0, 'the idle one to reach its lifetime');
  await pool.close();
});

test('E8: maxWaiting sheds load: a get() that would wait beyond it rejects at once with ERR_QUEUE_FULL', async () => {
  const pool = new ResourcePool({ max: 1, maxWaiting: 2 });
  const holder = await New('tcp', server.address, { pool }).get();
  const waiters = [New('tcp', server.address, { pool }).get(), New('tcp', server.address, { pool }).get()];
  const shed = New('tcp', server.address, { pool }).get();
  await expect(shed).rejects.toBeInstanceOf(QueueFullError);
  await expect(shed).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' });
  expect(pool.stats()).toMatchObject({ waiting: 2, inUse: 1 });
  holder.put();
  for (const waiter of waiters) (await waiter).put();
  const zero = new ResourcePool({ max: 1, maxWaiting: 0 });
  const only = await New('tcp', server.address, { pool: zero }).get();
  await expect(New('tcp', server.address, { pool: zero }).get()).rejects.toMatchObject({ code: 'ERR_QUEUE_FULL' });
  await only.close();
  await Promise.all([pool.close(), zero.close()]);
});

test.each([
  [{ idleTimeout: -1 }, RangeError],
  [{ maxLifetime: Number.NaN }, RangeError],
  [{ idleTimeout: '5' }, TypeError],
  [{ maxWaiting: 1.5 }, RangeError],
  [{ maxWaiting: -1 }, RangeError],
])('E8: new ResourcePool(%p) throws %p', (options, errorClass) => {
  expect(() => new ResourcePool({ max: 1, ...(options as object) })).toThrow(errorClass);
});
