import { getEventListeners } from 'node:events';
import { New, ResourcePool, ResourceLimitExceededError, type PooledConn } from '../lib/index.js';
import { gc } from './helpers/gc.js';
import { drainPool } from './helpers/pool.js';
import { startServer, type TestServer } from './helpers/servers.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.close());

/** A pool of `max` slots, all taken by connections to the echo server. */
async function fullPool(max: number): Promise<{ pool: ResourcePool; held: PooledConn[] }> {
  const pool = new ResourcePool({ max });
  const held = await Promise.all(Array.from({ length: max }, () => New('tcp', server.address, { pool }).get()));
  expect(pool.stats()).toMatchObject({ inUse: max, waiting: 0 });
  return { pool, held };
}

test('S2: get() waits while every slot is in use and is served first come, first served', async () => {
  const { pool, held } = await fullPool(1);
  const order: number[] = [];
  const waiters = [0, 1, 2, 3, 4].map((i) =>
    New('tcp', server.address, { pool })
      .get()
      .then((conn) => {
        order.push(i);
        return conn;
      }),
  );
  await new Promise((resolve) => setImmediate(resolve));
  expect(pool.stats().waiting).toBe(5);
  held[0]!.put();
  for (const waiter of waiters) (await waiter).put();
  expect(order).toEqual([0, 1, 2, 3, 4]);
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1, waiting: 0 });
  await drainPool(pool);
});

test('S2: a get() made while others wait queues behind them, even right after a slot frees (no barging)', async () => {
  const { pool, held } = await fullPool(1);
  const order: string[] = [];
  const first = New('tcp', server.address, { pool }).get().then((conn) => (order.push('waiter'), conn));
  await new Promise((resolve) => setImmediate(resolve));
  held[0]!.put();
  const late = New('tcp', server.address, { pool }).get().then((conn) => (order.push('late'), conn));
  (await first).put();
  (await late).put();
  expect(order).toEqual(['waiter', 'late']);
  await drainPool(pool);
});

test('S2: a signal that aborts while waiting rejects with ERR_RESOURCE_LIMIT_EXCEEDED, cause = its reason', async () => {
  const { pool, held } = await fullPool(1);
  const controller = new AbortController();
  const waiting = New('tcp', server.address, { pool }).get(controller.signal);
  await new Promise((resolve) => setImmediate(resolve));
  expect(pool.stats().waiting).toBe(1);
  const reason = new Error('deadline');
  controller.abort(reason);
  await expect(waiting).rejects.toBeInstanceOf(ResourceLimitExceededError);
  await expect(waiting).rejects.toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED', cause: reason });
  expect(pool.stats()).toMatchObject({ waiting: 0, inUse: 1 });
  expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  await held[0]!.close();
});

test('S2: AbortSignal.timeout() works as the signal', async () => {
  const { pool, held } = await fullPool(1);
  const signal = AbortSignal.timeout(20);
  const error: unknown = await New('tcp', server.address, { pool }).get(signal).catch((e: unknown) => e);
  expect(error).toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED' });
  expect((error as Error).cause).toMatchObject({ name: 'TimeoutError' });
  expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  await held[0]!.close();
});

test('S2: AbortSignal.abort() gets a connection only if no wait is needed', async () => {
  const pool = new ResourcePool({ max: 1 });
  const res = New('tcp', server.address, { pool });
  const dialed = await res.get(AbortSignal.abort()); // a free slot: the dial is not a wait
  const port = dialed.localPort;
  dialed.put();
  const conn = await res.get(AbortSignal.abort()); // an idle connection
  expect(conn.localPort).toBe(port);
  expect(conn.isOut).toBe(true);
  const other = New('tcp', server.address, { pool });
  await expect(other.get(AbortSignal.abort())).rejects.toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED' });
  expect(pool.stats()).toMatchObject({ waiting: 0, inUse: 1 });
  await conn.close();
});

test('S3: with no signal get() waits as long as it takes, then gets the freed slot', async () => {
  const { pool, held } = await fullPool(2);
  let settled = false;
  const waiting = New('tcp', server.address, { pool })
    .get()
    .finally(() => {
      settled = true;
    });
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(settled).toBe(false);
  expect(pool.stats().waiting).toBe(1);
  held[1]!.put();
  const conn = await waiting;
  expect(pool.stats()).toMatchObject({ inUse: 2, idle: 0, waiting: 0 });
  await Promise.all([conn.close(), held[0]!.close()]);
});

test('the slot queue: 10,000 gets aborted while waiting leave no waiter, no listener, and no memory held', async () => {
  const { pool, held } = await fullPool(1);
  const handles = new Set<WeakRef<object>>();
  const signals: AbortSignal[] = [];
  const live = New('tcp', server.address, { pool }).get();
  for (let round = 0; round < 10; round++) {
    const controllers: AbortController[] = [];
    const rejections: Promise<unknown>[] = [];
    for (let i = 0; i < 1_000; i++) {
      const controller = new AbortController();
      const res = New('tcp', server.address, { pool });
      handles.add(new WeakRef(res));
      controllers.push(controller);
      signals.push(controller.signal);
      rejections.push(res.get(controller.signal).catch((error: unknown) => error));
    }
    expect(pool.stats().waiting).toBe(1_001);
    for (const controller of controllers) controller.abort();
    expect(pool.stats().waiting).toBe(1);
    for (const error of await Promise.all(rejections)) expect(error).toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED' });
  }
  expect(signals.every((signal) => getEventListeners(signal, 'abort').length === 0)).toBe(true);
  // The slot is still held: the queue must not keep the aborted callers (or their handles) alive.
  await gc();
  const alive = [...handles].filter((ref) => ref.deref() !== undefined).length;
  expect(alive).toBeLessThan(100);
  held[0]!.put();
  (await live).put();
  expect(pool.stats()).toMatchObject({ waiting: 0, inUse: 0, idle: 1 });
  await drainPool(pool);
});

test('one long-lived signal shared by many waiters carries one listener, and none once they settle', async () => {
  const { pool, held } = await fullPool(1);
  const controller = new AbortController();
  const waiting = Array.from({ length: 50 }, () => New('tcp', server.address, { pool }).get(controller.signal));
  expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
  held[0]!.put();
  for (const conn of waiting) (await conn).put();
  expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  await drainPool(pool);
});


test("a waiter whose allocate() aborts its own signal is seated, and the waiter behind it is served later: the queue lets go of a waiter before running the caller's code", async () => {
  const pool = new ResourcePool({ max: 1 });
  const own = new AbortController();
  const holder = pool.create({ async allocate() {}, async release() {} });
  const aborter = pool.create({
    allocate() {
      own.abort(new Error('aborted from inside allocate()'));
      return Promise.resolve();
    },
    async release() {},
  });
  const next = pool.create({ async allocate() {}, async release() {} });
  await holder.get();
  const first = aborter.get(own.signal).then(
    () => 'seated',
    (error: { code?: string }) => error.code,
  );
  const second = next.get().then(() => 'seated');
  await holder.release();
  expect(await first).toBe('seated');
  expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 1, waitsGivenUp: 0 });
  await aborter.release();
  expect(await second).toBe('seated');
  expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 0 });
  await next.release();
  await pool.close();
});
