/**
 * The seeded random workload across worker threads, on real sockets: one
 * process under `ulimit -n 256` (the global pool's max is 200), its main
 * thread and 1-4 workers, each a random number of callers making random
 * gets (signals: none, pre-aborted, a short timeout, aborted at a random
 * moment) to random servers, holding connections across random waits,
 * talking or not, and letting go by put(), close() or destroy(); some seeds
 * terminate a worker mid-run (helpers/threads-child.mjs, `random`).
 *
 * Checked: socket descriptors sampled throughout never exceed max; every
 * get() settles, served or given up by its own signal, and nothing else
 * fails; at rest, every thread's stats() are the same, nothing in use,
 * releasing or waiting, and the idle count is the sockets really open; once
 * the workers have exited and the main thread closed its pool, nothing is
 * counted and nothing is open.
 *
 * Seeds: FUZZ_SEED (default 1) and the FUZZ_RUNS seeds from it (default 3
 * with no FUZZ_SEED, 1 with one). The seed fixes each caller's choices;
 * thread timing still varies from run to run. Replay with
 *   FUZZ_SEED=<seed> npm test -- __tests__/threads-workload.test.ts
 */
import type { PoolStats as Stats } from '../lib/index.js';
import { runScript } from './helpers/child.js';
import { startEchoServer, type EchoServer } from './helpers/echo.js';

interface Outcome {
  served: number;
  gaveUp: number;
  unlawful: Record<string, number>;
}

interface Report {
  seed: number;
  threads: number;
  /** The worker terminated mid-run, or -1. */
  doomed: number;
  /** The main thread's, then each worker's: 'terminated' for the doomed one (unless it finished first). */
  outcomes: (Outcome | string)[];
  peak: number;
  max: number;
  main: Stats;
  workers: Stats[];
  openAtRest: number;
  afterExit: Stats;
  afterClose: Stats;
  leftOpen: number;
}

const DEFAULT_RUNS = 3;

function integerFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value)) throw new Error(`${name} must be an integer, received ${text}`);
  return value;
}

const firstSeed = integerFromEnv('FUZZ_SEED');
const runs = integerFromEnv('FUZZ_RUNS') ?? (firstSeed === undefined ? DEFAULT_RUNS : 1);
const seeds = Array.from({ length: runs }, (_, i) => (firstSeed ?? 1) + i);

let server: EchoServer;
beforeAll(async () => {
  server = await startEchoServer();
});
afterAll(() => server?.stop());

const atRest = { inUse: 0, releasing: 0, waiting: 0 };

test.each(seeds)('threads workload, seed %i: never more than max sockets, every get() settles lawfully, every thread agrees at rest', async (seed) => {
  const report = await runScript<Report>('threads-child.mjs', ['random', server.port, String(seed)], { ulimit: 256 });
  const replay = `replay with FUZZ_SEED=${seed} npm test -- __tests__/threads-workload.test.ts`;
  const where = `${replay}\n${JSON.stringify(report)}`;
  expect({ where, peakWithinMax: report.peak <= report.max }).toEqual({ where, peakWithinMax: true });
  report.outcomes.forEach((outcome, i) => {
    // The doomed worker may have finished before it was terminated.
    if (outcome === 'terminated') expect(i - 1).toBe(report.doomed);
    else expect({ where, unlawful: (outcome as Outcome).unlawful }).toEqual({ where, unlawful: {} });
  });
  expect(report.main).toMatchObject(atRest);
  for (const stats of report.workers) expect(stats).toEqual(report.main);
  expect({ where, openAtRest: report.openAtRest }).toEqual({ where, openAtRest: report.main.idle });
  expect(report.afterExit).toMatchObject(atRest);
  expect(report.afterClose).toMatchObject({ ...atRest, idle: 0 });
  expect(report.leftOpen).toBe(0);
});
