// One budget per process, across worker threads: real workers, real sockets,
// one process under `ulimit -n 256` (connectionLimit() = 200). Each scenario
// runs in helpers/threads-child.mjs; the echo server is a process of its own,
// so the child's /proc/self/fd holds only client sockets.
import type { PoolStats as Stats } from '../lib/index.js';
import { runScript } from './helpers/child.js';
import { startEchoServer, type EchoServer } from './helpers/echo.js';
import { reportFigure } from './helpers/figures.js';

interface LoadReport {
  mode: string;
  limit: number;
  expected: number;
  done: number;
  emfile: number;
  other: Record<string, number>;
  /** The most socket descriptors open at once, every thread's, sampled from /proc/self/fd. */
  peak: number;
  main: Stats;
  workers: Stats[];
  afterExit?: Stats;
  afterClose?: Stats;
  leftOpen: number;
}

const ULIMIT = 256;
const LIMIT = 200;

let server: EchoServer;
/** The three workloads run side by side, started in beforeAll. */
let loads: Promise<[LoadReport, LoadReport, LoadReport]>;
beforeAll(async () => {
  server = await startEchoServer();
  loads = Promise.all([scenario<LoadReport>('load', 'shared'), scenario<LoadReport>('load', 'per-thread'), scenario<LoadReport>('load', 'raw')]);
  loads.catch(() => {});
});
afterAll(async () => {
  await loads?.catch(() => {});
  await server?.stop();
});

function scenario<T>(name: string, mode?: string): Promise<T> {
  return runScript<T>('threads-child.mjs', mode === undefined ? [name, server.port] : [name, server.port, mode], { ulimit: ULIMIT });
}

const atRest = { inUse: 0, releasing: 0, waiting: 0 };

test(`under ulimit -n ${ULIMIT}, the main thread and four workers, 300 tasks each to 40 servers: no EMFILE and never more than ${LIMIT} sockets on the shared budget; a pool per thread and plain net.connect hit EMFILE`, async () => {
  const [shared, perThread, raw] = await loads;
  reportFigure(
    `threads: 5 threads x 300 tasks x 4 exchanges over 40 servers, ulimit -n ${ULIMIT}:\n  ` +
      [shared, perThread, raw].map((r) => `${r.mode}: done ${r.done}/${r.expected}, EMFILE ${r.emfile}, other ${JSON.stringify(r.other)}, peak sockets ${r.peak}`).join('\n  '),
  );
  expect(shared.limit).toBe(LIMIT);
  expect(shared).toMatchObject({ done: shared.expected, emfile: 0, other: {}, leftOpen: 0 });
  expect(shared.peak).toBeGreaterThan(0);
  expect(shared.peak).toBeLessThanOrEqual(LIMIT);
  // Quiescent: every thread reports the same process-wide counts.
  expect(shared.main).toMatchObject({ max: LIMIT, ...atRest });
  expect(shared.main.dials + shared.main.reuses).toBe(shared.expected);
  expect(shared.main.idle).toBeGreaterThan(0);
  for (const worker of shared.workers) expect(worker).toEqual(shared.main);
  // The workers' idle sockets went with them; the main thread's went at close().
  expect(shared.afterExit).toMatchObject(atRest);
  expect(shared.afterExit!.idle).toBeLessThan(shared.main.idle);
  expect(shared.afterClose).toMatchObject({ ...atRest, idle: 0 });

  for (const alone of [perThread, raw]) {
    expect(alone.emfile).toBeGreaterThan(0);
    expect(alone.done).toBeLessThan(alone.expected);
  }
});

test('cross-thread eviction: a worker fills the budget with idle sockets; the main thread gets connections, each closing one of them first', async () => {
  const report = await scenario<{ max: number; filled: Stats; afterOne: Stats; afterMore: Stats; afterExit: Stats; peak: number; leftOpen: number }>('evict');
  expect(report.max).toBe(LIMIT);
  expect(report.filled).toMatchObject({ ...atRest, idle: LIMIT, evictions: 0 });
  expect(report.afterOne).toMatchObject({ ...atRest, inUse: 1, idle: LIMIT - 1, evictions: 1 });
  expect(report.afterMore).toMatchObject({ ...atRest, inUse: 21, idle: LIMIT - 21, evictions: 21 });
  expect(report.peak).toBeLessThanOrEqual(LIMIT);
  // The worker's idle sockets left with it; the main thread's 21 are its own.
  expect(report.afterExit).toMatchObject({ ...atRest, idle: 21 });
  expect(report.leftOpen).toBe(0);
});

test('a terminated worker gives back every slot it held, in use, idle or waiting, and so does a worker whose nested worker held them', async () => {
  const report = await scenario<Record<string, unknown>>('terminate');
  expect(report.holding).toMatchObject({ max: LIMIT, inUse: 100, idle: 50 });
  expect(report.seenByMain).toEqual(report.holding);
  expect(report.afterTerminate).toMatchObject({ ...atRest, idle: 0 });
  expect(report.socketsAfterTerminate).toBe(0);
  // Every slot is free: the immediate canceler (an aborted signal) gets all of them without waiting.
  expect(report.immediate).toBe(LIMIT);
  expect(report.waitingSeen).toBe(true);
  expect(report.afterWaiterTerminate).toMatchObject({ inUse: LIMIT, waiting: 0 });
  expect(report.nested).toMatchObject({ max: LIMIT, inUse: 10 });
  expect(report.nestedSeenByMain).toMatchObject({ inUse: 10 });
  expect(report.afterParentTerminate).toMatchObject({ ...atRest, idle: 0 });
  expect(report.leftOpen).toBe(0);
});

test('waiters of three threads are served oldest first; one whose signal aborts leaves the line with ERR_RESOURCE_LIMIT_EXCEEDED', async () => {
  const report = await scenario<{ waiting: boolean[]; quitter: string; order: Record<string, number>; afterExit: Stats }>('fifo');
  expect(report.waiting).toEqual([true, true, true, true, true]);
  expect(report.quitter).toBe('ERR_RESOURCE_LIMIT_EXCEEDED');
  expect(report.order).toEqual({ first: 1, main: 2, second: 3, quitter: 0 });
  expect(report.afterExit).toMatchObject({ ...atRest, waitsGivenUp: 1 });
});

test('a worker that ends with process.exit() while it waits leaves the line, even when no thread can give back its slots (its parent never loaded connpool)', async () => {
  const report = await scenario<{ afterExit: Stats; got: boolean | string; after: Stats }>('orphan');
  expect(report.afterExit).toMatchObject({ inUse: LIMIT, waiting: 0 });
  expect(report.got).toBe(true);
  expect(report.after).toMatchObject({ waiting: 0 });
});

test("no thread starves: a worker keeps the whole budget busy, reusing its own sockets as fast as it puts them back, and the main thread's get()s are still served", async () => {
  const report = await scenario<{ served: number; failed: string[]; duringStats: Stats; afterExit: Stats }>('starve');
  expect(report.failed).toEqual([]);
  expect(report.served).toBe(20);
  expect(report.duringStats.inUse + report.duringStats.idle + report.duringStats.releasing).toBeLessThanOrEqual(LIMIT);
  expect(report.afterExit).toMatchObject({ ...atRest, idle: 0 });
});
