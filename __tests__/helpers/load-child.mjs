// The load of __tests__/load.test.ts, run in its own process so that the
// socket fds counted in /proc/self/fd are the pool's alone (the echo servers
// run in yet another process) and jest's instrumentation does not slow it.
//
// argv: JSON options { addresses, max, tasks, opsPerTask }.
// Prints one JSON line: peaks, outcome counts, stats and fds at the end.
import { New, ResourcePool } from '../../dist/index.js';
import { openSocketFds } from './child-tools.mjs';

const { addresses, max, tasks, opsPerTask } = JSON.parse(process.argv[2]);

async function roundTrip(conn, text) {
  conn.write(text);
  let received = '';
  for await (const chunk of conn) {
    received += String(chunk);
    if (received.length >= text.length) break;
  }
  return received;
}

/** What each operation does after get(): 10% close(), 5% an aborted wait, the rest put(). */
function kindOf(op) {
  const slot = op % 20;
  if (slot === 7 || slot === 17) return 'close';
  if (slot === 13) return 'abort';
  return 'put';
}

const pool = new ResourcePool({ max, name: 'load' });
const baseline = openSocketFds();
let peakFds = 0;
let peakSum = 0;
let samples = 0;
function sample() {
  samples++;
  peakFds = Math.max(peakFds, openSocketFds() - baseline);
  const { inUse, idle, releasing } = pool.stats();
  peakSum = Math.max(peakSum, inUse + idle + releasing);
}
const sampler = setInterval(sample, 2);
const counts = { put: 0, close: 0, abortedWait: 0, abortedDial: 0, abortSurvived: 0, badEcho: 0 };
const unexpected = [];

async function task(id) {
  const handles = new Map();
  for (let i = 0; i < opsPerTask; i++) {
    const op = id * opsPerTask + i;
    const address = addresses[(id + i) % addresses.length];
    let res = handles.get(address);
    if (res === undefined) handles.set(address, (res = New('tcp', address, { pool })));
    const kind = kindOf(op);
    let conn;
    try {
      conn = await res.get(kind === 'abort' ? AbortSignal.timeout(op % 3) : undefined);
    } catch (error) {
      if (kind === 'abort' && error?.code === 'ERR_RESOURCE_LIMIT_EXCEEDED') counts.abortedWait++;
      // The signal aborted during the dial: get() rejects with its reason (E3).
      else if (kind === 'abort' && error?.name === 'TimeoutError') counts.abortedDial++;
      else unexpected.push(`${error?.code ?? ''} ${error?.stack ?? error}`);
      continue;
    }
    if (op % 10 === 0) sample();
    const text = `task ${id} op ${op}`;
    if ((await roundTrip(conn, text)) !== text) counts.badEcho++;
    if (kind === 'close') {
      await conn.close();
      counts.close++;
    } else {
      conn.put();
      if (kind === 'abort') counts.abortSurvived++;
      else counts.put++;
    }
  }
}

await Promise.all(Array.from({ length: tasks }, (_, id) => task(id)));
// Orphaned dials (E3) may still be finishing; they hold their slot until they do.
while (pool.stats().inUse > 0 || pool.stats().releasing > 0) await new Promise((resolve) => setTimeout(resolve, 2));
clearInterval(sampler);
sample();
const stats = pool.stats();
const openAtEnd = openSocketFds() - baseline;
await pool.close();
const openAfterClose = openSocketFds() - baseline;
console.log(JSON.stringify({ max, peakFds, peakSum, samples, counts, unexpected, stats, openAtEnd, openAfterClose }));
