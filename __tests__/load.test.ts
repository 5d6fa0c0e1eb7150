import { runScript } from './helpers/child.js';
import { startChildServers } from './helpers/servers.js';
import { reportFigure } from './helpers/figures.js';

const MAX = 50;
const TASKS = 2_000;
const OPS_PER_TASK = 10;
const OPS = TASKS * OPS_PER_TASK;

interface LoadOutcome {
  max: number;
  peakFds: number;
  peakSum: number;
  samples: number;
  counts: { put: number; close: number; abortedWait: number; abortedDial: number; abortSurvived: number; badEcho: number };
  unexpected: string[];
  stats: { max: number; inUse: number; idle: number; releasing: number; waiting: number };
  openAtEnd: number;
  openAfterClose: number;
}

let servers: Awaited<ReturnType<typeof startChildServers>> | undefined;
afterAll(() => servers?.close());

/**
 * The load runs in a child process (helpers/load-child.mjs, on dist/): its
 * /proc/self/fd holds the pool's sockets and nothing of jest's, and jest's
 * --detectOpenHandles hooks, which capture a stack for every socket, write
 * and tick, would make 20,000 round trips take many times longer. The echo
 * servers run in a third process.
 */
test('S1 under load: 2,000 tasks, 20,000 get/write/read/put over 10 addresses (10% close(), 5% aborted waits) never open more than max=50 sockets', async () => {
  servers = await startChildServers(10);
  const outcome = await runScript<LoadOutcome>('load-child.mjs', [
    JSON.stringify({ addresses: servers.addresses, max: MAX, tasks: TASKS, opsPerTask: OPS_PER_TASK }),
  ]);
  const { counts } = outcome;
  reportFigure(
    `load: peak open socket fds ${outcome.peakFds} vs max ${MAX} (peak inUse+idle+releasing ${outcome.peakSum}, ` +
      `${outcome.samples} samples); outcomes ${JSON.stringify(counts)}; at the end ${JSON.stringify(outcome.stats)}, ` +
      `${outcome.openAtEnd} fds open, ${outcome.openAfterClose} after pool.close()`,
  );

  expect(outcome.unexpected).toEqual([]);
  expect(counts.badEcho).toBe(0);
  expect(counts.put + counts.close + counts.abortedWait + counts.abortedDial + counts.abortSurvived).toBe(OPS);
  expect(counts.close).toBe(OPS / 10);
  expect(counts.abortedWait + counts.abortedDial + counts.abortSurvived).toBe(OPS / 20);
  expect(counts.abortedWait).toBeGreaterThan(0);
  expect(outcome.peakFds).toBeGreaterThan(0);
  expect(outcome.peakFds).toBeLessThanOrEqual(MAX);
  expect(outcome.peakSum).toBeLessThanOrEqual(MAX);
  expect(outcome.stats).toMatchObject({ inUse: 0, waiting: 0, releasing: 0 });
  expect(outcome.openAtEnd).toBe(outcome.stats.idle);
  expect(outcome.openAfterClose).toBe(0);
});
