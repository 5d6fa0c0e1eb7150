// The measurements of __tests__/stability.test.ts (E5, E6), one scenario per
// process: run with --expose-gc, argv: scenario, scale, echo server address.
// Prints one JSON line with what the scenario measured.
//
// Cost is counted, never timed: bytes allocated on the V8 heap, i.e. the used
// heap's growth plus what every GC in between freed (v8.GCProfiler).
import { getEventListeners } from 'node:events';
import v8 from 'node:v8';
import { New, netDialer, ResourcePool } from '../../dist/index.js';

const [scenario, scaleText, address] = process.argv.slice(2);
const scale = Number(scaleText);
/** Ops between turns of the event loop, as a program doing I/O would yield. */
const YIELD_EVERY = 500;
const OPS = 10_000;
const turn = () => new Promise((resolve) => setImmediate(resolve));

async function heapAfterGc() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc();
    await turn();
  }
  return process.memoryUsage().heapUsed;
}

async function allocatedBytes(run) {
  const profiler = new v8.GCProfiler();
  profiler.start();
  const before = v8.getHeapStatistics().used_heap_size;
  await run();
  const after = v8.getHeapStatistics().used_heap_size;
  let freed = 0;
  for (const { beforeGC, afterGC } of profiler.stop().statistics) {
    freed += beforeGC.heapStatistics.usedHeapSize - afterGC.heapStatistics.usedHeapSize;
  }
  return after - before + freed;
}

/** The median over three rounds of the bytes allocated per op by `run(OPS)`, after a warm-up round. */
async function bytesPerOp(run) {
  await run(OPS);
  const samples = [];
  for (let round = 0; round < 3; round++) samples.push((await allocatedBytes(() => run(OPS))) / OPS);
  samples.sort((a, b) => a - b);
  return samples[1];
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

/** get/put cycles alternating a handle's own idle socket and a fresh handle taking its key's warmest one. */
async function getPutCycles(ops, pool, handles, dialers) {
  const rotation = Math.min(handles.length, 1_000);
  for (let i = 0; i < ops; i++) {
    const j = (i >> 1) % rotation;
    const dialer = dialers[j % dialers.length];
    const handle = i % 2 === 0 ? handles[j] : New('tcp', address, { pool });
    const conn = await handle.get(undefined, dialer);
    conn.put();
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
  }
}

/** `sockets` idle sockets spread over `keys` keys (a dialer key each), one handle per socket. */
async function idleSockets(sockets, keys) {
  const pool = new ResourcePool({ max: sockets + 10 });
  const dial = netDialer().dial;
  const dialers = Array.from({ length: keys }, (_, k) => ({ key: `key ${k}`, dial }));
  const handles = Array.from({ length: sockets }, () => New('tcp', address, { pool }));
  const held = [];
  for (let first = 0; first < sockets; first += 200) {
    const batch = handles.slice(first, first + 200);
    held.push(...(await Promise.all(batch.map((handle, i) => handle.get(undefined, dialers[(first + i) % keys])))));
  }
  for (const conn of held) conn.put();
  check(pool.stats().idle === sockets, `${sockets} idle sockets`);
  const perOp = await bytesPerOp((ops) => getPutCycles(ops, pool, handles, dialers));
  check(pool.stats().idle === sockets && pool.stats().inUse === 0, 'every socket idle again');
  await pool.close();
  return { perOp };
}

const scenarios = {
  /** E6: a million get/put cycles on one idle socket; then one long-lived signal over 100,000 gets. */
  async cycles() {
    const warnings = [];
    process.on('warning', (warning) => warnings.push({ name: warning.name, code: warning.code, message: warning.message }));
    const rejections = [];
    process.on('unhandledRejection', (reason) => rejections.push(String(reason)));
    const pool = new ResourcePool({ max: 1 });
    const res = New('tcp', address, { pool });
    const cycles = async (count) => {
      for (let i = 0; i < count; i++) {
        const conn = await res.get();
        conn.put();
        if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
      }
    };
    await cycles(50_000);
    const heapBefore = await heapAfterGc();
    await cycles(1_000_000);
    const heapAfter = await heapAfterGc();
    const cycleStats = pool.stats();

    // 100 handles over 10 slots, so that many gets wait and listen on the signal.
    const shared = new ResourcePool({ max: 10 });
    const signal = new AbortController().signal;
    let peakWaiting = 0;
    let peakListeners = 0;
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        const handle = New('tcp', address, { pool: shared });
        for (let i = 0; i < 1_000; i++) {
          const getting = handle.get(signal);
          peakWaiting = Math.max(peakWaiting, shared.stats().waiting);
          peakListeners = Math.max(peakListeners, getEventListeners(signal, 'abort').length);
          (await getting).put();
          if (i % 100 === 99) await turn();
        }
      }),
    );
    const listeners = getEventListeners(signal, 'abort').length;
    const sharedStats = shared.stats();
    await Promise.all([pool.close(), shared.close()]);
    await turn();
    return { heapBefore, heapAfter, cycleStats, peakWaiting, peakListeners, listeners, sharedStats, warnings, rejections };
  },

  /** E6: `scale` gets aborted while waiting, every slot in use and one live caller waiting throughout. */
  async abortedWaits() {
    const pool = new ResourcePool({ max: 2 });
    const held = await Promise.all([New('tcp', address, { pool }).get(), New('tcp', address, { pool }).get()]);
    const live = New('tcp', address, { pool }).get();
    const handles = Array.from({ length: 1_000 }, () => New('tcp', address, { pool }));
    const sampled = [];
    let rejected = 0;
    const round = async () => {
      const controllers = handles.map(() => new AbortController());
      const gets = handles.map((handle, i) => handle.get(controllers[i].signal).catch((error) => error));
      for (const controller of controllers) controller.abort();
      for (const error of await Promise.all(gets)) if (error?.code === 'ERR_RESOURCE_LIMIT_EXCEEDED') rejected++;
      sampled.push(controllers[0].signal);
    };
    for (let i = 0; i < 10; i++) await round();
    const heapBefore = await heapAfterGc();
    for (let done = 0; done < scale; done += handles.length) await round();
    const heapAfter = await heapAfterGc();
    const statsAfter = pool.stats();
    const listeners = sampled.reduce((sum, signal) => sum + getEventListeners(signal, 'abort').length, 0);
    held[0].put();
    (await live).put();
    held[1].put();
    const statsAtEnd = pool.stats();
    await pool.close();
    return { heapBefore, heapAfter, rejected, statsAfter, statsAtEnd, listeners };
  },

  /** E5: `scale` handles that each got and put the same socket; then get/put over 1,000 of them. */
  async handles() {
    const pool = new ResourcePool({ max: 1 });
    const handles = Array.from({ length: scale }, () => New('tcp', address, { pool }));
    for (let i = 0; i < scale; i++) {
      (await handles[i].get()).put();
      if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
    }
    const dialers = [netDialer()];
    const perOp = await bytesPerOp((ops) => getPutCycles(ops, pool, handles, dialers));
    await pool.close();
    return { perOp };
  },

  /** E5: `scale` keys, each with one idle socket. */
  keys: () => idleSockets(scale, scale),

  /** E5: `scale` idle sockets on one key. */
  idle: () => idleSockets(scale, 1),

  /**
   * E5: a pool of 2 whose first slot stays in use; two handles hand the
   * second back and forth through the queue (each get() waits for the
   * other's put()), after `scale` callers gave up waiting with every slot in use.
   */
  async handoffs() {
    const pool = new ResourcePool({ max: 2 });
    const holder = await New('tcp', address, { pool }).get();
    const pair = [New('tcp', address, { pool }), New('tcp', address, { pool })];
    let current = await pair[0].get();
    const handles = Array.from({ length: 1_000 }, () => New('tcp', address, { pool }));
    for (let done = 0; done < scale; done += handles.length) {
      const controllers = handles.map(() => new AbortController());
      const gets = handles.map((handle, i) => handle.get(controllers[i].signal).catch((error) => error));
      for (const controller of controllers) controller.abort();
      await Promise.all(gets);
    }
    let turnOf = 1;
    let didEveryGetWait = true;
    const perOp = await bytesPerOp(async (ops) => {
      for (let i = 0; i < ops; i++) {
        const next = pair[turnOf].get();
        didEveryGetWait &&= pool.stats().waiting === 1;
        current.put();
        current = await next;
        turnOf = 1 - turnOf;
        if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
      }
    });
    check(didEveryGetWait, 'every get() of the handoff waited');
    current.put();
    holder.put();
    check(pool.stats().inUse === 0 && pool.stats().waiting === 0, 'every slot back');
    await pool.close();
    return { perOp };
  },

  /** E5: a get() that queues behind `scale` live waiters and is aborted; the one slot stays in use. */
  async abortsBehind() {
    const pool = new ResourcePool({ max: 1 });
    const holder = await New('tcp', address, { pool }).get();
    const queued = Array.from({ length: scale }, () =>
      New('tcp', address, { pool })
        .get()
        .then((conn) => conn.put()),
    );
    check(pool.stats().waiting === scale, `${scale} waiting`);
    const handle = New('tcp', address, { pool });
    const perOp = await bytesPerOp(async (ops) => {
      for (let i = 0; i < ops; i++) {
        const controller = new AbortController();
        const getting = handle.get(controller.signal);
        controller.abort();
        await getting.catch(() => {});
        if (i % YIELD_EVERY === YIELD_EVERY - 1) await turn();
      }
    });
    check(pool.stats().waiting === scale, `still ${scale} waiting`);
    holder.put();
    await Promise.all(queued);
    check(pool.stats().inUse === 0 && pool.stats().waiting === 0, 'every waiter served');
    await pool.close();
    return { perOp };
  },

  /** E5: bytes per waiter served, FIFO, when `scale` callers wait for the one slot of a pool. */
  async serveQueue() {
    const pool = new ResourcePool({ max: 1 });
    const samples = [];
    for (let round = 0; round < 4; round++) {
      const holder = await New('tcp', address, { pool }).get();
      const served = Array.from({ length: scale }, () =>
        New('tcp', address, { pool })
          .get()
          .then((conn) => conn.put()),
      );
      check(pool.stats().waiting === scale, `${scale} waiting`);
      const bytes = await allocatedBytes(async () => {
        holder.put();
        await Promise.all(served);
      });
      if (round > 0) samples.push(bytes / scale); // the first round warms up
    }
    await pool.close();
    samples.sort((a, b) => a - b);
    return { perOp: samples[1] };
  },
};

console.log(JSON.stringify(await scenarios[scenario]()));
