// One test per defect reproduced in shared/repros (and the allocate/release
// overlap of E13 that has no script), each asserting what the contract
// promises instead. Cases that jest cannot observe in its own process (an
// exception thrown from stream internals on a later tick, an unhandled
// rejection, garbage collection, a process out of descriptors) run in a child
// process: helpers/regressions-child.mjs, against the built dist/.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Socket } from 'node:net';
import {
  ConnReleasedError,
  InvalidAddressError,
  New,
  netDialer,
  ResourceLimitExceededError,
  ResourcePool,
  tlsDialer,
  type Dialer,
  type Resource,
  type ResourcePoolOptions,
} from '../lib/index.js';
import { runScript, type ChildOptions } from './helpers/child.js';
import { deferred, eventually, invariantsBroken, outcome, thrownBy, within } from './helpers/regressions.js';
import { startServer, type TestServer } from './helpers/servers.js';

const QUIET = { inUse: 0, idle: 0, releasing: 0, waiting: 0 };

/** Pools and servers a test opened, closed after it whether it passed or not. */
const pools: ResourcePool[] = [];
const servers: TestServer[] = [];
afterEach(async () => {
  // A failed test may leave a pool that never closes: give up on it rather than hang the run.
  await Promise.all(pools.splice(0).map((pool) => within(pool.close(), 'pool.close()', 1_000).catch(() => {})));
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

function newPool(options: ResourcePoolOptions): ResourcePool {
  const pool = new ResourcePool(options);
  pools.push(pool);
  return pool;
}

async function newServer(handler?: (socket: Socket) => void): Promise<TestServer> {
  const server = await startServer(handler);
  servers.push(server);
  return server;
}

/** What a child scenario reports: its other fields, and every uncaught exception or unhandled rejection. */
type ChildReport<T> = T & { crashes: string[]; hung?: true };

function runChild<T>(scenario: string, options: ChildOptions = {}): Promise<ChildReport<T>> {
  return runScript<ChildReport<T>>('regressions-child.mjs', [scenario], { ...options, env: { NODE_DEBUG: '', ...options.env } });
}

interface ErrorReport {
  name: string;
  code?: string;
  message: string;
}

test('E10: a slow for-await reader gets every byte the peer sent, in order, then EOF', async () => {
  const server = await newServer(async (socket) => {
    for (const part of 'ABCD') {
      socket.write(part);
      await sleep(20);
    }
    socket.end();
  });
  const pool = newPool({ max: 1 });
  const conn = await New('tcp', server.address, { pool }).get();
  const reading = (async () => {
    let received = '';
    for await (const chunk of conn) {
      received += String(chunk);
      await sleep(100); // a consumer slower than the peer
    }
    return received;
  })();
  expect(await within(reading, 'reading to EOF', 5_000)).toBe('ABCD');
  conn.put(); // ended by the peer: closed, not idled
  await within(pool.close(), 'pool.close()');
  expect(pool.stats()).toMatchObject(QUIET);
});

test('E9: a connection dropped after reading to EOF, or after setTimeout(n) then setTimeout(0), is reclaimed with a CONNPOOL_LEAK warning', async () => {
  type Pair<T> = { eof: T; timeout: T };
  const report = await runChild<{
    received: string;
    warnings: string[];
    stats: Pair<Record<string, number>>;
    closed: Pair<string>;
    serverOpen: Pair<number>;
  }>('leaks', { nodeFlags: ['--expose-gc'] });
  expect(report.hung).toBeUndefined();
  expect(report.crashes).toEqual([]);
  expect(report.received).toBe('bye\n');
  expect(report.stats).toEqual({ eof: expect.objectContaining(QUIET), timeout: expect.objectContaining(QUIET) });
  expect(report.warnings.filter((code) => code === 'CONNPOOL_LEAK')).toHaveLength(2);
  expect(report.closed).toEqual({ eof: 'closed', timeout: 'closed' });
  expect(report.serverOpen).toEqual({ eof: 0, timeout: 0 });
});

test('E10: a flowing connection (resume() or pipe()) that is closed stops flowing: nothing is thrown from stream internals later', async () => {
  interface Report {
    stats: Record<string, number>;
    again: string | ErrorReport;
    closed: string;
    serverOpen: number;
  }
  const [resumed, piped] = await Promise.all([runChild<Report>('resumeThenClose'), runChild<Report>('pipeThenClose')]);
  expect({ resumed: resumed.crashes, piped: piped.crashes }).toEqual({ resumed: [], piped: [] });
  for (const report of [resumed, piped]) {
    expect(report.hung).toBeUndefined();
    expect(report.stats).toMatchObject(QUIET);
    expect(report.again).toBe('resolved'); // the handle can get() again
    expect(report.closed).toBe('closed');
    expect(report.serverOpen).toBe(0);
  }
});

test("E10: a piped connection put() while its sink is slow is not resumed by the sink's later 'drain'", async () => {
  const report = await runChild<{ sunk: string; stats: Record<string, number>; closed: string; serverOpen: number }>(
    'pipeDrainAfterPut',
  );
  expect(report.hung).toBeUndefined();
  expect(report.crashes).toEqual([]);
  expect(report.sunk).toBe('reply');
  expect(report.stats).toMatchObject({ inUse: 0, waiting: 0 });
  expect(report.closed).toBe('closed');
  expect(report.serverOpen).toBe(0);
});

/**
 * Two resources on a pool of 1: `a` got and put (idle, still allocated), `b`
 * waiting for the slot, then `a.get()` queued behind `b`; right then, in the
 * same tick, `misuse(a)`. Returns what it returned, the stats just before and
 * just after it, and `finish()`, which serves both gets, lets both go and
 * checks that every count comes back to zero.
 */
async function misuseDuringOwnGet<T>(misuse: (a: Resource) => T) {
  const pool = newPool({ max: 1 });
  const broken: string[] = [];
  const watch = (): void => void broken.push(...invariantsBroken(pool.stats()));
  const make = () => pool.create({ allocate: watch, release: watch });
  const a = make();
  const b = make();
  await a.get();
  const bGot = b.get(); // waits: the pool is full
  a.put(); // idle and allocated; the admission of b comes later
  const aGot = a.get(); // someone waits, so a queues behind b
  aGot.catch(() => {}); // awaited in finish()
  const before = pool.stats();
  const result = misuse(a);
  const after = pool.stats();
  const finish = async (): Promise<void> => {
    await within(bGot, 'b.get()');
    watch();
    b.put();
    await within(aGot, "a's own get()");
    watch();
    a.put();
    await within(Promise.all([a.release(), b.release()]), 'release()');
    expect(broken).toEqual([]);
    expect(pool.stats()).toMatchObject(QUIET);
    await within(pool.close(), 'pool.close()');
  };
  return { before, after, result, finish };
}

test('E13: put() of a Resource while its own get() is pending throws ERR_CONN_RELEASED and leaves the counters untouched', async () => {
  const { before, after, result: error, finish } = await misuseDuringOwnGet((a) => thrownBy(() => a.put()));
  expect(after).toEqual(before);
  expect(error).toBeInstanceOf(ConnReleasedError);
  expect(error).toMatchObject({ code: 'ERR_CONN_RELEASED' });
  await finish();
});

test('E13: release() of a Resource while its own get() is pending rejects with ERR_CONN_RELEASED and leaves the counters untouched', async () => {
  const { before, after, result, finish } = await misuseDuringOwnGet((a) => outcome(a.release()));
  const error = await within(result, 'release()');
  expect(after).toEqual(before);
  expect(error).toBeInstanceOf(ConnReleasedError);
  expect(error).toMatchObject({ code: 'ERR_CONN_RELEASED' });
  await finish();
});

test('E11: an aborted TLS dial to a peer that never answers is bounded by orphanTimeout, and pool.close() aborts dials in flight', async () => {
  // Accepts TCP and reads (so that it sees the client's FIN), never answers the handshake.
  const silent = await newServer((socket) => socket.resume());
  const dialer = tlsDialer();

  // close() with a kept orphan (E3) and a get() waiting on its own dial.
  const pool = newPool({ max: 2 });
  const signal = AbortSignal.timeout(50);
  const aborted = await within(outcome(New('tcp', silent.address, { pool }).get(signal, dialer)), 'the aborted get()');
  expect(aborted).toBe(signal.reason);
  const dialing = outcome(New('tcp', silent.address, { pool }).get(undefined, dialer));
  await eventually(() => silent.accepted === 2, 'both dials to reach the server');
  await within(pool.close(), 'pool.close() with dials in flight');
  expect(await within(dialing, 'the get() waiting on its dial')).toMatchObject({ code: 'ERR_POOL_CLOSED' });
  expect(pool.stats()).toMatchObject(QUIET);
  await eventually(() => silent.sockets.size === 0, 'the server to see every dial closed');

  // The kept orphan gives its slot back orphanTimeout ms after its caller gave up, without close().
  const bounded = newPool({ max: 1, orphanTimeout: 200 });
  const early = AbortSignal.timeout(50);
  expect(await within(outcome(New('tcp', silent.address, { pool: bounded }).get(early, dialer)), 'the aborted get()')).toBe(
    early.reason,
  );
  await eventually(() => bounded.stats().inUse === 0 && bounded.stats().releasing === 0, 'the orphan dial to be aborted');
  await eventually(() => silent.sockets.size === 0, 'the server to see the orphan dial closed');
  expect(bounded.stats()).toMatchObject(QUIET);
  await within(bounded.close(), 'pool.close()');
});

/** A pool of 1 whose only slot is held by an idle Resource whose release() (the eviction) runs until `finishRelease()`. */
async function poolWithSlowEviction() {
  const pool = newPool({ max: 1 });
  const releaseDone = deferred();
  let releases = 0;
  const slow = pool.create({
    allocate: () => {},
    release: () => {
      releases++;
      return releaseDone.promise;
    },
  });
  await slow.get();
  slow.put(); // idle: the one evicted to make room
  return { pool, finishRelease: () => releaseDone.resolve(), releases: () => releases };
}

test('E11: ConnResource#get() waiting for an eviction to finish rejects with ERR_RESOURCE_LIMIT_EXCEEDED when its signal aborts', async () => {
  const server = await newServer();
  const { pool, finishRelease, releases } = await poolWithSlowEviction();
  const res = New('tcp', server.address, { pool });
  const signal = AbortSignal.timeout(50);
  let error: unknown;
  try {
    error = await within(outcome(res.get(signal), (conn) => conn.put()), 'get() waiting on the eviction');
    expect(releases()).toBe(1); // the eviction is still in progress
  } finally {
    finishRelease();
  }
  expect(error).toBeInstanceOf(ResourceLimitExceededError);
  expect(error).toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED' });
  expect((error as Error).cause).toBe(signal.reason);
  // The slot the eviction frees is not lost.
  await eventually(() => pool.stats().releasing === 0, 'the eviction to finish');
  expect(pool.stats()).toMatchObject(QUIET);
  (await within(res.get(), 'get() after the eviction')).put();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1, releasing: 0, waiting: 0 });
  await within(pool.close(), 'pool.close()');
});

test('E11: Resource#get() waiting for an eviction to finish rejects with ERR_RESOURCE_LIMIT_EXCEEDED when its signal aborts', async () => {
  const { pool, finishRelease, releases } = await poolWithSlowEviction();
  const other = pool.create({ allocate: () => {}, release: () => {} });
  const signal = AbortSignal.timeout(50);
  let error: unknown;
  try {
    error = await within(
      outcome(other.get(signal), () => other.put()),
      'Resource#get() waiting on the eviction',
    );
    expect(releases()).toBe(1);
  } finally {
    finishRelease();
  }
  expect(error).toBeInstanceOf(ResourceLimitExceededError);
  expect(error).toMatchObject({ code: 'ERR_RESOURCE_LIMIT_EXCEEDED' });
  expect((error as Error).cause).toBe(signal.reason);
  await eventually(() => pool.stats().releasing === 0, 'the eviction to finish');
  expect(pool.stats()).toMatchObject(QUIET);
  await within(other.get(), 'Resource#get() after the eviction');
  other.put();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1, releasing: 0, waiting: 0 });
  await within(pool.close(), 'pool.close()');
});

test('E12: a timeout of Infinity, as get() argument or netDialer option, means none: get() connects and no socket is left uncounted', async () => {
  const server = await newServer();
  const pool = newPool({ max: 1 });
  const res = New('tcp', server.address, { pool });
  for (let i = 0; i < 3; i++) {
    (await res.get(undefined, Infinity)).put();
    (await res.get(undefined, netDialer({ timeout: Infinity }))).put();
  }
  expect(pool.stats()).toMatchObject({ inUse: 0, releasing: 0, waiting: 0 });
  expect(pool.stats().idle).toBeLessThanOrEqual(1);
  await eventually(() => server.sockets.size === pool.stats().idle, 'the server to see only the idle connection');
  await within(pool.close(), 'pool.close()');
  await eventually(() => server.sockets.size === 0, 'the server to see every socket closed');
});

test('E12: a get() with a non-AbortSignal signal while the pool is full rejects with ERR_INVALID_ARG_TYPE and leaves no waiter behind', async () => {
  const server = await newServer();
  const pool = newPool({ max: 1 });
  const held = await New('tcp', server.address, { pool }).get();
  const res = New('tcp', server.address, { pool });
  const error = await within(
    outcome(res.get({ aborted: false } as unknown as AbortSignal), (conn) => conn.put()),
    'get() with { aborted: false }',
  );
  expect(error).toBeInstanceOf(TypeError);
  expect(error).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  expect((error as Error).message).toMatch(/AbortSignal/);
  expect(pool.stats()).toMatchObject({ inUse: 1, waiting: 0 });
  held.put();
  (await within(res.get(), 'get() again on the same handle')).put();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1, releasing: 0, waiting: 0 });
  await within(pool.close(), 'pool.close()');
});

test('E12: an uncontended get() with a non-AbortSignal signal rejects with ERR_INVALID_ARG_TYPE before dialing: no unhandled rejection', async () => {
  const report = await runChild<{
    first: string | ErrorReport;
    statsAfter: Record<string, number>;
    again: string | ErrorReport;
    stats: Record<string, number>;
    closed: string;
  }>('nonAbortSignalUncontended');
  expect(report.hung).toBeUndefined();
  expect(report.crashes).toEqual([]);
  expect(report.first).toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: expect.stringMatching(/AbortSignal/) });
  expect(report.statsAfter).toMatchObject(QUIET);
  expect(report.again).toMatchObject({ code: 'ECONNREFUSED' }); // the handle dials again, to a port that refuses
  expect(report.stats).toMatchObject(QUIET);
  expect(report.closed).toBe('closed');
});

test('E10: destroy(), as pipeline() does, is close(): the slot is freed and the handle can get() again', async () => {
  const server = await newServer();
  const pool = newPool({ max: 2 });
  const res = New('tcp', server.address, { pool });
  (await res.get()).destroy();
  await eventually(() => pool.stats().inUse === 0 && pool.stats().releasing === 0, "the destroyed connection's slot");
  (await within(res.get(), 'get() after destroy()')).put();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1, releasing: 0, waiting: 0 });
  await eventually(() => server.sockets.size === 1, 'the server to see only the idle connection');
  await within(pool.close(), 'pool.close()');
});

test('S10: scheduleClose() during a get() that fails ends with it: the next, unrelated connection is kept idle', async () => {
  const server = await newServer();
  const pool = newPool({ max: 2 });
  const res = New('tcp', server.address, { pool });
  const tcp = netDialer();
  let dials = 0;
  const flaky: Dialer = {
    key: tcp.key,
    dial: (network, address, signal) => (dials++ === 0 ? Promise.reject(new Error('dial fails')) : tcp.dial(network, address, signal)),
  };
  const failing = outcome(res.get(undefined, flaky));
  res.scheduleClose(); // meant for the get() in flight
  expect(await within(failing, 'the failing get()')).toMatchObject({ message: 'dial fails' });
  (await within(res.get(undefined, flaky), 'the next get()')).put();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1, releasing: 0, waiting: 0 });
  await eventually(() => server.sockets.size === 1, 'the server to see the idle connection');
  await within(pool.close(), 'pool.close()');
});

test('S11: the limit is read when the module loads: under ulimit -n 256, with every descriptor taken later, max is still 200', async () => {
  const report = await runChild<{ opened: number; why: string; connectionLimit: number; globalMax: number }>(
    'limitUnderExhaustion',
    { ulimit: 256 },
  );
  expect(report.why).toBe('EMFILE'); // the child really ran out of descriptors
  expect(report).toMatchObject({ connectionLimit: 200, globalMax: 200 });
});

test('E12: a Go-style get(2000) and a URL as address fail with errors that say what was received and what is expected', async () => {
  const server = await newServer();
  const pool = newPool({ max: 1 });
  const res = New('tcp', server.address, { pool });
  const error = await within(outcome(res.get(2000 as unknown as AbortSignal), (conn) => conn.put()), 'get(2000)');
  expect(error).toBeInstanceOf(TypeError);
  expect(error).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  const message = (error as Error).message;
  expect(message).toContain('2000');
  expect(message).toMatch(/AbortSignal/);
  expect(message).toContain('AbortSignal.timeout(');
  // Nothing left behind, nothing opened; the handle can get() again.
  expect(pool.stats()).toMatchObject(QUIET);
  await sleep(20);
  expect(server.accepted).toBe(0);
  (await within(res.get(), 'get() again on the same handle')).put();
  expect(pool.stats()).toMatchObject({ inUse: 0, idle: 1 });

  const url = 'http://127.0.0.1:80';
  const thrown = thrownBy(() => New('tcp', url, { pool }));
  expect(thrown).toBeInstanceOf(InvalidAddressError);
  expect(thrown).toMatchObject({ code: 'ERR_INVALID_ADDRESS' });
  expect((thrown as Error).message).toContain(url);
  expect((thrown as Error).message).toMatch(/\bURL\b/i);
  expect((thrown as Error).message).toContain('host:port');
  await within(pool.close(), 'pool.close()');
});

test('E13: allocate() never overlaps its own release() (an eviction) when there are more Resources than max, and stats never exceed max', async () => {
  const pool = newPool({ max: 2 });
  const broken: string[] = [];
  const overlaps: string[] = [];
  /** Allocations begun and not yet released: what is really open. */
  let open = 0;
  const watch = (when: string): void => {
    for (const problem of invariantsBroken(pool.stats())) broken.push(`${when}: ${problem}`);
    if (open > pool.max) broken.push(`${when}: ${open} allocations open > max ${pool.max}`);
  };
  const make = (name: string) => {
    const state = { isAllocating: false, isReleasing: false, releaseGate: undefined as Promise<void> | undefined };
    const resource = pool.create({
      async allocate() {
        if (state.isReleasing) overlaps.push(`${name}: allocate() began while its release() was running`);
        state.isAllocating = true;
        open++;
        watch(`${name} allocate()`);
        await sleep(1);
        state.isAllocating = false;
      },
      async release() {
        if (state.isAllocating) overlaps.push(`${name}: release() began while its allocate() was running`);
        state.isReleasing = true;
        watch(`${name} release()`);
        await (state.releaseGate ?? sleep(1));
        open--;
        state.isReleasing = false;
        watch(`${name} released`);
      },
    });
    return Object.assign(resource, { state });
  };
  const [r1, r2, r3] = [make('r1'), make('r2'), make('r3')];
  await r1.get();
  r1.put();
  await r2.get();
  r2.put(); // both idle, r1 the least recently used

  const gate = deferred();
  r1.state.releaseGate = gate.promise;
  const r3Got = r3.get(); // evicts r1, whose release() runs until the gate opens
  await eventually(() => r1.state.isReleasing, "r1's eviction to start");
  const r1Got = r1.get(); // r1 again while its own release() is still running
  r1Got.catch(() => {});
  for (let i = 0; i < 10; i++) {
    await sleep(2);
    watch('while r1 is being released');
  }
  gate.resolve();
  await within(Promise.all([r1Got, r3Got]), 'both gets');
  watch('both got');
  expect(overlaps).toEqual([]);
  expect(broken).toEqual([]);
  r1.put();
  r3.put();
  await within(Promise.all([r1.release(), r2.release(), r3.release()]), 'release()');
  expect(pool.stats()).toMatchObject(QUIET);
  expect(open).toBe(0);
  await within(pool.close(), 'pool.close()');
});
