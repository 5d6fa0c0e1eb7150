/**
 * E5 and E6: cost per operation, memory and listeners over many operations.
 *
 * Cost is counted, never timed: the bytes an operation allocates on the V8
 * heap (the used heap's growth plus what each GC in between freed, from
 * v8.GCProfiler), at a small and a large scale of handles, keys, idle
 * sockets and waiters. A structure scanned or copied on the hot path shows up
 * as allocation growing with its size. (A scan that allocates nothing would
 * not: this is the observable proxy for work, not a proof.)
 *
 * Each scenario runs in its own process (helpers/cost-child.mjs, on dist/):
 * process warnings are not delivered to jest's sandboxed `process`, jest's
 * --detectOpenHandles hooks would add their own allocations to what is
 * measured (and slow 10,000 dials many times over), and a fresh process
 * starts each measurement from the same state.
 */
import { readFileSync } from 'node:fs';
import { runScript } from './helpers/child.js';
import { startChildServers } from './helpers/servers.js';
import { reportFigure } from './helpers/figures.js';

/** Allowed difference in bytes per operation between the small and the large scale. */
const TOLERANCE = 0.3;
const MB = 1024 * 1024;

let servers: Awaited<ReturnType<typeof startChildServers>>;
const figures: string[] = [];
beforeAll(async () => {
  // Its own process: 10,000 sockets on each side would not fit one process's fd limit.
  servers = await startChildServers(1);
});
afterAll(async () => {
  if (figures.length > 0) reportFigure(`stability figures:\n  ${figures.join('\n  ')}`);
  await servers?.close();
});

function measure<T>(scenario: string, scale: number): Promise<T> {
  return runScript<T>('cost-child.mjs', [scenario, String(scale), servers.addresses[0]!], { nodeFlags: ['--expose-gc'] });
}

const mb = (bytes: number): string => `${(bytes / MB).toFixed(2)} MB`;
const count = (n: number): string => n.toLocaleString('en-US');

/** Measures `scenario` at both scales (one process each, side by side) and expects the same bytes per op. */
async function expectFlat(what: string, scenario: string, small: [number, string], large: [number, string]): Promise<void> {
  const [a, b] = await Promise.all([measure<{ perOp: number }>(scenario, small[0]), measure<{ perOp: number }>(scenario, large[0])]);
  const change = (b.perOp - a.perOp) / a.perOp;
  figures.push(
    `E5 ${what}: ${small[1]} ${a.perOp.toFixed(0)} B/op, ${large[1]} ${b.perOp.toFixed(0)} B/op (${(change * 100).toFixed(1)}%)`,
  );
  expect(Math.abs(change)).toBeLessThan(TOLERANCE);
}

interface CyclesOutcome {
  heapBefore: number;
  heapAfter: number;
  cycleStats: Record<string, number>;
  peakWaiting: number;
  peakListeners: number;
  listeners: number;
  sharedStats: Record<string, number>;
  warnings: Array<{ name: string; code?: string; message: string }>;
  rejections: string[];
}

test('E6: 1,000,000 get/put cycles on one idle socket grow the heap by < 5 MB; 100,000 gets on one long-lived signal, many waiting, leave no listener; no warning, no unhandled rejection', async () => {
  const outcome = await measure<CyclesOutcome>('cycles', 0);
  const growth = outcome.heapAfter - outcome.heapBefore;
  figures.push(
    `E6 1,000,000 get/put: heap after gc ${mb(outcome.heapBefore)} -> ${mb(outcome.heapAfter)} (growth ${mb(growth)}); ` +
      `long-lived signal over 100,000 gets: peak waiting ${outcome.peakWaiting}, peak abort listeners ${outcome.peakListeners}, ` +
      `at the end ${outcome.listeners}; process warnings ${outcome.warnings.length}`,
  );
  expect(growth).toBeLessThan(5 * MB);
  expect(outcome.cycleStats).toMatchObject({ inUse: 0, idle: 1, waiting: 0 });
  expect(outcome.peakWaiting).toBeGreaterThan(0);
  expect(outcome.listeners).toBe(0);
  expect(outcome.sharedStats).toMatchObject({ inUse: 0, waiting: 0 });
  expect(outcome.warnings).toEqual([]);
  expect(outcome.rejections).toEqual([]);
});

interface AbortedOutcome {
  heapBefore: number;
  heapAfter: number;
  rejected: number;
  statsAfter: Record<string, number>;
  statsAtEnd: Record<string, number>;
  listeners: number;
}

test('E6: 100,000 gets aborted while every slot stays in use: the heap after gc comes back within 5 MB; no waiter or listener left', async () => {
  const outcome = await measure<AbortedOutcome>('abortedWaits', 100_000);
  const growth = outcome.heapAfter - outcome.heapBefore;
  figures.push(`E6 100,000 aborted waits: heap after gc ${mb(outcome.heapBefore)} -> ${mb(outcome.heapAfter)} (growth ${mb(growth)})`);
  expect(outcome.rejected).toBe(110_000); // 10,000 to warm up
  expect(Math.abs(growth)).toBeLessThan(5 * MB);
  // The one live caller still waits behind the two held slots; the aborted ones are gone.
  expect(outcome.statsAfter).toMatchObject({ inUse: 2, waiting: 1 });
  expect(outcome.listeners).toBe(0);
  expect(outcome.statsAtEnd).toMatchObject({ inUse: 0, waiting: 0 });
});

describe('E5: bytes allocated per operation do not grow with', () => {
  /** How many sockets the large scale opens: 10,000, or fewer under a low fd limit. */
  function largeSocketCount(): number {
    const soft = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'latin1'))?.[1] ?? 'NaN');
    return Number.isFinite(soft) ? Math.min(10_000, soft - 1_000) : 10_000;
  }

  test('the number of handles (1,000 vs 100,000 that each got and put the same socket): get/put', async () => {
    await expectFlat('handles', 'handles', [1_000, '1,000 handles'], [100_000, '100,000 handles']);
  });

  test('the number of keys (1 vs 10,000, each with an idle socket): get/put', async () => {
    const n = largeSocketCount();
    await expectFlat('keys', 'keys', [1, '1 key'], [n, `${count(n)} keys`]);
  });

  test('the number of idle sockets (1 vs 10,000 on the same key): get/put', async () => {
    const n = largeSocketCount();
    await expectFlat('idle sockets', 'idle', [1, '1 idle socket'], [n, `${count(n)} idle sockets`]);
  });

  test('the number of waiters aborted before (0 vs 100,000): a slot handed over through the queue', async () => {
    await expectFlat('aborted waiters', 'handoffs', [0, '0 aborted before'], [100_000, '100,000 aborted before']);
  });

  // From 1, not 0: with nobody ahead, a get() that waits also starts the queue's admission loop.
  test('the number of live waiters (1 vs 10,000 queued ahead): a get() that waits and is aborted', async () => {
    await expectFlat('live waiters (abort)', 'abortsBehind', [1, '1 waiting ahead'], [10_000, '10,000 waiting ahead']);
  });

  test('the depth of the queue (1,000 vs 20,000 waiters): each freed slot handed to the oldest waiter', async () => {
    await expectFlat('queue depth (handoff)', 'serveQueue', [1_000, '1,000 waiting'], [20_000, '20,000 waiting']);
  });
});
