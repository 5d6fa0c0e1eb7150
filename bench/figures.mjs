// The figures. Each returns one or more results:
//   { id, title, unit, subjects: [{ name, samples, median }], comparisons, notes }
// where a comparison is
//   { row, label, kind: 'speedup' | 'cost', ratio, target: { op: '>=' | '<=', value } | null }
// ('speedup': connpool's rate / the row's rate; 'cost': time per op at the
// large size / at the small size).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import genericPool from 'generic-pool';
import pLimit from 'p-limit';
import tarn from 'tarn';
import { inBatches, interleave, log, median, settle, until } from './harness.mjs';
import { download, roundTrip, upload } from './io.mjs';

const HOST = '127.0.0.1';

function pick(subjects, name) {
  return subjects.find((s) => s.name === name);
}

/**
 * The median over repetitions of `a`'s rate ÷ `b`'s rate within the same
 * repetition: the two samples of a pair ran back to back, so they share
 * whatever else the machine was doing at the time.
 */
function pairedRatio(a, b) {
  return median(a.samples.map((sample, rep) => sample / b.samples[rep]));
}

/**
 * `main`'s rate over `row`'s. The table shows it on `row`, or, for a ratio
 * between two other subjects, on `showOn` with a note saying what it divides.
 */
function speedup(subjects, main, row, target = null, showOn = undefined) {
  const ratio = pairedRatio(pick(subjects, main), pick(subjects, row));
  const note = showOn === undefined ? undefined : `÷ ${row}`;
  return { row: showOn ?? row, label: `${main} ÷ ${row}`, kind: 'speedup', ratio, target, note };
}

function cost(subjects, small, large, target) {
  const ratio = pairedRatio(pick(subjects, small), pick(subjects, large));
  return { row: large, label: 'cost large ÷ small', kind: 'cost', ratio, target };
}

/**
 * Closes a pool's sockets and waits until it holds none: `pool.close()` where
 * the library has it, else `scheduleClose()` on every handle.
 */
async function shut(pool, handles) {
  if (typeof pool.close === 'function') {
    await pool.close();
    return;
  }
  for (const handle of handles) handle.scheduleClose();
  await until(() => {
    const { inUse, idle, releasing } = pool.stats();
    return inUse + idle + releasing === 0;
  }, `pool ${pool.name} to close its sockets`);
}

async function connectRaw(port) {
  const socket = net.connect({ host: HOST, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 15_000 });
  await once(socket, 'connect');
  return socket;
}

async function closeRaw(socket) {
  if (socket.closed) return;
  const closed = once(socket, 'close');
  socket.destroy();
  await closed;
}

/** Runs `callers` concurrent loops that share `total` iterations of `op(i)`. */
function contend(callers, total, op) {
  let left = total;
  const caller = async (i) => {
    while (left-- > 0) await op(i);
  };
  return Promise.all(Array.from({ length: callers }, (_, i) => caller(i)));
}

function anchors() {
  const gp = genericPool.createPool({ create: async () => ({}), destroy: async () => {} }, { max: 10, min: 0 });
  const tp = new tarn.Pool({ create: async () => ({}), destroy: () => {}, min: 0, max: 10 });
  const limit = pLimit(10);
  return {
    gp,
    tp,
    limit,
    async close() {
      await gp.drain();
      await gp.clear();
      await tp.destroy();
    },
  };
}

const trivial = async () => {};

/** a. One caller, sequential: connpool get()+put() of an idle socket vs the anchors' acquire+release. */
export async function checkout(env) {
  const { New, ResourcePool } = env.lib;
  const pool = new ResourcePool({ max: 10, name: 'bench-checkout' });
  const res = New('tcp', `${HOST}:${env.ports.checkout}`, { pool });
  (await res.get()).put();
  const { gp, tp, limit, close } = anchors();
  const { ops, warmupOps } = env.sizes.checkout;
  const subjects = [
    {
      name: 'connpool',
      async run(n) {
        for (let i = 0; i < n; i++) {
          const conn = await res.get();
          conn.put();
        }
      },
    },
    {
      name: 'generic-pool',
      async run(n) {
        for (let i = 0; i < n; i++) {
          const resource = await gp.acquire();
          gp.release(resource);
        }
      },
    },
    {
      name: 'tarn',
      async run(n) {
        for (let i = 0; i < n; i++) {
          const resource = await tp.acquire().promise;
          tp.release(resource);
        }
      },
    },
    {
      name: 'p-limit',
      async run(n) {
        for (let i = 0; i < n; i++) await limit(trivial);
      },
    },
  ].map((s) => ({ ...s, ops, warmupOps }));
  try {
    const results = await interleave('checkout', subjects, env.reps);
    return [
      {
        id: 'checkout',
        title: 'a. checkout, 1 caller',
        unit: 'ops/s',
        subjects: results,
        comparisons: [
          speedup(results, 'connpool', 'generic-pool', { op: '>=', value: 2 }),
          speedup(results, 'connpool', 'tarn'),
          speedup(results, 'connpool', 'p-limit', { op: '>=', value: 1 }),
        ],
        notes: { ops },
      },
    ];
  } finally {
    await shut(pool, [res]);
    await close();
  }
}

/** b. `callers` concurrent callers over 10 slots, `ops` operations in all, each `get()` → `put()`. */
export function contended(env) {
  return contention(env, {
    id: 'contended',
    title: 'b. contended',
    sizes: env.sizes.contended,
    held: false,
    targets: { 'generic-pool': { op: '>=', value: 1.5 }, 'p-limit': { op: '>=', value: 0.8 } },
  });
}

/**
 * b. The same, but each caller holds its slot across an `await` (one
 * microtask) before giving it back, as any real use of a slot does: the slot
 * frees in a later job than the one that got it.
 */
export function contendedAwait(env) {
  return contention(env, {
    id: 'contended-await',
    title: 'b. contended, held across an await',
    sizes: env.sizes.contendedAwait,
    held: true,
    targets: { 'generic-pool': { op: '>=', value: 1 } },
  });
}

const tick = () => Promise.resolve();
const heldTask = async () => {
  await tick();
};

/** `callers` concurrent callers over 10 slots; with `held`, `await` one microtask between taking and giving back. */
async function contention(env, { id, title, sizes, held, targets }) {
  const { New, ResourcePool } = env.lib;
  const { ops, warmupOps, callers } = sizes;
  const pool = new ResourcePool({ max: 10, name: `bench-${id}` });
  const handles = Array.from({ length: callers }, () => New('tcp', `${HOST}:${env.ports.checkout}`, { pool }));
  const { gp, tp, limit, close } = anchors();
  const subjects = [
    {
      name: 'connpool',
      run: (n) =>
        contend(
          callers,
          n,
          held
            ? async (i) => {
                const conn = await handles[i].get();
                await tick();
                conn.put();
              }
            : async (i) => {
                const conn = await handles[i].get();
                conn.put();
              },
        ),
    },
    {
      name: 'generic-pool',
      run: (n) =>
        contend(
          callers,
          n,
          held
            ? async () => {
                const resource = await gp.acquire();
                await tick();
                gp.release(resource);
              }
            : async () => {
                const resource = await gp.acquire();
                gp.release(resource);
              },
        ),
    },
    {
      name: 'tarn',
      run: (n) =>
        contend(
          callers,
          n,
          held
            ? async () => {
                const resource = await tp.acquire().promise;
                await tick();
                tp.release(resource);
              }
            : async () => {
                const resource = await tp.acquire().promise;
                tp.release(resource);
              },
        ),
    },
    {
      name: 'p-limit',
      run: (n) => contend(callers, n, () => limit(held ? heldTask : trivial)),
    },
  ].map((s) => ({ ...s, ops, warmupOps }));
  try {
    const results = await interleave(id, subjects, env.reps);
    return [
      {
        id,
        title: `${title}, ${callers.toLocaleString('en')} callers / 10 slots`,
        unit: 'ops/s',
        subjects: results,
        comparisons: [
          speedup(results, 'connpool', 'generic-pool', targets['generic-pool'] ?? null),
          speedup(results, 'connpool', 'tarn'),
          speedup(results, 'connpool', 'p-limit', targets['p-limit'] ?? null),
        ],
        notes: { ops, callers, sockets: pool.stats().idle, ...(held ? { held: 'await Promise.resolve()' } : {}) },
      },
    ];
  } finally {
    await shut(pool, handles);
    await close();
  }
}

/**
 * i. Threads. Part 1: one caller, sequential get()+put() of an idle socket
 * in the main thread, on the global pool (whose budget is shared with worker
 * threads, in a SharedArrayBuffer) vs a private pool (a budget of its own).
 * Part 2: the global pool full and contended across threads, in a child
 * process under `ulimit -n 256` (max 200): see threads-child.mjs.
 */
export async function threads(env) {
  const { New, ResourcePool, getResourcePool } = env.lib;
  const sizes = env.sizes.threads;
  const address = `${HOST}:${env.ports.checkout}`;
  const out = [];

  // Part 1, in this process.
  {
    const global = getResourcePool();
    const shared = New('tcp', address);
    const pool = new ResourcePool({ max: 10, name: 'bench-threads-private' });
    const own = New('tcp', address, { pool });
    (await shared.get()).put();
    (await own.get()).put();
    const { gp, close } = anchors();
    const loop = (res) => async (n) => {
      for (let i = 0; i < n; i++) {
        const conn = await res.get();
        conn.put();
      }
    };
    const subjects = [
      { name: 'connpool global pool (shared budget)', run: loop(shared) },
      { name: 'connpool private pool', run: loop(own) },
      {
        name: 'generic-pool',
        async run(n) {
          for (let i = 0; i < n; i++) {
            const resource = await gp.acquire();
            gp.release(resource);
          }
        },
      },
    ].map((s) => ({ ...s, ops: sizes.ops, warmupOps: sizes.warmupOps }));
    try {
      const results = await interleave('threads (main thread)', subjects, env.reps);
      out.push({
        id: 'threads-checkout',
        title: 'i. checkout, 1 caller, global pool (shared budget) vs private',
        unit: 'ops/s',
        subjects: results,
        comparisons: [
          speedup(results, 'connpool global pool (shared budget)', 'connpool private pool', { op: '>=', value: 0.83 }),
          speedup(results, 'connpool global pool (shared budget)', 'generic-pool'),
        ],
        notes: { ops: sizes.ops, globalMax: global.stats().max },
      });
    } finally {
      shared.scheduleClose();
      await until(() => {
        const { inUse, idle, releasing } = global.stats();
        return inUse + idle + releasing === 0;
      }, 'the global pool to close its socket');
      await shut(pool, [own]);
      await close();
    }
  }

  // Part 2, in a child process under `ulimit -n 256`.
  {
    const { ops, warmupOps, threads: count, callers, timeoutMs } = sizes.contended;
    const child = await runThreadsChild(env.ports.checkout, { ops, warmupOps, threads: count, callers, reps: env.reps }, timeoutMs);
    if (child.connectionLimit !== 200) throw new Error(`threads child: connectionLimit() is ${child.connectionLimit} under ulimit -n 256, expected 200`);
    const [shared, anchor] = child.results;
    out.push({
      id: 'threads-contended',
      title: `i. contended across threads, held across an await, ${count} threads × ${callers} callers / 200 slots`,
      unit: 'ops/s',
      subjects: child.results,
      comparisons: [speedup(child.results, shared.name, anchor.name)],
      notes: child.notes,
    });
  }
  return out;
}

/** Runs threads-child.mjs under `ulimit -n 256`; resolves with its JSON line. Kills it after `timeoutMs`. */
async function runThreadsChild(port, sizes, timeoutMs) {
  const script = fileURLToPath(new URL('./threads-child.mjs', import.meta.url));
  const child = spawn('/bin/sh', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, script, String(port), JSON.stringify(sizes)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    stdout += chunk;
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  try {
    const [code, signal] = await once(child, 'close');
    if (timedOut) throw new Error(`threads child: no answer within ${timeoutMs / 1000} s (killed)`);
    if (code !== 0) throw new Error(`threads child exited with ${signal ?? `code ${code}`}`);
  } finally {
    clearTimeout(timer);
  }
  const line = stdout.trim().split('\n').at(-1);
  if (!line) throw new Error('threads child printed nothing');
  return JSON.parse(line);
}

/** c. 32-byte echo round trips to the child: pooled, raw kept-open, fresh connection; TCP and TLS. */
export async function roundTrips(env) {
  const { New, ResourcePool, tlsDialer } = env.lib;
  const payload = Buffer.alloc(32, 0x61);
  const sizes = env.sizes.roundTrip;
  const out = [];

  // TCP
  {
    const pool = new ResourcePool({ max: 10, name: 'bench-rtt-tcp' });
    const res = New('tcp', `${HOST}:${env.ports.rtt}`, { pool });
    const raw = await connectRaw(env.ports.rtt);
    const subjects = [
      {
        name: 'connpool',
        ops: sizes.kept,
        warmupOps: sizes.keptWarmup,
        async run(n) {
          for (let i = 0; i < n; i++) {
            const conn = await res.get();
            await roundTrip(conn, payload);
            conn.put();
          }
        },
      },
      {
        name: 'raw kept-open',
        ops: sizes.kept,
        warmupOps: sizes.keptWarmup,
        async run(n) {
          for (let i = 0; i < n; i++) await roundTrip(raw, payload);
        },
      },
      {
        name: 'fresh net.connect',
        ops: sizes.fresh,
        warmupOps: sizes.freshWarmup,
        async run(n) {
          for (let i = 0; i < n; i++) {
            const socket = net.connect({ host: HOST, port: env.ports.rtt, noDelay: true });
            await once(socket, 'connect');
            await roundTrip(socket, payload);
            socket.destroy();
          }
        },
      },
    ];
    try {
      const results = await interleave('round trips TCP', subjects, env.reps, { slices: env.sizes.roundTrip.slices });
      out.push({
        id: 'roundtrip-tcp',
        title: 'c. round trip, TCP',
        unit: 'round trips/s',
        subjects: results,
        comparisons: [
          speedup(results, 'connpool', 'raw kept-open', { op: '>=', value: 0.9 }),
          speedup(results, 'connpool', 'fresh net.connect'),
        ],
        notes: { payload: payload.length },
      });
    } finally {
      await shut(pool, [res]);
      await closeRaw(raw);
    }
  }

  // TLS
  {
    const { ca } = env.credentials;
    const pool = new ResourcePool({ max: 10, name: 'bench-rtt-tls' });
    const dialer = tlsDialer({ ca });
    const res = New('tcp', `${HOST}:${env.ports.tls}`, { pool });
    const raw = tls.connect({ host: HOST, port: env.ports.tls, ca });
    await once(raw, 'secureConnect');
    const fresh = async (session) => {
      const socket = tls.connect({ host: HOST, port: env.ports.tls, ca, session });
      let ticket;
      socket.on('session', (s) => {
        ticket = s;
      });
      await once(socket, 'secureConnect');
      await roundTrip(socket, payload);
      const reused = socket.isSessionReused();
      socket.destroy();
      return { ticket, reused };
    };
    let session;
    let resumed = 0;
    let resumedTotal = 0;
    const subjects = [
      {
        name: 'connpool',
        ops: sizes.tlsKept,
        warmupOps: sizes.keptWarmup,
        async run(n) {
          for (let i = 0; i < n; i++) {
            const conn = await res.get(undefined, dialer);
            await roundTrip(conn, payload);
            conn.put();
          }
        },
      },
      {
        name: 'raw kept-open',
        ops: sizes.tlsKept,
        warmupOps: sizes.keptWarmup,
        async run(n) {
          for (let i = 0; i < n; i++) await roundTrip(raw, payload);
        },
      },
      {
        name: 'fresh tls.connect',
        ops: sizes.tlsFresh,
        warmupOps: sizes.tlsFreshWarmup,
        async run(n) {
          for (let i = 0; i < n; i++) await fresh(undefined);
        },
      },
      {
        name: 'fresh, session resumed',
        ops: sizes.tlsResumed,
        warmupOps: sizes.tlsFreshWarmup,
        async run(n) {
          for (let i = 0; i < n; i++) {
            const { ticket, reused } = await fresh(session);
            if (ticket !== undefined) session = ticket;
            resumedTotal++;
            if (reused) resumed++;
          }
        },
      },
    ];
    try {
      const results = await interleave('round trips TLS', subjects, env.reps, { slices: env.sizes.roundTrip.slices });
      out.push({
        id: 'roundtrip-tls',
        title: 'c. round trip, TLS 1.3',
        unit: 'round trips/s',
        subjects: results,
        comparisons: [
          speedup(results, 'connpool', 'raw kept-open', { op: '>=', value: 0.9 }),
          speedup(results, 'connpool', 'fresh tls.connect'),
          speedup(results, 'connpool', 'fresh, session resumed'),
        ],
        notes: { payload: payload.length, protocol: raw.getProtocol(), sessionsResumed: `${resumed}/${resumedTotal}` },
      });
    } finally {
      await shut(pool, [res]);
      await closeRaw(raw);
    }
  }
  return out;
}

/**
 * c. Fresh TLS dials, one 32-byte round trip each: through tlsDialer (its one
 * SecureContext; a full handshake, then with the session resumed) against
 * tls.connect with a shared SecureContext.
 */
export async function tlsDials(env) {
  const { New, ResourcePool, tlsDialer } = env.lib;
  const { ca } = env.credentials;
  const sizes = env.sizes.roundTrip;
  const payload = Buffer.alloc(32, 0x61);
  const address = `${HOST}:${env.ports.tls}`;
  const pool = new ResourcePool({ max: 10, name: 'bench-tls-dials' });
  const secureContext = tls.createSecureContext({ ca });
  const dialThrough = (dialer) => {
    const res = New('tcp', address, { pool });
    return async (n) => {
      for (let i = 0; i < n; i++) {
        const conn = await res.get(undefined, dialer);
        await roundTrip(conn, payload);
        await conn.close(); // the next get() dials again
      }
    };
  };
  const subjects = [
    { name: 'connpool, full handshake', ops: sizes.tlsFresh, warmupOps: sizes.tlsFreshWarmup, run: dialThrough(tlsDialer({ ca, resumeSessions: false })) },
    { name: 'connpool, resumed', ops: sizes.tlsResumed, warmupOps: sizes.tlsFreshWarmup, run: dialThrough(tlsDialer({ ca })) },
    {
      name: 'tls.connect, shared context',
      ops: sizes.tlsFresh,
      warmupOps: sizes.tlsFreshWarmup,
      async run(n) {
        for (let i = 0; i < n; i++) {
          const socket = tls.connect({ host: HOST, port: env.ports.tls, secureContext });
          await once(socket, 'secureConnect');
          await roundTrip(socket, payload);
          socket.destroy();
          await once(socket, 'close');
        }
      },
    },
  ];
  try {
    const results = await interleave('fresh TLS dials', subjects, env.reps, { slices: sizes.slices });
    return [
      {
        id: 'tls-dials',
        title: 'c. fresh TLS dials',
        unit: 'dials/s',
        subjects: results,
        comparisons: [
          speedup(results, 'connpool, full handshake', 'tls.connect, shared context', { op: '>=', value: 0.95 }),
          speedup(results, 'connpool, resumed', 'connpool, full handshake', { op: '>=', value: 1.3 }, 'connpool, resumed'),
        ],
        notes: { payload: payload.length },
      },
    ];
  } finally {
    await shut(pool, []);
  }
}

/** d. Bulk transfer through a PooledConn and through a raw socket, each direction. */
export async function throughput(env) {
  const { New, ResourcePool } = env.lib;
  const { bytes, warmupBytes, chunk: chunkSize, slices } = env.sizes.throughput;
  const chunk = Buffer.alloc(chunkSize, 0x42);
  const pool = new ResourcePool({ max: 10, name: 'bench-throughput' });
  const res = New('tcp', `${HOST}:${env.ports.bulk}`, { pool });
  const raw = await connectRaw(env.ports.bulk);
  const out = [];
  try {
    for (const direction of ['up', 'down']) {
      const move = direction === 'up' ? (stream, n) => upload(stream, n, chunk) : (stream, n) => download(stream, n);
      const subjects = [
        {
          name: 'connpool',
          async run(n) {
            const conn = await res.get();
            await move(conn, n);
            conn.put();
          },
        },
        { name: 'raw socket', run: (n) => move(raw, n) },
      ].map((s) => ({ ...s, ops: bytes, warmupOps: warmupBytes }));
      const results = await interleave(`throughput ${direction}`, subjects, env.reps, { slices });
      out.push({
        id: `throughput-${direction}`,
        title: `d. throughput ${direction}`,
        unit: 'B/s',
        subjects: results,
        comparisons: [speedup(results, 'connpool', 'raw socket', { op: '>=', value: 0.95 })],
        notes: { bytes, chunk: chunkSize, slices },
      });
    }
  } finally {
    await shut(pool, [res]);
    await closeRaw(raw);
  }
  return out;
}

/** Sequential get+put, round-robin over `handles` (with `dialers[k]` when given). */
function checkoutLoop(handles, dialers) {
  const count = handles.length;
  return async (n) => {
    let k = 0;
    for (let i = 0; i < n; i++) {
      const conn = await handles[k].get(undefined, dialers?.[k]);
      conn.put();
      if (++k === count) k = 0;
    }
  };
}

/** `count` handles spread evenly over `list`. */
function spread(list, count) {
  return Array.from({ length: Math.min(count, list.length) }, (_, i) => list[Math.floor((i * list.length) / Math.min(count, list.length))]);
}

async function scaleFigure(env, { id, what, small, large, build, describe }) {
  const { ops, warmupOps } = env.sizes.scale;
  const label = (n) => `connpool @ ${n.toLocaleString('en')} ${n === 1 ? what.replace(/s$/, '') : what}`;
  log(`  scale ${what}: building ${small.toLocaleString('en')} and ${large.toLocaleString('en')}`);
  const states = [];
  try {
    states.push(await build(small));
    await settle();
    states.push(await build(large));
    await settle();
    const subjects = states.map((state, i) => ({ name: label(i === 0 ? small : large), ops, warmupOps, run: state.run }));
    const results = await interleave(`scale ${what}`, subjects, env.reps);
    return {
      id,
      title: `e. scale: ${what}`,
      unit: 'ops/s',
      subjects: results,
      comparisons: [cost(results, label(small), label(large), { op: '<=', value: 1.3 })],
      notes: Object.assign({ ops, setup: describe }, ...states.map((s) => s.notes ?? {})),
    };
  } finally {
    for (const state of states) await state.close();
  }
}

/** e. connpool's checkout cost as handles, keys, aborted waiters and idle sockets grow. */
export async function scale(env) {
  const { New, ResourcePool, netDialer } = env.lib;
  const address = `${HOST}:${env.ports.scale}`;
  const sizes = env.sizes.scale;
  const out = [];

  out.push(
    await scaleFigure(env, {
      id: 'scale-handles',
      what: 'handles',
      describe: `${sizes.handles[0].toLocaleString('en')} vs ${sizes.handles[1].toLocaleString('en')} handles (max 10, one key)`,
      small: sizes.handles[0],
      large: sizes.handles[1],
      async build(n) {
        const pool = new ResourcePool({ max: 10, name: `bench-handles-${n}` });
        const handles = Array.from({ length: n }, () => New('tcp', address, { pool }));
        for (const handle of handles) (await handle.get()).put();
        return { run: checkoutLoop(spread(handles, 10)), close: () => shut(pool, handles) };
      },
    }),
  );

  const baseDial = netDialer().dial;
  out.push(
    await scaleFigure(env, {
      id: 'scale-keys',
      what: 'keys',
      describe: `${sizes.keys[0].toLocaleString('en')} vs ${sizes.keys[1].toLocaleString('en')} keys (one idle socket per key, custom dialer keys)`,
      small: sizes.keys[0],
      large: sizes.keys[1],
      async build(n) {
        const pool = new ResourcePool({ max: sizes.keys[1] + 10, name: `bench-keys-${n}` });
        const dialers = Array.from({ length: n }, (_, i) => ({ key: `k${i}`, dial: baseDial }));
        const handles = dialers.map(() => New('tcp', address, { pool }));
        await inBatches(n, 200, async (i) => (await handles[i].get(undefined, dialers[i])).put());
        const sample = spread(handles.map((h, i) => i), 10);
        return {
          run: checkoutLoop(
            sample.map((i) => handles[i]),
            sample.map((i) => dialers[i]),
          ),
          close: () => shut(pool, handles),
        };
      },
    }),
  );

  out.push(
    await scaleFigure(env, {
      id: 'scale-waiters',
      what: 'aborted waiters',
      describe: `0 vs ${sizes.waiters[1].toLocaleString('en')} aborted waiters (max 10; gets aborted while every slot was held)`,
      small: sizes.waiters[0],
      large: sizes.waiters[1],
      async build(n) {
        const pool = new ResourcePool({ max: 10, name: `bench-waiters-${n}` });
        const holders = Array.from({ length: 10 }, () => New('tcp', address, { pool }));
        const held = await Promise.all(holders.map((h) => h.get()));
        const waiters = Array.from({ length: n }, () => New('tcp', address, { pool }));
        const controllers = waiters.map(() => new AbortController());
        const queuedAt = performance.now();
        const pending = waiters.map((w, i) => w.get(controllers[i].signal).then(
          (conn) => {
            conn.put();
            return 'got';
          },
          (error) => error.code,
        ));
        const queuedMs = performance.now() - queuedAt;
        const waiting = pool.stats().waiting;
        const abortAt = performance.now();
        for (const controller of controllers) controller.abort();
        const outcomes = await Promise.all(pending);
        const abortMs = performance.now() - abortAt;
        const aborted = outcomes.filter((code) => code === 'ERR_RESOURCE_LIMIT_EXCEEDED').length;
        for (const conn of held) conn.put();
        const notes =
          n === 0
            ? {}
            : {
                waitersQueued: waiting,
                waitersAborted: aborted,
                queueMs: Math.round(queuedMs),
                abortMs: Math.round(abortMs),
                waitingAfter: pool.stats().waiting,
              };
        return {
          run: checkoutLoop(holders),
          notes,
          // Referencing the aborted waiters' handles and signals keeps them reachable while measuring.
          close: () => shut(pool, [...holders, ...waiters.slice(0, controllers.length)]),
        };
      },
    }),
  );

  out.push(
    await scaleFigure(env, {
      id: 'scale-idle',
      what: 'idle sockets',
      describe: `0 vs ${sizes.idle[1].toLocaleString('en')} idle sockets (one key)`,
      small: sizes.idle[0],
      large: sizes.idle[1],
      async build(n) {
        const pool = new ResourcePool({ max: sizes.idle[1] + 20, name: `bench-idle-${n}` });
        const population = Array.from({ length: n }, () => New('tcp', address, { pool }));
        const conns = new Array(n);
        await inBatches(n, 200, async (i) => {
          conns[i] = await population[i].get();
        });
        for (const conn of conns) conn.put();
        const measured = Array.from({ length: 10 }, () => New('tcp', address, { pool }));
        for (const handle of measured) (await handle.get()).put();
        return {
          run: checkoutLoop(measured),
          notes: n === 0 ? {} : { idleSockets: pool.stats().idle },
          close: () => shut(pool, [...population, ...measured]),
        };
      },
    }),
  );
  return out;
}

// ------------------------------------------------------------ HTTP and fresh dials

/** One GET through Node's HTTP client; resolves once the whole response is read. */
function nodeGet(agent, host, port) {
  return new Promise((resolve, reject) => {
    http
      .get({ host, port, path: '/', agent }, (res) => {
        res.once('error', reject);
        res.once('end', resolve);
        res.resume();
      })
      .once('error', reject);
  });
}

/** One GET through `undici.request`; resolves once the whole body is read. */
async function undiciGet(request, dispatcher, url) {
  const { body } = await request(url, { dispatcher });
  await body.text();
}

/** connpool's two HTTP clients, the first subject of each pair in figures f and g. */
const HTTP_AGENT = 'HttpAgent';
const UNDICI_DISPATCHER = 'createDispatcher';

/**
 * f. Requests/s on one origin (the child's node:http server, body 'ok',
 * keep-alive): connpool's HttpAgent against `http.Agent({ keepAlive: true })`
 * (both through `http.get`), and createDispatcher against `undici.Agent()`
 * (both through `undici.request`); one request at a time, then `callers` at once.
 */
export async function httpRequests(env) {
  const { ResourcePool } = env.lib;
  const { HttpAgent } = await import('../dist/http/index.js');
  const { createDispatcher } = await import('../dist/undici/index.js');
  const undici = await import('undici');
  const sizes = env.sizes.http;
  const port = env.ports.http;
  const url = `http://${HOST}:${port}/`;
  const out = [];
  for (const mode of ['sequential', 'concurrent']) {
    const callers = mode === 'sequential' ? 1 : sizes.callers;
    const ops = mode === 'sequential' ? sizes.sequential : sizes.concurrent;
    const warmupOps = mode === 'sequential' ? sizes.sequentialWarmup : sizes.concurrentWarmup;
    const sequentially = (get) => async (n) => {
      for (let i = 0; i < n; i++) await get();
    };
    const loop = (get) => (callers === 1 ? sequentially(get) : (n) => contend(callers, n, get));
    const agentPool = new ResourcePool({ max: 100, name: `bench-http-agent-${mode}` });
    const dispatcherPool = new ResourcePool({ max: 100, name: `bench-http-dispatcher-${mode}` });
    const pooledAgent = new HttpAgent({ keepAlive: true, pool: agentPool });
    const stockAgent = new http.Agent({ keepAlive: true });
    const dispatcher = createDispatcher({ pool: dispatcherPool });
    const stockDispatcher = new undici.Agent();
    const subjects = [
      { name: HTTP_AGENT, run: loop(() => nodeGet(pooledAgent, HOST, port)) },
      { name: 'http.Agent({ keepAlive })', run: loop(() => nodeGet(stockAgent, HOST, port)) },
      { name: UNDICI_DISPATCHER, run: loop(() => undiciGet(undici.request, dispatcher, url)) },
      { name: 'undici.Agent()', run: loop(() => undiciGet(undici.request, stockDispatcher, url)) },
    ].map((s) => ({ ...s, ops, warmupOps }));
    try {
      const results = await interleave(`HTTP ${mode}`, subjects, env.reps, { slices: sizes.slices, alternate: true });
      out.push({
        id: `http-${mode}`,
        title: `f. HTTP, 1 origin, ${callers === 1 ? 'sequential' : `${callers} concurrent`}`,
        unit: 'requests/s',
        subjects: results,
        comparisons: [
          speedup(results, HTTP_AGENT, 'http.Agent({ keepAlive })', { op: '>=', value: 0.9 }),
          speedup(results, UNDICI_DISPATCHER, 'undici.Agent()', { op: '>=', value: 0.9 }, UNDICI_DISPATCHER),
        ],
        notes: {
          callers,
          requests: ops,
          // Connections connpool made and reused over the figure, warm-up included:
          // createDispatcher hands an idle socket back after idleHandoff (10 ms), and undici connects again.
          [HTTP_AGENT]: connpoolCounts(agentPool),
          [UNDICI_DISPATCHER]: connpoolCounts(dispatcherPool),
        },
      });
    } finally {
      pooledAgent.destroy();
      stockAgent.destroy();
      await dispatcher.close();
      await stockDispatcher.close();
      await agentPool.close();
      await dispatcherPool.close();
    }
  }
  return out;
}

function connpoolCounts(pool) {
  const { dials, reuses, evictions } = pool.stats();
  return { dials, reuses, evictions };
}

/** Origin k of the fan-out: 127.0.1.1, 127.0.1.2, ..., 250 per third byte. */
const fanoutHost = (k) => `127.0.${1 + Math.floor(k / 250)}.${1 + (k % 250)}`;

/**
 * g. `requests` GETs fired at once over `origins` origins (request i to origin
 * i % origins, each origin a loopback address of the child's server on
 * 0.0.0.0), with `cap` connections: HttpAgent and createDispatcher on a
 * private ResourcePool({ max: cap }), http.Agent with `maxTotalSockets: cap`,
 * undici.Agent with `connections: 1` (undici has no cap across origins; one
 * connection per origin is the tightest it can express). Every run starts
 * from a fresh agent (and pool), closed after it, untimed.
 */
export async function httpFanout(env) {
  const { ResourcePool } = env.lib;
  const { HttpAgent } = await import('../dist/http/index.js');
  const { createDispatcher } = await import('../dist/undici/index.js');
  const undici = await import('undici');
  const { requests, warmupRequests, origins, cap } = env.sizes.fanout;
  const port = env.ports.fanout;
  const urls = Array.from({ length: origins }, (_, k) => `http://${fanoutHost(k)}:${port}/`);
  const hosts = Array.from({ length: origins }, (_, k) => fanoutHost(k));
  const fire = (n, get) => Promise.all(Array.from({ length: n }, (_, i) => get(i % origins)));
  const seen = {};
  /** A subject whose client is made before each run and closed after it. */
  const subject = (name, open, get, close) => {
    let client;
    return {
      name,
      ops: requests,
      warmupOps: warmupRequests,
      async before() {
        client = open();
      },
      run: (n) => fire(n, (k) => get(client, k)),
      async after() {
        const { peak, accepted } = await env.census();
        const stats = client.pool?.stats();
        seen[name] = { peakOpen: peak, connections: accepted, ...(stats ? { dials: stats.dials, evictions: stats.evictions, reuses: stats.reuses } : {}) };
        await close(client);
        // The next subject starts with no connection of this one open at the server.
        const deadline = performance.now() + 30_000;
        while ((await env.census()).open > 0) {
          if (performance.now() > deadline) throw new Error('timed out waiting for the fanout server to see every connection closed');
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        client = undefined;
      },
    };
  };
  const subjects = [
    subject(
      HTTP_AGENT,
      () => {
        const pool = new ResourcePool({ max: cap, name: 'bench-fanout-agent' });
        return { pool, agent: new HttpAgent({ keepAlive: true, pool }) };
      },
      (c, k) => nodeGet(c.agent, hosts[k], port),
      async (c) => {
        c.agent.destroy();
        await c.pool.close();
      },
    ),
    subject(
      `http.Agent({ keepAlive, maxTotalSockets: ${cap} })`,
      () => ({ agent: new http.Agent({ keepAlive: true, maxTotalSockets: cap }) }),
      (c, k) => nodeGet(c.agent, hosts[k], port),
      (c) => c.agent.destroy(),
    ),
    subject(
      UNDICI_DISPATCHER,
      () => {
        const pool = new ResourcePool({ max: cap, name: 'bench-fanout-dispatcher' });
        return { pool, dispatcher: createDispatcher({ pool }) };
      },
      (c, k) => undiciGet(undici.request, c.dispatcher, urls[k]),
      async (c) => {
        await c.dispatcher.close();
        await c.pool.close();
      },
    ),
    subject(
      'undici.Agent({ connections: 1 })',
      () => ({ dispatcher: new undici.Agent({ connections: 1 }) }),
      (c, k) => undiciGet(undici.request, c.dispatcher, urls[k]),
      (c) => c.dispatcher.destroy(),
    ),
  ];
  const results = await interleave('HTTP fan-out', subjects, env.reps, { alternate: true });
  return [
    {
      id: 'http-fanout',
      title: `g. HTTP fan-out, ${requests.toLocaleString('en')} requests / ${origins.toLocaleString('en')} origins, cap ${cap}`,
      unit: 'requests/s',
      subjects: results,
      comparisons: [
        speedup(results, HTTP_AGENT, subjects[1].name),
        speedup(results, UNDICI_DISPATCHER, subjects[3].name, null, UNDICI_DISPATCHER),
      ],
      notes: {
        requests,
        origins,
        cap,
        seconds: Object.fromEntries(results.map((r) => [r.name, +(requests / r.median).toFixed(3)])),
        lastRun: seen,
      },
    },
  ];
}

/**
 * h. Fresh TCP connections, one 32-byte echo round trip each: through the
 * pool (get() dials, close()) against net.connect + destroy(), one at a time;
 * then `callers` at once round-robin over the child's echo servers under a
 * cap smaller than their number, so that every pooled dial first evicts an
 * idle socket (get, round trip, put), against plain connects at the same
 * concurrency.
 */
export async function freshDials(env) {
  const { New, ResourcePool } = env.lib;
  const sizes = env.sizes.dials;
  const payload = Buffer.alloc(32, 0x61);
  const socketOptions = { noDelay: true, keepAlive: true, keepAliveInitialDelay: 15_000 }; // netDialer's
  const plain = async (port) => {
    const socket = net.connect({ host: HOST, port, ...socketOptions });
    await once(socket, 'connect');
    await roundTrip(socket, payload);
    socket.destroy();
  };
  const out = [];

  {
    const pool = new ResourcePool({ max: 10, name: 'bench-fresh' });
    const res = New('tcp', `${HOST}:${env.ports.dial}`, { pool });
    const subjects = [
      {
        name: 'connpool',
        async run(n) {
          for (let i = 0; i < n; i++) {
            const conn = await res.get();
            await roundTrip(conn, payload);
            await conn.close(); // the next get() dials again
          }
        },
      },
      {
        name: 'net.connect',
        async run(n) {
          for (let i = 0; i < n; i++) await plain(env.ports.dial);
        },
      },
    ].map((s) => ({ ...s, ops: sizes.sequential, warmupOps: sizes.sequentialWarmup }));
    try {
      const before = pool.stats();
      const results = await interleave('fresh dials', subjects, env.reps, { slices: sizes.slices, alternate: true });
      out.push({
        id: 'fresh-dial',
        title: 'h. fresh TCP dial + round trip, sequential',
        unit: 'dials/s',
        subjects: results,
        comparisons: [speedup(results, 'connpool', 'net.connect', { op: '>=', value: 0.95 })],
        notes: { payload: payload.length, poolDials: pool.stats().dials - before.dials },
      });
    } finally {
      await shut(pool, [res]);
    }
  }

  {
    const ports = env.ports.dials.slice(0, sizes.servers);
    const { callers, cap } = sizes;
    const pool = new ResourcePool({ max: cap, name: 'bench-fresh-rr' });
    const addresses = ports.map((port) => `${HOST}:${port}`);
    /** Per server, the handles not in use (a handle has one connection out at a time). */
    const free = ports.map(() => []);
    const all = [];
    let pooledNext = 0;
    let plainNext = 0;
    const subjects = [
      {
        name: 'connpool',
        run: (n) =>
          contend(callers, n, async () => {
            const k = pooledNext;
            pooledNext = (k + 1) % ports.length;
            let handle = free[k].pop();
            if (handle === undefined) all.push((handle = New('tcp', addresses[k], { pool })));
            const conn = await handle.get();
            await roundTrip(conn, payload);
            conn.put();
            free[k].push(handle);
          }),
      },
      {
        name: 'net.connect',
        run: (n) =>
          contend(callers, n, () => {
            const k = plainNext;
            plainNext = (k + 1) % ports.length;
            return plain(ports[k]);
          }),
      },
    ].map((s) => ({ ...s, ops: sizes.roundRobin, warmupOps: sizes.roundRobinWarmup }));
    try {
      const results = await interleave('fresh dials round-robin', subjects, env.reps, { slices: sizes.roundRobinSlices, alternate: true });
      const stats = pool.stats();
      out.push({
        id: 'fresh-dial-evict',
        title: `h. fresh dials, ${ports.length} servers round-robin, cap ${cap}, ${callers} callers`,
        unit: 'dials/s',
        subjects: results,
        comparisons: [speedup(results, 'connpool', 'net.connect', { op: '>=', value: 1 })],
        notes: { payload: payload.length, servers: ports.length, cap, callers, poolDials: stats.dials, poolEvictions: stats.evictions, poolReuses: stats.reuses },
      });
    } finally {
      await shut(pool, all);
    }
  }
  return out;
}
