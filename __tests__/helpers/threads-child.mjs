// The scenarios of __tests__/threads.test.ts: one process, its main thread and
// worker threads (this same file, started with workerData), all on connpool's
// global pool, talking to the echo server (helpers/echo-server.mjs, another
// process) on the 127.0.x.y addresses of its port.
//
// argv: scenario, port[, mode]. Prints one JSON line with what it saw.
// Run under `ulimit -n 256`: connectionLimit() is then 200.
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { connectionLimit, getResourcePool, New, ResourcePool } from '../../dist/index.js';
import { mulberry32, openSocketFds as sockets } from './child-tools.mjs';

/**
 * Samples the socket descriptors open while other threads open and close
 * them, and keeps the most seen. One directory read is close to a snapshot;
 * reading each link (hundreds of system calls) is not: it could count a
 * socket that closed and its successor. So a sample is the descriptors
 * listed less those that are not sockets, counted at the start, when nothing
 * moves (after every thread's first connection: libuv then opens a
 * descriptor on /dev/null it keeps).
 */
function sampler() {
  const all = () => readdirSync('/proc/self/fd').length;
  const others = all() - sockets();
  let peak = 0;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, all() - others);
    } catch {
      peak = Infinity; // Out of descriptors to read the directory with.
    }
  }, 1);
  return () => {
    clearInterval(timer);
    return peak;
  };
}

/** Writes `size` bytes and reads them back; leaves the connection paused. */
function exchange(conn, size = 64) {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (chunk) => {
      got += chunk.length;
      if (got >= size) finish(resolve);
    };
    const onError = (error) => finish(() => reject(error));
    const onEnd = () => finish(() => reject(new Error('EOF before the echo')));
    const finish = (settle) => {
      conn.off('data', onData).off('error', onError).off('end', onEnd);
      conn.pause();
      settle();
    };
    conn.on('data', onData).once('error', onError).once('end', onEnd);
    conn.write(Buffer.alloc(size, 'x'));
  });
}

function rawExchange(address) {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), host);
    socket.once('error', reject);
    socket.once('connect', () =>
      exchange(socket).then(() => {
        socket.destroy();
        resolve();
      }, reject),
    );
  });
}

const port = () => workerData?.port ?? process.argv[3];
const address = (a, b) => `127.0.${a}.${b}:${port()}`;

/** Opens `n` connections to `to` at once; returns them held. */
async function hold(n, to, signal) {
  return Promise.all(Array.from({ length: n }, () => New('tcp', to).get(signal)));
}

/** A message from the parent (main thread or worker) of the given type. */
function message(type, from = parentPort) {
  return new Promise((resolve) => {
    const listener = (data) => {
      if (data?.type !== type) return;
      from.off('message', listener);
      resolve(data);
    };
    from.on('message', listener);
  });
}

function start(role, data = {}) {
  const worker = new Worker(new URL(import.meta.url), { workerData: { role, port: port(), ...data } });
  worker.on("error", (error) => console.error(`worker ${role}:`, error));
  worker.exited = new Promise((resolve) => worker.once('exit', resolve));
  return worker;
}

/** Polls until `predicate()` holds; false if it never did within a generous while. */
async function until(predicate) {
  for (let i = 0; i < 1000; i++) {
    if (predicate()) return true;
    await sleep(5);
  }
  return false;
}

const TASKS = 300;
const ROUNDS = 4;
const SERVERS = 40;

/**
 * Each thread's share of the load: TASKS at once, each making ROUNDS
 * exchanges, each on a connection to one of SERVERS servers, got from the
 * pool (`shared`: the global one; `per-thread`: one per thread sized to the
 * whole limit, as before the budget was shared) or opened raw.
 */
async function load(mode) {
  const outcome = { done: 0, emfile: 0, other: {} };
  const pool = mode === 'per-thread' ? new ResourcePool({ max: connectionLimit() }) : getResourcePool();
  await Promise.all(
    Array.from({ length: TASKS }, async (_, task) => {
      for (let round = 0; round < ROUNDS; round++) {
        const serial = task * ROUNDS + round;
        const to = address(1, 1 + (serial % SERVERS));
        try {
          if (mode === 'raw') await rawExchange(to);
          else {
            const conn = await New('tcp', to, { pool }).get(AbortSignal.timeout(60_000));
            try {
              await exchange(conn);
            } catch (error) {
              await conn.close();
              throw error;
            }
            if (serial % 10 === 0) await conn.close();
            else conn.put();
          }
          outcome.done++;
        } catch (error) {
          if (error?.code === 'EMFILE') outcome.emfile++;
          else outcome.other[error?.code ?? error?.message] = (outcome.other[error?.code ?? error?.message] ?? 0) + 1;
        }
      }
    }),
  );
  if (mode === "per-thread") await pool.close();
  return outcome;
}

/**
 * One thread's share of a seeded random workload on the global pool: `tasks`
 * callers, each making `rounds` gets to one of `servers` servers with a
 * random signal (none, pre-aborted, a short timeout, or aborted at a random
 * moment), holding the connection across random waits, with or without an
 * exchange, and letting go by put(), close() or destroy().
 * @returns what happened: gets served, waits given up, anything else (unlawful).
 */
async function randomLoad(seed, { tasks, rounds, servers }) {
  const random = mulberry32(seed);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const outcome = { served: 0, gaveUp: 0, unlawful: {} };
  await Promise.all(
    Array.from({ length: tasks }, async () => {
      for (let round = 0; round < rounds; round++) {
        const to = address(5, 1 + Math.floor(random() * servers));
        const kind = pick(['none', 'none', 'aborted', 'timeout', 'later']);
        let signal;
        if (kind === 'aborted') signal = AbortSignal.abort();
        else if (kind === 'timeout') signal = AbortSignal.timeout(1 + Math.floor(random() * 30));
        else if (kind === 'later') {
          const controller = new AbortController();
          setTimeout(() => controller.abort(), Math.floor(random() * 20));
          signal = controller.signal;
        }
        const hold = Math.floor(random() * 4);
        const talk = random() < 0.5;
        const end = pick(['put', 'put', 'put', 'close', 'destroy']);
        let conn;
        try {
          conn = await New('tcp', to).get(signal);
        } catch (error) {
          // Aborted while waiting for a slot, or (the signal's reason itself) while dialing.
          if (kind !== 'none' && (error?.code === 'ERR_RESOURCE_LIMIT_EXCEEDED' || error === signal.reason)) outcome.gaveUp++;
          else outcome.unlawful[error?.code ?? error?.message] = (outcome.unlawful[error?.code ?? error?.message] ?? 0) + 1;
          continue;
        }
        outcome.served++;
        try {
          if (talk) await exchange(conn);
          if (hold > 0) await sleep(hold);
          if (end === 'close') await conn.close();
          else if (end === 'destroy') conn.destroy();
          else conn.put();
        } catch (error) {
          outcome.unlawful[error?.code ?? error?.message] = (outcome.unlawful[error?.code ?? error?.message] ?? 0) + 1;
          await conn.close();
        }
      }
    }),
  );
  return outcome;
}

/**
 * A worker's share of a workload the main thread runs with {@link runShares}:
 * ready (once its first connection is made), go, its outcome, its stats() on
 * request, then exit on request.
 */
async function share(work) {
  await rawExchange(address(1, 1));
  parentPort.postMessage({ type: 'ready' });
  await message('go');
  parentPort.postMessage({ type: 'done', outcome: await work() });
  await message('stats');
  parentPort.postMessage({ type: 'stats', stats: getResourcePool().stats() });
  await message('exit');
  parentPort.close();
}

/**
 * Runs the workers' shares and the main thread's own (`work`) at once,
 * sampling sockets. A thread's first connection makes libuv open a
 * descriptor it keeps (on /dev/null), hence the warm-up before the baseline.
 * @returns every outcome, the main thread's first (`ended(i)` for worker i if
 *   it exits first), the sockets open before, and the most open at once beyond them.
 */
async function runShares(started, work, ended) {
  await Promise.all([rawExchange(address(1, 1)), ...started.map((worker) => message('ready', worker))]);
  const baseline = sockets();
  const stopSampling = sampler();
  for (const worker of started) worker.postMessage({ type: 'go' });
  const outcomes = await Promise.all([
    work(),
    ...started.map((worker, i) => Promise.race([message('done', worker).then((done) => done.outcome), worker.exited.then(() => ended(i))])),
  ]);
  return { outcomes, baseline, peak: stopSampling() - baseline };
}

/** Each worker's stats() (its exit code instead, if it has exited). */
async function statsOf(started) {
  const all = [];
  for (const worker of started) {
    worker.postMessage({ type: 'stats' });
    all.push(await Promise.race([message('stats', worker).then((reply) => reply.stats), worker.exited]));
  }
  return all;
}

const workers = {
  /** A share of the load. */
  load: () => share(() => load(workerData.mode)),

  /** A share of the random workload. */
  random: () => share(() => randomLoad(workerData.seed, workerData.shape)),

  /** Fills the pool with idle connections, then waits to be told to exit. */
  async idler() {
    const conns = await hold(workerData.count, address(2, 1));
    for (const conn of conns) conn.put();
    parentPort.postMessage({ type: 'filled', stats: getResourcePool().stats() });
    await message('exit');
    parentPort.close();
  },

  /** Holds connections in use and idle until terminated. */
  async holder() {
    const conns = await hold(workerData.count, address(3, 1));
    for (const conn of conns.slice(0, workerData.idle)) conn.put();
    parentPort.postMessage({ type: 'holding', stats: getResourcePool().stats() });
    setInterval(() => {}, 1_000);
  },

  /** Starts a nested worker that holds connections; terminated with it. */
  async parent() {
    const nested = start('holder', { count: workerData.count, idle: 0 });
    const { stats } = await message('holding', nested);
    parentPort.postMessage({ type: 'holding', stats });
  },

  /** Keeps every slot busy: each caller gets, talks, puts and gets again (its own idle socket), until told to stop. */
  async busy() {
    let stop = false;
    parentPort.once('message', () => (stop = true));
    const handles = Array.from({ length: workerData.count }, () => New('tcp', address(7, 1)));
    let cycles = 0;
    await Promise.all(
      handles.map(async (handle) => {
        while (!stop) {
          const conn = await handle.get();
          await exchange(conn);
          conn.put();
          if (++cycles === handles.length) parentPort.postMessage({ type: 'busy' });
        }
      }),
    );
    parentPort.postMessage({ type: 'stopped' });
  },

  /** Waits for a slot, and ends its thread with process.exit() while it waits. */
  async quitter() {
    New('tcp', address(6, 1))
      .get()
      .catch(() => {});
    parentPort.postMessage({ type: 'asked' });
    await sleep(20);
    process.exit(0);
  },

  /** Waits for a slot; reports the order in which it got one (or how its wait ended). */
  async waiter() {
    const controller = new AbortController();
    parentPort.once('message', (data) => data?.type === 'abort' && controller.abort(new Error('given up')));
    const order = new Int32Array(workerData.order);
    const got = New('tcp', address(4, 2)).get(controller.signal);
    parentPort.postMessage({ type: 'asked' });
    try {
      const conn = await got;
      Atomics.store(order, workerData.id, Atomics.add(order, 0, 1) + 1);
      await exchange(conn);
      conn.put();
      parentPort.postMessage({ type: 'got' });
    } catch (error) {
      parentPort.postMessage({ type: 'failed', code: error?.code });
    }
    await message('exit');
    parentPort.close();
  },
};

const scenarios = {
  /** Main and four workers, each TASKS at once, to SERVERS servers; sampling socket descriptors. */
  async load(mode) {
    const started = Array.from({ length: 4 }, () => start('load', { mode }));
    const { outcomes, baseline, peak } = await runShares(started, () => load(mode), () => ({ done: 0, emfile: 0, other: { 'worker died': 1 } }));
    const total = { done: 0, emfile: 0, other: {} };
    for (const outcome of outcomes) {
      total.done += outcome.done;
      total.emfile += outcome.emfile;
      for (const [code, n] of Object.entries(outcome.other)) total.other[code] = (total.other[code] ?? 0) + n;
    }
    const report = { mode, limit: connectionLimit(), expected: 5 * TASKS * ROUNDS, ...total, peak };
    report.main = getResourcePool().stats();
    report.workers = await statsOf(started);
    for (const worker of started) worker.postMessage({ type: 'exit' });
    await Promise.all(started.map((worker) => worker.exited));
    if (mode === 'shared') {
      report.afterExit = getResourcePool().stats();
      await getResourcePool().close();
      report.afterClose = getResourcePool().stats();
    }
    report.leftOpen = sockets() - baseline;
    return report;
  },

  /**
   * A seeded random workload: the main thread and 1-4 workers, each of a
   * random shape; some seeds terminate one worker mid-run. Sockets sampled
   * throughout; at rest, every surviving thread's stats() compared and
   * checked against the sockets really open.
   */
  async random(seedText) {
    const seed = Number(seedText);
    const random = mulberry32(seed);
    const shape = () => ({ tasks: 10 + Math.floor(random() * 140), rounds: 1 + Math.floor(random() * 6), servers: 1 + Math.floor(random() * 30) });
    const count = 1 + Math.floor(random() * 4);
    const doomed = random() < 0.3 ? Math.floor(random() * count) : -1;
    const killAfter = Math.floor(random() * 50);
    const started = Array.from({ length: count }, (_, i) => start('random', { seed: seed * 16 + i + 1, shape: shape() }));
    const mainShape = shape();
    const mine = () => {
      if (doomed >= 0) setTimeout(() => void started[doomed].terminate(), killAfter);
      return randomLoad(seed * 16, mainShape);
    };
    const { outcomes, baseline, peak } = await runShares(started, mine, (i) => (i === doomed ? 'terminated' : 'died'));
    const report = { seed, threads: count + 1, doomed, outcomes, peak, max: getResourcePool().max };
    const alive = started.filter((_, i) => i !== doomed && typeof outcomes[i + 1] === 'object');
    if (doomed >= 0) await started[doomed].exited;
    report.main = getResourcePool().stats();
    report.workers = await statsOf(alive);
    report.openAtRest = sockets() - baseline;
    for (const worker of alive) worker.postMessage({ type: 'exit' });
    await Promise.all(started.map((worker) => worker.exited));
    report.afterExit = getResourcePool().stats();
    await getResourcePool().close();
    report.afterClose = getResourcePool().stats();
    report.leftOpen = sockets() - baseline;
    return report;
  },

  /** A worker fills the budget with idle connections; the main thread needs room. */
  async evict() {
    const baseline = sockets();
    const max = getResourcePool().max;
    const idler = start('idler', { count: max });
    const filled = (await message('filled', idler)).stats;
    const stopSampling = sampler();
    const one = await New('tcp', address(2, 2)).get(AbortSignal.timeout(10_000));
    await exchange(one);
    const afterOne = getResourcePool().stats();
    const more = await hold(20, address(2, 3), AbortSignal.timeout(10_000));
    await Promise.all(more.map((conn) => exchange(conn)));
    const afterMore = getResourcePool().stats();
    const peak = stopSampling();
    one.put();
    for (const conn of more) conn.put();
    idler.postMessage({ type: 'exit' });
    await idler.exited;
    const afterExit = getResourcePool().stats();
    await getResourcePool().close();
    return { max, filled, afterOne, afterMore, afterExit, peak: peak - baseline, leftOpen: sockets() - baseline };
  },

  /** Terminated workers give their slots back: one holding connections, one waiting, one whose nested worker holds them. */
  async terminate() {
    const baseline = sockets();
    const pool = getResourcePool();
    const report = {};
    const holder = start('holder', { count: 150, idle: 50 });
    report.holding = (await message('holding', holder)).stats;
    report.seenByMain = pool.stats();
    await holder.terminate();
    report.afterTerminate = pool.stats();
    report.socketsAfterTerminate = sockets() - baseline;
    // Every slot is free again: the immediate canceler gets all of them.
    const all = await hold(pool.max, address(3, 2), AbortSignal.abort());
    report.immediate = all.length;
    const order = new SharedArrayBuffer(16);
    const waiter = start('waiter', { id: 1, order });
    await message('asked', waiter);
    report.waitingSeen = await until(() => pool.stats().waiting === 1);
    await waiter.terminate();
    report.afterWaiterTerminate = pool.stats();
    await Promise.all(all.map((conn) => conn.close()));
    const parent = start('parent', { count: 10 });
    report.nested = (await message('holding', parent)).stats;
    report.nestedSeenByMain = pool.stats();
    await parent.terminate();
    report.afterParentTerminate = pool.stats();
    report.leftOpen = sockets() - baseline;
    return report;
  },

  /**
   * A worker keeps all of the budget busy, reusing its own idle sockets as
   * fast as it puts them back; the main thread's get()s are still served,
   * each within a bounded wait (the worker owes it the next socket it puts back).
   */
  async starve() {
    const pool = getResourcePool();
    const busy = start('busy', { count: pool.max });
    await message('busy', busy);
    const report = { served: 0, failed: [], duringStats: undefined };
    for (let i = 0; i < 20; i++) {
      try {
        const conn = await New('tcp', address(7, 2)).get(AbortSignal.timeout(5_000));
        await exchange(conn);
        await conn.close();
        report.served++;
      } catch (error) {
        report.failed.push(error?.code ?? String(error));
      }
    }
    report.duringStats = pool.stats();
    busy.postMessage({ type: 'stop' });
    await busy.exited;
    report.afterExit = pool.stats();
    await pool.close();
    return report;
  },

  /**
   * A worker that waits for a slot and ends with process.exit(), started by a
   * worker that never loads connpool (so no thread gives back its slots):
   * it still leaves the line, and holds up no other thread's get().
   */
  async orphan() {
    const pool = getResourcePool();
    const held = await hold(pool.max, address(6, 2));
    const bare = new Worker(new URL('./threads-bare.mjs', import.meta.url), { workerData: { role: 'quitter', port: port() } });
    const report = {};
    await message('asked', bare);
    await message('nested exited', bare);
    report.afterExit = pool.stats();
    await held.pop().close();
    try {
      const conn = await New('tcp', address(6, 3)).get(AbortSignal.timeout(5_000));
      report.got = true;
      conn.put();
    } catch (error) {
      report.got = error?.code ?? String(error);
    }
    report.after = pool.stats();
    await bare.terminate();
    for (const conn of held) conn.put();
    await pool.close();
    return report;
  },

  /** Waiters of three threads are served oldest first; one that gives up leaves the line. */
  async fifo() {
    const pool = getResourcePool();
    const held = await hold(pool.max, address(4, 1));
    const order = new SharedArrayBuffer(32);
    const orderOf = new Int32Array(order);
    const report = { waiting: [] };
    const first = start('waiter', { id: 1, order });
    await message('asked', first);
    report.waiting.push(await until(() => pool.stats().waiting === 1));
    let mainGot;
    const mine = New('tcp', address(4, 2))
      .get()
      .then((conn) => {
        Atomics.store(orderOf, 2, Atomics.add(orderOf, 0, 1) + 1);
        mainGot = conn;
      });
    report.waiting.push(pool.stats().waiting === 2);
    const second = start('waiter', { id: 3, order });
    await message('asked', second);
    report.waiting.push(await until(() => pool.stats().waiting === 3));
    const quitter = start('waiter', { id: 4, order });
    await message('asked', quitter);
    report.waiting.push(await until(() => pool.stats().waiting === 4));
    quitter.postMessage({ type: 'abort' });
    report.quitter = (await message('failed', quitter)).code;
    report.waiting.push(await until(() => pool.stats().waiting === 3));
    // One slot at a time, each once the previous waiter has its connection: the order is then
    // the order of admission, not of dials finishing.
    for (let freed = 1; freed <= 3; freed++) {
      await held.pop().close();
      await until(() => Atomics.load(orderOf, 0) === freed);
    }
    await mine;
    await Promise.all([message('got', first), message('got', second)].map((got) => Promise.race([got, sleep(5_000)])));
    report.order = { first: Atomics.load(orderOf, 1), main: Atomics.load(orderOf, 2), second: Atomics.load(orderOf, 3), quitter: Atomics.load(orderOf, 4) };
    mainGot.put();
    for (const conn of held) conn.put();
    for (const worker of [first, second, quitter]) worker.postMessage({ type: 'exit' });
    await Promise.all([first, second, quitter].map((worker) => worker.exited));
    report.afterExit = pool.stats();
    await pool.close();
    return report;
  },
};

if (isMainThread) {
  const [scenario, , mode] = process.argv.slice(2);
  const report = await scenarios[scenario](mode);
  console.log(JSON.stringify(report));
  process.exit(0);
} else {
  await workers[workerData.role]();
}
