// Where connpool's checkout time goes: `node bench/profile.mjs` (after `npm run build`).
//
//   --scenario checkout,contended[,...]      what to profile (default checkout,contended); one of
//                                            contended-await, rtt-tcp, rtt-tls, upload, download,
//                                            http-agent, http-stock, dispatcher, undici-stock (figure f, sequential),
//                                            fresh-dial, fresh-raw, evict-dial, evict-raw (figure h)
//   --dist DIR                               the build to profile (default dist/): a patched copy, to compare
//   --keep DIR                               keep the .cpuprofile files in DIR
//   --top N                                  rows per listing (default 25)
//   --yield-every N                          checkout: let the event loop turn (setImmediate) every
//                                            N ops; default 0: never, as in bench/run.mjs. (Not for
//                                            contended: callers that yield drop out of the queue.)
//
// For each scenario it runs two child processes against the bench servers:
//   1. `node --cpu-prof` running the loop: self and inclusive time per function,
//      dist/ positions mapped back to lib/*.ts through the source maps;
//   2. a counting run: bytes allocated per op (new-space growth with a 128 MiB
//      semi-space, no scavenge in between), allocation sites (V8's sampling heap
//      profiler), promises, nextTicks and listener (un)registrations per op.
import { spawn } from 'node:child_process';
import { createHook } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { SourceMap } from 'node:module';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { gc, median } from './harness.mjs';
import { makeCertificates } from './certs.mjs';
import { startServers, stopServers } from './peer.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'checkout,contended' },
    keep: { type: 'string' },
    top: { type: 'string', default: '25' },
    'yield-every': { type: 'string', default: '0' },
    dist: { type: 'string' },
    worker: { type: 'string' },
    port: { type: 'string' },
    bulkPort: { type: 'string' },
    tlsPort: { type: 'string' },
  },
});

/** The build profiled: dist/, or a patched copy's (--dist). */
const distDir = args.dist ? resolve(args.dist) : join(root, 'dist');

// ---------------------------------------------------------------- scenarios

const yieldEvery = Number(args['yield-every']) > 0 ? Number(args['yield-every']) : Number.POSITIVE_INFINITY;
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Each scenario: setup(lib, ports) -> { run(ops), close(), opsCpu, opsCount }. */
const SCENARIOS = {
  async checkout(lib, ports) {
    const pool = new lib.ResourcePool({ max: 10, name: 'profile-checkout' });
    const res = lib.New('tcp', `127.0.0.1:${ports.port}`, { pool });
    return {
      opsCpu: 3_000_000,
      opsCount: 20_000,
      async run(n) {
        for (let i = 0; i < n; i++) {
          const conn = await res.get();
          conn.put();
          if (i % yieldEvery === yieldEvery - 1) await turn();
        }
      },
      close: () => closePool(pool, [res]),
    };
  },
  async contended(lib, ports) {
    const pool = new lib.ResourcePool({ max: 10, name: 'profile-contended' });
    const handles = Array.from({ length: 1_000 }, () => lib.New('tcp', `127.0.0.1:${ports.port}`, { pool }));
    return {
      opsCpu: 600_000,
      opsCount: 20_000,
      async run(n) {
        let left = n;
        await Promise.all(
          handles.map(async (handle) => {
            while (left-- > 0) {
              const conn = await handle.get();
              conn.put();
            }
          }),
        );
      },
      close: () => closePool(pool, handles),
    };
  },
  /** As contended, but each caller holds its connection across an await (figure b, held). */
  async 'contended-await'(lib, ports) {
    const pool = new lib.ResourcePool({ max: 10, name: 'profile-contended-await' });
    const handles = Array.from({ length: 1_000 }, () => lib.New('tcp', `127.0.0.1:${ports.port}`, { pool }));
    return {
      opsCpu: 600_000,
      opsCount: 20_000,
      async run(n) {
        let left = n;
        await Promise.all(
          handles.map(async (handle) => {
            while (left-- > 0) {
              const conn = await handle.get();
              await Promise.resolve();
              conn.put();
            }
          }),
        );
      },
      close: () => closePool(pool, handles),
    };
  },
  'rtt-tcp': (lib, ports) => roundTripScenario(lib, `127.0.0.1:${ports.port}`, undefined),
  'rtt-tls': (lib, ports) => roundTripScenario(lib, `127.0.0.1:${ports.tlsPort}`, lib.tlsDialer({ ca: process.env.BENCH_CA })),
  async upload(lib, ports) {
    const { upload } = await import('./io.mjs');
    const pool = new lib.ResourcePool({ max: 10, name: 'profile-upload' });
    const res = lib.New('tcp', `127.0.0.1:${ports.bulkPort}`, { pool });
    const chunk = Buffer.alloc(64 * 1024, 0x42);
    return {
      opsCpu: 8 * 1024, // 64 KiB chunks: 512 MiB
      opsCount: 1_024,
      async run(n) {
        const conn = await res.get();
        await upload(conn, n * chunk.length, chunk);
        conn.put();
      },
      close: () => closePool(pool, [res]),
    };
  },
  async download(lib, ports) {
    const { download } = await import('./io.mjs');
    const pool = new lib.ResourcePool({ max: 10, name: 'profile-download' });
    const res = lib.New('tcp', `127.0.0.1:${ports.bulkPort}`, { pool });
    return {
      opsCpu: 8 * 1024, // 64 KiB units: 512 MiB
      opsCount: 1_024,
      async run(n) {
        const conn = await res.get();
        await download(conn, n * 64 * 1024);
        conn.put();
      },
      close: () => closePool(pool, [res]),
    };
  },
  'http-agent': (lib, ports) =>
    httpScenario(ports, async () => {
      const { HttpAgent } = await import(pathToFileURL(join(distDir, 'http', 'index.js')).href);
      const pool = new lib.ResourcePool({ max: 100, name: 'profile-http-agent' });
      const agent = new HttpAgent({ keepAlive: true, pool });
      return { get: () => nodeGet(agent, ports.http), close: () => (agent.destroy(), pool.close()) };
    }),
  'http-stock': (lib, ports) =>
    httpScenario(ports, async () => {
      const http = await import('node:http');
      const agent = new http.Agent({ keepAlive: true });
      return { get: () => nodeGet(agent, ports.http), close: () => agent.destroy() };
    }),
  dispatcher: (lib, ports) =>
    httpScenario(ports, async () => {
      const { createDispatcher } = await import(pathToFileURL(join(distDir, 'undici', 'index.js')).href);
      const { request } = await import('undici');
      const pool = new lib.ResourcePool({ max: 100, name: 'profile-dispatcher' });
      const dispatcher = createDispatcher({ pool });
      const url = `http://127.0.0.1:${ports.http}/`;
      return { get: async () => (await request(url, { dispatcher })).body.text(), close: async () => (await dispatcher.close(), await pool.close()) };
    }),
  'undici-stock': (lib, ports) =>
    httpScenario(ports, async () => {
      const { Agent, request } = await import('undici');
      const dispatcher = new Agent();
      const url = `http://127.0.0.1:${ports.http}/`;
      return { get: async () => (await request(url, { dispatcher })).body.text(), close: () => dispatcher.close() };
    }),
  async 'fresh-dial'(lib, ports) {
    const { roundTrip } = await import('./io.mjs');
    const pool = new lib.ResourcePool({ max: 10, name: 'profile-fresh' });
    const res = lib.New('tcp', `127.0.0.1:${ports.dial}`, { pool });
    const payload = Buffer.alloc(32, 0x61);
    return {
      opsCpu: 10_000,
      opsCount: 1_000,
      async run(n) {
        for (let i = 0; i < n; i++) {
          const conn = await res.get();
          await roundTrip(conn, payload);
          await conn.close();
        }
      },
      close: () => closePool(pool, [res]),
    };
  },
  async 'fresh-raw'(lib, ports) {
    const { roundTrip } = await import('./io.mjs');
    const net = await import('node:net');
    const { once } = await import('node:events');
    const payload = Buffer.alloc(32, 0x61);
    return {
      opsCpu: 10_000,
      opsCount: 1_000,
      async run(n) {
        for (let i = 0; i < n; i++) {
          const socket = net.connect({ host: '127.0.0.1', port: ports.dial, noDelay: true, keepAlive: true, keepAliveInitialDelay: 15_000 });
          await once(socket, 'connect');
          await roundTrip(socket, payload);
          socket.destroy();
        }
      },
      close: async () => {},
    };
  },
  async 'evict-dial'(lib, ports) {
    const { roundTrip } = await import('./io.mjs');
    const pool = new lib.ResourcePool({ max: 200, name: 'profile-evict' });
    const addresses = ports.dials.map((port) => `127.0.0.1:${port}`);
    const free = addresses.map(() => []);
    const all = [];
    const payload = Buffer.alloc(32, 0x61);
    let next = 0;
    return {
      opsCpu: 30_000,
      opsCount: 3_000,
      run: (n) =>
        lanes(200, n, async () => {
          const k = next;
          next = (k + 1) % addresses.length;
          let handle = free[k].pop();
          if (handle === undefined) all.push((handle = lib.New('tcp', addresses[k], { pool })));
          const conn = await handle.get();
          await roundTrip(conn, payload);
          conn.put();
          free[k].push(handle);
        }),
      close: () => closePool(pool, all),
    };
  },
  async 'evict-raw'(lib, ports) {
    const { roundTrip } = await import('./io.mjs');
    const net = await import('node:net');
    const { once } = await import('node:events');
    const payload = Buffer.alloc(32, 0x61);
    let next = 0;
    return {
      opsCpu: 30_000,
      opsCount: 3_000,
      run: (n) =>
        lanes(200, n, async () => {
          const k = next;
          next = (k + 1) % ports.dials.length;
          const socket = net.connect({ host: '127.0.0.1', port: ports.dials[k], noDelay: true, keepAlive: true, keepAliveInitialDelay: 15_000 });
          await once(socket, 'connect');
          await roundTrip(socket, payload);
          socket.destroy();
        }),
      close: async () => {},
    };
  },
};

/** `width` concurrent loops sharing `count` runs of `job`. */
async function lanes(width, count, job) {
  let left = count;
  await Promise.all(Array.from({ length: width }, async () => {
    while (left-- > 0) await job();
  }));
}

/** One GET through Node's HTTP client, the whole response read. */
async function nodeGet(agent, port) {
  const http = await import('node:http');
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        res.once('error', reject);
        res.once('end', resolve);
        res.resume();
      })
      .once('error', reject);
  });
}

/** Sequential GETs to the bench's HTTP server (figure f): `open()` makes the client. */
async function httpScenario(ports, open) {
  const client = await open();
  return {
    opsCpu: 20_000,
    opsCount: 2_000,
    async run(n) {
      for (let i = 0; i < n; i++) await client.get();
    },
    close: () => client.close(),
  };
}

/** get(), a 32-byte echo round trip, put(): the pooled subject of figure c. */
async function roundTripScenario(lib, address, dialer) {
  const { roundTrip } = await import('./io.mjs');
  const pool = new lib.ResourcePool({ max: 10, name: 'profile-rtt' });
  const res = lib.New('tcp', address, { pool });
  const payload = Buffer.alloc(32, 0x61);
  return {
    opsCpu: 30_000,
    opsCount: 3_000,
    async run(n) {
      for (let i = 0; i < n; i++) {
        const conn = await res.get(undefined, dialer);
        await roundTrip(conn, payload);
        conn.put();
      }
    },
    close: () => closePool(pool, [res]),
  };
}

async function closePool(pool, handles) {
  if (typeof pool.close === 'function') return pool.close();
  for (const handle of handles) handle.scheduleClose();
  while (pool.stats().idle + pool.stats().inUse + pool.stats().releasing > 0) await new Promise((r) => setTimeout(r, 5));
}

// ---------------------------------------------------------------- workers

async function cpuWorker(name, ports) {
  const lib = await import(pathToFileURL(join(distDir, 'index.js')).href);
  const scenario = await SCENARIOS[name](lib, ports);
  await scenario.run(Math.ceil(scenario.opsCpu / 20));
  const cpu = process.cpuUsage();
  const start = performance.now();
  await scenario.run(scenario.opsCpu);
  const ms = performance.now() - start;
  const { user, system } = process.cpuUsage(cpu);
  await scenario.close();
  process.stdout.write(`${JSON.stringify({ ops: scenario.opsCpu, ms, cpuMs: (user + system) / 1000 })}\n`);
}

function newSpaceUsed() {
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_used_size;
}

/** Counts calls of `object[method]` by the first argument's name while `counting` holds. */
function countCalls(object, methods, counts, state) {
  const originals = methods.map((method) => [method, object[method]]);
  for (const [method, original] of originals) {
    object[method] = function (...argv) {
      if (state.counting) {
        const key = `${method}('${String(argv[0])}')`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return original.apply(this, argv);
    };
  }
  return () => {
    for (const [method, original] of originals) object[method] = original;
  };
}

async function countWorker(name, ports) {
  const lib = await import(pathToFileURL(join(distDir, 'index.js')).href);
  const scenario = await SCENARIOS[name](lib, ports);
  const ops = scenario.opsCount;
  await scenario.run(ops);
  const report = { ops };

  // Bytes allocated per op: new-space growth with no scavenge in between.
  const bytes = [];
  for (let i = 0; i < 5; i++) {
    gc();
    const before = newSpaceUsed();
    await scenario.run(ops);
    const after = newSpaceUsed();
    if (after > before) bytes.push((after - before) / ops);
  }
  report.bytesPerOp = bytes.length > 0 ? Math.round(median(bytes)) : null;

  // Allocation sites.
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 128,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  await scenario.run(ops * 5);
  const { profile } = await session.post('HeapProfiler.stopSampling');
  session.disconnect();
  const sites = new Map();
  let sampled = 0;
  const walk = (node) => {
    if (node.selfSize > 0) {
      const key = frameKey(node.callFrame);
      sites.set(key, (sites.get(key) ?? 0) + node.selfSize);
      sampled += node.selfSize;
    }
    for (const child of node.children) walk(child);
  };
  walk(profile.head);
  report.allocationSites = [...sites].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([site, size]) => [site, +(size / sampled).toFixed(3)]);

  // Promises, ticks and listener registrations per op.
  const state = { counting: false };
  const calls = new Map();
  const restore = [
    countCalls(EventEmitter.prototype, ['on', 'addListener', 'once', 'prependListener', 'removeListener', 'off', 'emit'], calls, state),
    countCalls(EventTarget.prototype, ['addEventListener', 'removeEventListener'], calls, state),
  ];
  let ticks = 0;
  const nextTick = process.nextTick;
  process.nextTick = function (...argv) {
    if (state.counting) ticks++;
    return nextTick.apply(this, argv);
  };
  const resources = new Map();
  const hook = createHook({
    init(id, type) {
      if (state.counting) resources.set(type, (resources.get(type) ?? 0) + 1);
    },
  });
  hook.enable();
  state.counting = true;
  await scenario.run(ops);
  state.counting = false;
  hook.disable();
  process.nextTick = nextTick;
  for (const undo of restore) undo();
  report.perOp = {
    nextTick: +(ticks / ops).toFixed(2),
    ...Object.fromEntries([...resources].map(([type, n]) => [`async resource ${type}`, +(n / ops).toFixed(2)])),
    ...Object.fromEntries([...calls].sort((a, b) => b[1] - a[1]).map(([call, n]) => [call, +(n / ops).toFixed(2)])),
  };
  await scenario.close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

// ---------------------------------------------------------------- analysis

const sourceMaps = new Map();

function sourceMapFor(url) {
  if (!sourceMaps.has(url)) {
    let map = null;
    try {
      const file = fileURLToPath(url);
      if (existsSync(`${file}.map`)) map = { map: new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8'))), dir: dirname(file) };
    } catch {
      map = null;
    }
    sourceMaps.set(url, map);
  }
  return sourceMaps.get(url);
}

/** `name file:line`, with dist/ positions mapped to lib/*.ts. */
function frameKey({ functionName, url, lineNumber, columnNumber }) {
  const name = functionName || '(anonymous)';
  if (!url) return name;
  if (url.startsWith('file:') && url.includes('/dist/')) {
    const found = sourceMapFor(url);
    const entry = found?.map.findEntry(lineNumber, columnNumber);
    if (entry?.originalSource) {
      const source = relative(root, join(found.dir, entry.originalSource.replace(/^file:\/\//, '')));
      return `${name} ${source}:${entry.originalLine + 1}`;
    }
  }
  const short = url.startsWith('file:') ? relative(root, fileURLToPath(url)) : url;
  return `${name} ${short}:${lineNumber + 1}`;
}

function category(key) {
  if (/ lib\/|\/dist\//.test(key)) return 'connpool (lib/)';
  if (key.includes('node:internal/streams')) return 'node streams';
  if (key.includes('p-limit') || key.includes('yocto-queue')) return 'p-limit';
  if (key.startsWith('(garbage collector)')) return 'GC';
  if (key.startsWith('(program)') || key.startsWith('(idle)') || key.startsWith('(root)')) return key.split(' ')[0];
  if (key.includes(' bench/')) return 'bench loop';
  if (key.includes('node:')) return 'node other';
  return 'V8 builtins / other';
}

function analyse(profile, top) {
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const keyOf = new Map(profile.nodes.map((node) => [node.id, frameKey(node.callFrame)]));
  const self = new Map();
  const total = new Map();
  let counted = 0;
  for (const id of profile.samples) {
    const key = keyOf.get(id);
    if (key.startsWith('(idle)')) continue;
    counted++;
    self.set(key, (self.get(key) ?? 0) + 1);
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const k = keyOf.get(at);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + 1);
    }
  }
  const pct = (n) => `${((100 * n) / counted).toFixed(1).padStart(5)}%`;
  const categories = new Map();
  for (const [key, n] of self) categories.set(category(key), (categories.get(category(key)) ?? 0) + n);
  const lines = [];
  lines.push(`  samples (non-idle): ${counted}`);
  lines.push('  self time by area:');
  for (const [name, n] of [...categories].sort((a, b) => b[1] - a[1])) lines.push(`    ${pct(n)}  ${name}`);
  lines.push(`  top ${top} functions by self time:`);
  for (const [key, n] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`    ${pct(n)}  ${key}`);
  lines.push('  connpool functions by inclusive time:');
  const ours = [...total].filter(([key]) => category(key) === 'connpool (lib/)').sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [key, n] of ours) lines.push(`    ${pct(n)}  ${key}   (self ${pct(self.get(key) ?? 0).trim()})`);
  return lines.join('\n');
}

// ---------------------------------------------------------------- parent

function runNode(argv) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(' ')} exited with ${code}`))));
  });
}

async function main() {
  if (!existsSync(join(distDir, 'index.js'))) throw new Error(`${join(distDir, 'index.js')} is missing: run \`npm run build\` first`);
  const names = args.scenario.split(',').map((s) => s.trim());
  for (const name of names) if (!(name in SCENARIOS)) throw new Error(`unknown scenario ${name}: ${Object.keys(SCENARIOS).join(', ')}`);
  const top = Number(args.top);
  const dir = args.keep ?? mkdtempSync(join(os.tmpdir(), 'connpool-profile-'));
  const credentials = names.some((name) => name.includes('tls')) ? makeCertificates() : undefined;
  if (credentials) process.env.BENCH_CA = credentials.ca.toString();
  const { child, ready } = startServers(credentials);
  try {
    const ports = await ready;
    process.env.BENCH_PORTS = JSON.stringify(ports);
    const portArgs = ['--port', String(ports.checkout), '--bulkPort', String(ports.bulk), '--tlsPort', String(ports.tls ?? 0), '--yield-every', args['yield-every'], '--dist', distDir];
    for (const name of names) {
      console.log(`\n=== ${name} ===`);
      const cpu = JSON.parse(
        await runNode(['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}.cpuprofile`, '--cpu-prof-interval=200', fileURLToPath(import.meta.url), '--worker', `cpu:${name}`, ...portArgs]),
      );
      console.log(`  ${cpu.ops} ops in ${cpu.ms.toFixed(0)} ms under the profiler: ${((1e6 * cpu.ms) / cpu.ops).toFixed(0)} ns/op, ${((1e6 * cpu.cpuMs) / cpu.ops).toFixed(0)} ns of CPU/op`);
      console.log(analyse(JSON.parse(readFileSync(join(dir, `${name}.cpuprofile`), 'utf8')), top));
      const counts = JSON.parse(
        await runNode(['--min-semi-space-size=128', '--max-semi-space-size=128', fileURLToPath(import.meta.url), '--worker', `count:${name}`, ...portArgs]),
      );
      console.log(`  bytes allocated per op: ${counts.bytesPerOp ?? 'n/a (a scavenge ran)'}`);
      console.log('  allocation sites (share of sampled bytes):');
      for (const [site, share] of counts.allocationSites) console.log(`    ${(100 * share).toFixed(1).padStart(5)}%  ${site}`);
      console.log('  per op:');
      for (const [what, n] of Object.entries(counts.perOp)) console.log(`    ${String(n).padStart(6)}  ${what}`);
      if (!Object.keys(counts.perOp).some((what) => what.includes('('))) console.log('         0  EventEmitter / EventTarget listener calls');
    }
  } finally {
    await stopServers(child);
    if (args.keep === undefined) rmSync(dir, { recursive: true, force: true });
    else console.log(`\nprofiles kept in ${dir}: ${readdirSync(dir).join(', ')}`);
  }
}

if (args.worker) {
  const [kind, name] = args.worker.split(':');
  const ports = { ...JSON.parse(process.env.BENCH_PORTS ?? '{}'), port: Number(args.port), bulkPort: Number(args.bulkPort), tlsPort: Number(args.tlsPort) };
  (kind === 'cpu' ? cpuWorker(name, ports) : countWorker(name, ports)).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}

