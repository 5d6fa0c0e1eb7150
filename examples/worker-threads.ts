/**
 * Worker threads share one budget. The file-descriptor limit is the
 * process's, so `getResourcePool()` in every thread draws on one `max`:
 * import connpool in the main thread before starting workers, and each worker
 * (this same file, started with workerData) needs no code of its own for it.
 *
 * Here the main thread caps the budget through a private trick of this
 * example only: it runs itself again under `ulimit -n 256` (so `max` is 200),
 * then three workers each run 150 callers at once against one echo server.
 * Together they want 450 connections; the process never has more than 200
 * open, and `stats()` in every thread reports the same process-wide counts.
 */
import { execFileSync } from 'node:child_process';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { getResourcePool, New } from 'connpool';
import { roundTrip, socketFds, startServerProcess } from './support/servers.js';

const CALLERS = 150;

if (!isMainThread) {
  // A worker: nothing to set up, the global pool already shares the budget.
  const { address } = workerData as { address: string };
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, i) => {
      await using conn = await New('tcp', address).get(AbortSignal.timeout(30_000));
      await roundTrip(conn, `hello ${i}`);
    }),
  );
  parentPort!.postMessage(getResourcePool().stats());
} else if (process.env.CONNPOOL_EXAMPLE_LIMITED === undefined && process.platform === 'linux') {
  // Run again with a low descriptor limit, so that the budget is small enough to see.
  const script = fileURLToPath(import.meta.url);
  execFileSync('/bin/sh', ['-c', 'ulimit -n 256 && exec "$0" "$1"', process.execPath, script], {
    stdio: 'inherit',
    env: { ...process.env, CONNPOOL_EXAMPLE_LIMITED: '1' },
  });
} else {
  const pool = getResourcePool();
  const servers = await startServerProcess(['tcp']);
  const address = servers.addresses[0]!;
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, socketFds() ?? 0)), 1);
  const baseline = socketFds() ?? 0;
  const workers = Array.from({ length: 3 }, () => new Worker(fileURLToPath(import.meta.url), { workerData: { address } }));
  const exited = workers.map((worker) => new Promise((resolve) => worker.once('exit', resolve)));
  const reports = await Promise.all(
    workers.map((worker) => new Promise<ReturnType<typeof pool.stats>>((resolve, reject) => worker.once('message', resolve).once('error', reject))),
  );
  await Promise.all(exited);
  clearInterval(sampler);
  console.log(`max ${pool.max} for the whole process; 3 workers x ${CALLERS} callers at once`);
  console.log(`most sockets seen open at once: ${Math.max(0, peak - baseline)} (max ${pool.max})`);
  reports.forEach((stats, i) => console.log(`worker ${i + 1} saw when done: dials=${stats.dials} reuses=${stats.reuses} evictions=${stats.evictions} waitsGivenUp=${stats.waitsGivenUp}`));
  const after = pool.stats();
  console.log(`after the workers exited: inUse=${after.inUse} idle=${after.idle} releasing=${after.releasing} (their idle sockets went with them)`);
  await pool.close();
  await servers.close();
}
