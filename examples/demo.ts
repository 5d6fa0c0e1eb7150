/**
 * The pool under load: 64 concurrent tasks make 3,000 echo round trips to
 * three local servers (two plain TCP, one TLS with a private CA) through a
 * private `new ResourcePool({ max: 8 })`. With three addresses and eight
 * slots, callers queue for slots (first come, first served), many round trips
 * reuse an idle connection, and when a caller needs an address that has no
 * idle connection while the pool is full, the least recently used idle one is
 * closed to make room. Dials are counted by the servers, which run in a child
 * process so that every socket file descriptor of this process is a pooled
 * connection: the peak of open sockets is checked against `max` both in
 * `pool.stats()` and in /proc/self/fd. Everything is closed at the end and
 * the process exits by itself.
 */
import { New, ResourcePool, tlsDialer, type Dialer } from 'connpool';
import { setTimeout as sleep } from 'node:timers/promises';
import { roundTrip, socketFds, startServerProcess } from './support/servers.js';

const ROUND_TRIPS = 3_000;
const TASKS = 64;
const MAX = 8;

const servers = await startServerProcess(['tcp', 'tcp', 'tls']);
// A number is the built-in TCP dialer's connect timeout in ms.
const dialers: Array<Dialer | number> = [2_000, 2_000, tlsDialer({ ca: servers.ca, timeout: 2_000 })];
const pool = new ResourcePool({ max: MAX, name: 'demo' });

// Sockets open before any dial: the IPC channel to the server process, stdio.
const baseFds = socketFds();
const clientFds = (): number => (baseFds === undefined ? 0 : socketFds()! - baseFds);
const peak = { open: 0, fds: 0, waiting: 0 };
function sample(): void {
  const { inUse, idle, releasing, waiting } = pool.stats();
  peak.open = Math.max(peak.open, inUse + idle + releasing);
  peak.waiting = Math.max(peak.waiting, waiting);
}
const sampler = setInterval(() => {
  sample();
  peak.fds = Math.max(peak.fds, clientFds());
}, 2);

let started = 0;
async function task(id: number): Promise<void> {
  const handles = servers.addresses.map((address) => New('tcp', address, { pool }));
  for (let trip = 0; started < ROUND_TRIPS; trip++) {
    started++;
    const target = (id + trip) % handles.length;
    await using conn = await handles[target]!.get(AbortSignal.timeout(5_000), dialers[target]);
    sample();
    try {
      await roundTrip(conn, `task ${id} trip ${trip}\n`);
    } catch (error) {
      await conn.close();
      throw error;
    }
  }
}

const startedAt = performance.now();
await Promise.all(Array.from({ length: TASKS }, (_, id) => task(id)));
const seconds = (performance.now() - startedAt) / 1_000;
clearInterval(sampler);

const { accepted } = await servers.counts();
const dials = accepted.reduce((sum, n) => sum + n, 0);
const { idle } = pool.stats();
const row = (label: string, value: number | string, note: string): void =>
  console.log(`  ${label.padEnd(13)}${String(value).padStart(6)}  ${note}`);

console.log(`connpool demo: ${ROUND_TRIPS} round trips, ${TASKS} tasks, 3 servers (2 tcp + 1 tls), pool max ${MAX}\n`);
row('round trips', ROUND_TRIPS, `in ${seconds.toFixed(2)} s = ${Math.round(ROUND_TRIPS / seconds)} round trips/s`);
row('dials', dials, `new connections: tcp ${accepted[0]} + ${accepted[1]}, tls ${accepted[2]}`);
row('reuses', ROUND_TRIPS - dials, `${Math.round((100 * (ROUND_TRIPS - dials)) / ROUND_TRIPS)}% of round trips skipped connection set-up`);
row('evictions', dials - idle, 'idle connections closed to make room for another address');
row('peak open', peak.open, `in use + idle + closing, from pool.stats() (max ${MAX})`);
row('peak fds', baseFds === undefined ? 'n/a' : peak.fds, `client socket fds in /proc/self/fd (max ${MAX})`);
row('peak waiters', peak.waiting, 'get() calls queued for a slot');
console.log(`\n  Three addresses share eight slots and 64 tasks queue for them: a freed slot goes to the
  oldest waiter, which reuses the socket just put if it wants the same address, else closes it.`);

// close() resolves once every socket of the pool is closed.
await pool.close();
const fdsLeft = clientFds();
const serversDrained = await drained();
await servers.close();
console.log(`\nclosed ${idle} idle connections; ${baseFds === undefined ? 'n/a' : fdsLeft} client socket fds left open`);

const problems = [
  peak.open > MAX && `peak open ${peak.open} > max ${MAX}`,
  peak.fds > MAX && `peak fds ${peak.fds} > max ${MAX}`,
  fdsLeft > 0 && `${fdsLeft} socket fds still open`,
  !serversDrained && 'the servers still hold connections the pool closed',
].filter((problem) => problem !== false);
if (problems.length > 0) {
  console.error(`FAILED: ${problems.join('; ')}`);
  process.exitCode = 1;
}

/** Waits (up to 2 s) until the servers have seen every connection close. */
async function drained(): Promise<boolean> {
  for (let waited = 0; waited < 2_000; waited += 5) {
    if ((await servers.counts()).open.every((n) => n === 0)) return true;
    await sleep(5);
  }
  return false;
}
