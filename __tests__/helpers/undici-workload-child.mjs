// The seeded random workload of __tests__/undici-workload.test.ts through
// createDispatcher(), one seed per process: its /proc/self/fd holds the pool's
// client sockets only (the servers run in undici-workload-server.mjs, a
// process of its own). It imports the built dist/.
//
// argv: seed. Replay a seed by hand with
//   node __tests__/helpers/undici-workload-child.mjs <seed>
// Prints one JSON line: { seed, failures, summary }. A run passes when
// `failures` is empty.
//
// What one seed does: one private ResourcePool (a random max, sometimes a
// maxWaiting) shared by one createDispatcher() (random maxSockets,
// idleHandoff, keepAliveTimeout, headersTimeout, bodyTimeout, acquireTimeout)
// and, in some seeds, raw connections held for a while. Tasks send requests in
// sequence (undici.request() or undici's fetch(), GET or a POST with a body)
// to a few origins whose servers answer at once, in chunks, late, never, with
// Connection: close, a short keep-alive hint, or cut the response short with a
// FIN or an RST. Requests are aborted at random moments: before they are sent
// (an aborted signal), on a timer (waiting for a slot, connecting, waiting for
// headers, mid-body), once their headers came, by destroying the body after
// its first chunk, or by dumping it. Some seeds close() or destroy() the
// dispatcher mid-run. No pipelining: with pipelining > 1 and these aborts,
// undici's own Agent (STOCK=1) fails the same checks (a re-sent request trips
// undici's assert(this.callback), a fetch never settles).
//
// Checked throughout: inUse + idle + releasing <= max and open socket fds <=
// max at every sample; every body that arrives is whole and the one its
// request asked for (no byte crosses requests); a cut response never
// succeeds; every error is one the request's fate allows (no TypeError or
// ERR_CONN_RELEASED from connpool's internals); no uncaught exception,
// unhandled rejection or warning. Checked at quiescence: every request
// settled; once the dispatcher is closed, inUse, waiting and releasing are 0
// and the idle sockets are the sockets open; pool.close() closes them all.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, fetch, request } from 'undici';
import { New, ResourcePool } from '../../dist/index.js';
import { createDispatcher } from '../../dist/undici/index.js';
import { mulberry32, openSocketFds } from './child-tools.mjs';

const seed = Number(process.argv[2]);
if (!Number.isSafeInteger(seed)) throw new Error(`usage: undici-workload-child.mjs <integer seed>, received ${process.argv[2]}`);

/** Generous bounds that only a hang exceeds: a healthy seed takes a second or two. */
const TASKS_DEADLINE_MS = 30_000;
const QUIET_DEADLINE_MS = 5_000;
const HARD_DEADLINE_MS = 55_000;

const random = mulberry32(Math.imul(seed, 2654435761) ^ 0x5bd1e995);
const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
const chance = (p) => random() < p;
const pick = (items) => items[Math.floor(random() * items.length)];
function weighted(table) {
  const total = Object.values(table).reduce((a, b) => a + b, 0);
  let r = random() * total;
  for (const [key, weight] of Object.entries(table)) if ((r -= weight) < 0) return key;
  return Object.keys(table)[0];
}

const failures = [];
const fail = (message) => {
  if (failures.length < 30) failures.push(message);
};
process.on('uncaughtException', (error) => fail(`uncaught exception: ${error?.stack ?? error}`));
process.on('unhandledRejection', (error) => fail(`unhandled rejection: ${error?.stack ?? error}`));
process.on('warning', (warning) => fail(`warning: ${warning.name}: ${warning.message}`));

// ---------------------------------------------------------------- the seed's configuration

const config = {
  max: int(1, 8),
  maxWaiting: chance(0.15) ? int(1, 6) : undefined,
  servers: int(1, 3),
  hosts: int(1, 2),
  tasks: int(2, 24),
  requestsPerTask: int(3, 12),
  rawHolders: chance(0.4) ? int(1, 3) : 0,
  end: weighted({ close: 6, 'close-mid': 2, 'destroy-mid': 2 }),
  dispatcher: {
    maxSockets: chance(0.4) ? int(1, 3) : undefined,
    idleHandoff: pick([1, 5, 10, 50]),
    keepAliveTimeout: pick([undefined, 20, 200, 60_000]),
    headersTimeout: chance(0.4) ? int(100, 400) : undefined,
    bodyTimeout: chance(0.3) ? int(100, 400) : undefined,
    acquireTimeout: chance(0.3) ? int(30, 400) : undefined,
  },
};
for (const [name, value] of Object.entries(config.dispatcher)) if (value === undefined) delete config.dispatcher[name];

// ---------------------------------------------------------------- servers and pool

const serverPath = fileURLToPath(new URL('undici-workload-server.mjs', import.meta.url));
const servers = spawn(process.execPath, [serverPath, String(config.servers)], { stdio: ['pipe', 'pipe', 'inherit'] });
const { ports } = await new Promise((resolve, reject) => {
  servers.once('error', reject);
  servers.stdout.once('data', (data) => resolve(JSON.parse(String(data))));
});
const origins = [];
for (const port of ports) for (let h = 0; h < config.hosts; h++) origins.push(`http://127.0.0.${1 + h}:${port}`);

const baseline = openSocketFds();
const pool = new ResourcePool({ max: config.max, ...(config.maxWaiting === undefined ? {} : { maxWaiting: config.maxWaiting }) });
// STOCK=1: the same requests through undici's own Agent (the pool then only serves the raw holders).
const isStock = process.env.STOCK === '1';
const { maxSockets, idleHandoff, acquireTimeout, ...undiciOptions } = config.dispatcher;
const dispatcher = isStock
  ? new Agent({ ...undiciOptions, ...(maxSockets === undefined ? {} : { connections: maxSockets }) })
  : createDispatcher({ pool, ...config.dispatcher });

const hardDeadline = setTimeout(() => {
  fail('hard deadline: the seed did not finish');
  report();
  process.exit(0);
}, HARD_DEADLINE_MS);
hardDeadline.unref();

let samples = 0;
let peakFds = 0;
function sample() {
  samples++;
  const { inUse, idle, releasing, waiting, max } = pool.stats();
  if (inUse + idle + releasing > max) fail(`inUse ${inUse} + idle ${idle} + releasing ${releasing} > max ${max}`);
  if (inUse < 0 || idle < 0 || releasing < 0 || waiting < 0) fail(`a negative count: ${JSON.stringify(pool.stats())}`);
  const fds = openSocketFds() - baseline;
  peakFds = Math.max(peakFds, fds);
  if (fds > max && !isStock) fail(`${fds} client sockets open, max ${max}`);
}
const sampler = setInterval(sample, 3);

// ---------------------------------------------------------------- requests

/** Errors a request may end with, whatever its fate: undici's and the pool's. */
const ALWAYS = new Set([
  'UND_ERR_SOCKET',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'ERR_RESOURCE_LIMIT_EXCEEDED',
  'ERR_QUEUE_FULL',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_INFO',
]);
/** Errors of a request its caller aborted. */
const ABORTS = new Set(['AbortError', 'UND_ERR_ABORTED', 'TEST_ABORT', 'ABORT_ERR']);

const outcomes = {};
const count = (key) => (outcomes[key] = (outcomes[key] ?? 0) + 1);
let issued = 0;
let settled = 0;
const pending = new Map();
let serial = 0;

function codeOf(error) {
  if (error?.name === 'AbortError') return 'AbortError';
  if (error?.code === 'TEST_ABORT' || error?.cause?.code === 'TEST_ABORT') return 'TEST_ABORT';
  if (error?.name === 'TimeoutError') return 'TimeoutError';
  // fetch() reports a failure before the response as 'fetch failed', during its body as 'terminated'.
  if (error?.name === 'TypeError' && (error?.message === 'fetch failed' || error?.message === 'terminated')) {
    return codeOf(error.cause) === String(error.cause) ? error.message : codeOf(error.cause);
  }
  return error?.code ?? error?.name ?? String(error);
}

function testAbort() {
  return Object.assign(new Error('aborted by the workload'), { code: 'TEST_ABORT' });
}

async function oneRequest(task) {
  const id = `${task}.${++serial}`;
  const dispatcherBound = config.dispatcher.headersTimeout !== undefined;
  let mode = weighted({ ok: 30, chunks: 20, slow: 10, hang: 5, close: 8, hint: 5, reset: 6, end: 6 });
  let abort = weighted({ none: 40, pre: 5, timer: 25, headers: 10, destroy: 10, dump: 5 });
  // A request that may never be answered needs something that ends it.
  if ((mode === 'hang' || mode === 'slow') && !dispatcherBound && abort !== 'pre') abort = 'timer';
  // Chunks are sent one per `delay` ms: few of them.
  const lines = mode === 'chunks' ? pick([1, 5, 20]) : pick([1, 5, 50, 2_000]);
  const delay = int(0, 30);
  const origin = pick(origins);
  const api = chance(0.2) ? 'fetch' : 'request';
  const post = chance(0.2) ? Buffer.alloc(pick([0, 10, 70_000])) : undefined;
  const url = `${origin}/?id=${id}&mode=${mode}&n=${lines}&delay=${delay}`;
  const controller = new AbortController();
  let signal = controller.signal;
  let timer;
  if (abort === 'pre') signal = AbortSignal.abort(testAbort());
  if (abort === 'timer') timer = setTimeout(() => controller.abort(testAbort()), int(0, 60));
  const fate = { id, mode, abort, api };
  issued++;
  pending.set(id, fate);
  try {
    let status;
    let body;
    if (api === 'fetch') {
      const res = await fetch(url, { dispatcher, signal, method: post ? 'POST' : 'GET', body: post });
      status = res.status;
      if (abort === 'headers') controller.abort(testAbort());
      if (abort === 'destroy' || abort === 'dump') {
        await res.body?.cancel();
        count(`${api} ${abort}`);
        return;
      }
      body = await res.text();
    } else {
      const res = await request(url, { dispatcher, signal, method: post ? 'POST' : 'GET', body: post });
      status = res.statusCode;
      if (abort === 'headers') controller.abort(testAbort());
      if (abort === 'destroy') {
        await new Promise((resolve) => {
          res.body.once('data', () => resolve());
          res.body.once('end', resolve);
          res.body.once('error', resolve);
        });
        res.body.on('error', () => {});
        res.body.destroy();
        count(`${api} destroy`);
        return;
      }
      if (abort === 'dump') {
        await res.body.dump().catch(() => {});
        count(`${api} dump`);
        return;
      }
      body = await res.body.text();
    }
    if (status !== 200) fail(`${id} (${mode}): status ${status}`);
    if (mode === 'reset' || mode === 'end') fail(`${id}: a response cut short (${mode}) succeeded`);
    const expected = `${id}\n`.repeat(lines);
    if (body !== expected) fail(`${id} (${mode}, ${api}): a body of ${body.length} bytes that is not the ${expected.length} its request asked for: ${JSON.stringify(body.slice(0, 40))}`);
    if (abort === 'pre') fail(`${id}: a request with an aborted signal succeeded`);
    count('ok');
  } catch (error) {
    const code = codeOf(error);
    count(code);
    if (!ALWAYS.has(code) && !(ABORTS.has(code) && abort !== 'none')) {
      fail(`${id} (${mode}, abort ${abort}, ${api}): unexpected ${code}: ${error?.stack ?? error}`);
    }
  } finally {
    clearTimeout(timer);
    settled++;
    pending.delete(id);
  }
}

async function task(index) {
  for (let i = 0; i < config.requestsPerTask; i++) {
    await oneRequest(index);
    if (chance(0.3)) await new Promise((resolve) => setTimeout(resolve, int(0, 20)));
  }
}

let running = true;
async function rawHolder(port) {
  while (running) {
    const handle = New('tcp', `127.0.0.1:${port}`, { pool });
    try {
      const conn = await handle.get(AbortSignal.timeout(int(20, 200)));
      await new Promise((resolve) => setTimeout(resolve, int(0, 30)));
      if (chance(0.5)) conn.put();
      else await conn.close();
      count('raw ok');
    } catch (error) {
      const code = codeOf(error);
      count(`raw ${code}`);
      if (!['ERR_RESOURCE_LIMIT_EXCEEDED', 'ERR_QUEUE_FULL', 'ERR_POOL_CLOSED', 'TimeoutError'].includes(code)) fail(`raw get(): unexpected ${code}: ${error?.stack ?? error}`);
    }
    await new Promise((resolve) => setTimeout(resolve, int(0, 20)));
  }
}

// ---------------------------------------------------------------- the run

const started = performance.now();
const tasks = Array.from({ length: config.tasks }, (_, i) => task(i));
const holders = Array.from({ length: config.rawHolders }, () => rawHolder(pick(ports)));
let ending;
if (config.end !== 'close') {
  const after = int(5, 300);
  ending = new Promise((resolve) => setTimeout(resolve, after)).then(() => (config.end === 'destroy-mid' ? dispatcher.destroy() : dispatcher.close()));
}
const allSettled = Promise.all(tasks).then(() => true);
const inTime = await Promise.race([allSettled, new Promise((resolve) => setTimeout(resolve, TASKS_DEADLINE_MS, false).unref())]);
if (!inTime) fail(`${issued - settled} of ${issued} requests never settled: ${JSON.stringify([...pending.values()].slice(0, 10))}`);
running = false;
await Promise.all(holders);
try {
  await Promise.race([
    (async () => {
      await ending;
      if (config.end === 'close') await dispatcher.close();
    })(),
    new Promise((_, reject) => setTimeout(reject, QUIET_DEADLINE_MS, new Error('the dispatcher did not close')).unref()),
  ]);
} catch (error) {
  fail(`closing the dispatcher: ${error?.message ?? error}`);
}

// Quiescence: nothing in use, nobody waiting, and what is idle is what is open.
for (let turn = 0; turn < QUIET_DEADLINE_MS / 5; turn++) {
  const { inUse, releasing } = pool.stats();
  if (inUse === 0 && releasing === 0) break;
  await new Promise((resolve) => setTimeout(resolve, 5));
}
clearInterval(sampler);
sample();
const quiet = pool.stats();
if (quiet.inUse !== 0 || quiet.waiting !== 0 || quiet.releasing !== 0) fail(`at quiescence: ${JSON.stringify(quiet)}`);
const openAtEnd = openSocketFds() - baseline;
if (openAtEnd !== quiet.idle && !isStock) fail(`at quiescence: ${openAtEnd} client sockets open, ${quiet.idle} idle in the pool`);
try {
  await Promise.race([pool.close(), new Promise((_, reject) => setTimeout(reject, QUIET_DEADLINE_MS, new Error('pool.close() did not resolve')).unref())]);
} catch (error) {
  fail(error.message);
}
const openAfterClose = openSocketFds() - baseline;
if (openAfterClose !== 0 && !isStock) fail(`after pool.close(): ${openAfterClose} client sockets still open`);
report();
servers.stdin.end();
clearTimeout(hardDeadline);
// Nothing of the run may keep the process alive: undici-workload.test.ts waits for it to exit.

function report() {
  const summary = {
    config,
    issued,
    settled,
    outcomes,
    samples,
    peakFds,
    stats: pool.stats(),
    ms: Math.round(performance.now() - started),
  };
  console.log(JSON.stringify({ seed, failures, summary }));
}
