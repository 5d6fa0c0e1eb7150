// The cross-thread part of the `threads` figure (figures.mjs), in a child
// process of its own, started by the figure as
//
//   /bin/sh -c 'ulimit -n 256 && exec node bench/threads-child.mjs <port> <sizes JSON>'
//
// so that connectionLimit(), read from RLIMIT_NOFILE when connpool loads, is
// 200: the global pool is small enough to fill. The echo server at
// 127.0.0.1:<port> is the bench's (outside this process).
//
// Two subjects, each get() → await Promise.resolve() → put(), `ops` in all,
// drawn from one shared counter:
//   - the global pool: this thread and `threads - 1` workers (this same file,
//     started with workerData), `callers` callers each, one handle per caller;
//   - the anchor: a private pool of max 200, the same total of callers in
//     this thread alone.
// Each run starts with the pool's sockets open (an untimed fill) and ends with
// them closed (the two pools together would need 400 descriptors).
//
// stdout: one JSON line { connectionLimit, results, notes }. Progress on stderr.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { connectionLimit, getResourcePool, New, ResourcePool } from '../dist/index.js';

const HOST = '127.0.0.1';
const tick = () => Promise.resolve();

/** `handles.length` callers, each looping get() → await → put() while the shared counter gives it an op. */
function drain(handles, counter) {
  const caller = async (handle) => {
    while (Atomics.sub(counter, 0, 1) > 0) {
      const conn = await handle.get();
      await tick();
      conn.put();
    }
  };
  return Promise.all(handles.map(caller));
}

if (!isMainThread) {
  const { port, callers, counter: buffer } = workerData;
  const counter = new Int32Array(buffer);
  const handles = Array.from({ length: callers }, () => New('tcp', `${HOST}:${port}`));
  parentPort.on('message', (message) => {
    if (message === 'run') {
      drain(handles, counter).then(
        () => parentPort.postMessage({ done: true }),
        (error) => parentPort.postMessage({ error: String(error?.stack ?? error) }),
      );
    } else if (message === 'close') {
      for (const handle of handles) handle.scheduleClose();
      parentPort.postMessage({ done: true });
    }
  });
  parentPort.postMessage({ done: true }); // ready
} else {
  await main();
}

/** The worker's next answer; rejects if it reports an error, fails, or exits. */
function answer(worker) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    };
    const onMessage = (message) => {
      cleanup();
      if (message.error) reject(new Error(`worker: ${message.error}`));
      else resolve();
    };
    const onError = (error) => {
      cleanup();
      reject(error);
    };
    const onExit = (code) => {
      cleanup();
      reject(new Error(`worker exited with code ${code}`));
    };
    worker.on('message', onMessage).once('error', onError).once('exit', onExit);
  });
}

async function main() {
  const { interleave, until } = await import('./harness.mjs');
  const port = Number(process.argv[2]);
  const { ops, warmupOps, threads, callers, reps } = JSON.parse(process.argv[3]);
  const total = threads * callers;
  const counter = new Int32Array(new SharedArrayBuffer(4));
  const address = `${HOST}:${port}`;

  const global = getResourcePool();
  const globalHandles = Array.from({ length: callers }, () => New('tcp', address));
  const workers = Array.from({ length: threads - 1 }, () => new Worker(new URL(import.meta.url), { workerData: { port, callers, counter: counter.buffer } }));
  await Promise.all(workers.map(answer));

  const privatePool = new ResourcePool({ max: 200, name: 'bench-threads-private' });
  const privateHandles = Array.from({ length: total }, () => New('tcp', address, { pool: privatePool }));

  const open = (pool) => {
    const { inUse, idle, releasing } = pool.stats();
    return inUse + idle + releasing;
  };
  const runGlobal = async (n) => {
    Atomics.store(counter, 0, n);
    const done = workers.map(answer);
    for (const worker of workers) worker.postMessage('run');
    await Promise.all([drain(globalHandles, counter), ...done]);
  };
  const runPrivate = (n) => {
    Atomics.store(counter, 0, n);
    return drain(privateHandles, counter);
  };
  // Fills: enough ops that every caller gets once, so the pool is full (200 open) when the timed run starts.
  const fill = 4 * total;
  const globalName = `connpool global pool, ${threads} threads × ${callers} callers`;
  const privateName = `connpool private pool (max 200), 1 thread × ${total} callers`;
  const totals = { global: undefined, private: undefined };
  const subjects = [
    {
      name: globalName,
      ops,
      warmupOps,
      async before() {
        await runGlobal(fill);
      },
      run: runGlobal,
      async after() {
        totals.global = global.stats();
        const closed = workers.map(answer);
        for (const worker of workers) worker.postMessage('close');
        for (const handle of globalHandles) handle.scheduleClose();
        await Promise.all(closed);
        await until(() => open(global) === 0, 'the global pool to close its sockets');
      },
    },
    {
      name: privateName,
      ops,
      warmupOps,
      async before() {
        await runPrivate(fill);
      },
      run: runPrivate,
      async after() {
        totals.private = privatePool.stats();
        for (const handle of privateHandles) handle.scheduleClose();
        await until(() => open(privatePool) === 0, 'the private pool to close its sockets');
      },
    },
  ];
  try {
    const results = await interleave('threads (across threads)', subjects, reps, { alternate: true });
    const g = totals.global;
    const p = totals.private;
    const notes = {
      ops,
      threads,
      callersPerThread: callers,
      addresses: 1,
      max: global.stats().max,
      held: 'await Promise.resolve()',
      global: { dials: g.dials, reuses: g.reuses, evictions: g.evictions },
      private: { dials: p.dials, reuses: p.reuses, evictions: p.evictions },
    };
    process.stdout.write(`${JSON.stringify({ connectionLimit: connectionLimit(), results, notes })}\n`);
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
    await privatePool.close();
  }
  process.exit(0);
}
