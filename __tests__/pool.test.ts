import { New, netDialer, ResourcePool, type Dialer, type PoolStats } from '../lib/index.js';
import {
  openSocketFds,
  refusedAddress,
  roundTrip,
  startChildServers,
  startServer,
  until,
  type TestServer,
} from './helpers/servers.js';
import { drainPool } from './helpers/pool.js';

test('S1: never more than max sockets open, counted in /proc/self/fd, under waiting and eviction', async () => {
  const servers = await startChildServers(4);
  const max = 5;
  const pool = new ResourcePool({ max });
  const baseline = openSocketFds();
  let peakFds = 0;
  let worstSum = 0;
  const sample = (): void => {
    peakFds = Math.max(peakFds, openSocketFds() - baseline);
    const { inUse, idle, releasing } = pool.stats();
    worstSum = Math.max(worstSum, inUse + idle + releasing);
  };
  const sampler = setInterval(sample, 1);
  let roundTrips = 0;
  await Promise.all(
    Array.from({ length: 24 }, async (_, task) => {
      const res = New('tcp', servers.addresses[task % 4]!, { pool });
      for (let i = 0; i < 15; i++) {
        const conn = await res.get();
        sample();
        expect(await roundTrip(conn, `task ${task} trip ${i}`)).toBe(`task ${task} trip ${i}`);
        roundTrips++;
        if (i % 5 === 4) await conn.close();
        else conn.put();
      }
    }),
  );
  clearInterval(sampler);
  sample();
  expect(roundTrips).toBe(24 * 15);
  expect(peakFds).toBeGreaterThan(0);
  expect(peakFds).toBeLessThanOrEqual(max);
  expect(worstSum).toBeLessThanOrEqual(max);
  expect(pool.stats()).toMatchObject({ inUse: 0, releasing: 0, waiting: 0 });
  expect(openSocketFds() - baseline).toBe(pool.stats().idle);
  await drainPool(pool);
  expect(openSocketFds()).toBe(baseline);
  await servers.close();
});

describe('with three echo servers', () => {
  const servers: TestServer[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 3; i++) servers.push(await startServer());
  });
  afterAll(() => Promise.all(servers.map((server) => server.close())));

  test('S4: a new dial into a pool full of idle sockets first closes the least recently used one', async () => {
    const pool = new ResourcePool({ max: 2 });
    const statsAtDial: PoolStats[] = [];
    const recording: Dialer = {
      key: 'net',
      dial(network, address, signal) {
        statsAtDial.push(pool.stats());
        return netDialer().dial(network, address, signal);
      },
    };
    const [a, b, c] = servers.map((server) => New('tcp', server.address, { pool }));
    const connA = await a!.get(undefined, recording);
    const connB = await b!.get(undefined, recording);
    const portB = connB.localPort;
    connA.put(); // least recently used
    connB.put();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 2 });
    const connC = await c!.get(undefined, recording);
    // The evicted socket was closed before the new dial began: one idle (B) and the caller's slot.
    expect(statsAtDial[2]).toMatchObject({ inUse: 1, idle: 1, releasing: 0 });
    await until(() => servers[0]!.sockets.size === 0, "the server to see A's socket close");
    expect(servers[1]!.sockets.size).toBe(1);
    connC.put();
    const again = await b!.get();
    expect(again.localPort).toBe(portB);
    again.put();
    expect(statsAtDial).toHaveLength(3);
    await drainPool(pool);
  });

  test('S5: close() frees the slot at once for a waiter', async () => {
    const pool = new ResourcePool({ max: 1 });
    const holder = await New('tcp', servers[0]!.address, { pool }).get();
    const waiter = New('tcp', servers[1]!.address, { pool }).get();
    await holder.close();
    const conn = await waiter;
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0, releasing: 0 });
    expect(await roundTrip(conn, 'after close')).toBe('after close');
    await conn.close();
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
  });
});

test('S9: a failed dial rejects with the dialer error and frees the slot', async () => {
  const pool = new ResourcePool({ max: 1 });
  const res = New('tcp', await refusedAddress(), { pool });
  await expect(res.get()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
  await expect(res.get(undefined, 1_000)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  expect(pool.stats()).toMatchObject({ inUse: 0 });
});

describe('ResourcePool#create: a budget shared with other packages', () => {
  test('get() allocates once; put() keeps the allocation for the next get()', async () => {
    const pool = new ResourcePool({ max: 1 });
    let allocations = 0;
    let releases = 0;
    const resource = pool.create({
      allocate: () => void allocations++,
      release: () => void releases++,
    });
    await resource.get();
    resource.put();
    await resource.get();
    expect(allocations).toBe(1);
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0 });
    await expect(resource.get()).rejects.toMatchObject({ code: 'ERR_CONN_IN_USE' });
    resource.put();
    expect(() => resource.put()).toThrow(expect.objectContaining({ code: 'ERR_CONN_RELEASED' }));
    await resource.release();
    expect(releases).toBe(1);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
  });

  test('a throwing allocate() makes get() reject with its error and frees the slot', async () => {
    const pool = new ResourcePool({ max: 1 });
    const failure = new Error('no file');
    const resource = pool.create({
      allocate: () => {
        throw failure;
      },
      release: () => {},
    });
    await expect(resource.get()).rejects.toBe(failure);
    expect(pool.stats()).toMatchObject({ inUse: 0 });
    const rejecting = pool.create({ allocate: () => Promise.reject(failure), release: () => {} });
    await expect(rejecting.get()).rejects.toBe(failure);
    expect(pool.stats()).toMatchObject({ inUse: 0 });
  });

  test('a throwing release() makes release() reject with its error and frees the slot', async () => {
    const pool = new ResourcePool({ max: 1 });
    const failure = new Error('close failed');
    const resource = pool.create({ allocate: () => {}, release: () => Promise.reject(failure) });
    await resource.get();
    await expect(resource.release()).rejects.toBe(failure);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
    resource.put(); // put() after release() does nothing
    await resource.get();
    resource.put();
    await expect(resource.release()).rejects.toBe(failure);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0, releasing: 0 });
  });

  test('scheduleRelease() releases an idle resource now and one in use at its put()', async () => {
    const pool = new ResourcePool({ max: 2 });
    let releases = 0;
    const resource = pool.create({ allocate: () => {}, release: () => void releases++ });
    await resource.get();
    await resource.scheduleRelease();
    expect(releases).toBe(0);
    resource.put();
    await until(() => releases === 1);
    expect(pool.stats()).toMatchObject({ inUse: 0, idle: 0 });
    await resource.get();
    resource.put();
    await resource.scheduleRelease();
    expect(releases).toBe(2);
    expect(pool.stats()).toMatchObject({ idle: 0, releasing: 0 });
  });

  test('an idle shared resource is evicted to make room for a connection', async () => {
    const server = await startServer();
    const pool = new ResourcePool({ max: 1 });
    let releases = 0;
    const resource = pool.create({ allocate: () => {}, release: () => void releases++ });
    await resource.get();
    resource.put();
    const conn = await New('tcp', server.address, { pool }).get();
    expect(releases).toBe(1);
    expect(pool.stats()).toMatchObject({ inUse: 1, idle: 0 });
    await conn.close();
    await server.close();
  });
});

