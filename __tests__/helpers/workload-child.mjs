// The seeded random workload of __tests__/workload.test.ts, one seed per
// process: its /proc/self/fd holds the pool's client sockets only (the servers
// run in workload-server.mjs, a process of its own), and jest's
// instrumentation does not slow it down. It imports the built dist/index.js.
//
// argv: seed. Run with --expose-gc. Replay a seed by hand with
//   node --expose-gc __tests__/helpers/workload-child.mjs <seed>
// Prints one JSON line: { seed, failures, summary }. A run passes when
// `failures` is empty.
//
// What one seed does: one private ResourcePool (a random max) over a few
// servers whose replies are framed lines tagged with the request's id, and
// whose behaviour per request is random (echo, split into delayed writes, FIN
// or RST after a prefix, no reply, junk, FIN or RST while idle). Tasks run
// operations in sequence: get() (no signal, the immediate canceler, a timeout,
// or a controller aborted at a random moment; dialers that fail, hang until
// aborted, time out, are slow, or keep a separate idle list), write a request,
// read the reply (paused read(), 'data', `for await` with awaits inside, or
// piped into a slow sink; sometimes giving up mid-reply), then put(), close(),
// destroy(), scheduleClose()+put(), or (in a few seeds) drop the connection
// without either for the leak reclaim to find (untouched, written, after
// `await once(conn, 'data')`, after EOF; more often when its get() waited in
// the queue). Some operations only ask the peer to end (FIN) or reset the
// connection and, reading nothing, wait for its 'close' (E14), some on a
// half-open handle that ends its own side after 'end'. Some seeds close the
// pool mid-run. Checked throughout: inUse + idle + releasing <= max and open socket
// fds <= max at every sample, no counter negative, every reply reaches the
// caller whose request it answers and nobody else, a reply begun is finished,
// every get() settles with an outcome its inputs allow, no listener is left on
// the caller's signal, nothing reaches a connection after it was let go, no
// call on a connection its user has not let go throws ERR_CONN_RELEASED, and
// misuse after the end (a second put(), write() after put()) throws it.
// Checked at the end: inUse, waiting and releasing 0, idle equal to the
// sockets open, pool.close() resolves and closes them all, no unhandled
// rejection, uncaught exception or unexpected warning.
import { spawn } from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import { getEventListeners, once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { New, netDialer, ResourcePool } from '../../dist/index.js';
import { mulberry32, openSocketFds } from './child-tools.mjs';

const seed = Number(process.argv[2]);
if (!Number.isSafeInteger(seed)) throw new Error(`usage: workload-child.mjs <integer seed>, received ${process.argv[2]}`);

/** Generous bounds that only a hang exceeds: a healthy seed takes a few seconds. */
const TASKS_DEADLINE_MS = 20_000;
const SETTLE_AFTER_ABORT_MS = 3_000;
/** How long a connection whose peer ended or reset it may take to emit 'close' (only a hang exceeds it). */
const WATCH_MS = 1_500;
const CLOSE_DEADLINE_MS = 5_000;
const HARD_DEADLINE_MS = 50_000;

// ---------------------------------------------------------------- randomness

function hash(...parts) {
  let h = 2166136261;
  for (const part of parts) {
    h = Math.imul(h ^ (part | 0), 16777619);
    h ^= h >>> 15;
    h = Math.imul(h, 2246822507);
    h ^= h >>> 13;
  }
  return h >>> 0;
}

class Rng {
  constructor(state) {
    this.next = mulberry32(state);
  }
  float() {
    return this.next();
  }
  int(lo, hi) {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p) {
    return this.next() < p;
  }
  pick(items) {
    return items[Math.floor(this.next() * items.length)];
  }
  weighted(weights) {
    const entries = Object.entries(weights);
    let total = 0;
    for (const [, w] of entries) total += w;
    let x = this.next() * total;
    for (const [key, w] of entries) if ((x -= w) < 0) return key;
    return entries[entries.length - 1][0];
  }
}

/** Everything a seed decides before it starts. */
function configure() {
  const r = new Rng(hash(seed, 0));
  return {
    max: r.int(2, 10),
    servers: r.int(2, 5),
    tasks: r.int(4, 20),
    opsPerTask: r.int(8, 25),
    orphanTimeout: r.int(50, 500),
    /** ms after the start at which pool.close() is called, in some seeds. */
    closeAt: r.chance(0.3) ? r.int(50, 800) : undefined,
    /** Connections dropped without put() or close(): the leak reclaim takes seconds, so one seed in five. */
    maxDrops: seed % 5 === 3 ? r.int(2, 5) : 0,
    acceptFaultsPerMille: r.int(0, 30),
    giveUpRate: r.float() * 0.15,
    modes: {
      echo: 4,
      split: 1 + 3 * r.float(),
      end: 2 * r.float(),
      close: r.float(),
      reset: r.float(),
      hang: 0.5 * r.float(),
      junk: r.float(),
      idleclose: r.float(),
      idlereset: r.float(),
    },
    dialers: {
      default: 4,
      net: 1 + r.float(),
      alt: 2 * r.float(),
      timeout: r.float(),
      slow: r.float(),
      fail: 0.5 * r.float(),
      hang: 0.5 * r.float(),
      blackhole: 0.3 * r.float(),
    },
    signals: {
      none: 3,
      immediate: r.float(),
      timeout: 1 + r.float(),
      controller: 1 + 2 * r.float(),
      bad: 0.1 * r.float(),
    },
  };
}

// ---------------------------------------------------------------- bookkeeping

/** Failures grouped by kind (the message without its operation, numbers and stats): a few examples and a count each. */
const failureKinds = new Map();
const counts = {};
function count(what) {
  counts[what] = (counts[what] ?? 0) + 1;
}
function fail(message) {
  count('failures');
  const kind = message
    .replace(/op \d+\.\d+ \([^)]*\)/g, 'op')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\d+/g, '#')
    .slice(0, 120);
  let group = failureKinds.get(kind);
  if (group === undefined) failureKinds.set(kind, (group = { examples: [], count: 0 }));
  group.count++;
  if (group.examples.length < 2) group.examples.push(message);
}
function failures() {
  const lines = [];
  for (const { examples, count: n } of failureKinds.values()) {
    lines.push(...examples.map((example, i) => (i === 0 && n > 1 ? `[${n} times] ${example}` : example)));
  }
  return lines;
}

let isReported = false;
const uncaught = [];
const warnings = [];
const shortStack = (error) => String(error?.stack ?? error).split('\n').slice(0, 6).join('\n');
process.on('uncaughtException', (error) => uncaught.push(`uncaught exception: ${error?.code ?? ''} ${shortStack(error)}`));
process.on('unhandledRejection', (reason) => uncaught.push(`unhandled rejection: ${reason?.code ?? ''} ${shortStack(reason)}`));
process.on('warning', (warning) => warnings.push({ name: warning.name, code: warning.code, message: warning.message }));

const collect = typeof globalThis.gc === 'function' ? globalThis.gc : (v8.setFlagsFromString('--expose-gc'), vm.runInNewContext('gc'));

const sleep = (ms) => new Promise((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));
const show = (value) => {
  if (typeof value === 'string') return JSON.stringify(value.length > 70 ? `${value.slice(0, 70)}...` : value);
  if (typeof value === 'object' && value !== null) return value.constructor?.name ?? 'object';
  return String(value);
};
const errorText = (error) => `${error?.name ?? typeof error} ${error?.code ?? ''} ${show(String(error?.message ?? error))}`;

// ---------------------------------------------------------------- servers

const config = configure();
const serverPath = fileURLToPath(new URL('./workload-server.mjs', import.meta.url));
const servers = spawn(process.execPath, [serverPath, String(seed), String(config.servers), String(config.acceptFaultsPerMille)], {
  stdio: ['pipe', 'pipe', 'inherit'],
});
const { ports, refused } = await new Promise((resolve, reject) => {
  let text = '';
  servers.once('error', reject);
  servers.once('exit', (code) => reject(new Error(`workload-server.mjs exited with ${code}`)));
  servers.stdout.on('data', (data) => {
    text += data;
    if (text.includes('\n')) resolve(JSON.parse(text));
  });
});
const addresses = ports.map((port) => `127.0.0.1:${port}`);
const refusedAddress = `127.0.0.1:${refused}`;

// ---------------------------------------------------------------- the pool, sampled

const pool = new ResourcePool({ max: config.max, name: `workload ${seed}`, orphanTimeout: config.orphanTimeout });
const baseline = openSocketFds();
const peaks = { fds: 0, sum: 0, samples: 0 };
function checkStats(where) {
  const s = pool.stats();
  const sum = s.inUse + s.idle + s.releasing;
  peaks.sum = Math.max(peaks.sum, sum);
  if (s.inUse < 0 || s.idle < 0 || s.releasing < 0 || s.waiting < 0) fail(`negative counter ${where}: ${JSON.stringify(s)}`);
  if (sum > config.max) fail(`S1: inUse + idle + releasing = ${sum} > max ${config.max} ${where}: ${JSON.stringify(s)}`);
  return s;
}
function sample(where) {
  peaks.samples++;
  const fds = openSocketFds() - baseline;
  peaks.fds = Math.max(peaks.fds, fds);
  const s = checkStats(where);
  if (fds > config.max) fail(`S1: ${fds} client socket fds open > max ${config.max} ${where}; stats ${JSON.stringify(s)}`);
}
const sampler = setInterval(() => sample('(periodic sample)'), 3);
/** get()s that waited in the queue, seen as they start waiting. */
let waitsSeen = 0;
diagnostics.subscribe('connpool:wait', (message) => {
  if (message.pool === pool) waitsSeen++;
});

// ---------------------------------------------------------------- dialers

const plain = netDialer();
/** The workload's own dials not yet settled, by dialer, to tell an orphan that is never aborted from a lost slot. */
const dialsInFlight = { slow: 0, fail: 0, hang: 0, blackhole: 0 };
function tracked(kind, dialing) {
  dialsInFlight[kind]++;
  return dialing.finally(() => dialsInFlight[kind]--);
}
const dialers = {
  net: plain,
  alt: { key: 'workload-alt', dial: (network, address, signal) => plain.dial(network, address, signal) },
  slow: (ms) => ({
    key: plain.key,
    dial: (network, address, signal) =>
      tracked('slow', abortableDelay(ms, signal).then(() => plain.dial(network, address, signal))),
  }),
  fail: (ms) => ({
    key: 'workload-fail',
    dial: (_network, _address, signal) =>
      tracked(
        'fail',
        abortableDelay(ms, signal).then(() => {
          throw Object.assign(new Error('the workload dialer fails on purpose'), { code: 'EWORKLOAD_DIAL' });
        }),
      ),
  }),
  /** Never connects; gives up only when its signal aborts. */
  hang: {
    key: plain.key,
    dial: (_network, _address, signal) =>
      tracked(
        'hang',
        abortableDelay(Infinity, signal).then(() => {
          throw new Error('unreachable');
        }),
      ),
  },
  /** A black-holed address with a dial timeout of its own. */
  blackhole: (ms) => ({
    key: 'workload-blackhole',
    dial: (_network, _address, signal) =>
      tracked(
        'blackhole',
        abortableDelay(ms, signal).then(() => {
          throw Object.assign(new Error('connect ETIMEDOUT (workload black hole)'), { code: 'ETIMEDOUT' });
        }),
      ),
  }),
};

function abortableDelay(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
    function done() {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

// ---------------------------------------------------------------- operations

/**
 * Modes whose reply the server sends whole, followed by nothing or by a FIN:
 * a caller that got part of such a reply must get all of it. (idlereset is not
 * one: its RST may cut a large reply the client is still reading.)
 */
const MODES_WHOLE = new Set(['echo', 'split', 'end', 'junk', 'idleclose']);
const STYLES = ['paused', 'data', 'data-sloppy', 'iterate', 'pipe', 'pipe-sloppy'];
const PAYLOAD_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789';

let poolCloseCalled = false;
let closing;
let drops = 0;
let dropsUndestroyed = 0;
/** The last operation that used each client port, to name the owner of a socket left open. */
const portUsers = new Map();
const connPorts = new WeakMap();
function portOf(conn) {
  return connPorts.get(conn);
}
/** The local ports of the client sockets open now (Linux: socket inodes in /proc/self/fd, ports in /proc/net/tcp). */
function openSocketPorts() {
  const inodes = new Set();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (match) inodes.add(match[1]);
    } catch {
      // closed while we looked
    }
  }
  const ports = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length > 9 && inodes.has(fields[9])) ports.push(Number.parseInt(fields[1].split(':')[1], 16));
    }
  }
  return ports;
}
function whoHolds() {
  const ports = openSocketPorts();
  if (ports.length === 0) return 'no client socket open';
  return `open client sockets: ${ports.map((port) => `port ${port} (last used by ${portUsers.get(port) ?? 'no operation: never handed out'})`).join('; ')}`;
}
/** How each handle's last operation ended, to explain an ERR_CONN_IN_USE. */
const lastEnding = new WeakMap();
/** What each task is doing, for the report of a stall. */
const current = [];

/** Everything an operation will do, drawn before it starts so that a seed replays the same plan. */
function plan(task, index) {
  const r = new Rng(hash(seed, 1 + task, index));
  const op = {
    id: `${task}.${index}`,
    task,
    index,
    jitter: hash(seed, 1 + task, index, 7),
    address: r.chance(0.03) ? -1 : r.int(0, addresses.length - 1),
    freshHandle: r.chance(0.1),
    dialer: r.weighted(config.dialers),
    dialMs: r.int(0, 40),
    timeout: r.pick([0, -1, 1, 20, 2_000, Infinity]),
    signal: r.weighted(config.signals),
    abortAfter: r.int(1, 40),
    badArgument: r.pick(['object signal', 'number signal', 'NaN timeout', 'string timeout']),
    scheduleDuringGet: r.chance(0.04),
    probeInUse: r.chance(0.04),
    mode: r.weighted(config.modes),
    style: r.pick(STYLES),
    giveUpAfter: r.chance(config.giveUpRate) ? r.int(0, 25) : undefined,
    awaitEof: r.chance(0.5),
    chunks: r.int(2, 30),
    delayMs: r.int(0, 4),
    cut: r.int(0, 40),
    idleMs: r.int(0, 30),
    payload: '',
    ending: r.weighted({ put: 5, dispose: 1, close: 1.5, destroy: 1, schedule: 1 }),
    dirtyEnding: r.weighted({ put: 2, dispose: 1, close: 1, destroy: 1 }),
    abandonEnding: r.weighted({ close: 2, destroy: 1, schedule: 1 }),
    awaitClose: r.chance(0.7),
    probeAfter: r.chance(0.15),
    drop: config.maxDrops > 0 && r.chance(0.06) ? r.pick(['untouched', 'written', 'timeout', 'eof', 'once']) : undefined,
    /** In seeds that drop connections: how to drop this one if its get() waits in the queue (E15). */
    dropIfWaited: config.maxDrops > 0 && r.chance(0.3) ? r.pick(['untouched', 'written', 'once']) : undefined,
    /** Instead of a request and its reply: the peer ends or resets, the caller reads nothing and waits for 'close' (E14). */
    watch: r.chance(0.06) ? r.pick(['close', 'reset']) : undefined,
    /** A watch on a handle made with allowHalfOpen: the caller ends its side after 'end'. */
    halfOpen: r.chance(0.35),
    pauseAfter: r.chance(0.2) ? r.int(0, 5) : undefined,
    /** The most ms a reader awaits between chunks (iterate, pipe). */
    slowness: r.chance(0.25) ? r.int(5, 15) : r.int(0, 3),
  };
  const length = r.chance(0.1) ? r.int(5_000, 150_000) : r.int(1, 300);
  const chars = [];
  for (let i = 0; i < length; i++) chars.push(PAYLOAD_CHARS[Math.floor(r.float() * PAYLOAD_CHARS.length)]);
  op.payload = chars.join('');
  // A dialer that hangs until aborted needs a signal that aborts.
  if (op.dialer === 'hang' && op.signal !== 'timeout' && op.signal !== 'controller') op.dialer = 'blackhole';
  // A caller waiting for a reply that never comes gives up.
  if (op.mode === 'hang' && op.giveUpAfter === undefined) op.giveUpAfter = r.int(1, 25);
  if (op.drop === 'eof') {
    op.mode = 'end';
    op.style = 'paused';
    op.awaitEof = true;
    op.giveUpAfter = undefined;
  }
  return op;
}

function describeOp(op) {
  const dialer = op.dialer === 'timeout' ? `timeout ${op.timeout}` : op.dialer;
  const signal = op.signal === 'timeout' || op.signal === 'controller' ? `${op.signal} ${op.abortAfter}ms` : op.signal;
  const address = op.address < 0 ? 'refused address' : `server ${op.address}`;
  return (
    `op ${op.id} (${address}, dialer ${dialer}, signal ${signal}${op.signal === 'bad' ? ` [${op.badArgument}]` : ''}, ` +
    `mode ${op.mode}, read ${op.style}${op.giveUpAfter !== undefined ? `, gives up after ${op.giveUpAfter}ms` : ''}` +
    `${op.drop ? `, drop ${op.drop}` : ''}${op.watch ? `, watch ${op.watch}${op.halfOpen ? ' half-open' : ''}` : ''}, payload ${op.payload.length} B)`
  );
}

function dialerArgument(op) {
  switch (op.dialer) {
    case 'default':
      return undefined;
    case 'timeout':
      return op.timeout;
    case 'net':
    case 'alt':
    case 'hang':
      return dialers[op.dialer];
    default:
      return dialers[op.dialer](op.dialMs);
  }
}

/** Which rejections a get() may end with, given what it was called with. */
function checkGetError(op, error, signal, isAfterClose, handle) {
  const code = error?.code;
  const previous = lastEnding.get(handle);
  const what =
    `${describeOp(op)}: get() rejected with ${errorText(error)}` +
    (code === 'ERR_CONN_IN_USE' ? ` (the handle's last operation: ${previous ?? 'none'})` : '');
  count(`get rejected ${typeof code === "string" ? code : error?.name}`);
  if (op.signal === 'bad') {
    const expected = op.badArgument === 'NaN timeout' ? 'ERR_OUT_OF_RANGE' : 'ERR_INVALID_ARG_TYPE';
    if (code !== expected && !(code === 'ERR_POOL_CLOSED' && poolCloseCalled)) fail(`E12: ${what}, expected ${expected}`);
    return;
  }
  if (code === 'ERR_POOL_CLOSED') {
    if (!poolCloseCalled) fail(`${what} before pool.close() was called`);
    return;
  }
  if (isAfterClose) return fail(`E7: ${what}; called after pool.close(), it should reject with ERR_POOL_CLOSED`);
  if (code === 'ERR_RESOURCE_LIMIT_EXCEEDED') {
    if (signal === undefined) fail(`S3: ${what} with no signal`);
    else if (error.cause !== signal.reason) fail(`S2: ${what} whose cause is not the signal's reason`);
    return;
  }
  if (signal !== undefined && op.signal !== 'immediate' && error === signal.reason) return; // E3: aborted during the dial
  const dialErrors = new Set();
  if (op.address < 0) dialErrors.add('ECONNREFUSED');
  // A server resetting at accept can beat the client's 'connect': "connect ECONNRESET".
  else if (config.acceptFaultsPerMille > 0 && ['default', 'net', 'alt', 'timeout', 'slow'].includes(op.dialer)) dialErrors.add('ECONNRESET');
  if (op.dialer === 'fail') dialErrors.add('EWORKLOAD_DIAL');
  if (op.dialer === 'blackhole') dialErrors.add('ETIMEDOUT');
  if (op.dialer === 'timeout' && op.timeout > 0 && Number.isFinite(op.timeout)) dialErrors.add('ETIMEDOUT');
  if (dialErrors.has(code)) return; // S9
  fail(`${what}, which its signal and dialer do not allow`);
}

/** The reply to one request, checked as it arrives: only its own reply (and junk lines) may reach the caller. */
class ReplyParser {
  constructor(op) {
    this.op = op;
    this.expected = `R ${op.id} ${op.payload}\n`;
    this.buffer = '';
    this.isComplete = false;
    this.junk = 0;
    this.bad = undefined;
  }
  /** Bytes of the reply received so far, while it is incomplete. */
  get partial() {
    return !this.isComplete && this.buffer.startsWith('R') ? this.buffer.length : 0;
  }
  feed(chunk) {
    if (this.bad !== undefined) return false;
    this.buffer += typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    for (;;) {
      const buffer = this.buffer;
      if (buffer.length === 0) break;
      if (buffer[0] === 'J') {
        const newline = buffer.indexOf('\n');
        const line = newline < 0 ? buffer : buffer.slice(0, newline);
        if (!/^J( \d*)?$/.test(line)) return this.#garbage();
        if (newline < 0) break;
        this.junk++;
        this.buffer = buffer.slice(newline + 1);
        continue;
      }
      if (this.isComplete) return this.#garbage();
      const n = Math.min(buffer.length, this.expected.length);
      if (buffer.slice(0, n) !== this.expected.slice(0, n)) return this.#garbage();
      if (buffer.length < this.expected.length) break;
      this.isComplete = true;
      this.buffer = buffer.slice(this.expected.length);
    }
    return this.isComplete;
  }
  #garbage() {
    const text = this.buffer;
    const other = /^R (\d+\.\d+) /.exec(text);
    this.bad = other
      ? `the reply to op ${other[1]} reached the caller of ${describeOp(this.op)} (bytes crossed users)`
      : `${describeOp(this.op)} received bytes that are neither its reply nor junk: ${show(text)}` +
        `${this.isComplete ? ' (after its whole reply)' : ''}`;
    fail(this.bad);
    return false;
  }
}

/** Resolves with the first of `events` on `emitter`, or 'stop'; removes its listeners. */
function firstEvent(emitter, events, stop) {
  return new Promise((resolve) => {
    const listeners = events.map((event) => [event, () => finish(event)]);
    const finish = (what) => {
      for (const [event, listener] of listeners) emitter.removeListener(event, listener);
      stop.off(onStop);
      resolve(what);
    };
    const onStop = () => finish('stop');
    for (const [event, listener] of listeners) emitter.on(event, listener);
    stop.on(onStop);
  });
}

/** A caller giving up: fires once, at a time of the operation's choosing. */
class Stop {
  fired = false;
  #listeners = new Set();
  fire() {
    if (this.fired) return;
    this.fired = true;
    for (const listener of [...this.#listeners]) listener();
  }
  on(listener) {
    if (this.fired) queueMicrotask(listener);
    else this.#listeners.add(listener);
  }
  off(listener) {
    this.#listeners.delete(listener);
  }
}

/** conn.read(), which only the user's own put() or close() may turn into a throw (S8, E10). */
function readOnce(conn, state, op) {
  try {
    return conn.read();
  } catch (error) {
    const cause = state.error !== undefined ? `after ${errorText(state.error)} destroyed it` : state.closed ? 'after it closed' : 'while open';
    fail(`S8/E10: ${describeOp(op)}: read() threw ${errorText(error)} on a connection its user had not put or closed (${cause})`);
    return null;
  }
}

async function readPaused(conn, parser, stop, untilEof, state, jitter, slowness) {
  for (;;) {
    let chunk;
    while ((chunk = readOnce(conn, state, parser.op)) !== null) {
      if (parser.feed(chunk) && !untilEof) return 'done';
      if (parser.bad !== undefined) return 'bad';
      if (jitter !== undefined && jitter.chance(0.3)) await sleep(jitter.int(0, slowness));
    }
    if (state.ended) return 'eof';
    if (state.error !== undefined || state.closed) return 'error';
    if (stop.fired) return 'stopped';
    if ((await firstEvent(conn, ['readable', 'end', 'error', 'close'], stop)) === 'stop') return 'stopped';
  }
}

function readFlowing(conn, parser, stop, untilEof, sloppy, released) {
  return new Promise((resolve) => {
    let isDone = false;
    const finish = (status) => {
      if (isDone) return;
      isDone = true;
      conn.removeListener('end', onEnd);
      conn.removeListener('error', onError);
      conn.removeListener('close', onError);
      stop.off(onStop);
      if (!sloppy) {
        conn.pause();
        conn.removeListener('data', onData);
      }
      resolve(status);
    };
    const onData = (chunk) => {
      if (released.value) return released.late(chunk);
      if (isDone) return void parser.feed(chunk);
      if (parser.feed(chunk) && !untilEof) finish('done');
      else if (parser.bad !== undefined) finish('bad');
    };
    const onEnd = () => finish('eof');
    const onError = () => finish('error');
    const onStop = () => finish('stopped');
    // Destroyed before the reader came (a peer's reset): no event is coming.
    if (conn.destroyed) {
      count('destroyed before the reader came');
      return finish('error');
    }
    conn.on('data', onData);
    conn.on('end', onEnd);
    conn.on('error', onError);
    conn.on('close', onError);
    stop.on(onStop);
  });
}

const STOPPED = Symbol('stopped');
async function readIterating(conn, parser, stop, untilEof, jitter, slowness) {
  const iterator = conn[Symbol.asyncIterator]();
  const stopped = new Promise((resolve) => stop.on(() => resolve(STOPPED)));
  for (;;) {
    const next = iterator.next();
    let step;
    try {
      step = await Promise.race([next, stopped]);
    } catch {
      return 'error';
    }
    if (step === STOPPED) {
      next.catch(() => {});
      return 'stopped';
    }
    if (step.done) return 'eof';
    const isComplete = parser.feed(step.value);
    if ((isComplete && !untilEof) || parser.bad !== undefined) {
      await iterator.return();
      return parser.bad !== undefined ? 'bad' : 'done';
    }
    await sleep(jitter.chance(0.5) ? jitter.int(0, slowness) : 0);
  }
}

function readPiped(conn, parser, stop, untilEof, sloppy, jitter, released, slowness) {
  return new Promise((resolve) => {
    let isDone = false;
    const sink = new Writable({
      highWaterMark: jitter.int(1, 512),
      write(chunk, _encoding, callback) {
        if (!isDone) {
          if (parser.feed(chunk) && !untilEof) finish('done');
          else if (parser.bad !== undefined) finish('bad');
        }
        const ms = jitter.int(0, slowness);
        if (ms === 0) setImmediate(callback);
        else setTimeout(callback, ms);
      },
    });
    sink.on('error', () => {});
    const finish = (status) => {
      if (isDone) return;
      isDone = true;
      conn.removeListener('end', onEnd);
      conn.removeListener('error', onEnd);
      conn.removeListener('close', onEnd);
      stop.off(onStop);
      if (!sloppy) conn.unpipe(sink);
      resolve(status);
    };
    // EOF or an error: what was piped before it is still in the sink's buffer; judge once the sink has it all.
    const onEnd = (error) => {
      const status = error === undefined ? 'eof' : 'error';
      const whenFlushed = () => {
        if (isDone) return;
        if (sink.writableLength === 0 || sink.destroyed) finish(parser.bad !== undefined ? 'bad' : parser.isComplete && !untilEof ? 'done' : status);
        else setTimeout(whenFlushed, 1);
      };
      whenFlushed();
    };
    const onStop = () => finish('stopped');
    // Destroyed before the reader came (a peer's reset): no event is coming.
    if (conn.destroyed) {
      count('destroyed before the reader came');
      return finish('error');
    }
    conn.on('data', (chunk) => {
      if (released.value) released.late(chunk);
    });
    conn.pipe(sink, { end: false });
    conn.on('end', onEnd);
    conn.on('error', onEnd);
    conn.on('close', onEnd);
    stop.on(onStop);
  });
}

async function endConn(op, conn, handle, how, released = { value: false }) {
  count(`end ${how}`);
  switch (how) {
    case 'put':
      conn.put();
      released.value = true;
      break;
    case 'dispose': {
      const disposing = conn[Symbol.asyncDispose]();
      released.value = true;
      await disposing;
      break;
    }
    case 'destroy':
      conn.destroy();
      released.value = true;
      break;
    case 'schedule':
      handle.scheduleClose();
      conn.put();
      released.value = true;
      break;
    case 'close': {
      const closing = conn.close();
      released.value = true;
      const closed = closing.then(
        () => true,
        (error) => fail(`${describeOp(op)}: close() rejected with ${errorText(error)}`),
      );
      if (op.awaitClose) {
        const outcome = await Promise.race([closed, sleep(CLOSE_DEADLINE_MS).then(() => 'late')]);
        if (outcome === 'late') fail(`S5: ${describeOp(op)}: close() still pending ${CLOSE_DEADLINE_MS} ms later; stats ${JSON.stringify(pool.stats())}`);
      }
      break;
    }
  }
}

/** Misuse after the end: what S6, S7 and S8 say it does. */
async function probeAfter(op, conn, how) {
  const released = (action, run) => {
    try {
      run();
      fail(`S7/S8: ${describeOp(op)}: ${action} after ${how} did not throw`);
    } catch (error) {
      if (error?.code !== 'ERR_CONN_RELEASED') fail(`S7/S8: ${describeOp(op)}: ${action} after ${how} threw ${errorText(error)}, expected ERR_CONN_RELEASED`);
    }
  };
  if (how === 'put' || how === 'dispose' || how === 'schedule') {
    released('a second put()', () => conn.put());
    released('write()', () => conn.write('x'));
    await conn.close().catch((error) => fail(`S6: ${describeOp(op)}: close() after put() rejected with ${errorText(error)}`));
  } else {
    try {
      conn.put();
      await conn[Symbol.asyncDispose]();
    } catch (error) {
      fail(`S6: ${describeOp(op)}: put() or disposal after ${how} threw ${errorText(error)}`);
    }
    if (how === 'close') released('write()', () => conn.write('x'));
  }
}

/** Drops `conn` on the floor (as `kind` says): no put(), no close(). Returns whether it was still open. */
async function dropConn(op, conn, state, kind) {
  switch (kind) {
    case 'once':
      // The read stays pending, with nobody listening: it must not keep the connection alive (E15).
      conn.write(`Q ${op.id} echo 1 0 0 0 ${op.payload}\n`);
      {
        // once() settles on 'data' or 'error' only: a peer's FIN (an accept fault) would leave it pending for ever.
        const gone = new AbortController();
        const onGone = () => gone.abort();
        conn.once('end', onGone);
        conn.once('close', onGone);
        try {
          if (state.ended || state.closed) throw new Error('ended before the read');
          await once(conn, 'data', { signal: gone.signal });
        } catch {
          count('drop once: the connection ended or failed first');
        }
        conn.off('end', onGone);
        conn.off('close', onGone);
      }
      break;
    case 'written':
      conn.write(`Q ${op.id} echo 1 0 0 0 ${op.payload}\n`);
      break;
    case 'timeout':
      conn.setTimeout(60_000);
      conn.setTimeout(0);
      break;
    case 'eof': {
      conn.write(`Q ${op.id} end 1 0 0 0 ${op.payload}\n`);
      const parser = new ReplyParser(op);
      const status = await readPaused(conn, parser, new Stop(), true, state);
      if (status !== 'eof') {
        await endConn(op, conn, undefined, 'close');
        return false;
      }
      break;
    }
  }
  return !conn.destroyed;
}

async function runOp(op, handles) {
  const jitter = new Rng(op.jitter);
  const address = op.address < 0 ? refusedAddress : addresses[op.address];
  let handle = handles.get(address);
  if (handle === undefined || op.freshHandle) handles.set(address, (handle = New('tcp', address, { pool })));
  // A half-open watch gets a handle of its own, used for this operation only.
  if (op.watch !== undefined && op.halfOpen) handle = New('tcp', address, { pool, allowHalfOpen: true });
  const status = current[op.task];
  status.op = op;
  status.phase = 'get';
  status.since = performance.now();
  status.abortedAt = undefined;
  status.reported = false;

  let signal;
  let abortTimer;
  const controller = new AbortController();
  const markAborted = () => {
    status.abortedAt ??= performance.now();
  };
  switch (op.signal) {
    case 'immediate':
      signal = AbortSignal.abort();
      break;
    case 'timeout':
      signal = AbortSignal.timeout(op.abortAfter);
      break;
    case 'controller':
      signal = controller.signal;
      abortTimer = setTimeout(
        () => controller.abort(Object.assign(new Error(`op ${op.id} gave up`), { code: 'EWORKLOAD_ABORT' })),
        op.abortAfter,
      );
      break;
  }
  signal?.addEventListener('abort', markAborted, { once: true });
  let dialer = dialerArgument(op);
  let signalArgument = signal;
  if (op.signal === 'bad') {
    if (op.badArgument === 'object signal') signalArgument = { aborted: false };
    else if (op.badArgument === 'number signal') signalArgument = 2_000;
    else if (op.badArgument === 'NaN timeout') dialer = Number.NaN;
    else dialer = '2000';
  }
  const listenersBefore = signal === undefined ? 0 : getEventListeners(signal, 'abort').length;
  const isAfterClose = poolCloseCalled;

  let conn;
  const waitsBefore = waitsSeen;
  let waited = false;
  try {
    const getting = handle.get(signalArgument, dialer);
    waited = waitsSeen > waitsBefore;
    if (op.scheduleDuringGet) handle.scheduleClose();
    conn = await getting;
  } catch (error) {
    clearTimeout(abortTimer);
    checkGetError(op, error, signal, isAfterClose, handle);
    // A handle stuck "in use" would fail every later operation the same way: carry on with a fresh one.
    if (error?.code === 'ERR_CONN_IN_USE' && op.signal !== 'bad') handles.set(address, New('tcp', address, { pool }));
    lastEnding.set(handle, `op ${op.id}, get() rejected with ${error?.code ?? error?.name}`);
    checkListeners(op, signal, listenersBefore);
    signal?.removeEventListener('abort', markAborted);
    status.phase = 'between';
    return;
  }
  count('get resolved');
  try {
    connPorts.set(conn, conn.localPort);
    portUsers.set(conn.localPort, `${describeOp(op)}, out`);
  } catch (error) {
    fail(`S8: ${describeOp(op)}: localPort of a connection just got threw ${errorText(error)}`);
  }
  checkStats(`after get() of ${describeOp(op)}`);
  checkListeners(op, signal, listenersBefore);
  signal?.removeEventListener('abort', markAborted);
  if (op.signal === 'bad') fail(`E12: ${describeOp(op)}: get() resolved a connection`);
  if (isAfterClose) fail(`E7: ${describeOp(op)}: get() called after pool.close() resolved a connection`);

  const state = { ended: false, closed: false, error: undefined };
  conn.on('error', (error) => {
    state.error ??= error;
  });
  conn.on('end', () => {
    state.ended = true;
  });
  conn.on('close', () => {
    state.closed = true;
  });

  if (op.probeInUse) {
    try {
      (await handle.get(AbortSignal.abort())).put();
      fail(`S7: ${describeOp(op)}: a second get() on its handle resolved while the connection was out`);
    } catch (error) {
      if (error?.code !== 'ERR_CONN_IN_USE') fail(`S7: ${describeOp(op)}: a second get() on its handle rejected with ${errorText(error)}`);
    }
  }

  const dropKind = op.drop ?? (waited ? op.dropIfWaited : undefined);
  if (dropKind !== undefined && drops < config.maxDrops) {
    drops++;
    count(`drop ${dropKind}${waited ? ' after a wait in the queue' : ''}`);
    status.phase = 'drop';
    clearTimeout(abortTimer);
    handles.delete(address); // its connection stays out until the leak is reclaimed
    if (await dropConn(op, conn, state, dropKind)) dropsUndestroyed++;
    status.phase = 'between';
    return;
  }

  if (op.watch !== undefined) {
    status.phase = 'watch';
    clearTimeout(abortTimer);
    await watchPeer(op, conn, handle);
    status.phase = 'between';
    return;
  }

  status.phase = 'read';
  const stop = new Stop();
  const giveUp = () => stop.fire();
  if (signal !== undefined && op.signal === 'controller') {
    if (signal.aborted) stop.fire();
    else signal.addEventListener('abort', giveUp, { once: true });
  }
  const giveUpTimer = op.giveUpAfter === undefined ? undefined : setTimeout(giveUp, op.giveUpAfter);
  const parser = new ReplyParser(op);
  const released = {
    value: false,
    late: (chunk) => {
      if (released.reported) return;
      released.reported = true;
      fail(`E10: ${describeOp(op)}: ${chunk.length} bytes reached its connection after ${released.how}: ${show(String(chunk))}`);
    },
  };
  const untilEof = op.mode === 'end' && op.awaitEof;
  let outcome;
  try {
    conn.write(`Q ${op.id} ${op.mode} ${op.chunks} ${op.delayMs} ${op.cut} ${op.idleMs} ${op.payload}\n`);
    if (op.pauseAfter !== undefined) await sleep(op.pauseAfter);
    switch (op.style) {
      case 'paused':
        outcome = await readPaused(conn, parser, stop, untilEof, state, jitter, op.slowness);
        break;
      case 'data':
      case 'data-sloppy':
        outcome = await readFlowing(conn, parser, stop, untilEof, op.style === 'data-sloppy', released);
        break;
      case 'iterate':
        outcome = await readIterating(conn, parser, stop, untilEof, jitter, op.slowness);
        break;
      default:
        outcome = await readPiped(conn, parser, stop, untilEof, op.style === 'pipe-sloppy', jitter, released, op.slowness);
    }
  } catch (error) {
    if (error?.code !== 'ERR_CONN_RELEASED') throw error;
    // The user has not let go: only put() or close() may make its calls throw (S8).
    const call = /\n\s*at (?!#assertOut)(?:PooledConn\.)?(\S+)/.exec(String(error.stack))?.[1] ?? 'a call';
    const cause = state.error !== undefined ? `after ${errorText(state.error)} destroyed it` : state.closed ? 'after it closed' : 'while open';
    fail(`S8/E10: ${describeOp(op)}: ${call}() threw ERR_CONN_RELEASED on a connection its user had not put or closed (${cause})`);
    outcome = 'error';
  }
  clearTimeout(abortTimer);
  clearTimeout(giveUpTimer);
  signal?.removeEventListener('abort', giveUp);
  count(`read ${outcome}`);
  if (parser.junk > 0) count('junk lines seen');

  if ((outcome === 'eof' || outcome === 'error') && parser.bad === undefined) {
    const cause = outcome === 'eof' ? 'EOF' : `error ${errorText(state.error)}`;
    if (parser.partial > 0 && MODES_WHOLE.has(op.mode)) {
      fail(
        `E10: ${describeOp(op)}: ${cause} after ${parser.partial} of the ${parser.expected.length} bytes of its reply, ` +
          `which the server sent whole (bytes lost)`,
      );
    } else if (parser.isComplete && op.mode !== 'end' && outcome === 'eof' && parser.partial === 0) {
      count('eof after reply');
    } else if (!parser.isComplete && parser.partial === 0) {
      count('stale or failed connection');
    }
    if (untilEof && parser.isComplete && outcome !== 'eof' && state.error === undefined) {
      fail(`E10: ${describeOp(op)}: no EOF after the reply although the server sent FIN`);
    }
  }

  status.phase = 'end';
  let how;
  if (outcome === 'done') how = op.ending;
  else if (outcome === 'stopped') how = op.style === 'iterate' && op.abandonEnding === 'schedule' ? 'close' : op.abandonEnding;
  else how = op.dirtyEnding;
  released.how = how;
  const wasDestroyed = conn.destroyed;
  lastEnding.set(handle, `op ${op.id}, ended with ${how}`);
  portUsers.set(portOf(conn), `${describeOp(op)}, read ${outcome}, ended with ${how}`);
  await endConn(op, conn, handle, how, released);
  checkStats(`after ${how} of ${describeOp(op)}`);
  // After an error the stream may already count as closed (S6: put() then does nothing): probe clean ones only.
  if (op.probeAfter && outcome === 'done' && !wasDestroyed) await probeAfter(op, conn, how);
  status.phase = 'between';
}

/**
 * The peer ends (FIN) or resets the connection while the caller reads
 * nothing: as a `net.Socket`, the connection emits 'end' then 'close', or
 * 'error' then 'close', and is done: put() and close() then do nothing (E14).
 * On a half-open handle the caller ends its own side once 'end' comes.
 */
async function watchPeer(op, conn, handle) {
  const peerDoes = op.watch === 'close' ? 'FIN' : 'RST';
  const events = [];
  let isClosed = false;
  const note = (what) => {
    if (isClosed) fail(`E14: ${describeOp(op)}: '${what}' after 'close' (events ${events.join(', ')})`);
    events.push(what);
  };
  conn.on('end', () => {
    note('end');
    if (!op.halfOpen) return;
    if (conn.readyState !== 'writeOnly' && !conn.destroyed) fail(`E14: ${describeOp(op)}: readyState ${conn.readyState} after 'end' on a half-open handle`);
    if (conn.writable) conn.end();
  });
  conn.on('error', (error) => note(`error ${error?.code}`));
  const closed = new Promise((resolve) =>
    conn.once('close', () => {
      note('close');
      isClosed = true;
      resolve(true);
    }),
  );
  if (conn.destroyed) {
    count('watch: destroyed before the request');
    await endConn(op, conn, handle, 'put');
    return;
  }
  conn.write(`Q ${op.id} ${op.watch} 1 0 0 0 ${op.payload}\n`);
  let outcome = await Promise.race([closed, sleep(WATCH_MS).then(() => false)]);
  if (!outcome) {
    // Bytes sent before the FIN (an accept fault's junk line) hold 'end' back until they are read, as on net.Socket.
    let read = 0;
    conn.on('data', (chunk) => void (read += chunk.length));
    outcome = await Promise.race([closed, sleep(WATCH_MS).then(() => false)]);
    if (outcome && read === 0) fail(`E14: ${describeOp(op)}: the peer's ${peerDoes} was heard only once the connection was read, with nothing to read (events ${events.join(', ')})`);
    if (outcome) count(`watch ${op.watch}: 'close' after reading ${read} B sent first`);
  }
  portUsers.set(portOf(conn), `${describeOp(op)}, watched the peer's ${peerDoes}`);
  if (!outcome) {
    fail(`E14: ${describeOp(op)}: no 'close' ${2 * WATCH_MS} ms after the peer's ${peerDoes} (events ${events.join(', ') || 'none'}; stats ${JSON.stringify(pool.stats())})`);
    lastEnding.set(handle, `op ${op.id}, watch gave up`);
    await endConn(op, conn, handle, 'close');
    return;
  }
  count(`watch ${op.watch}${op.halfOpen ? ' half-open' : ''}: ${events.join(', ')}`);
  const first = events[0];
  if (op.watch === 'close' && first !== 'end' && !first.startsWith('error')) fail(`E14: ${describeOp(op)}: after the peer's FIN, events ${events.join(', ')}`);
  if (conn.readyState !== 'closed' || !conn.destroyed) fail(`E14: ${describeOp(op)}: after 'close', readyState ${conn.readyState}, destroyed ${conn.destroyed}`);
  lastEnding.set(handle, `op ${op.id}, closed by the peer's ${peerDoes}`);
  try {
    conn.put();
    await conn.close();
  } catch (error) {
    fail(`E14/S6: ${describeOp(op)}: put() or close() after the peer closed it threw ${errorText(error)}`);
  }
  checkStats(`after the peer's ${peerDoes} closed ${describeOp(op)}`);
}

function checkListeners(op, signal, before) {
  if (signal === undefined) return;
  const after = getEventListeners(signal, 'abort').length;
  if (after > before) fail(`E3: ${describeOp(op)}: ${after - before} listener(s) left on the caller's signal after get() settled`);
}

async function task(index) {
  current[index] = { op: undefined, phase: 'between', since: performance.now(), abortedAt: undefined };
  const handles = new Map();
  for (let i = 0; i < config.opsPerTask; i++) {
    const op = plan(index, i);
    try {
      await runOp(op, handles);
    } catch (error) {
      fail(`${describeOp(op)} threw ${error?.code ?? ''} ${error?.stack ?? error}`);
    }
    if (op.index % 3 === 0) await sleep(op.index % 2);
  }
  current[index].phase = 'done';
}

// ---------------------------------------------------------------- the run

const started = performance.now();
const hardDeadline = setTimeout(() => {
  fail(`the run did not finish within ${HARD_DEADLINE_MS} ms; stats ${JSON.stringify(pool.stats())}; ${stalled()}`);
  void report();
}, HARD_DEADLINE_MS);

function stalled() {
  const now = performance.now();
  const pending = current
    .filter((s) => s.phase !== 'done' && s.phase !== 'between')
    .map((s) => `task ${s.op?.task} in ${s.phase} of ${s.op ? describeOp(s.op) : '?'} for ${Math.round(now - s.since)} ms`);
  return pending.length === 0 ? 'no task in an operation' : pending.join('; ');
}

const watchdog = setInterval(() => {
  const now = performance.now();
  for (const s of current) {
    if (s?.phase === 'get' && s.abortedAt !== undefined && now - s.abortedAt > SETTLE_AFTER_ABORT_MS && !s.reported) {
      s.reported = true;
      fail(`E3/E11: ${describeOp(s.op)}: get() still pending ${SETTLE_AFTER_ABORT_MS} ms after its signal aborted; stats ${JSON.stringify(pool.stats())}`);
    }
  }
}, 250);

const gcTimer = config.maxDrops > 0 ? setInterval(collect, 100) : undefined;
const closeTimer =
  config.closeAt === undefined
    ? undefined
    : setTimeout(() => {
        poolCloseCalled = true;
        count('pool.close() mid-run');
        closing = pool.close();
      }, config.closeAt);

async function main() {
  const tasks = Promise.all(Array.from({ length: config.tasks }, (_, i) => task(i)));
  const finished = await Promise.race([tasks.then(() => true), sleep(TASKS_DEADLINE_MS).then(() => false)]);
  clearTimeout(closeTimer);
  if (!finished) {
    fail(`stall: the tasks did not finish within ${TASKS_DEADLINE_MS} ms; stats ${JSON.stringify(pool.stats())}; ${stalled()}`);
    await report();
  }

  /** Polls `predicate` (with gc in seeds that drop connections) until it holds or `ms` pass. */
  async function eventually(predicate, ms) {
    const until = performance.now() + ms;
    while (!predicate()) {
      if (performance.now() > until) return false;
      if (gcTimer !== undefined) collect();
      await sleep(10);
    }
    return true;
  }

  const quiet = () => {
    const s = pool.stats();
    return s.inUse === 0 && s.waiting === 0 && s.releasing === 0;
  };
  const quiescenceMs = 3_000 + config.orphanTimeout + (config.maxDrops > 0 ? 8_000 : 0);
  if (!(await eventually(quiet, quiescenceMs))) {
    fail(
      `quiescence: stats ${JSON.stringify(pool.stats())} ${quiescenceMs} ms after every task finished ` +
        `(expected inUse, waiting and releasing 0${drops > 0 ? `; ${drops} connections were dropped without put()` : ''}); ` +
        `the workload's dials still pending: ${JSON.stringify(dialsInFlight)}; ${whoHolds()}`,
    );
  }
  // The servers' idle FINs, RSTs and junk come within 30 ms of a reply: let them land, then compare.
  await sleep(60);
  let lastSeen = '';
  const isIdleExact = await eventually(() => {
    const s = pool.stats();
    const fds = openSocketFds() - baseline;
    lastSeen = `${fds} client socket fds open, stats ${JSON.stringify(s)}`;
    return s.releasing === 0 && s.inUse === 0 && fds === s.idle;
  }, 1_000);
  if (!isIdleExact) fail(`quiescence: idle does not count the sockets really open: ${lastSeen}; ${whoHolds()}`);
  const leakCounter = pool.stats().leaks;

  closing ??= pool.close();
  const closed = await Promise.race([closing.then(() => true), sleep(CLOSE_DEADLINE_MS).then(() => false)]);
  if (!closed) {
    fail(
      `E7: pool.close() did not resolve within ${CLOSE_DEADLINE_MS} ms; stats ${JSON.stringify(pool.stats())}; ` +
        `the workload's dials still pending: ${JSON.stringify(dialsInFlight)}`,
    );
  }
  else {
    const fds = openSocketFds() - baseline;
    const s = pool.stats();
    if (fds !== 0 || s.inUse !== 0 || s.idle !== 0 || s.releasing !== 0 || s.waiting !== 0) {
      fail(`E7: after pool.close() resolved, ${fds} client socket fds are open; stats ${JSON.stringify(s)}; ${whoHolds()}`);
    }
  }
  // Crashes from stream machinery come on later ticks.
  await sleep(20);
  await sleep(0);

  const leakWarnings = warnings.filter((w) => w.code === 'CONNPOOL_LEAK').length;
  if (leakWarnings > drops) fail(`E9: ${leakWarnings} CONNPOOL_LEAK warnings for ${drops} connections dropped`);
  if (dropsUndestroyed >= 3 && leakWarnings === 0) fail(`E9: no CONNPOOL_LEAK warning for ${dropsUndestroyed} open connections dropped`);
  if (typeof leakCounter === 'number' && leakCounter !== leakWarnings) fail(`E9: stats().leaks is ${leakCounter}, ${leakWarnings} CONNPOOL_LEAK warnings`);
  for (const w of warnings) if (w.code !== 'CONNPOOL_LEAK') fail(`E6: unexpected warning ${w.name} ${w.code ?? ''}: ${w.message}`);
}

try {
  await main();
} catch (error) {
  fail(`the workload threw: ${error?.stack ?? error}`);
}
await report();

/** Prints the outcome and exits; never resolves. */
function report() {
  if (isReported) return new Promise(() => {});
  isReported = true;
  clearInterval(sampler);
  clearInterval(watchdog);
  clearInterval(gcTimer);
  clearTimeout(hardDeadline);
  for (const line of uncaught) fail(line);
  const summary = {
    config: { ...config, modes: undefined, dialers: undefined, signals: undefined },
    ms: Math.round(performance.now() - started),
    peaks,
    drops,
    leakWarnings: warnings.filter((w) => w.code === 'CONNPOOL_LEAK').length,
    counts,
  };
  servers.stdin.end();
  process.stdout.write(`${JSON.stringify({ seed, failures: failures(), summary })}\n`, () => process.exit(0));
  return new Promise(() => {});
}
